"""Pure trust policy: which targets, which names, what is fresh, what the view holds.

Nothing here reads the clock or the network; callers pass verified bytes and `now`, so
each decision is made the same way by sync, bundle import, the CLI, the agent and the
library API, and can be tested directly.
"""
