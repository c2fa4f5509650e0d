"""The typed byte encoding behind every content digest (configs, and a stage's bound
arguments, closure cells, default values or state), shared by ``dagrun.code.digest`` and
``dagrun.code.fingerprint``.

Values are encoded into a byte stream with a type tag each (so ``1``, ``1.0`` and ``True``
differ) and the stream is hashed:

* dicts in the order of their keys (insertion order does not count), but a
  ``collections.OrderedDict`` in its own order (there the order is part of the value);
* sets in the order of their elements' digests (never in the order the hash seed gives);
* NumPy arrays by dtype, shape and raw bytes (no copy when contiguous; a structured array's
  alignment padding left out, an array holding objects by its values); pandas objects by
  pandas' own stable row hashes plus their labels and dtypes;
* a function by its qualified name and its code: for the user's code, the identity ``code``
  returns (``dagrun.code.fingerprint``: its code fingerprint, which covers its default
  arguments, keyword defaults and closure cells too, so ``lambda x, a=a: x * a`` differs
  per ``a``); for a library's, ``code`` returns ``None`` and the function is named by its
  module and qualified name only, so upgrading the library never changes the digest. A bound
  method adds the object it is bound to;
* a class by its qualified name, plus its code fingerprint when it is the user's (a
  library's class is its name alone, as it always was); an instance of a user class adds
  its class's code fingerprint to its state;
* any other object by its class name and the state it pickles (``__reduce_ex__``:
  ``__getstate__``, ``__dict__`` or ``__slots__``).

An object that refuses to pickle (a lock, an open file) cannot be compared by content: it
is encoded by its readable form (``repr`` without memory addresses, else its class name) and
``on_fallback`` hears of it, so the caller can say so once.

Plain data, arrays, frames and instances of library classes encode byte for byte as in
digest version 1; version 2 (``dagrun.code.digest.DIGEST_VERSION``) changed functions, user
classes and their instances, and ``OrderedDict``.

Limits: an object counts by what it pickles (a ``__getstate__`` that leaves something out
leaves it out of the digest too); generators, locks and open files count by their readable
form only.

The code identity is passed in (``code``): fingerprints digest the values a stage holds, so
this module sits below both and imports neither.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

_SIZE = 16  # bytes of digest: 32 hex characters
_BIG = 1 << 16  # buffers at least this large are hashed in place, not joined


#: ``code(function or class)``: the identity of the user's code (a fingerprint), or ``None``
#: for a library's.
CodeIdentity = Callable[[Any], str | None]
Fallback = Callable[[Any], None]


def value_digest(value: Any, code: CodeIdentity, on_fallback: Fallback | None = None) -> str:
    """The content digest of any value (hex), the user's functions and classes identified by
    ``code``; ``on_fallback(obj)`` for each object compared by its readable form."""
    enc = _Encoder(code, on_fallback)
    enc.add(value)
    return enc.hexdigest()


def plain_digest(value: dict[Any, Any]) -> str | None:
    """The digest of a tree of plain values (str keys, numbers, strings, lists) without an
    encoder, or ``None`` when ``value`` holds anything else."""
    plain = _plain_tree(value, 0)
    return None if plain is None else hashlib.sha256(plain).hexdigest()[: 2 * _SIZE]


def _qualname(obj: Any) -> str:
    """A class's or function's name without its module (stable across module names)."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return str(name) if name is not None else type(obj).__qualname__


# Objects met again while ``shared_objects`` is on: id -> (the object, its encoding).
_SHARED: dict[int, tuple[Any, bytes]] | None = None
_SHARED_MAX = 1 << 20  # bytes: an object encoded in more than this is not kept
# Big arrays hashed while ``shared_objects`` is on: (digest of the stream before the array,
# id of the array) -> (the array, the hash's state after it).
_STATES: dict[tuple[bytes, int], tuple[Any, Any]] | None = None


@contextlib.contextmanager
def shared_objects() -> Iterator[None]:
    """Within this block, an object (not a container, array or function) met in several
    values is encoded once: digesting 16 cfgs that hold the same 48 fitted trees walks the
    trees once. The objects are kept alive meanwhile, so an id names one object; an object
    whose encoding depends on where it is met (it refers back to a container around it) or
    holds big buffers is never kept.

    A big array (``_BIG`` bytes or more) met again after the same stream (two cfgs that
    hold the same data set under the same key, before the keys where they differ: dict
    keys are encoded in sorted order) is not hashed again either: the hash's state after
    it is taken from the first time (a copy of it), which is what hashing the same bytes
    after the same bytes gives."""
    global _SHARED, _STATES
    outer, _SHARED = _SHARED, {} if _SHARED is None else _SHARED
    outer_states, _STATES = _STATES, {} if _STATES is None else _STATES
    try:
        yield
    finally:
        _SHARED, _STATES = outer, outer_states


class _Encoder:
    """A typed byte stream of values, hashed as it grows."""

    def __init__(self, code: CodeIdentity, on_fallback: Fallback | None = None) -> None:
        self._code = code
        self._on_fallback = on_fallback
        self._hash = hashlib.sha256()
        self._parts: list[bytes] = []
        self._active: set[int] = set()  # containers being encoded (cycle guard)
        self._flushes = 0  # flushes and cycle marks so far (a kept encoding has neither)

    def hexdigest(self) -> str:
        self._flush()
        return self._hash.hexdigest()[: 2 * _SIZE]

    def _flush(self) -> None:
        if self._parts:
            self._hash.update(b"".join(self._parts))
            self._parts.clear()
        self._flushes += 1

    def _raw(self, data: bytes | memoryview, owner: Any = None) -> None:
        """Append ``data``; a big one is hashed in place. ``owner``: the user's object whose
        bytes ``data`` are (an array of a cfg), whose hashing ``shared_objects`` may reuse."""
        if len(data) < _BIG:
            self._parts.append(bytes(data))
            return
        self._flush()
        states = _STATES
        if states is None or owner is None:
            self._hash.update(data)
            return
        key = (self._hash.copy().digest(), id(owner))
        found = states.get(key)
        if found is not None and found[0] is owner:
            self._hash = found[1].copy()
            return
        self._hash.update(data)
        states[key] = (owner, self._hash.copy())

    def _text(self, tag: bytes, text: str) -> None:
        data = text.encode("utf-8", "surrogatepass")
        self._parts.append(b"%s%d:" % (tag, len(data)))
        self._raw(data)

    def add(self, value: Any) -> None:
        """Append ``value``'s encoding to the stream."""
        kind = type(value)
        plain = _PLAIN.get(kind)
        if plain is not None:
            plain(self, value)
            return
        if kind is dict or kind is list or kind is tuple:
            fast = _plain_tree(value, 0)
            if fast is not None:
                self._raw(fast)
                return
        if id(value) in self._active:
            self._parts.append(b"@cycle;")
            self._flushes += 1
            return
        self._active.add(id(value))
        try:
            self._add_compound(value, kind)
        finally:
            self._active.discard(id(value))

    def _add_compound(self, value: Any, kind: type) -> None:
        if kind is dict or (isinstance(value, Mapping) and not _is_pandas(kind)):
            if isinstance(value, collections.OrderedDict):
                self._ordered(value)
            else:
                self._mapping(value)
        elif kind is list or kind is tuple:
            self._sequence(b"l" if kind is list else b"t", value)
        elif isinstance(value, (set, frozenset)):
            self._set(value)
        elif isinstance(value, type):
            self._text(b"C", _qualname(value))
            ident = self._code(value)
            if ident is not None:  # the user's class: its code counts
                self._text(b"K", ident)
        elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType,
                                types.MethodType)):
            self._function(value)
        elif _module_root(kind) == "numpy":
            self._numpy(value, shared=True)
        elif _is_pandas(kind):
            self._pandas(value)
        else:
            self._shared_object(value, kind)

    def _shared_object(self, value: Any, kind: type) -> None:
        """``_object``, replayed from ``_SHARED`` when this object was encoded before."""
        shared = _SHARED
        if shared is None:
            self._object(value, kind)
            return
        found = shared.get(id(value))
        if found is not None and found[0] is value:
            self._parts.append(found[1])
            return
        start, flushes = len(self._parts), self._flushes
        self._object(value, kind)
        if self._flushes == flushes:  # all of it buffered, no cycle mark: context-free
            data = b"".join(self._parts[start:])
            if len(data) <= _SHARED_MAX:
                shared[id(value)] = (value, data)

    def _function(self, value: Any) -> None:
        """A function: the user's by its code fingerprint, a library's by its module (its
        qualified name is written first), a bound method with the object it is bound to."""
        self._text(b"F", _qualname(value))
        ident = self._code(getattr(value, "__func__", value))
        if ident is None:
            self._text(b"L", str(getattr(value, "__module__", None) or ""))
        else:
            self._text(b"K", ident)
        bound = getattr(value, "__self__", None)
        if bound is not None and not isinstance(bound, types.ModuleType):
            self._parts.append(b"M")  # a bound method: the object it works on counts
            self.add(bound)

    def _ordered(self, value: Mapping[Any, Any]) -> None:
        self._parts.append(b"o%d:" % len(value))
        for key, item in value.items():
            self.add(key)
            self.add(item)

    def _mapping(self, value: Mapping[Any, Any]) -> None:
        self._parts.append(b"d%d:" % len(value))
        for key, item in sorted(value.items(), key=lambda kv: _key_order(kv[0], self._code)):
            self.add(key)
            self.add(item)

    def _sequence(self, tag: bytes, value: Any) -> None:
        self._parts.append(b"%s%d:" % (tag, len(value)))
        for item in value:
            self.add(item)

    def _set(self, value: set[Any] | frozenset[Any]) -> None:
        self._parts.append(b"%s%d:" % (b"S" if isinstance(value, set) else b"Z", len(value)))
        for item in sorted(value_digest(v, self._code, self._on_fallback) for v in value):
            self._parts.append(item.encode())

    def _numpy(self, value: Any, shared: bool = False) -> None:
        """An array by dtype, shape and bytes (``shared``: ``value`` is the user's own
        object, not one made here, so ``shared_objects`` may reuse its hashing)."""
        import numpy as np

        if isinstance(value, np.ndarray) and not value.dtype.hasobject:
            if _padded(value.dtype):  # padding bytes hold whatever memory held: left out
                from numpy.lib import recfunctions

                arr = np.ascontiguousarray(recfunctions.repack_fields(value, recurse=True))
                self._text(b"R", f"{arr.dtype.descr}{arr.shape}")
            else:
                arr = np.ascontiguousarray(value)
                self._text(b"a", f"{arr.dtype.str}{arr.shape}")
            self._raw(arr.reshape(-1).view(np.uint8).data, value if shared else None)
        elif isinstance(value, np.ndarray):  # objects (or fields of them): by their values
            self._text(b"A", f"{value.shape}")
            self.add(value.tolist())
        elif isinstance(value, np.generic) and value.dtype.fields is not None:
            self._numpy(np.asarray(value))  # a record of a structured array
        elif isinstance(value, np.generic) and value.dtype != object:
            self._text(b"g", value.dtype.str)
            self._raw(value.tobytes())
        else:
            self._object(value, type(value))

    def _pandas(self, value: Any) -> None:
        import pandas as pd

        if not isinstance(value, (pd.DataFrame, pd.Series)):
            self._object(value, type(value))
            return
        self._text(b"P", type(value).__qualname__)
        if isinstance(value, pd.DataFrame):
            self.add([str(d) for d in value.dtypes])
            self.add(list(value.columns))
        else:
            self.add([str(value.dtype), value.name])
        self.add(list(value.index))
        try:
            rows = pd.util.hash_pandas_object(value, index=True).to_numpy()
        except TypeError:  # unhashable cells (lists, dicts): their values instead
            self.add(value.to_numpy().tolist())
        else:
            self._numpy(rows)

    def _object(self, value: Any, kind: type) -> None:
        """Any other object: its class name and the state it would pickle."""
        self._text(b"O", _qualname(kind))
        ident = self._code(kind)
        if ident is not None:  # an instance of the user's class: its code counts
            self._text(b"K", ident)
        try:
            reduced = value.__reduce_ex__(4)
        except Exception:  # objects that refuse pickling (locks, files): their readable form
            if self._on_fallback is not None:
                self._on_fallback(value)
            self._text(b"r", _stable_repr(value))
            return
        if isinstance(reduced, str):  # a module-level singleton
            self._text(b"G", reduced)
            return
        parts = list(reduced) + [None] * (5 - len(reduced))
        func, args, state, items, pairs = parts[:5]
        self._text(b"", _qualname(func))
        self.add(args)
        self.add(state)
        self.add(list(items) if items is not None else None)
        self.add(dict(pairs) if pairs is not None else None)


def _padded(dtype: Any) -> bool:
    """Whether a structured NumPy dtype has bytes that belong to no field (alignment
    padding, as in a C struct such as scikit-learn's tree nodes)."""
    fields = dtype.fields
    if fields is None:
        return False
    used = sum(sub.itemsize for sub, *_ in fields.values())
    return used != dtype.itemsize or any(_padded(sub) for sub, *_ in fields.values())


def _module_root(kind: type) -> str:
    return kind.__module__.partition(".")[0]


def _is_pandas(kind: type) -> bool:
    return _module_root(kind) == "pandas"


def _key_order(key: Any, code: CodeIdentity) -> tuple[str, Any]:
    """A total order of dict keys of any type: the type's name, then the key itself (str,
    int, bytes), its repr (float, bool, None) or its digest (anything else)."""
    kind = type(key)
    if kind is str or kind is int or kind is bytes:
        return kind.__qualname__, key
    return kind.__qualname__, repr(key) if kind in _PLAIN else value_digest(key, code)


_MAX_DEPTH = 64


def _plain_tree(value: Any, depth: int) -> bytes | None:
    """The encoding of plain data (str-keyed dicts, lists, tuples, str, int, float, bool,
    None) in one pass, exactly as ``_Encoder`` writes it; ``None`` for anything else.

    Most cfgs are plain: this keeps digesting 100,000 of them cheap (scalars are encoded
    inline, without a call each)."""
    kind = type(value)
    if kind is not dict and kind is not list and kind is not tuple:
        return _plain_scalar(value, kind)
    if depth > _MAX_DEPTH:  # deep or cyclic: the encoder's guard handles it
        return None
    if kind is dict:
        try:
            keys = sorted(value)
        except TypeError:  # keys of several types
            return None
        parts = [b"d%d:" % len(value)]
        for key in keys:
            if type(key) is not str:
                return None
            data = key.encode("utf-8", "surrogatepass")
            parts.append(b"s%d:%s" % (len(data), data))
            item = value[key]
            t = type(item)
            if t is int:
                parts.append(b"i%d;" % item)
            elif t is str:
                data = item.encode("utf-8", "surrogatepass")
                parts.append(b"s%d:%s" % (len(data), data))
            else:
                encoded = _plain_tree(item, depth + 1)
                if encoded is None:
                    return None
                parts.append(encoded)
        return b"".join(parts)
    parts = [b"%s%d:" % (b"l" if kind is list else b"t", len(value))]
    for element in value:
        encoded = _plain_tree(element, depth + 1)
        if encoded is None:
            return None
        parts.append(encoded)
    return b"".join(parts)


def _plain_scalar(value: Any, kind: type) -> bytes | None:
    if kind is str:
        data = value.encode("utf-8", "surrogatepass")
        return b"s%d:%s" % (len(data), data)
    if kind is int:
        return b"i%d;" % value
    if kind is float:
        return b"f%s;" % value.hex().encode()
    if kind is bool:
        return b"T" if value else b"F"
    if value is None:
        return b"N"
    return None


def _stable_repr(value: Any) -> str:
    """``repr(value)``, or its class name where the repr holds a memory address or fails."""
    try:
        text = repr(value)
    except Exception:
        return type(value).__qualname__
    return type(value).__qualname__ if " at 0x" in text else text


def _none(enc: _Encoder, value: None) -> None:
    enc._parts.append(b"N")


def _bool(enc: _Encoder, value: bool) -> None:
    enc._parts.append(b"T" if value else b"F")


def _int(enc: _Encoder, value: int) -> None:
    enc._parts.append(b"i%d;" % value)


def _float(enc: _Encoder, value: float) -> None:
    enc._parts.append(b"f" + value.hex().encode() + b";")


def _str(enc: _Encoder, value: str) -> None:
    enc._text(b"s", value)


def _bytes(enc: _Encoder, value: bytes) -> None:
    enc._parts.append(b"b%d:" % len(value))
    enc._raw(value)


_PLAIN: dict[type, Callable[[_Encoder, Any], None]] = {
    type(None): _none, bool: _bool, int: _int, float: _float, str: _str, bytes: _bytes,
}


# --------------------------------------------------------------------------------------------
# Digests of a whole list of cfgs, cached between executions.

