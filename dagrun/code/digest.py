"""The content digest of a config: what "the same config" means, defined once (``DIGEST_VERSION``).

A run's markers keep the digest of the config it was computed with, and the plan keeps the
digest of every experiment's config, so a run is done only when both agree. The digest is
of the values themselves, never of their readable JSON view (which hides a DataFrame's
middle rows and an object's attributes), and it is the same in every process: no ``hash()``
(salted by ``PYTHONHASHSEED``), no memory addresses, and classes are named by their
qualified name without their module, so a class defined in ``__main__`` under
``python wf.py`` digests like the same class in the workflow module under ``dagrun
execute``. The keys dagrun adds to a cfg (``experiment_id``, ``run_id``, ``out_path``) and
``repetitions`` (the shape of the plan, compared on its own) are left out.

``dagrun.code.encoding`` says how each kind of value is encoded. In short: plain data by
value (dict key order never counts; an ``OrderedDict``'s does), arrays and frames by their
bytes and labels, a function or class of the user's by its qualified name and code
fingerprint (defaults, keyword defaults and closure cells included), an instance of a
user's class by its class's fingerprint and its state, a library's function by its module
and qualified name and a library's class by its qualified name, never by their code (a
``pip -U`` never changes a digest). A value that can
only be compared by its readable form (an object that refuses to pickle) is, and the cfg
key holding it is named once per process.

The digests of a list of cfgs are cached (``cfgs_key``) by the pickle of the cfgs, which
names library functions and classes as the digest does; cfgs holding the user's code
(functions, classes, instances of the user's classes) have no key: their digest depends on
code a pickle does not hold.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

from dagrun.code.encoding import plain_digest, value_digest
from dagrun.code.fingerprint import code_identity, is_users_code
from dagrun.code.usercode import Rule
from dagrun.disk import formatversion

#: The version of what a config digest covers (2: functions with their defaults and cells,
#: user classes and instances with their code, OrderedDict order, library code by name).
#: Digests of plain cfgs (str-keyed dicts, lists, tuples of str/int/float/bool/None) are the
#: same in every version. Kept in ``dagrun.disk.formatversion`` with the plan that holds them.
DIGEST_VERSION = formatversion.DIGESTS

#: cfg keys that are not part of a config's content (dagrun sets or compares them itself).
EXCLUDED_KEYS = frozenset({"experiment_id", "run_id", "out_path", "repetitions"})

_told: set[tuple[str, str]] = set()  # (cfg key, class) already named as compared by its form


def config_digest(cfg: Mapping[Any, Any]) -> str:
    """The content digest of one experiment's cfg (hex), without dagrun's own keys."""
    content = cfg if EXCLUDED_KEYS.isdisjoint(cfg) else \
        {k: v for k, v in cfg.items() if k not in EXCLUDED_KEYS}
    if type(content) is dict:
        plain = plain_digest(content)  # the common case, without an encoder
        if plain is not None:
            return plain
    fallbacks: list[Any] = []
    found = value_digest(content, code_identity, fallbacks.append)
    if fallbacks:
        _tell(content)
    return found


def _tell(content: Mapping[Any, Any]) -> None:
    """Name, once per process, the cfg keys whose values are compared by readable form."""
    from dagrun.progress import say

    for key, value in content.items():
        kinds: list[Any] = []
        value_digest(value, code_identity, kinds.append)
        for kind in dict.fromkeys(f"{type(v).__module__}.{type(v).__qualname__}"
                                  for v in kinds):
            if (str(key), kind) not in _told:
                _told.add((str(key), kind))
                say(f"dagrun: cfg key {key!r} holds a {kind} that cannot be compared by "
                    "content; compared by its readable form")


def digest(value: Any) -> str:
    """The content digest of any value (hex); see the module docstring for what counts."""
    return value_digest(value, code_identity)


class _NoKey(Exception):
    """The cfgs hold something whose pickle does not pin its digest (a function)."""


class _KeyPickler(pickle.Pickler):
    """Pickles cfgs for ``cfgs_key``; refuses the user's own code — functions, classes and
    instances of the user's classes — which pickle by name while their digest includes their
    code (an edited function must be a changed config). Library functions and classes pin
    their digest by name, as the digest names them (module and qualified name)."""

    def __init__(self, file: io.BytesIO, rule: Rule) -> None:
        super().__init__(file, protocol=5, buffer_callback=self._out_of_band)
        self._rule = rule
        self.buffers: list[memoryview] = []  # the out-of-band buffers, in the pickle's order

    def _out_of_band(self, buffer: pickle.PickleBuffer) -> bool:
        """Keep a contiguous buffer (an array's data) out of band; pickle any other in
        band (returns True)."""
        try:
            self.buffers.append(buffer.raw())
        except BufferError:
            return True
        return False

    def reducer_override(self, obj: Any) -> Any:
        if is_users_code(obj, self._rule):
            raise _NoKey
        return NotImplemented


def cfgs_key(cfgs: Sequence[Any]) -> str | None:
    """A key of exactly these cfgs: the SHA-256 of their pickle (``None`` when they do not
    pickle, or hold the user's code), under this ``DIGEST_VERSION`` and the environment's
    rule of what is the user's code. Equal pickles mean equal values, so equal keys mean
    equal digests; a different pickle of equal values (another module name) only costs a
    recomputation.

    Arrays are pickled out of band (protocol 5) and hashed where they are, each after its
    length: a data set in the cfgs is read once, never copied into the pickle first (that
    copy cost as much as the hashing: ~45 ms per 64 MB)."""
    rule = Rule.of(None)
    buffer = io.BytesIO()
    buffer.write(b"dagrun digests %d %s %s\0" % (DIGEST_VERSION, str(sorted(rule.include)).encode(),
                                                  str(list(rule.exclude)).encode()))
    pickler = _KeyPickler(buffer, rule)
    try:
        pickler.dump(list(cfgs))
    except Exception:  # anything that cannot be pickled, or the user's code: no cache
        return None
    key = hashlib.sha256(buffer.getbuffer())
    for data in pickler.buffers:
        key.update(b"\0buffer %d\0" % data.nbytes)
        key.update(data)
    return key.hexdigest()


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
