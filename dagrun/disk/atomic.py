"""Atomic file writes and tolerant reads.

Every file dagrun writes goes to a unique temporary name in the same folder and is then
renamed over its final name, so a reader (or a crash) sees the old file or the new one, never
half of one. Files are created with mode 0o644 at most (the umask may remove more bits), so
pickles are never group- or world-writable by default (see ``dagrun.code.safety``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
from collections.abc import Callable
from typing import Any, BinaryIO

from dagrun.disk import jsontext

_FILE_MODE = 0o644


class _Unique:
    """Per-process part of temporary names: random bits drawn once per process (hosts may
    share the folder), the pid, and a counter; no system call per write (a forked child
    draws its own: ``os.register_at_fork`` below)."""

    prefix = ""
    count = itertools.count()

    @classmethod
    def next(cls) -> str:
        if not cls.prefix:  # the first write of this process (or of a forked child)
            cls.prefix, cls.count = f"{os.urandom(4).hex()}-{os.getpid()}-", itertools.count()
        return f"{cls.prefix}{next(cls.count)}"

    @classmethod
    def forget(cls) -> None:
        cls.prefix = ""


os.register_at_fork(after_in_child=_Unique.forget)


unique = _Unique.next  # a part of a file name no other writer (process, host) uses


def _temp_name(path: str) -> str:
    """A name in the same folder that no other writer uses."""
    folder, sep, name = path.rpartition(os.sep)
    return f"{folder}{sep}.{name}.{_Unique.next()}.tmp"


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may take only part of it)."""
    done = os.write(fd, data)  # all of it, usually (a small file, a pipe with room)
    if done < len(data):
        view = memoryview(data)[done:]
        while view:
            view = view[os.write(fd, view):]


def create(path: str, data: bytes) -> None:
    """Create the new file ``path`` (it must not exist) holding ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then rename)."""
    tmp = _temp_name(path)
    try:
        create(tmp, data)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        if exc.filename is None:  # os.write names no file: say which one failed
            raise OSError(exc.errno, exc.strerror, path) from exc
        raise
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_with(path: str, writer: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` atomically through ``writer`` (given a new temp file in the same
    folder, then renamed): for contents too large to build in memory first."""
    tmp = _temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            writer(f)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj: Any, *, indent: int | None = 2) -> None:
    """Atomic JSON write; NaN and infinity are kept (Python's json reads them back).

    Without ``indent`` the call keeps json's default arguments, which reuse its cached C
    encoder (markers are written three times per run)."""
    write_text(path, jsontext.text(obj, indent) + "\n")


def read_json(path: str) -> Any:
    """Parse a JSON file. Raises ``OSError`` / ``ValueError`` as ``json`` and ``open`` do."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_json_or_none(path: str) -> Any:
    """The parsed file, or ``None`` when it is missing or cannot be parsed."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


_KEPT = frozenset({str, int, bool, type(None)})  # returned as they are, without a call


def strict_json(obj: Any) -> Any:
    """A copy of a JSON-able value with non-finite floats replaced by ``None``.

    ``results.jsonl`` is read by strict parsers (jq, browsers), which reject ``NaN``.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):  # (one line per experiment: its leaves are not walked into)
        return {k: v if type(v) in _KEPT else strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [v if type(v) in _KEPT else strict_json(v) for v in obj]
    return obj


def remove(path: str) -> bool:
    """Remove a file if it exists; returns whether it did."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def set_aside(path: str) -> str | None:
    """Rename ``path`` to a hidden, unique name in its folder; ``None`` when it is missing.

    The first half of a removal that can be undone (``os.replace`` the name back) or
    completed (``os.unlink`` it): a rename fails where an unlink would (a read-only
    folder), so whoever removes many files sets them all aside before removing any."""
    aside = _temp_name(path)
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None
    return aside


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


# What ``_temp_name`` adds to a file name at most: ".", ".", 8 hex digits, "-", a pid of
# up to 7 digits, "-", a counter of up to 10 digits, ".tmp".
TEMP_ROOM = 33


def too_long(path: str) -> str | None:
    """Why ``path`` (absolute; it need not exist) cannot be created here, or ``None``.

    Checked before anything is created, so that a path near the system's limits fails
    with one message and leaves no folders behind: every name against ``NAME_MAX`` and the
    whole path, with room for a temporary name, against ``PATH_MAX`` (as ``pathconf``
    gives them for the deepest folder that exists)."""
    folder = path
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    name_max, path_max = _limit(folder, "PC_NAME_MAX", 255), _limit(folder, "PC_PATH_MAX", 4096)
    for name in path.split(os.sep):
        if len(os.fsencode(name)) > name_max:
            return (f"the name {name[:24]}...{name[-8:]} has {len(os.fsencode(name))} bytes, "
                    f"more than the {name_max} a name may have here")
    length = len(os.fsencode(path)) + TEMP_ROOM
    if length >= path_max:
        return (f"dagrun's files below it would have paths of up to {length} bytes, more "
                f"than the {path_max - 1} allowed here")
    return None


def _limit(folder: str, name: str, default: int) -> int:
    try:
        return os.pathconf(folder, name)
    except (OSError, ValueError):
        return default


def makedirs(path: str) -> None:
    """Create a folder (and parents) that only its owner can write to by default."""
    os.makedirs(path, mode=0o755, exist_ok=True)


def mtime_ns(path: str, missing: int) -> int:
    """``path``'s modification time in ns, or ``missing`` when it cannot be read."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return missing
