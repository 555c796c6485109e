"""The operator commands behind `trust repo`: plain functions over a `Workspace`, one module
per job (python-tuf's `Repository` is the model: the state is small, the steps are not
methods of it). Nothing outside this package imports a command but the CLI."""
