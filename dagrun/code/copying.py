"""The copy of the user's code on disk: whole packages, stored once per file content.

``OUT/.dagrun/code/`` holds

* ``files/<sha256>``: every distinct file content of the user's code, once (a blob);
* ``<digest>/``: the tree of one plan, each file a hard link to its blob (a copy where the
  file system has no hard links), laid out as the user's import path lays it out:
  ``<digest>/pkg/__init__.py``, ``<digest>/pkg/_ops.cpython-311-x86_64-linux-gnu.so``,
  ``<digest>/helper.py``, and the workflow file as ``<digest>/dagrun_workflow_<stem>.py``;
  ``<digest>`` is the hash of the tree's names and contents, so an unchanged tree is not
  written again and an edited file costs one new blob;
* ``index.json``: a cache from a source file's (size, mtime, inode) to its content hash, so
  a re-plan hashes only files that changed.

What is copied of a user package (``dagrun.code.usercode`` says which are): every file
under its folder — modules, extension modules, package data — except version-control
folders, caches (``__pycache__``, ``.pytest_cache``, ...), virtual environments found
inside it, the sweep's own output folder, what ``exclude`` names, and data files (not
modules) above ``max_file_mb`` (these are read from the user's folder, as through
``__file__``); the whole copy must stay under ``max_total_mb``. A top-level module is its
one file.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib.machinery
import os
from collections.abc import Iterator, Mapping
from typing import Any

from dagrun.code.usercode import Rule, Top
from dagrun.disk import atomic
from dagrun.errors import ConfigError, UsageError
from dagrun.record import field, record

BLOBS = "files"
INDEX = "index.json"
MAX_FILE_MB = 10.0  # a data file above this is not copied
MAX_TOTAL_MB = 200.0  # the whole copy may not be larger
SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", "__pycache__", ".mypy_cache",
                       ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".ipynb_checkpoints",
                       ".eggs", "node_modules", ".venv", ".idea", ".vscode"})
CODE_SUFFIXES = (".py", *importlib.machinery.EXTENSION_SUFFIXES)
_MB = 1 << 20


@record(frozen=True)
class Limits:
    """Size limits of the copy (basecfg ``code``: ``max_file_mb``, ``max_total_mb``)."""

    max_file: int = int(MAX_FILE_MB * _MB)
    max_total: int = int(MAX_TOTAL_MB * _MB)

    @classmethod
    def of(cls, code: Mapping[str, Any] | None) -> Limits:
        code = code or {}
        out = {}
        for key, attr, default in (("max_file_mb", "max_file", MAX_FILE_MB),
                                   ("max_total_mb", "max_total", MAX_TOTAL_MB)):
            value = code.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"basecfg['code'][{key!r}] must be a number of megabytes "
                                  f"> 0, got {value!r}")
            out[attr] = int(value * _MB)
        return cls(**out)


@record(frozen=True)
class Source:
    """One file of the copy: where it comes from and what it holds."""

    path: str  # the user's file
    size: int
    sha: str
    data: bytes | None = None  # read already (a file checked against its loaded module)


@record
class Collected:
    """The tree to write: its files by relative path, and what was left out."""

    files: dict[str, Source] = field(default_factory=dict)
    skipped: list[tuple[str, int]] = field(default_factory=list)  # big data files left out
    hasher: Hasher | None = None  # its stat cache, saved once the copy is written

    def digest(self) -> str:
        h = hashlib.sha256()
        for rel in sorted(self.files):
            h.update(rel.encode() + b"\0" + self.files[rel].sha.encode() + b"\0")
        return h.hexdigest()[:16]

    @property
    def size(self) -> int:
        return sum(s.size for s in self.files.values())


class Hasher:
    """Content hashes of source files, through the stat cache of ``index.json``."""

    def __init__(self, code_dir: str) -> None:
        self.path = os.path.join(code_dir, INDEX)
        loaded = atomic.read_json_or_none(self.path)
        self.known: dict[str, list[Any]] = loaded if isinstance(loaded, dict) else {}
        self.seen: dict[str, list[Any]] = {}

    def source(self, path: str, st: os.stat_result, data: bytes | None = None) -> Source:
        key = [st.st_size, st.st_mtime_ns, st.st_ino]
        cached = self.known.get(path)
        if data is None and cached is not None and cached[:3] == key:
            sha = str(cached[3])
        elif data is None:  # read to hash it, not kept: the copy reads it again, checked
            with open(path, "rb") as f:
                sha = hashlib.sha256(f.read()).hexdigest()
        else:
            sha = hashlib.sha256(data).hexdigest()
        self.seen[path] = [*key, sha]
        return Source(path, st.st_size, sha, data)

    def save(self) -> None:
        if self.seen != self.known:
            atomic.write_json(self.path, self.seen, indent=None)


def _excluded(rel: str, rule: Rule) -> bool:
    return any(rel == p or fnmatch.fnmatchcase(rel, p) or rel.startswith(p + "/")
               for p in rule.exclude)


def walk(top: Top, rule: Rule, avoid: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(path relative to the copy's root, real file) of every file of ``top`` to copy."""
    if not top.package:
        yield os.path.basename(top.path), top.path
        return
    base = top.entry
    for folder, dirs, files in os.walk(top.path):
        rel_folder = os.path.relpath(folder, base)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")
                         and not _excluded(f"{rel_folder}/{d}", rule)
                         and not os.path.isfile(os.path.join(folder, d, "pyvenv.cfg"))
                         and os.path.join(os.path.realpath(os.path.join(folder, d)), "")
                         not in avoid)
        for name in sorted(files):
            rel = f"{rel_folder}/{name}"
            if name.endswith((".pyc", ".pyo")) or _excluded(rel, rule):
                continue
            yield rel, os.path.join(folder, name)


def collect(tops: list[Top], extra: Mapping[str, str], rule: Rule, limits: Limits,
            hasher: Hasher, avoid: tuple[str, ...], read: Mapping[str, bytes]) -> Collected:
    """The files of ``tops`` plus ``extra`` (relative path -> file, e.g. the workflow);
    ``read`` holds contents already read (the same bytes are copied); ``avoid`` are folders
    never copied (the sweep's output)."""
    out = Collected()
    pairs = [*extra.items()]
    for top in tops:
        pairs.extend(walk(top, rule, avoid))
    for rel, path in pairs:
        try:
            st = os.stat(path)
        except OSError:
            continue  # removed meanwhile, or a dangling link: nothing to copy
        if st.st_size > limits.max_file and not rel.endswith(CODE_SUFFIXES):
            out.skipped.append((rel, st.st_size))
            continue
        out.files[rel] = hasher.source(path, st, read.get(os.path.realpath(path)))
    if out.size > limits.max_total:
        raise UsageError(_too_big(out, limits))
    return out


def _too_big(out: Collected, limits: Limits) -> str:
    by_folder: dict[str, int] = {}
    for rel, src in out.files.items():
        folder = rel.rsplit("/", 1)[0] if "/" in rel else rel
        by_folder[folder] = by_folder.get(folder, 0) + src.size
    big = sorted(by_folder.items(), key=lambda kv: -kv[1])[:3]
    shown = ", ".join(f"{k} ({v / _MB:.0f} MB)" for k, v in big)
    return (f"the copy of your code would hold {out.size / _MB:.0f} MB, more than "
            f"{limits.max_total / _MB:.0f} MB (largest: {shown}); leave data out with "
            f"basecfg['code'] = {{'exclude': ['{big[0][0]}']}} (or DAGRUN_CODE_EXCLUDE), or "
            "raise basecfg['code']['max_total_mb']")


def write(collected: Collected, code_dir: str, folder: str) -> None:
    """Write the tree ``folder`` (once per content) from blobs, adding missing blobs; a
    tree appears complete or not at all (written aside, then renamed)."""
    blobs = os.path.join(code_dir, BLOBS)
    atomic.makedirs(blobs)
    for src in collected.files.values():
        _store_blob(blobs, src)
    if not os.path.isdir(folder):
        tmp = f"{folder}.{os.getpid()}.tmp"
        _rmtree(tmp)
        for rel, src in collected.files.items():
            target = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _place(os.path.join(blobs, src.sha), target)
        os.makedirs(tmp, exist_ok=True)
        try:
            os.rename(tmp, folder)
        except OSError:
            _rmtree(tmp)
            if not os.path.isdir(folder):
                raise
    _prune(code_dir, os.path.basename(folder), {s.sha for s in collected.files.values()})


def _rmtree(path: str) -> None:
    """``shutil.rmtree(path, ignore_errors=True)``, importing ``shutil`` (~2 ms: it imports
    the compression modules) only when there is something to remove."""
    if os.path.lexists(path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def _store_blob(blobs: str, src: Source) -> None:
    """``files/<sha>`` with the file's content, checked against the hash taken at plan
    time: a file edited while the sweep was planned is refused, never half-recorded."""
    blob = os.path.join(blobs, src.sha)
    if os.path.exists(blob):
        return
    data = src.data
    if data is None:
        with open(src.path, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != src.sha:
            raise UsageError(f"{src.path} changed while the sweep was being planned; run "
                             "it again")
    atomic.write_bytes(blob, data)
    os.chmod(blob, 0o555 if src.path.endswith(CODE_SUFFIXES[1:]) else 0o444)


def _place(blob: str, target: str) -> None:
    try:
        os.link(blob, target)
    except OSError:  # no hard links here (some network or FUSE file systems)
        import shutil

        shutil.copy2(blob, target)


def _prune(code_dir: str, keep: str, blobs: set[str]) -> None:
    """Remove trees of earlier plans and blobs the kept tree does not use (a worker still
    running an earlier tree has imported what it needs)."""
    for name in os.listdir(code_dir):
        if name not in (keep, BLOBS, INDEX):
            path = os.path.join(code_dir, name)
            if os.path.isdir(path):
                _rmtree(path)
    folder = os.path.join(code_dir, BLOBS)
    for name in os.listdir(folder):
        if name not in blobs and not name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
