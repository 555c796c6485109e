"""`python -m stella_trust` is the `trust` command."""

from stella_trust.cli import main

main()
