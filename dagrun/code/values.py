"""The values store: each distinct big cfg value once per sweep, under ``OUT/.dagrun/values/``.

A data set, a long list or a DataFrame inside a cfg is written here once, named by its content
digest (``<digest>.npy`` for a NumPy array of a plain dtype, readable without unpickling and
memory-mapped; ``<digest>.pkl`` for anything else, loaded under the pickle safety rules), and
the cfgs that workers, ``workflow.pkl`` and the plan carry hold a small ``ValueRef`` in its
place. A stage receives the value itself: an array is mapped copy-on-write for each stage
call (pages shared by every process that reads it, a stage's writes private to that call),
anything else is unpickled anew per call. The JSON view of a ``ValueRef`` (``view``) is its
summary, e.g. ``{"ndarray": {"shape": [19020, 10], "dtype": "float64", "digest": "…"}}``;
``load`` gives the value back from it (``dagrun.load_value``).
"""

from __future__ import annotations

import mmap
import os
import pickle
from typing import Any

from dagrun.code import mainref
from dagrun.code.safety import check_pickle
from dagrun.disk import atomic
from dagrun.disk.layout import SweepDir
from dagrun.errors import UsageError
from dagrun.record import record

NPY, PICKLE = "npy", "pkl"


@record(frozen=True)
class ValueRef:
    """A big cfg value in the values store: its digest, file kind and readable summary."""

    digest: str
    kind: str  # NPY or PICKLE
    summary: tuple[tuple[str, Any], ...]  # (name, value) pairs of the view, e.g. shape

    @property
    def type_name(self) -> str:
        return str(dict(self.summary).get("type", "value"))

    def __dagrun_view__(self) -> dict[str, Any]:
        """The JSON view (``dagrun.config.json_view`` calls it): a summary with the digest."""
        fields = {k: list(v) if isinstance(v, tuple) else v for k, v in self.summary
                  if k != "type"}
        return {self.type_name: {**fields, "digest": self.digest}}

    def __repr__(self) -> str:
        return f"<{self.type_name} {self.digest[:12]} in the values store>"


def path_of(sweep: SweepDir, digest: str, kind: str) -> str:
    return os.path.join(sweep.values, f"{digest}.{kind}")


def put(sweep: SweepDir, ref: ValueRef, payload: Any) -> bool:
    """Write ``payload`` (an array, or a value's pickle) under ``ref`` unless it is there
    already; returns whether it wrote."""
    path = path_of(sweep, ref.digest, ref.kind)
    if os.path.exists(path):
        return False
    atomic.makedirs(sweep.values)
    if ref.kind == NPY:
        import numpy as np

        atomic.write_with(path, lambda f: np.lib.format.write_array(
            f, np.asanyarray(payload), allow_pickle=False))
    else:
        atomic.write_bytes(path, payload)
    return True


def load(sweep: SweepDir, ref: ValueRef, writable: bool = True) -> Any:
    """The value of ``ref``: an array mapped copy-on-write (``writable``: a stage may write
    into it, privately) or read-only; anything else unpickled (after the safety check)."""
    path = path_of(sweep, ref.digest, ref.kind)
    try:
        if ref.kind == NPY:
            import numpy as np

            arr = np.load(path, mmap_mode="c" if writable else "r", allow_pickle=False)
            return arr.view(np.ndarray)  # a plain array (its buffer stays the mapping)
        check_pickle(path)
        with open(path, "rb") as f:
            return pickle.load(f)  # checked above, as every pickle of OUT
    except FileNotFoundError:
        raise UsageError(
            f"{path} is missing: the values store of {sweep.path} lost a cfg value; run "
            "the workflow file again (`dagrun execute WORKFLOW.py`) to write it anew") from None


class Loader:
    """``load`` for the stage calls of one process, which reads each array file's header
    once: an array is then one ``open`` and one copy-on-write mapping per call (~10 µs
    instead of ~70 µs: fifteen values in a run's three stage calls add up).

    What a header says is kept with the file's identity (inode, size, modification time),
    checked on the descriptor each call opens: a file written anew (a lost value written
    again, by any process) is read anew. Nothing else is kept: every call gets its own
    mapping, so a stage's writes stay its own, as with ``load``."""

    def __init__(self) -> None:
        # path -> (identity, (offset, dtype, shape, fortran order))
        self._headers: dict[str, tuple[tuple[int, ...], tuple[int, Any, Any, bool]]] = {}

    def load(self, sweep: SweepDir, ref: ValueRef) -> Any:
        """The value of ``ref`` for one stage call (see ``load``)."""
        if ref.kind != NPY:
            return load(sweep, ref)
        path = path_of(sweep, ref.digest, ref.kind)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            return load(sweep, ref)  # which says what is missing and what to do
        try:
            status = os.fstat(fd)
            identity = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
            known = self._headers.get(path)
            if known is None or known[0] != identity:
                header = _npy_header(fd)
                if header is None:
                    return load(sweep, ref)
                known = self._headers[path] = identity, header
            offset, dtype, shape, fortran = known[1]
            import numpy as np

            if 0 in shape or dtype.itemsize == 0:  # an empty array: nothing to map
                return np.empty(shape, dtype, order="F" if fortran else "C")
            mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)
        finally:
            os.close(fd)  # the mapping keeps what it needs
        return np.ndarray(shape, dtype, buffer=mapped, offset=offset,
                          order="F" if fortran else "C")


def _npy_header(fd: int) -> tuple[int, Any, Any, bool] | None:
    """(data offset, dtype, shape, Fortran order) of the ``.npy`` file open at ``fd``;
    ``None`` for what ``np.load`` is left to read (or to refuse): another format version,
    an array of objects, a header that does not parse."""
    from numpy.lib import format as npy

    with os.fdopen(os.dup(fd), "rb") as f:
        try:
            version = npy.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npy.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = npy.read_array_header_2_0(f)
            else:
                return None
        except ValueError:
            return None
        if dtype.hasobject:
            return None
        return f.tell(), dtype, shape, fortran


def find(sweep: SweepDir, digest: str) -> ValueRef | None:
    """The stored value of ``digest`` (a summary's), whatever its kind."""
    for kind in (NPY, PICKLE):
        if os.path.exists(path_of(sweep, digest, kind)):
            return ValueRef(digest, kind, ())
    return None


# --------------------------------------------------------------------------------------------
# Which cfg values go to the store, and back.

INLINE_MAX_KB = 8  # basecfg["inline_max_kb"]: values of this size and more are stored
_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)
_DEPTH = 8  # containers nested deeper than this are left as they are


def _describe(value: Any, limit: int) -> tuple[str, tuple[tuple[str, Any], ...]] | None:
    """(kind, summary) when ``value`` is big enough to be stored, else ``None``."""
    kind = type(value)
    root = kind.__module__.partition(".")[0]
    if root == "numpy" and hasattr(value, "nbytes") and hasattr(value, "shape") \
            and getattr(value, "ndim", 0) > 0:
        if value.nbytes < limit:
            return None
        dtype = value.dtype
        store = PICKLE if dtype.hasobject or kind.__name__ != "ndarray" else NPY
        return store, (("type", "ndarray"), ("shape", tuple(value.shape)),
                       ("dtype", str(dtype)))
    if root == "pandas" and kind.__name__ in ("DataFrame", "Series"):
        size = int(value.memory_usage(index=True, deep=False).sum()) \
            if kind.__name__ == "DataFrame" else int(value.memory_usage(index=True))
        if size < limit:
            return None
        extra: tuple[tuple[str, Any], ...] = (
            ("columns", tuple(str(c) for c in list(value.columns)[:20])),) \
            if kind.__name__ == "DataFrame" else (("dtype", str(value.dtype)),)
        return PICKLE, (("type", kind.__name__), ("shape", tuple(value.shape)), *extra)
    if kind is bytes or kind is bytearray:
        return (PICKLE, (("type", "bytes"), ("len", len(value)))) if len(value) >= limit \
            else None
    if (kind is list or kind is tuple) and len(value) * 8 >= limit \
            and all(type(v) in _SCALARS for v in value):
        return PICKLE, (("type", kind.__name__), ("len", len(value)))
    return None


class Externalizer:
    """Replaces the big values of cfgs by ``ValueRef``s (each distinct value digested once,
    however many cfgs hold it) and keeps what the store must hold (``pending``: an array as
    it is, anything else pickled now, with a script's classes named as its copy names them).
    A value that does not pickle stays in its cfg."""

    def __init__(self, digest: Any, limit_kb: float = INLINE_MAX_KB) -> None:
        self._digest = digest  # value -> hex digest (dagrun.code.digest.digest)
        self.limit = int(limit_kb * 1024)
        self.pending: dict[str, tuple[ValueRef, Any]] = {}
        self.holds_refs = False  # a cfg given or made holds a ValueRef (stages resolve them)
        self._seen: dict[int, ValueRef | None] = {}  # id -> its ref (None: not stored)

    def cfg(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """``cfg`` with its big values replaced (``cfg`` itself when it holds none)."""
        if _SCALAR_TYPES.issuperset(map(type, cfg.values())):  # flat: nothing to store
            return cfg
        out = self._walk(cfg, 0)
        return out if isinstance(out, dict) else cfg

    def _walk(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is ValueRef:  # kept from an earlier plan (a resumed workflow)
            self.holds_refs = True
            return value
        known = id(value)
        if known in self._seen:
            ref = self._seen[known]
            if ref is not None:
                self.holds_refs = True
                return ref
        else:
            found = _describe(value, self.limit)
            ref = None
            if found is not None:
                ref = self._store(value, *found)
            self._seen[known] = ref
            if ref is not None:
                self.holds_refs = True
                return ref
        if depth >= _DEPTH:
            return value
        if kind is dict:
            changed = {k: self._walk(v, depth + 1) for k, v in value.items()}
            return changed if any(changed[k] is not v for k, v in value.items()) else value
        if kind is list or kind is tuple:
            items = [self._walk(v, depth + 1) for v in value]
            if any(a is not b for a, b in zip(items, value, strict=True)):
                return items if kind is list else tuple(items)
        return value


    def _store(self, value: Any, kind: str, summary: tuple[tuple[str, Any], ...]
               ) -> ValueRef | None:
        digest = self._digest(value)
        ref = ValueRef(digest, kind, summary)
        if digest not in self.pending:
            try:
                payload = value if kind == NPY else mainref.dumps(value)
            except Exception:  # pickle raises many types for what it cannot handle
                return None
            self.pending[digest] = (ref, payload)
        return ref


def resolve(value: Any, sweep: SweepDir, depth: int = 0, loader: Loader | None = None
            ) -> Any:
    """``value`` with every ``ValueRef`` replaced by the stored value, loaded anew (a fresh
    copy-on-write mapping for an array): what one stage call receives. ``loader``: the
    process's ``Loader`` (else each array's header is read again)."""
    kind = type(value)
    if kind is ValueRef:
        return load(sweep, value) if loader is None else loader.load(sweep, value)
    if depth >= _DEPTH:
        return value
    if kind is dict:
        return {k: resolve(v, sweep, depth + 1, loader) for k, v in value.items()}
    if kind is list or kind is tuple:
        items = [resolve(v, sweep, depth + 1, loader) for v in value]
        return items if kind is list else tuple(items)
    return value


def load_value(out_path: str | os.PathLike[str], summary: Any) -> Any:
    """The stored value a summary in config.json, plan.json or results.jsonl stands for
    (``{"ndarray": {"shape": …, "digest": "…"}}``, or just its digest), read-only."""
    digest = summary
    if isinstance(summary, dict) and len(summary) == 1:
        (inner,) = summary.values()
        digest = inner.get("digest") if isinstance(inner, dict) else None
    if not isinstance(digest, str):
        raise UsageError("load_value needs a summary of a stored value such as "
                         "{'ndarray': {..., 'digest': '...'}} or its digest")
    sweep = SweepDir.at(out_path)
    ref = find(sweep, digest)
    if ref is None:
        raise UsageError(f"no value {digest} in {sweep.values}")
    return load(sweep, ref, writable=False)
