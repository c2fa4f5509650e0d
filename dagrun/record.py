"""Record classes: ``dataclasses``' declarations and behaviour, without its import-time cost.

``@dataclass`` writes the source of five or six methods per class (``__init__``,
``__repr__``, ``__eq__``, ``__hash__``, frozen ``__setattr__``/``__delattr__``) and compiles
each when the module is imported: ~0.35 ms a class, 16 ms for the forty records a sweep
imports (and ``import dataclasses`` pulls in ``inspect``: 5 ms more), a third of what
``import dagrun`` cost a sweep before its first run. ``@record`` keeps the declaration
(annotated fields, defaults, ``field(default_factory=...)``, ``frozen=True``) and the
behaviour a dataclass has, differently made:

* ``__eq__``, ``__hash__`` (frozen records), ``__repr__`` and the frozen ``__setattr__`` /
  ``__delattr__`` are functions written once here, shared by every record: they read the
  class's fields (``__record_fields__``) when called. They are not on any per-run path.
* ``__init__`` is compiled from its source as ``dataclasses`` would write it (positional
  or keyword arguments, defaults, factories, ``__post_init__``), but on the class's first
  instantiation, in whichever process that happens, so a class a sweep never makes costs
  nothing. Compiled, it is as fast as the dataclass's. dagrun's own records find theirs
  compiled already in ``dagrun.record_inits`` (generated: ``make records``).

Rules kept from ``dataclasses`` (``tests/test_record.py`` holds each against a dataclass):
fields in declaration order, a base record's first; ``ClassVar`` annotations are not
fields; a field without a default may not follow one with a default; an unhashable default
(a list, dict, set) is refused (``default_factory``); equality only between instances of
the very same class (else ``NotImplemented``), over the fields whose ``compare`` is true; a
frozen record hashes its compared fields (or by ``hash=``), a mutable one is unhashable; a
method the class writes itself (``__eq__``, ``__repr__``, ``__hash__``, ``__init__``) is
kept.
Module functions stand in for ``dataclasses``' own: ``replace``, ``fields``, ``asdict``.
Type checkers see ``record`` as a dataclass maker (``typing.dataclass_transform``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:  # (typing has it from Python 3.11 on; type checkers read this one)
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_: Any) -> Callable[[T], T]:
        return lambda maker: maker

T = TypeVar("T")
_C = TypeVar("_C", bound=type)


class FrozenRecordError(AttributeError):
    """An assignment to, or deletion of, a frozen record's field."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Field:
    """One field of a record: its name, default or factory, and what it takes part in."""

    __slots__ = ("compare", "default", "default_factory", "hash", "name", "repr")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING,
                 repr: bool = True, hash: bool | None = None, compare: bool = True) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.hash = hash
        self.compare = compare

    def __repr__(self) -> str:
        return (f"Field(name={self.name!r}, default={self.default!r}, "
                f"default_factory={self.default_factory!r}, repr={self.repr}, "
                f"hash={self.hash}, compare={self.compare})")


@overload
def field(*, default: T, repr: bool = True, hash: bool | None = None,
          compare: bool = True) -> T: ...


@overload
def field(*, default_factory: Callable[[], T], repr: bool = True, hash: bool | None = None,
          compare: bool = True) -> T: ...


@overload
def field(*, repr: bool = True, hash: bool | None = None, compare: bool = True) -> Any: ...


def field(*, default: Any = MISSING, default_factory: Any = MISSING, repr: bool = True,
          hash: bool | None = None, compare: bool = True) -> Any:
    """A field's options, as ``dataclasses.field`` takes them (``init`` and ``kw_only``
    are not offered: no record needs them)."""
    return Field(default, default_factory, repr, hash, compare)


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):  # ``from __future__ import annotations``
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return getattr(annotation, "__origin__", None) is not None and \
        repr(annotation).startswith("typing.ClassVar")


def _collect(cls: type) -> tuple[Field, ...]:
    """The fields of ``cls``: its bases' (records) first, then its own annotations."""
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in getattr(base, "__record_fields__", ()):
            found[f.name] = f
    # (the class's own annotations; ``inspect.get_annotations`` would import ``inspect``)
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if f.default is not MISSING and type(f.default).__hash__ is None:
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not "
                             "allowed: use default_factory")
        if isinstance(value, Field):  # the class keeps a plain default, as a dataclass does
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        found[name] = f
    seen_default = ""
    for f in found.values():
        if f.default is not MISSING or f.default_factory is not MISSING:
            seen_default = f.name
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument "
                            f"{seen_default!r}")
    return tuple(found.values())


def _init_source(cls: type) -> Callable[..., None]:
    """``cls.__init__`` compiled from its source, as ``dataclasses`` writes it; a source
    that ``dagrun.record_inits`` holds compiled already (dagrun's own records: their
    makers are written there by ``scripts/record_inits.py``, and Python keeps that module
    compiled like any other) is not compiled again: compiling costs ~20 us a field, 4 ms
    for the records one sweep makes."""
    source, names = init_text(cls)
    maker = _precompiled().get(source)
    if maker is None:
        scope: dict[str, Any] = {}
        exec(source, {}, scope)
        maker = scope["__make__"]
    init: Callable[..., None] = maker(*names.values())
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


_makers: dict[str, Callable[..., Any]] | None = None


def _precompiled() -> dict[str, Callable[..., Any]]:
    """``dagrun.record_inits.MAKERS``: ``__make__`` functions by their source text (empty
    when that module is missing)."""
    global _makers
    if _makers is None:
        try:
            from dagrun import record_inits

            _makers = record_inits.MAKERS
        except ImportError:
            _makers = {}
    return _makers


def init_text(cls: type) -> tuple[str, dict[str, Any]]:
    """The source of ``cls``'s ``__init__`` maker (``def __make__(...)``, which returns
    the ``__init__``) and the values to call it with, by parameter name."""
    fields: tuple[Field, ...] = cls.__record_fields__  # type: ignore[attr-defined]
    frozen: bool = cls.__record_frozen__  # type: ignore[attr-defined]
    names: dict[str, Any] = {"__MISSING": MISSING, "__object_setattr": object.__setattr__}
    params, body = [], []
    for f in fields:
        if f.default_factory is not MISSING:
            names[f"__factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=__MISSING")
            value = f"__factory_{f.name}() if {f.name} is __MISSING else {f.name}"
        elif f.default is not MISSING:
            names[f"__default_{f.name}"] = f.default
            params.append(f"{f.name}=__default_{f.name}")
            value = f.name
        else:
            params.append(f.name)
            value = f.name
        body.append(f"__object_setattr(self, {f.name!r}, {value})" if frozen
                    else f"self.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    source = (f"def __make__({', '.join(names)}):\n"
              f" def __init__(self{''.join(', ' + p for p in params)}):\n"
              + "".join(f"  {line}\n" for line in body or ["pass"])
              + " return __init__\n")
    return source, names


def _lazy_init(cls: type) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # two threads may both compile it: the same function, set twice (no lock, so
        # that a fork while another thread compiles cannot leave a child stuck on it)
        real = _init_source(cls)
        type.__setattr__(cls, "__init__", real)
        real(self, *args, **kwargs)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    return __init__


def _repr(self: Any) -> str:
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}"
                      for f in self.__record_fields__ if f.repr)
    return f"{type(self).__qualname__}({shown})"


def _compared(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, f.name) for f in self.__record_fields__ if f.compare)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        return _compared(self) == _compared(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(tuple(getattr(self, f.name) for f in self.__record_fields__
                      if (f.compare if f.hash is None else f.hash)))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    if any(f.name == name for f in self.__record_fields__):
        raise FrozenRecordError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _frozen_delattr(self: Any, name: str) -> None:
    if any(f.name == name for f in self.__record_fields__):
        raise FrozenRecordError(f"cannot delete field {name!r}")
    object.__delattr__(self, name)


def _make(cls: _C, frozen: bool) -> _C:
    for base in cls.__mro__[1:]:
        if getattr(base, "__record_frozen__", frozen) != frozen:
            raise TypeError(f"{cls.__qualname__}: a frozen and a mutable record cannot "
                            "inherit from each other")
    own = cls.__dict__
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    cls.__record_fields__ = _collect(cls)  # type: ignore[attr-defined]
    cls.__record_frozen__ = frozen  # type: ignore[attr-defined]
    if "__init__" not in own:
        cls.__init__ = _lazy_init(cls)  # type: ignore[misc]
    if "__repr__" not in own:
        cls.__repr__ = _repr  # type: ignore[assignment]
    if "__eq__" not in own:
        cls.__eq__ = _eq  # type: ignore[assignment]
    if not explicit_hash:
        cls.__hash__ = _hash if frozen else None  # type: ignore[assignment]
    if frozen:
        cls.__setattr__ = _frozen_setattr  # type: ignore[assignment]
        cls.__delattr__ = _frozen_delattr  # type: ignore[assignment]
    return cls


@overload
def record(cls: _C, /) -> _C: ...


@overload
def record(*, frozen: bool = False) -> Callable[[_C], _C]: ...


@dataclass_transform(field_specifiers=(field, Field))
def record(cls: Any = None, /, *, frozen: bool = False) -> Any:
    """Make ``cls`` a record: ``@record`` or ``@record(frozen=True)``, as ``@dataclass``."""
    if cls is None:
        return lambda c: _make(c, frozen)
    return _make(cls, frozen)


def fields(obj: Any) -> tuple[Field, ...]:
    """The fields of a record class or instance, in order (``dataclasses.fields``)."""
    try:
        found: tuple[Field, ...] = obj.__record_fields__
    except AttributeError:
        raise TypeError(f"{obj!r} is not a record") from None
    return found


def field_names(obj: Any) -> tuple[str, ...]:
    """The field names of a record class or instance, in order."""
    return tuple(f.name for f in fields(obj))


def replace(obj: T, /, **changes: Any) -> T:
    """A new record like ``obj`` with ``changes`` (``dataclasses.replace``)."""
    for f in fields(obj):
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return type(obj)(**changes)


def is_record(obj: Any) -> bool:
    """Whether ``obj`` is a record class or an instance of one."""
    return hasattr(obj, "__record_fields__")


def asdict(obj: Any) -> Any:
    """``obj`` with every record in it made a dict of its fields, recursively through
    lists, tuples and dicts (``dataclasses.asdict``, leaves not copied)."""
    if hasattr(type(obj), "__record_fields__"):
        return {f.name: asdict(getattr(obj, f.name)) for f in obj.__record_fields__}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return type(obj)(*(asdict(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(asdict(v) for v in obj)
    if isinstance(obj, dict):
        return type(obj)((asdict(k), asdict(v)) for k, v in obj.items())
    return obj


__all__ = [
    "MISSING",
    "Field",
    "FrozenRecordError",
    "asdict",
    "field",
    "field_names",
    "fields",
    "is_record",
    "record",
    "replace",
]
