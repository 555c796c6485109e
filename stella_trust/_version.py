"""The package version (its own module so low layers can name it without the public root)."""

__version__ = "0.1.0"
