"""Fenced commits: what a holder that lost its run writes late is refused.

Every holder of a run (a worker, or the ``execute`` driver) writes through an *attempt
folder* inside the run, ``RUN/.attempt-<token>-<holder>``, created by the holder when it
claims the run, before anything of the run is read. A stage's output, its marker, a failure
or timeout record are written to a temporary file *in that folder* and then renamed out of
it onto their final name (``RUN/fit.pkl``, ``RUN/fit.done``, ...); a file is removed by
renaming it into the folder. Nothing is ever written straight into the run folder.

Whoever claims a run next (a claim, a takeover, or a driver that starts leasing) *fences*
every other attempt folder of the run before it reads the run's state: it renames the folder
to a private name (a fresh lookup of the old name fails at once), empties it and removes it.
From then on the old holder's renames fail: by name (``ENOENT``: the folder is not there),
or, through an NFS client that still caches the folder's handle, because the folder no
longer exists on the server (``ESTALE``). A write the old holder made *before* the fence was
made while it still held the run, and the new holder, which reads the run only after
fencing, sees it (an output without its marker is recomputed; one with its marker resumes
the run). So the window a holder can freeze in, between computing an output and committing
it, is harmless: the commit is one rename, and it either happened before the fence or fails.

Each holder's attempt folder carries the lease's *token*, which increases at every claim:
one more than the token of the lease taken over, of any attempt folder left in the run,
and of every marker in it (a marker records the token it was committed under). A holder
removes its attempt folder when it releases the run; a driver that leases nothing (no
worker shares OUT) writes through an attempt folder of token 0.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from typing import Any

from dagrun.disk import atomic, jsontext
from dagrun.disk.layout import RunDir

PREFIX = ".attempt-"
_FENCED = ".fenced-"
_EMPTY_TRIES = 50  # an old holder still writing into a fenced folder: empty it again
_GONE = (errno.ENOENT, errno.ESTALE, errno.ENOTDIR)


class Superseded(Exception):
    """This holder's attempt folder is gone: another holder claimed the run (the lease was
    taken over), so nothing this holder computed may be committed."""


def folder_name(token: int, holder: str) -> str:
    return f"{PREFIX}{token}-{holder}"


def token_of(name: str) -> int:
    """The token in an attempt folder's name (``-1`` when it is not one)."""
    if not name.startswith(PREFIX):
        return -1
    head = name[len(PREFIX):].partition("-")[0]
    return int(head) if head.isdigit() else -1


def next_token(run: RunDir, taken: int = 0) -> int:
    """One more than every token the run shows: its attempt folders, the markers its
    holders committed (each says under which token), and ``taken``, the token of a lease
    being taken over."""
    try:
        names = os.listdir(run.path)
    except FileNotFoundError:
        names = []
    tokens = [taken, *(token_of(n) for n in names)]
    for name in names:
        if name.endswith(".done"):
            data = atomic.read_json_or_none(run.entry(name))
            value = data.get("token") if isinstance(data, dict) else None
            if type(value) is int:
                tokens.append(value)
    return max(tokens) + 1


def create(run: RunDir, name: str) -> str:
    """Create the attempt folder ``name`` of a holder that just claimed ``run``."""
    path = run.entry(name)
    os.mkdir(path, 0o755)
    return path


def fence_others(run: RunDir, keep: str | None, token: int | None = None) -> int:
    """Fence every attempt folder of ``run`` but ``keep`` (with ``token``: every one of that
    token), and remove what an earlier fence left; returns how many were fenced. Called by a
    new holder right after its claim, before it reads the run's state."""
    try:
        names = os.listdir(run.path)
    except FileNotFoundError:
        return 0
    fenced = 0
    for name in names:
        if name == keep or not (name.startswith(PREFIX) or name.startswith(_FENCED)):
            continue
        if token is not None and name.startswith(PREFIX) and token_of(name) != token:
            continue
        path = run.entry(name)
        if name.startswith(PREFIX):
            aside = run.entry(f"{_FENCED}{atomic.unique()}")
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                continue  # another claimer fenced it
            path = aside
            fenced += 1
        destroy(path)
    return fenced


def destroy(path: str) -> bool:
    """Empty and remove a folder that a late writer may still be writing into; returns
    whether it is gone (it is tried again by the next claim otherwise)."""
    try:  # the usual case: empty (one call, no listing)
        os.rmdir(path)
        return True
    except OSError:
        pass
    for attempt in range(_EMPTY_TRIES):
        try:
            names = os.listdir(path)
        except FileNotFoundError:
            return True
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{os.sep}{name}")
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EBUSY):
                raise
        time.sleep(0.001 * (attempt + 1))
    return False


class Attempt:
    """Writes of one holder's attempt at a run, each committed by a rename out of its
    attempt folder (``folder`` ``None``: straight into the run, unfenced: for code that
    holds no claim, such as ``clean`` and tests)."""

    __slots__ = ("_inside", "folder", "name", "run", "token")

    def __init__(self, run: RunDir, name: str | None) -> None:
        self.run = run
        self.name = name  # the attempt folder's name in the run (``None``: unfenced)
        self.folder = None if name is None else run.entry(name)
        # the lease token this attempt writes under (``None``: unfenced)
        self.token = None if name is None else token_of(name)
        self._inside = f"{self.folder}{os.sep}"

    def standing(self) -> bool:
        """Whether this attempt may still commit (its folder was not fenced)."""
        return self.folder is None or os.path.isdir(self.folder)

    def check(self) -> None:
        """``Superseded`` unless ``standing``: called before each stage."""
        if not self.standing():
            raise Superseded(f"{self.run.path} was claimed by another holder")

    def _temp(self, path: str) -> str:
        return f"{self._inside}{path.rpartition(os.sep)[2]}.{atomic.unique()}.tmp"

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` (a file of this run): fenced and atomic."""
        if self.folder is None:
            atomic.write_bytes(path, data)
            return
        tmp = self._temp(path)
        try:
            atomic.create(tmp, data)
            os.rename(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            self._raise(exc, path)

    def write_json(self, path: str, obj: Any, *, indent: int | None = 2) -> None:
        self.write_bytes(path, (jsontext.text(obj, indent) + "\n").encode("utf-8"))

    def remove(self, path: str) -> bool:
        """Remove ``path`` (fenced: renamed into the attempt folder, then unlinked);
        returns whether it existed."""
        if self.folder is None:
            return atomic.remove(path)
        aside = self._temp(path)
        try:
            os.rename(path, aside)
        except OSError as exc:
            if exc.errno in _GONE and self.standing():
                return False  # the file was not there
            self._raise(exc, path)
        with contextlib.suppress(OSError):
            os.unlink(aside)
        return True

    def _raise(self, exc: OSError, path: str | None = None) -> Any:
        if exc.errno in _GONE and not self.standing():
            raise Superseded(f"{self.run.path} was claimed by another holder") from exc
        if exc.filename is None and path is not None:
            raise OSError(exc.errno, exc.strerror, path) from exc
        raise exc
