"""Internals of stella-trust: not a public API (see docs/design.md for the layers)."""
