"""The one-driver lock of a sweep: at most one driver plans, executes or reduces OUT.

Two locks, each for one job:

* **Exclusion** is an ``flock`` on the OUT folder itself. Deleting ``OUT/.dagrun/lock`` or
  the whole ``OUT/.dagrun`` (a user cleaning a lock that looks stale) cannot let a second
  driver in: the folder is still the one the first driver locked. The kernel releases it
  when its holder dies, even by ``kill -9``.
* **Who holds it** is answered without taking anything: the driver also holds a POSIX
  record lock on ``OUT/.dagrun/lock``, which ``fcntl(F_GETLK)`` reports to readers (``dagrun
  status``) without acquiring it, so a reader never blocks or misleads a starting driver.
  ``driver.json`` beside it names the holder (host, pid, since) for messages.

``wait`` lets a caller queue briefly behind a holder that is about to finish (a worker that
reduces for a moment at the end of a sweep) instead of being refused at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time
from collections.abc import Iterator

from dagrun import atomic
from dagrun.errors import EnvironmentProblem, SweepBusyError
from dagrun.layout import SweepDir
from dagrun.records import hostname, iso

POLL = 0.05  # seconds between attempts while waiting for the lock
REDUCE_WAIT = 30.0  # seconds to queue behind a worker reducing results.jsonl
_FLOCK = "hhqqi4x"  # struct flock: l_type, l_whence, l_start, l_len, l_pid (Linux)


def _open_dir(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot open {path} to lock it: {exc.strerror}") from exc


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _acquire(sweep: SweepDir, wait: float) -> int:
    """The locked OUT folder's descriptor, waiting up to ``wait`` s for another holder."""
    fd = _open_dir(sweep.path)
    deadline = time.monotonic() + wait
    try:
        while not _try_flock(fd):
            if time.monotonic() >= deadline:
                raise SweepBusyError(_holder_message(sweep))
            time.sleep(POLL)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _state_lock(sweep: SweepDir) -> int | None:
    """A POSIX write lock on OUT/.dagrun/lock, held for readers to see (best effort)."""
    try:
        atomic.makedirs(sweep.state)
        if os.path.isdir(sweep.lock):
            raise EnvironmentProblem(
                f"{sweep.lock} is a folder; dagrun keeps a lock file there: remove it "
                f"(rmdir {sweep.lock}) and run again")
        fd = os.open(sweep.lock, os.O_RDWR | os.O_CREAT, 0o644)
    except EnvironmentProblem:
        raise
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot write {sweep.state} ({exc.strerror}): OUT must be writable") from exc
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def driver_lock(sweep: SweepDir, wait: float = 0.0, role: str = "driver") -> Iterator[None]:
    """Hold the sweep's lock for one driver; another gets ``SweepBusyError`` (at once, or
    after ``wait`` seconds of trying). ``role="reduce"``: held for a moment only (a worker
    rewriting results.jsonl), so whoever arrives meanwhile queues up to ``REDUCE_WAIT`` s."""
    dir_fd = _acquire(sweep, max(wait, _reducer_wait(sweep)))
    state_fd: int | None = None
    try:
        state_fd = _state_lock(sweep)
        atomic.write_json(sweep.driver, {"host": hostname(), "pid": os.getpid(),
                                         "since": iso(time.time()), "role": role})
        yield
    finally:
        with contextlib.suppress(OSError):
            atomic.remove(sweep.driver)
        if state_fd is not None:
            os.close(state_fd)  # closing drops the record lock
        os.close(dir_fd)


def _reducer_wait(sweep: SweepDir) -> float:
    """``REDUCE_WAIT`` while a worker holds the lock to reduce, else 0 (refused at once)."""
    info = atomic.read_json_or_none(sweep.driver)
    return REDUCE_WAIT if isinstance(info, dict) and info.get("role") == "reduce" else 0.0


def lock_holder_pid(sweep: SweepDir) -> int | None:
    """The pid holding the record lock on OUT/.dagrun/lock (``F_GETLK``: nothing is taken),
    ``0`` when a holder exists on another machine, ``None`` when there is none."""
    try:
        fd = os.open(sweep.lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    except OSError:
        return None
    finally:
        os.close(fd)  # a driver never calls this: closing would drop its own record lock
    kind, _, _, _, pid = struct.unpack(_FLOCK, answer)
    return None if kind == fcntl.F_UNLCK else pid


def running_driver(sweep: SweepDir) -> str | None:
    """``pid P on HOST, since T`` of the driver running now, or ``None``; never blocks a
    driver (the record lock is queried, not taken)."""
    if lock_holder_pid(sweep) is None:
        return None
    return holder(sweep)


def holder(sweep: SweepDir) -> str:
    """Who holds the sweep's lock, as its driver recorded it: ``pid P on HOST, since T``."""
    info = atomic.read_json_or_none(sweep.driver) or {}
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"since {info.get('since', '?')}")


def _holder_message(sweep: SweepDir) -> str:
    return (f"{sweep.path} is already being executed by another dagrun driver "
            f"({holder(sweep)}); wait for it to finish or stop it first")
