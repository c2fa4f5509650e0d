"""The content digest of a config: what "the same config" means, defined once.

A run's markers keep the digest of the config it was computed with, and the plan keeps the
digest of every experiment's config, so a run is done only when both agree. The digest is
of the values themselves, never of their readable JSON view (which hides a DataFrame's
middle rows and an object's attributes), and it is the same in every process: no ``hash()``
(salted by ``PYTHONHASHSEED``), no memory addresses, and classes are named by their
qualified name without their module, so a class defined in ``__main__`` under
``python wf.py`` digests like the same class in the workflow module under ``dagrun
execute``. The keys dagrun adds to a cfg (``experiment_id``, ``run_id``, ``out_path``) and
``repetitions`` (the shape of the plan, compared on its own) are left out.

Values are encoded into a byte stream with a type tag each (so ``1``, ``1.0`` and ``True``
differ) and the stream is hashed with BLAKE2b: dicts in the order of their keys, sets in the
order of their elements' digests, NumPy arrays by dtype, shape and raw bytes (no copy when
contiguous), pandas objects by pandas' own stable row hashes plus their labels and dtypes,
functions by qualified name and code fingerprint, and any other object by its class name and
the state it pickles (``__reduce_ex__``: ``__getstate__``, ``__dict__`` or ``__slots__``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import pickle
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagrun.fingerprint import fingerprint, is_user_module

#: cfg keys that are not part of a config's content (dagrun sets or compares them itself).
EXCLUDED_KEYS = frozenset({"experiment_id", "run_id", "out_path", "repetitions"})

_SIZE = 16  # bytes of digest: 32 hex characters
_BIG = 1 << 16  # buffers at least this large are hashed in place, not joined


def config_digest(cfg: Mapping[Any, Any]) -> str:
    """The content digest of one experiment's cfg (hex), without dagrun's own keys."""
    content = cfg if EXCLUDED_KEYS.isdisjoint(cfg) else \
        {k: v for k, v in cfg.items() if k not in EXCLUDED_KEYS}
    if type(content) is dict:
        plain = _plain_tree(content, 0)  # the common case, without an encoder
        if plain is not None:
            return hashlib.sha256(plain).hexdigest()[: 2 * _SIZE]
    return digest(content)


def digest(value: Any) -> str:
    """The content digest of any value (hex); see the module docstring for what counts."""
    enc = _Encoder()
    enc.add(value)
    return enc.hexdigest()


def _qualname(obj: Any) -> str:
    """A class's or function's name without its module (stable across module names)."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return str(name) if name is not None else type(obj).__qualname__


_fingerprints: dict[Any, str] = {}


def _code_fingerprint(fn: Callable[..., Any]) -> str:
    """The fingerprint of a function, cached by its code (parsing source is slow)."""
    key = getattr(fn, "__code__", None) or fn
    try:
        found = _fingerprints.get(key)
    except TypeError:  # an unhashable callable
        return fingerprint(fn)
    if found is None:
        found = _fingerprints[key] = fingerprint(fn)
    return found


class _Encoder:
    """A typed byte stream of values, hashed as it grows."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._parts: list[bytes] = []
        self._active: set[int] = set()  # containers being encoded (cycle guard)

    def hexdigest(self) -> str:
        self._flush()
        return self._hash.hexdigest()[: 2 * _SIZE]

    def _flush(self) -> None:
        if self._parts:
            self._hash.update(b"".join(self._parts))
            self._parts.clear()

    def _raw(self, data: bytes | memoryview) -> None:
        if len(data) >= _BIG:
            self._flush()
            self._hash.update(data)
        else:
            self._parts.append(bytes(data))

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
            return
        self._active.add(id(value))
        try:
            self._add_compound(value, kind)
        finally:
            self._active.discard(id(value))

    def _add_compound(self, value: Any, kind: type) -> None:
        if kind is dict or (isinstance(value, Mapping) and not _is_pandas(kind)):
            self._mapping(value)
        elif kind is list or kind is tuple:
            self._sequence(b"l" if kind is list else b"t", value)
        elif isinstance(value, (set, frozenset)):
            self._set(value)
        elif isinstance(value, type):
            self._text(b"C", _qualname(value))
        elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType,
                                types.MethodType)):
            self._text(b"F", _qualname(value))
            self._text(b"", _code_fingerprint(value))
        elif _module_root(kind) == "numpy":
            self._numpy(value)
        elif _is_pandas(kind):
            self._pandas(value)
        else:
            self._object(value, kind)

    def _mapping(self, value: Mapping[Any, Any]) -> None:
        self._parts.append(b"d%d:" % len(value))
        for key, item in sorted(value.items(), key=lambda kv: _key_order(kv[0])):
            self.add(key)
            self.add(item)

    def _sequence(self, tag: bytes, value: Any) -> None:
        self._parts.append(b"%s%d:" % (tag, len(value)))
        for item in value:
            self.add(item)

    def _set(self, value: set[Any] | frozenset[Any]) -> None:
        self._parts.append(b"%s%d:" % (b"S" if isinstance(value, set) else b"Z", len(value)))
        for item in sorted(digest(v) for v in value):
            self._parts.append(item.encode())

    def _numpy(self, value: Any) -> None:
        import numpy as np

        if isinstance(value, np.ndarray) and value.dtype != object:
            arr = np.ascontiguousarray(value)
            self._text(b"a", f"{arr.dtype.str}{arr.shape}")
            self._raw(arr.reshape(-1).view(np.uint8).data)
        elif isinstance(value, np.ndarray):
            self._text(b"A", f"{value.shape}")
            self.add(value.tolist())
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
        try:
            reduced = value.__reduce_ex__(4)
        except Exception:  # objects that refuse pickling (locks, files): their readable form
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


def _module_root(kind: type) -> str:
    return kind.__module__.partition(".")[0]


def _is_pandas(kind: type) -> bool:
    return _module_root(kind) == "pandas"


def _key_order(key: Any) -> tuple[str, Any]:
    """A total order of dict keys of any type: the type's name, then the key itself (str,
    int, bytes), its repr (float, bool, None) or its digest (anything else)."""
    kind = type(key)
    if kind is str or kind is int or kind is bytes:
        return kind.__qualname__, key
    return kind.__qualname__, repr(key) if kind in _PLAIN else digest(key)


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
    text = repr(value)
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

class _NoKey(Exception):
    """The cfgs hold something whose pickle does not pin its digest (a function)."""


class _KeyPickler(pickle.Pickler):
    """Pickles cfgs for ``cfgs_key``; refuses the user's own functions, which pickle by name
    while their digest includes their code (an edited function must be a changed config).
    Library functions (NumPy's array reconstructors, ...) pin their digest by name."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (types.FunctionType, types.MethodType)):
            module = sys.modules.get(getattr(obj, "__module__", "") or "")
            if not getattr(module, "__file__", None) or is_user_module(module):
                raise _NoKey  # the user's code (a file of theirs, a notebook, a prompt)
        return NotImplemented


def cfgs_key(cfgs: Sequence[Any]) -> str | None:
    """A key of exactly these cfgs: the SHA-256 of their pickle (``None`` when they do not
    pickle, or hold a function). Equal pickles mean equal values, so equal keys mean equal
    digests; a different pickle of equal values (another module name) only costs a
    recomputation."""
    buffer = io.BytesIO()
    try:
        _KeyPickler(buffer, protocol=5).dump(list(cfgs))
    except Exception:  # anything that cannot be pickled, or a function: no cache
        return None
    return hashlib.sha256(buffer.getbuffer()).hexdigest()


def cached_digests(path: str, key: str | None, count: int) -> list[str] | None:
    """The digests stored at ``path`` for ``key`` (``None`` when there are none for it)."""
    if key is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    digests = data.get("digests") if isinstance(data, dict) else None
    if data.get("key") != key or not isinstance(digests, list) or len(digests) != count \
            or not all(type(d) is str for d in digests):
        return None
    return digests


def store_digests(path: str, key: str | None, digests: Sequence[str]) -> None:
    """Remember ``digests`` for ``key`` (best effort: the cache is only a shortcut)."""
    if key is None:
        return
    from dagrun import atomic  # lazy: atomic is not needed to digest a value

    with contextlib.suppress(OSError):
        atomic.write_json(path, {"key": key, "digests": list(digests)}, indent=None)
