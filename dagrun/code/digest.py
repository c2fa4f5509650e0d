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
from collections.abc import Mapping, Sequence
from typing import Any

from dagrun.code.encoding import plain_digest, value_digest
from dagrun.code.fingerprint import cached_fingerprint, is_user_module

#: cfg keys that are not part of a config's content (dagrun sets or compares them itself).
EXCLUDED_KEYS = frozenset({"experiment_id", "run_id", "out_path", "repetitions"})

def config_digest(cfg: Mapping[Any, Any]) -> str:
    """The content digest of one experiment's cfg (hex), without dagrun's own keys."""
    content = cfg if EXCLUDED_KEYS.isdisjoint(cfg) else \
        {k: v for k, v in cfg.items() if k not in EXCLUDED_KEYS}
    if type(content) is dict:
        plain = plain_digest(content)  # the common case, without an encoder
        if plain is not None:
            return plain
    return digest(content)


def digest(value: Any) -> str:
    """The content digest of any value (hex); see the module docstring for what counts."""
    return value_digest(value, cached_fingerprint)


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
    from dagrun.disk import atomic  # lazy: atomic is not needed to digest a value

    with contextlib.suppress(OSError):
        atomic.write_json(path, {"key": key, "digests": list(digests)}, indent=None)
