"""Start a worker by forking the driver, where that is as safe as spawning one.

Why: a spawned worker is a new interpreter that imports what the workflow needs again —
scikit-learn alone is ~1 s of CPU per worker, longer than a whole sweep of quick runs — while
the driver has it all loaded (the original tool's ``Pool`` forked for that reason). A forked
worker is the driver as the ``single`` backend runs stages: the same stage functions, cfgs
and module state (the code checked equal to its copy at plan time); the user's modules it
imports from then on come from the copy, as in a spawned worker (``snapshot.serve_imports``).

What a fork would share that a spawn does not, and how each is fenced: any doubt, and the
worker is spawned (``blocked`` says why, ``describe`` shows it):

* **threads**: a lock another thread held at the fork stays held in the child for ever. So
  a fork only while this process runs one Python thread (the main one: the backend starts
  before the progress bar's and the lease gate's threads) and every other OS thread is a
  known fork-safe native one: OpenBLAS's pthreads server threads (their number read through
  ``threadpoolctl``) and jemalloc's background threads. GNU OpenMP's pool, made by the
  first parallel region the driver ran (``KMeans.fit``), hangs a forked child's next one:
  any thread not accounted for blocks the fork.
* **GPUs, MPI**: CUDA (``libcuda``), ROCm or MPI loaded in this process blocks it.
* **files and sockets** the program opened before the sweep began (a log file, an HDF5
  handle, a database connection: ``mark_entry``) would be shared by every worker (offsets,
  locks), where spawned workers open their own: any blocks it. Descriptors inherited from
  the parent process (a terminal, /dev/null, a shell's pipes) do not. In the child every
  descriptor but 0, 1, 2, its pipe and ``multiprocessing``'s own is pointed at /dev/null
  (the numbers stay taken, so no object of the driver closes a file the child opens later):
  the driver's lock, its other workers' pipes, the watchdog's pipe are not the child's.
* **process state**: the child gets its own session (``proctree.host_runs``), the signal
  handlers the driver installed go back to the defaults, the driver's atexit handlers are
  dropped (those the child registers run at its end), ``sys.stdout``/``sys.stderr`` are the
  process's own streams again, and numpy's global random state is seeded afresh
  (``random`` does that itself), as a spawned worker's would be.

``DAGRUN_WORKER_START=spawn`` turns forking off.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Collection
from typing import Any

START_ENV = "DAGRUN_WORKER_START"
SAFE_THREAD_NAMES = frozenset({"jemalloc_bg_thd"})  # /proc comm of fork-safe native threads
BLOCKING_LIBRARIES = (("libcuda.so", "CUDA"), ("libamdhip64.so", "ROCm"), ("libmpi.so", "MPI"),
                      ("libnccl.so", "NCCL"))

_entry_fds: frozenset[int] | None = None  # the program's descriptors when the sweep began


def mark_entry() -> None:
    """Called where a sweep begins (``dagrun.scheduler.execute``): remember the descriptors
    the program holds now, before dagrun opens any (its lock, its pipes)."""
    global _entry_fds
    _entry_fds = frozenset(_program_fds())


def _program_fds() -> set[int]:
    """Descriptors above 2 that this process opened (or was given to use), not plumbing:
    character devices (a terminal, /dev/null) and pipes inherited across ``exec`` (no
    close-on-exec flag: a shell's or an IDE's) are left out."""
    found: set[int] = set()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return {-1}  # unknown: counts as held
    for name in names:
        fd = int(name)
        if fd <= 2:
            continue
        try:
            mode = os.fstat(fd).st_mode
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if stat.S_ISCHR(mode):
            continue
        if stat.S_ISFIFO(mode) and not flags & fcntl.FD_CLOEXEC:
            continue
        found.add(fd)
    return found


def blocked() -> str | None:
    """Why a worker cannot be forked from this process now (``None``: it can)."""
    if os.environ.get(START_ENV, "").strip().lower() == "spawn":
        return f"{START_ENV}=spawn"
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return "not on Linux"
    if _entry_fds is None:
        return "not started by a sweep of this process"
    if _entry_fds:
        return f"the program holds {_describe_fd(min(_entry_fds))} open"
    return _threads_block() or _libraries_block()


def _describe_fd(fd: int) -> str:
    with contextlib.suppress(OSError):
        target = os.readlink(f"/proc/self/fd/{fd}")
        return f"descriptor {fd} ({target})"
    return f"descriptor {fd}"


def _threads_block() -> str | None:
    if threading.current_thread() is not threading.main_thread() \
            or threading.active_count() != 1:
        others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        return f"threads run in this process ({', '.join(others[:3])})"
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return "its threads cannot be listed"
    unknown = 0
    for tid in tasks:
        if int(tid) == threading.get_native_id():
            continue
        try:
            with open(f"/proc/self/task/{tid}/comm", encoding="utf-8", errors="replace") as f:
                name = f.read().strip()
        except OSError:  # ended meanwhile
            continue
        if name not in SAFE_THREAD_NAMES:
            unknown += 1
    if not unknown:
        return None
    return _blas_threads_block(unknown)


def _blas_threads_block(unknown: int) -> str | None:
    """``unknown`` native threads are fine when they are exactly OpenBLAS's pthreads
    servers (``num_threads - 1`` per library, started when it loads)."""
    try:
        import threadpoolctl
    except ImportError:
        return f"{unknown} native thread(s) of unknown origin run in this process"
    servers = 0
    for lib in threadpoolctl.threadpool_info():
        if lib.get("internal_api") == "openblas":
            if lib.get("threading_layer") != "pthreads":
                return f"OpenBLAS runs on {lib.get('threading_layer')} threads here"
            servers += max(0, int(lib.get("num_threads") or 1) - 1)
    if unknown != servers:
        return (f"{unknown} native thread(s) run in this process where OpenBLAS accounts "
                f"for {servers} (an OpenMP pool is not fork-safe)")
    return None


def _libraries_block() -> str | None:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            maps = f.read()
    except OSError:
        return "its libraries cannot be listed"
    for library, what in BLOCKING_LIBRARIES:
        if library in maps:
            return f"{what} is loaded in this process"
    return None


def start(target: Callable[..., None], args: tuple[Any, ...], keep: Collection[int],
          name: str) -> Any:
    """A ``multiprocessing`` process forked from this one, running ``target(*args)`` after
    ``_become_worker``; ``keep``: the descriptors of its pipes. Check ``blocked`` first."""
    import multiprocessing  # here: every sweep imports this module, a pool's start this

    before = _open_fds()
    process = multiprocessing.get_context("fork").Process(
        target=_child, args=(before - {0, 1, 2, *keep}, target, args), daemon=False, name=name)
    process.start()
    return process


def _open_fds() -> set[int]:
    try:
        return {int(n) for n in os.listdir("/proc/self/fd")}
    except OSError:
        return set()


def _child(driver_fds: set[int], target: Callable[..., None], args: tuple[Any, ...]) -> None:
    _become_worker(driver_fds)
    try:
        target(*args)
    finally:
        atexit._run_exitfuncs()  # the worker's own (multiprocessing ends a fork with _exit)


def _become_worker(driver_fds: set[int]) -> None:
    """In the forked child, before anything else: what a spawned worker would not have,
    it does not have (see the module docstring)."""
    with contextlib.suppress(OSError):
        os.setsid()
    for signum in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            if callable(signal.getsignal(signum)):
                signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                              else signal.SIG_DFL)
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    atexit._clear()
    # what a stage prints goes to descriptors 1 and 2 (where the worker captures it), not
    # to an object the program put in their place (an io.StringIO, a notebook's stream)
    if sys.__stdout__ is not None:
        sys.stdout = sys.__stdout__
    if sys.__stderr__ is not None:
        sys.stderr = sys.__stderr__
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    for fd in driver_fds:
        with contextlib.suppress(OSError):
            os.dup2(null, fd, inheritable=False)
    os.close(null)
    random = sys.modules.get("numpy.random")
    if random is not None:
        with contextlib.suppress(Exception):
            random.seed()  # the legacy global state: fresh entropy, as in a new process


__all__ = ["START_ENV", "blocked", "mark_entry", "start"]
