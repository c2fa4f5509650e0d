"""Pickling (and deep copying) that keeps an object graph's shape.

``pickle`` keeps shared references and cycles within one ``dumps``, but splits one common
object in two: an *attribute dict*, a ``dict`` subclass whose instance dictionary is the
object itself::

    class Opt(dict):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.__dict__ = self

Its default reduction (``copyreg.__reduce_ex__``) rebuilds the items and then copies them
into a fresh ``__dict__``, so after a round trip ``opt.__dict__ is not opt`` and
``opt.lr = 1`` no longer changes ``opt["lr"]``; ``copy.deepcopy`` does worse (the copy's
``__dict__`` is empty: ``opt.lr`` raises). Here such an object is rebuilt as such: the class's
``__new__``, ``o.__dict__ = o``, then its items (``rebuild_shared_dict``); everything else is
pickled as ``pickle`` does, protocol 5 out-of-band buffers (NumPy arrays) included.

* ``reduce_shared_dict(obj)``: the reduction of an attribute dict, ``NotImplemented`` for
  anything else; a ``reducer_override`` calls it first. Another pickler reuses it the same
  way, e.g. a ``cloudpickle.Pickler`` subclass::

      def reducer_override(self, obj):
          reduced = reduce_shared_dict(obj)
          return reduced if reduced is not NotImplemented else super().reducer_override(obj)

* ``Pickler``, ``dumps`` and ``loads``: ``pickle``'s, with that reduction.
* ``deepcopy`` and ``repair``: ``copy.deepcopy``, with attribute dicts repaired after it.

Cost: ``pickle`` calls ``reducer_override`` only for objects that are not exact ``dict``,
``list``, ``tuple``, ``str``, numbers, ...; for those it does one ``isinstance`` check. A
pickle made here loads wherever ``dagrun.code.pickling`` can be imported (it names
``rebuild_shared_dict``), with plain ``pickle.loads``.
"""

from __future__ import annotations

import copy
import io
import pickle
from collections.abc import Callable, Iterable
from typing import Any

PROTOCOL = 5
_PICKLE_HOOKS = ("__reduce__", "__reduce_ex__", "__getstate__", "__setstate__")


def _leaves_to_dict(cls: type, hooks: tuple[str, ...] = _PICKLE_HOOKS) -> bool:
    """Whether no class of ``cls`` below ``dict`` defines one of ``hooks`` (a class that
    defines how it pickles or copies itself knows better than this module)."""
    for klass in cls.__mro__:
        if klass is dict:
            return True
        if any(name in vars(klass) for name in hooks):
            return False
    return True


def is_shared_dict(obj: Any) -> bool:
    """Whether ``obj`` is a ``dict`` subclass instance whose ``__dict__`` is itself."""
    if not isinstance(obj, dict) or type(obj) is dict:
        return False
    try:
        return obj.__dict__ is obj
    except Exception:  # a user's __getattr__ may raise anything (KeyError)
        return False


def rebuild_shared_dict(cls: type[dict[Any, Any]]) -> dict[Any, Any]:
    """An empty instance of ``cls`` whose ``__dict__`` is itself (its items come after:
    references to it inside them are resolved to it)."""
    obj = cls.__new__(cls)
    obj.__dict__ = obj
    return obj


def reduce_shared_dict(obj: Any) -> Any:
    """The reduction of an attribute dict (``rebuild_shared_dict``, then its items), or
    ``NotImplemented`` for any other object (the pickler's own reduction then)."""
    if not is_shared_dict(obj) or not _leaves_to_dict(type(obj)):
        return NotImplemented
    return rebuild_shared_dict, (type(obj),), None, None, iter(obj.items())


class Pickler(pickle.Pickler):
    """``pickle.Pickler`` that rebuilds attribute dicts as such (``reduce_shared_dict``)."""

    def reducer_override(self, obj: Any) -> Any:
        return reduce_shared_dict(obj)


def dumps(value: Any, protocol: int = PROTOCOL,
          buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None) -> bytes:
    """``pickle.dumps`` with ``Pickler``; with ``buffer_callback`` (protocol 5), large
    buffers such as NumPy arrays' go to it, uncopied, instead of into the bytes."""
    out = io.BytesIO()
    Pickler(out, protocol=protocol, buffer_callback=buffer_callback).dump(value)
    return out.getvalue()


def loads(data: bytes, buffers: Iterable[Any] = ()) -> Any:
    """The object ``dumps`` pickled; ``buffers``: the out-of-band buffers, in order."""
    return pickle.loads(data, buffers=buffers)


def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """``copy.deepcopy(value, memo)``, with the copy of every attribute dict made one."""
    memo = {} if memo is None else memo
    result = copy.deepcopy(value, memo)
    repair(memo)
    return result


def repair(memo: dict[int, Any]) -> None:
    """Make the copy of every attribute dict that ``copy.deepcopy`` calls sharing ``memo``
    made an attribute dict again (``copy.deepcopy`` gives it an empty ``__dict__`` beside
    its items). It keeps every original it copied alive in ``memo[id(memo)]``, and the copy
    of ``x`` is ``memo[id(x)]``."""
    for original in memo.get(id(memo), ()):
        cls = type(original)
        if is_shared_dict(original) and _leaves_to_dict(cls, (*_PICKLE_HOOKS, "__deepcopy__")):
            twin = memo.get(id(original))
            if type(twin) is cls and not is_shared_dict(twin):
                twin.__dict__ = twin
