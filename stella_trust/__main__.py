"""`python -m stella_trust` runs the `trust` command (through the console script's entry)."""

from stella_trust._cli.launch import main

main()
