"""The public frozen types are built, and answer `==`, `hash()` and `repr()`, exactly as the frozen
dataclasses they were (issue 24: `@record` takes every method from `_internal/records.Record`
instead of compiling six per class at every start-up), and keep what a caller relies on:
immutability, the constructor's signature and errors, fields, asdict, replace, match args.

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
        for method in ("__init__", "__setattr__", "__delattr__", "__eq__", "__hash__", "__repr__"):
            assert method not in vars(cls), (cls, method)  # never compiled per class again


def _twin(cls: type) -> type:
    """`cls`'s fields in a dataclass built the usual way (its own generated ==, hash, repr)."""
    specs = [
        (
            f.name,
            Any,
            dataclasses.field(
                default=f.default,
                default_factory=f.default_factory,
                repr=f.repr,
                compare=f.compare,
                hash=f.hash,
                kw_only=f.kw_only,
            ),
        )
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


def _shape(signature: inspect.Signature) -> list[tuple[str, Any, str]]:
    """A signature's parameters by name, kind and default (annotations differ: the twin's are Any)."""
    return [(p.name, p.kind, repr(p.default)) for p in signature.parameters.values()]


@pytest.mark.parametrize("cls", PUBLIC_TYPES, ids=lambda cls: cls.__name__)
def test_the_constructor_is_the_one_dataclass_generates(cls: type) -> None:
    twin = _twin(cls)
    assert _shape(inspect.signature(cls)) == _shape(inspect.signature(twin))
    assert cls.__match_args__ == twin.__match_args__  # type: ignore[attr-defined]
    params = list(inspect.signature(twin).parameters.values())
    positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    values = _values(cls, "1")
    # positionally where dataclass allows it, the rest by keyword: the same fields either way
    args = [values[name] for name in positional]
    kwargs = {name: values[name] for name in values if name not in positional}
    assert cls(*args, **kwargs) == cls(**values)
    assert repr(cls(*args, **kwargs)) == repr(twin(*args, **kwargs))
    # only the required fields: the defaults and default factories fill the rest as dataclass's do
    only_required = {name: values[name] for name in required}
    assert repr(cls(**only_required)) == repr(twin(**only_required))
    # each call dataclass refuses is refused with a TypeError
    refused: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {**values, "unexpected": 1}),  # an unknown field
        ((*args, "surplus"), kwargs),  # one positional argument too many
    ]
    if required:
        refused.append(((), {k: v for k, v in values.items() if k != required[-1]}))  # one missing
    if positional:
        refused.append(((values[positional[0]],), values))  # one field given twice
    for call_args, call_kwargs in refused:
        with pytest.raises(TypeError):
            twin(*call_args, **call_kwargs)
        with pytest.raises(TypeError):
            cls(*call_args, **call_kwargs)


def test_a_default_factory_gives_each_instance_its_own_value() -> None:
    first = view.TrustView.__dataclass_fields__["source"]
    assert first.default_factory is not dataclasses.MISSING  # the public type that has one
    required = {f.name: f"{f.name}-1" for f in dataclasses.fields(view.TrustView) if f.name != "source"}
    one, other = view.TrustView(**required), view.TrustView(**required)
    assert one.source == {} and one.source is not other.source
