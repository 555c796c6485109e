"""The public frozen types answer `==`, `hash()` and `repr()` exactly as the dataclasses they were
(issue 24: they inherit the three from `_internal/records.Record` instead of compiling them at
every start-up), and keep what a caller relies on: immutability, fields, asdict, replace.

Each public type is compared with a twin: a dataclass with the same fields (names, order, repr,
compare, hash, kw_only) built by `@dataclass(frozen=True)` itself, fed the same values.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

import stella_trust._internal.sigstore.outcome as outcome
import stella_trust._internal.sigstore.signedfacts as signedfacts
import stella_trust.sigstore_types as sigstore_types
import stella_trust.view as view
from stella_trust._internal.records import Record

# the public types, plus trust verify's result (public as stella_trust.VerificationOutcome) and
# the bound log entry it is built from
PUBLIC_TYPES = [
    cls
    for module in (view, sigstore_types, outcome, signedfacts)
    for _, cls in inspect.getmembers(module, inspect.isclass)
    if cls.__module__ == module.__name__ and dataclasses.is_dataclass(cls)
]


def test_every_public_dataclass_takes_the_shared_methods_and_stays_frozen() -> None:
    names = {cls.__name__ for cls in PUBLIC_TYPES}
    assert {"TrustView", "Freshness", "TargetEntry", "SigstoreTrust", "TransparencyLog"} <= names
    assert {"VerificationOutcome", "BoundEntry"} <= names
    assert len(PUBLIC_TYPES) >= 20  # view.py 10, sigstore_types.py 8 (with its two bases), 2 of verify
    for cls in PUBLIC_TYPES:
        assert issubclass(cls, Record), cls
        assert cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        for method in ("__eq__", "__hash__", "__repr__"):
            assert method not in vars(cls), (cls, method)  # never compiled per class again


def _twin(cls: type) -> type:
    """`cls`'s fields in a dataclass built the usual way (its own generated ==, hash, repr)."""
    specs = [
        (f.name, Any, dataclasses.field(repr=f.repr, compare=f.compare, hash=f.hash, kw_only=f.kw_only))
        for f in dataclasses.fields(cls)
    ]
    twin = dataclasses.make_dataclass(cls.__name__, specs, frozen=True)
    twin.__qualname__ = cls.__qualname__
    return twin


def _values(cls: type, tag: str) -> dict[str, Any]:
    """A distinct, hashable value per field (dataclasses do not check types)."""
    return {f.name: f"{f.name}-{tag}" for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("cls", PUBLIC_TYPES, ids=lambda cls: cls.__name__)
def test_equality_hash_and_repr_are_what_dataclass_generates(cls: type) -> None:
    twin = _twin(cls)
    one, other = _values(cls, "1"), _values(cls, "2")
    ours, theirs = cls(**one), twin(**one)
    assert repr(ours) == repr(theirs)
    assert hash(ours) == hash(theirs)
    assert ours == cls(**one) and theirs == twin(**one)
    assert (ours == cls(**other)) is (theirs == twin(**other)) is False
    for name in one:  # each field alone: compared (and hashed) exactly when dataclass does
        changed = {**one, name: other[name]}
        assert (ours == cls(**changed)) is (theirs == twin(**changed)), name
        assert (hash(ours) == hash(cls(**changed))) is (hash(theirs) == hash(twin(**changed))), name
    assert ours.__eq__(theirs) is NotImplemented and ours != theirs  # another class: never equal
    assert ours != tuple(one.values())


@pytest.mark.parametrize("cls", PUBLIC_TYPES, ids=lambda cls: cls.__name__)
def test_immutability_fields_asdict_and_replace_still_hold(cls: type) -> None:
    values = _values(cls, "1")
    record = cls(**values)
    first = next(iter(values))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, first, "edited")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.unexpected = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(record, first)
    assert getattr(record, first) == values[first]
    assert dataclasses.asdict(record) == values
    assert [f.name for f in dataclasses.fields(record)] == list(values)
    edited = dataclasses.replace(record, **{first: "replaced"})
    assert edited == cls(**{**values, first: "replaced"}) and record == cls(**values)


def test_a_view_that_contains_itself_prints_without_recursing() -> None:
    """dataclass's repr guards against recursion with `...`; so does the shared one."""
    holder: dict[str, Any] = {}
    entry = view.ServiceMap(source="target", document=holder)
    holder["self"] = entry
    assert repr(entry) == "ServiceMap(source='target', document={'self': ...})"
