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

from dagrun.disk import atomic
from dagrun.disk.layout import SweepDir
from dagrun.disk.records import hostname, iso
from dagrun.errors import EnvironmentProblem, SweepBusyError

POLL = 0.05  # seconds between attempts while waiting for the lock
REDUCE_WAIT = 30.0  # seconds to queue behind a worker reducing results.jsonl
TRANSITION_WAIT = 2.0  # seconds to wait for a holder that is starting or stopping
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
    """The locked OUT folder's descriptor, waiting up to ``wait`` s for another holder.

    The refusal names the holder as it described itself. A holder that is starting or
    stopping holds the folder without a description on disk for a moment; the refusal waits
    for a moment when the holder is described (or for the lock), and names no pid only when
    the holder stayed undescribed for ``TRANSITION_WAIT`` s (a driver stopped mid-start)."""
    fd = _open_dir(sweep.path)
    start = undescribed_since = time.monotonic()
    try:
        while not _try_flock(fd):
            now = time.monotonic()
            described = _description(sweep)
            if described is not None:
                undescribed_since = now
            if now - start >= wait and (
                    described is not None or now - undescribed_since >= TRANSITION_WAIT):
                raise SweepBusyError(_holder_message(sweep, described))
            time.sleep(POLL)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _prepare_state(sweep: SweepDir) -> None:
    """OUT/.dagrun exists and its lock file is not a folder."""
    try:
        atomic.makedirs(sweep.state)
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot write {sweep.state} ({exc.strerror}): OUT must be writable") from exc
    if os.path.isdir(sweep.lock):
        raise EnvironmentProblem(
            f"{sweep.lock} is a folder; dagrun keeps a lock file there: remove it "
            f"(rmdir {sweep.lock}) and run again")


def _state_lock(sweep: SweepDir) -> int | None:
    """A POSIX write lock on OUT/.dagrun/lock, held for readers to see (best effort)."""
    try:
        fd = os.open(sweep.lock, os.O_RDWR | os.O_CREAT, 0o644)
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
def driver_lock(sweep: SweepDir, wait: float = 0.0, role: str = "driver",
                pid: int | None = None) -> Iterator[None]:
    """Hold the sweep's lock for one driver; another gets ``SweepBusyError`` (at once, or
    after ``wait`` seconds of trying). ``role="reduce"``: held for a moment only (a worker
    rewriting results.jsonl), so whoever arrives meanwhile queues up to ``REDUCE_WAIT`` s.
    ``pid``: the process to name as the driver when it is not this one (the ``dagrun``
    command whose child executes the sweep); driver.json then also says which process holds
    the lock (``lock_pid``).

    driver.json is written before the record lock readers query is taken, and removed only
    after it is dropped: a reader that sees a holder finds its description (``holder``)."""
    dir_fd = _acquire(sweep, max(wait, _reducer_wait(sweep)))
    state_fd: int | None = None
    described = {"host": hostname(), "pid": pid or os.getpid(), "since": iso(time.time()),
                 "role": role}
    if pid not in (None, os.getpid()):
        described["lock_pid"] = os.getpid()
    try:
        _prepare_state(sweep)
        atomic.write_json(sweep.driver, described)
        state_fd = _state_lock(sweep)
        yield
    finally:
        if state_fd is not None:
            os.close(state_fd)  # closing drops the record lock: readers see no holder now
        with contextlib.suppress(OSError):
            atomic.remove(sweep.driver)
        os.close(dir_fd)


def holder_role(sweep: SweepDir) -> str | None:
    """The role the lock's holder recorded (``execute``, ``plan``, ``reduce``, ``driver``),
    ``None`` when nobody holds it or it did not say."""
    return None if lock_holder_pid(sweep) is None else _recorded_role(sweep)


def _recorded_role(sweep: SweepDir) -> str | None:
    """The ``role`` in driver.json, ``None`` when it is missing or says none."""
    info = atomic.read_json_or_none(sweep.driver)
    role = info.get("role") if isinstance(info, dict) else None
    return role if isinstance(role, str) else None


def _reducer_wait(sweep: SweepDir) -> float:
    """``REDUCE_WAIT`` while a worker holds the lock to reduce, else 0 (refused at once)."""
    return REDUCE_WAIT if _recorded_role(sweep) == "reduce" else 0.0


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
    pid = lock_holder_pid(sweep)
    if pid is None:
        return None
    return holder(sweep, pid)


def holder(sweep: SweepDir, pid: int | None = None) -> str:
    """Who holds the sweep's lock: ``pid P on HOST, since T`` as its driver recorded it.

    ``pid`` is the record lock's holder as the kernel reports it (``lock_holder_pid``; 0 for
    a holder on another machine). A description that does not belong to it (left by a driver
    killed with -9) gives way to the pid itself; a driver that holds the folder's lock but
    has neither written its description nor taken the record lock is starting or stopping."""
    if pid is None:
        pid = lock_holder_pid(sweep)
    found = _description(sweep, pid)
    if found is not None:
        return found
    if pid:
        return f"pid {pid} on {hostname()}, starting or stopping"
    return "a driver that is starting or stopping (its pid is not written yet)"


def _description(sweep: SweepDir, pid: int | None = None) -> str | None:
    """driver.json as ``pid P on HOST, since T``, unless it is missing or names another
    process than ``pid`` (the record lock's holder on this machine, when known)."""
    info = atomic.read_json_or_none(sweep.driver)
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return None
    holding = info.get("lock_pid", info["pid"])
    if pid not in (None, 0) and holding != pid and info.get("host") == hostname():
        return None
    return f"pid {info['pid']} on {info.get('host', '?')}, since {info.get('since', '?')}"


def _holder_message(sweep: SweepDir, described: str | None = None) -> str:
    return (f"{sweep.path} is already being executed by another dagrun driver "
            f"({described or holder(sweep)}); wait for it to finish or stop it first")
