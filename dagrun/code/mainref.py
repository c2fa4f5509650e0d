"""Objects of a ``python wf.py`` script, pickled by the name its copy has everywhere else.

Run as ``python wf.py``, the workflow is the module ``__main__``; where stages run, its copy
is imported as ``dagrun_workflow_wf`` (``python -m pkg.exp``: as ``pkg.exp``). Pickled
as they are, the script's classes would travel by value (cloudpickle rebuilds a new class in
every process) or by the name ``__main__`` (which is dagrun's own entry point there): an
Enum member or a dataclass in a cfg would not be ``is``/``==``/``isinstance`` of the class a
stage sees, and a ``pre`` output holding one would not be the class ``fit`` checks for.

``register`` names the workflow's module in this process (``sys.modules`` gets the alias,
so pickles naming it load here too); ``Pickler`` then pickles every class and function
defined at the top level of ``__main__`` as a reference to that name. Every process thus
has one class per name, the driver's being ``__main__``'s own.

``dumps`` tries ``pickle``'s own pickler first (``_Plain``) and leaves to cloudpickle what
only cloudpickle pickles as it should: importing cloudpickle costs a sweep ~12 ms
(``inspect``, ``logging``, ``dataclasses``, ``platform``, ``uuid`` come with it) where its
cfgs and outputs are plain data. ``_Plain`` accepts an object only where cloudpickle would
write the very same bytes: classes and functions that cloudpickle pickles by reference
(defined at the top level of a module imported here, other than ``__main__``), and no
object of a type cloudpickle reduces its own way (its dispatch table: methods, modules,
properties, loggers, dict views, ...). Anything else, and any object ``pickle`` cannot
pickle, makes ``dumps`` start over with cloudpickle. Once the process has imported
cloudpickle (the user's code or a library did; it may have registered a module to be
pickled by value) cloudpickle pickles everything. ``tests/test_pickle_paths.py`` holds
the bytes of both against each other on a corpus of values.
"""

from __future__ import annotations

import _collections_abc
import abc
import collections
import importlib
import io
import pickle
import sys
import types
from typing import Any

from dagrun.code import pickling

_alias: str | None = None  # the workflow's module name, when the workflow is __main__


def register(name: str) -> None:
    """``__main__`` is the workflow whose copy is imported as ``name`` elsewhere."""
    global _alias
    _alias = name
    main = sys.modules.get("__main__")
    if main is not None and name not in sys.modules:
        sys.modules[name] = main


def load_attr(module: str, qualname: str) -> Any:
    """The object ``module.qualname`` (what a reference made by ``Pickler`` loads)."""
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _reference(obj: Any) -> tuple[Any, ...] | None:
    """``obj`` as a reference to the workflow's module, when it is defined in __main__."""
    if _alias is None or getattr(obj, "__module__", None) != "__main__":
        return None
    qualname = getattr(obj, "__qualname__", "")
    if not isinstance(qualname, str) or not qualname or "<" in qualname:
        return None
    try:
        found = load_attr("__main__", qualname)
    except (AttributeError, ImportError):
        return None
    return (load_attr, (_alias, qualname)) if found is obj else None


def _own_reduction(obj: Any) -> Any:
    """What both picklers write for ``obj`` before their own rules: a class or function
    of the workflow script as a reference (``_reference``), an attribute dict whole
    (``dagrun.code.pickling``); ``None`` for anything else."""
    if isinstance(obj, (type, types.FunctionType)):
        return _reference(obj)
    if isinstance(obj, dict):
        reduced = pickling.reduce_shared_dict(obj)
        return None if reduced is NotImplemented else reduced
    return None


def _cloud_pickler() -> type[pickle.Pickler]:
    """``Pickler``, made (and cloudpickle imported) on first use."""
    global _Cloud
    if _Cloud is None:
        import cloudpickle

        class Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle has no types
            """cloudpickle, with the workflow script's classes and functions by reference
            and attribute dicts kept whole (``dagrun.code.pickling``)."""

            def reducer_override(self, obj: Any) -> Any:
                own = _own_reduction(obj)
                return own if own is not None else super().reducer_override(obj)

        Pickler.__module__ = __name__
        _Cloud = Pickler
    return _Cloud


_Cloud: type[pickle.Pickler] | None = None


def __getattr__(name: str) -> Any:
    """``Pickler``: the cloudpickle pickler ``dumps`` falls back to (made on first use)."""
    if name == "Pickler":
        return _cloud_pickler()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _NotPlain(Exception):
    """An object ``_Plain`` leaves to cloudpickle."""


# cloudpickle's dispatch table (its own reduction of these exact types), as types known
# without importing it; objects of types from these modules are left to it as well
_CLOUD_TYPES = frozenset({
    classmethod, staticmethod, property, memoryview, io.TextIOWrapper, types.CellType,
    types.CodeType, types.GetSetDescriptorType, types.MemberDescriptorType, types.ModuleType,
    types.MethodType, types.MappingProxyType, _collections_abc.dict_keys,
    _collections_abc.dict_values, _collections_abc.dict_items,
    type(collections.OrderedDict().keys()), type(collections.OrderedDict().values()),
    type(collections.OrderedDict().items()), abc.abstractmethod, abc.abstractclassmethod,
    abc.abstractstaticmethod, abc.abstractproperty})
_CLOUD_MODULES = frozenset({"logging", "typing", "_weakrefset", "weakref", "dataclasses"})
# the three classes ``pickle`` and cloudpickle both write as ``type(None)`` and the like;
# the others the ``types`` module names cloudpickle writes as ``_builtin_type(name)``
_SINGLETON_TYPES = frozenset({type(None), type(Ellipsis), type(NotImplemented)})
_BUILTIN_TYPES = frozenset(v for v in vars(types).values() if type(v) is type) \
    - _SINGLETON_TYPES


def _by_reference(obj: Any) -> bool:
    """Whether cloudpickle pickles the class or function ``obj`` by reference: defined at
    the top level of a module imported here other than ``__main__`` (``pickle`` itself then
    checks that the name finds ``obj``)."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or module == "__main__" \
            or obj in _BUILTIN_TYPES:
        return False
    found: Any = sys.modules.get(module)
    if found is None:
        return False
    for part in qualname.split("."):
        found = getattr(found, part, _NotPlain)
    return found is obj


class _Plain(pickle.Pickler):
    """``pickle``'s pickler for the objects it pickles as cloudpickle's ``Pickler`` does
    (see the module's docstring); it raises ``_NotPlain`` on any other."""

    def reducer_override(self, obj: Any) -> Any:
        own = _own_reduction(obj)
        if own is not None:
            return own
        if isinstance(obj, (type, types.FunctionType)):
            if obj not in _SINGLETON_TYPES and not _by_reference(obj):
                raise _NotPlain
            return NotImplemented
        cls = type(obj)
        if cls in _CLOUD_TYPES or cls.__module__ in _CLOUD_MODULES:
            raise _NotPlain
        return NotImplemented


_ATOMS = frozenset({type(None), bool, int, float, str, bytes})  # pickled before any hook


def dumps(obj: Any, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    """Pickle ``obj`` like ``cloudpickle.dumps``, with ``Pickler``: what workflow.pkl and
    stage outputs are written with. A value of an atomic type (``None``, a number, a
    string) is pickled by ``pickle`` itself: its pickler writes those before it asks any
    hook, so the bytes are the same, without building a ``Pickler``; other values by
    ``_Plain`` where it takes them (the same bytes again), else by ``Pickler``."""
    if type(obj) in _ATOMS:
        return pickle.dumps(obj, protocol)
    if "cloudpickle" not in sys.modules:
        with io.BytesIO() as f:
            try:
                _Plain(f, protocol=protocol).dump(obj)
                return f.getvalue()
            except Exception:  # cloudpickle pickles it, or says why it cannot
                pass
    return cloud_dumps(obj, protocol)


def cloud_dumps(obj: Any, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    """``obj`` pickled by ``Pickler`` (cloudpickle), whatever it is."""
    with io.BytesIO() as f:
        _cloud_pickler()(f, protocol=protocol).dump(obj)
        return f.getvalue()
