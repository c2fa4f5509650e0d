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
"""

from __future__ import annotations

import importlib
import io
import pickle
import sys
import types
from typing import Any

import cloudpickle

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


class Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle has no types
    """cloudpickle, with the workflow script's classes and functions by reference and
    attribute dicts kept whole (``dagrun.code.pickling``)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (type, types.FunctionType)):
            ref = _reference(obj)
            if ref is not None:
                return ref
        elif isinstance(obj, dict):
            reduced = pickling.reduce_shared_dict(obj)
            if reduced is not NotImplemented:
                return reduced
        return super().reducer_override(obj)


_ATOMS = frozenset({type(None), bool, int, float, str, bytes})  # pickled before any hook


def dumps(obj: Any, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    """Pickle ``obj`` like ``cloudpickle.dumps``, with ``Pickler``: what workflow.pkl and
    stage outputs are written with. A value of an atomic type (``None``, a number, a
    string) is pickled by ``pickle`` itself: its pickler writes those before it asks any
    hook, so the bytes are the same, without building a ``Pickler``."""
    if type(obj) in _ATOMS:
        return pickle.dumps(obj, protocol)
    with io.BytesIO() as f:
        Pickler(f, protocol=protocol).dump(obj)
        return f.getvalue()
