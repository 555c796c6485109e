"""`python -m stella_trust` runs the `trust` command."""

from stella_trust._cli.app import main

main()
