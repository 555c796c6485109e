"""Equality, hashing and repr of the public frozen types (view.py, sigstore_types.py), written once.

Python 3.11's `@dataclass` compiles each method it generates with `exec()` when the class is
created: six for a frozen class, ~0.8 ms, in every process that imports it. The 18 public
types cost `trust status` ~15 ms of start-up that way (issue 24). They stay dataclasses
(`@dataclass(frozen=True, eq=False, repr=False)`: the same `__init__`, immutability,
`fields`, `asdict`, `replace`, `__match_args__`) and inherit these three methods instead of
compiling them, which answer exactly what dataclass's own would (tests/unit/test_records.py
compares every public type with a dataclass built the usual way):

- `==`: NotImplemented unless both are of the same class, then the compared fields as tuples;
- `hash()`: of the tuple of the fields dataclass hashes (`hash=None` follows `compare`);
- `repr()`: `QualifiedName(field=value!r, ...)` over the fields with `repr=True`, `...` on
  recursion.
"""

from __future__ import annotations

import reprlib
from dataclasses import fields
from typing import Any


def _compared(record: Any) -> tuple[Any, ...]:
    """The values `==` compares, in field order."""
    return tuple(getattr(record, f.name) for f in fields(record) if f.compare)


def _hashed(record: Any) -> tuple[Any, ...]:
    """The values `hash()` covers, in field order (dataclass: `hash` if set, else `compare`)."""
    return tuple(getattr(record, f.name) for f in fields(record) if (f.compare if f.hash is None else f.hash))


def _shown(record: Any) -> str:
    """`field=value!r` for each field with `repr=True`, comma-separated."""
    return ", ".join(f"{f.name}={getattr(record, f.name)!r}" for f in fields(record) if f.repr)


class Record:
    """The base of every public frozen dataclass: `==`, `hash()` and `repr()` as dataclass
    generates them (see the module docstring for why they are not generated)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        """Same class and equal compared fields, as `@dataclass(eq=True)`."""
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _compared(self) == _compared(other)

    def __hash__(self) -> int:
        """The hash of the hashed fields' tuple, as `@dataclass(frozen=True)`."""
        return hash(_hashed(self))

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        """`Name(field=value, ...)` over the fields shown, as `@dataclass(repr=True)`."""
        return f"{self.__class__.__qualname__}({_shown(self)})"
