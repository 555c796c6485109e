"""The public frozen types (view.py, sigstore_types.py, VerificationOutcome, BoundEntry): dataclasses
whose methods are written once here instead of compiled per class at every start-up.

Python 3.11's `@dataclass(frozen=True)` compiles each method it generates with `exec()` when the
class is created: `__init__`, `__setattr__`, `__delattr__`, `__eq__`, `__hash__`, `__repr__`, about
0.8 ms per class, in every process that imports it. The 20 public types cost `trust status`
~15 ms of start-up that way (issue 24). `@record` keeps them dataclasses — `dataclass` itself
still records the fields, so `fields`, `asdict`, `replace`, `is_dataclass` and `__match_args__`
are dataclass's own — but asks it to generate nothing, and every method comes from `Record`,
answering exactly what dataclass's generated one would (tests/unit/test_records.py compares every
public type with a twin built by `@dataclass(frozen=True)` itself):

- `__init__`: the fields in dataclass's order (positional, then keyword-only), defaults and
  default factories, and `TypeError` for a missing, unexpected, repeated or surplus argument;
  `inspect.signature(cls)` is the generated one's (`__signature__`);
- immutability: assigning or deleting an attribute raises `FrozenInstanceError`;
- `==`: NotImplemented unless both are of the same class, then the compared fields as tuples;
- `hash()`: of the tuple of the fields dataclass hashes (`hash=None` follows `compare`);
- `repr()`: `QualifiedName(field=value!r, ...)` over the fields with `repr=True`, `...` on
  recursion.

For type checkers `@record` is a frozen dataclass (PEP 681 `dataclass_transform`, frozen by
default): assigning a field is an error there too. One thing differs from `frozen=True`, and only
for a caller subclassing a public type (results, never documented as a base): its
`__dataclass_params__` says frozen=False (dataclass generated no frozen methods), so a subclass
must be declared with `@record` too, not `@dataclass`.
"""

from __future__ import annotations

import dataclasses
import inspect
import reprlib
from collections.abc import Callable
from typing import Any, TypeVar, cast, dataclass_transform, overload

RecordT = TypeVar("RecordT", bound=type)


class _Plan:
    """How `Record.__init__` fills one class's fields, worked out once per class (a plain class:
    a NamedTuple's string annotations would be compiled at every start-up)."""

    __slots__ = ("defaults", "factories", "names", "positional", "required")

    def __init__(
        self,
        names: tuple[str, ...],
        positional: tuple[str, ...],
        required: tuple[str, ...],
        defaults: dict[str, Any],
        factories: dict[str, Callable[[], Any]],
    ) -> None:
        """`names`: every init field in dataclass's order (positional ones first); `required`: the
        ones with neither a default nor a default factory."""
        self.names = names
        self.positional = positional
        self.required = required
        self.defaults = defaults
        self.factories = factories


class _Factory:
    """The default `inspect.signature` shows for a field with a default factory, as dataclass's."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _plan_and_signature(cls: type) -> tuple[_Plan, inspect.Signature]:
    """The init fields in dataclass's order (kw_only ones after the positional ones, as
    `dataclasses._fields_in_init_order`), and the signature dataclass's `__init__` would have."""
    init_fields = [f for f in dataclasses.fields(cls) if f.init]
    ordered = [f for f in init_fields if not f.kw_only] + [f for f in init_fields if f.kw_only]
    defaults = {f.name: f.default for f in ordered if f.default is not dataclasses.MISSING}
    factories = {f.name: f.default_factory for f in ordered if f.default_factory is not dataclasses.MISSING}
    parameters = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY if f.kw_only else inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=defaults.get(f.name, _FACTORY if f.name in factories else inspect.Parameter.empty),
            annotation=f.type,
        )
        for f in ordered
    ]
    plan = _Plan(
        names=tuple(f.name for f in ordered),
        positional=tuple(f.name for f in ordered if not f.kw_only),
        required=tuple(f.name for f in ordered if f.name not in defaults and f.name not in factories),
        defaults=defaults,
        factories=factories,
    )
    return plan, inspect.Signature(parameters, return_annotation=None)


@overload
def record(cls: RecordT, /) -> RecordT: ...
@overload
def record(*, kw_only: bool = False) -> Callable[[RecordT], RecordT]: ...
@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: RecordT | None = None, /, *, kw_only: bool = False) -> Any:
    """`@record` / `@record(kw_only=True)`: a frozen dataclass over `Record` (see the module
    docstring). The class must derive from `Record`."""

    def make(target: RecordT) -> RecordT:
        if not issubclass(target, Record):
            raise TypeError(f"@record needs a subclass of Record, not {target.__qualname__}")
        dataclasses.dataclass(target, init=False, repr=False, eq=False, kw_only=kw_only)  # fields only
        return target

    return make if cls is None else make(cls)


def _compared(record: Any) -> tuple[Any, ...]:
    """The values `==` compares, in field order."""
    return tuple(getattr(record, f.name) for f in dataclasses.fields(record) if f.compare)


def _hashed(record: Any) -> tuple[Any, ...]:
    """The values `hash()` covers, in field order (dataclass: `hash` if set, else `compare`)."""
    hashed = (f for f in dataclasses.fields(record) if (f.compare if f.hash is None else f.hash))
    return tuple(getattr(record, f.name) for f in hashed)


def _shown(record: Any) -> str:
    """`field=value!r` for each field with `repr=True`, comma-separated."""
    return ", ".join(f"{f.name}={getattr(record, f.name)!r}" for f in dataclasses.fields(record) if f.repr)


def _plan_of(cls: type) -> _Plan:
    """`cls`'s plan, worked out at its first instance (a class a process never builds costs
    nothing at start-up) and kept on the class itself."""
    plan = cls.__dict__.get("_record_plan")
    if plan is None:
        plan, signature = _plan_and_signature(cls)
        cls._record_plan, cls._record_signature = plan, signature  # type: ignore[attr-defined]
    return cast(_Plan, plan)


class _Signature:
    """`inspect.signature(cls)` for a record class: the one dataclass's `__init__` would have,
    worked out when first asked."""

    def __get__(self, instance: object, owner: type) -> inspect.Signature:
        _plan_of(owner)
        return cast(inspect.Signature, owner.__dict__["_record_signature"])


class Record:
    """The base of every public frozen type (`@record`): its methods, as a frozen dataclass
    generates them (see the module docstring for why they are not generated)."""

    __slots__ = ()
    __signature__ = _Signature()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Each field from its argument, default or default factory, as dataclass's `__init__`."""
        plan = _plan_of(type(self))
        name = f"{type(self).__qualname__}.__init__()"
        if len(args) > len(plan.positional):
            raise TypeError(
                f"{name} takes {len(plan.positional) + 1} positional arguments but {len(args) + 1} were given"
            )
        values = dict(zip(plan.positional, args, strict=False))
        for key, value in kwargs.items():
            if key in values:
                raise TypeError(f"{name} got multiple values for argument {key!r}")
            if key not in plan.names:
                raise TypeError(f"{name} got an unexpected keyword argument {key!r}")
            values[key] = value
        missing = [key for key in plan.required if key not in values]
        if missing:
            raise TypeError(f"{name} missing required arguments: {', '.join(map(repr, missing))}")
        assign = object.__setattr__
        for key in plan.names:
            if key in values:
                assign(self, key, values[key])
            elif key in plan.defaults:
                assign(self, key, plan.defaults[key])
            else:
                assign(self, key, plan.factories[key]())

    def __setattr__(self, name: str, value: Any) -> None:
        """Frozen, as `@dataclass(frozen=True)`: no field (and no new attribute) is assigned."""
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        """Frozen, as `@dataclass(frozen=True)`: no field is deleted."""
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

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
