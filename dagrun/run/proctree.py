"""Processes of a run: tie a process's life to its parent's, find and kill a whole tree.

A stage may start its own processes (a data-loader pool, ``subprocess.Popen``, a grandchild
that calls ``setsid`` to leave the process group, a double-forked daemon). Stopping a run
means stopping all of them, however the run ends: a timeout, a crash of the process that ran
it, Ctrl-C in the driver, or ``kill -9`` of the driver. Three nets, each for what the one
before misses:

1. **The run host kills its own tree.** A process that runs runs (a pool worker, single's
   child) calls ``host_runs``: it leads its own session (a terminal's Ctrl-C reaches only the
   driver; ``spawning`` even starts workers that way), becomes a *child subreaper*
   (``PR_SET_CHILD_SUBREAPER``: a grandchild whose parent exits, ``setsid`` or not, is
   re-parented to the host instead of to init, so it stays in the host's ``/proc`` tree), and
   on SIGTERM (a pool's timeout or shutdown) signals its whole tree, then dies *by* SIGTERM
   (reported as "killed by SIGTERM"). User code gets default signal handling: SIGINT raises
   ``KeyboardInterrupt`` there and is default in the processes it starts.
2. **Every process of a run carries a tag**: ``DAGRUN_SWEEP_TOKEN=<token>/<host pid>/`` in its
   environment, inherited by everything it starts. When a host died without cleaning up
   (SIGKILL after ignoring SIGTERM, a segfault, ``os._exit``), the driver kills the host's
   process group and every process tagged with that host (``kill_orphans``).
3. **A watchdog outside the tree.** After ``kill -9`` of the driver nobody inside is left to
   clean up (hosts die with the driver through ``PR_SET_PDEATHSIG``). ``start_watchdog``
   starts ``python -I -S dagrun/proctree.py VAR PREFIX PID`` in its own session: a tiny process
   that blocks on a pipe from the driver (and checks its parent every 0.5 s); when the driver
   ends, however it ends, or closes the pipe at the end of a sweep, it kills every process
   tagged ``VAR=PREFIX...`` (SIGTERM, then SIGKILL) and exits. It imports only the standard
   library, so starting it costs the driver one fork+exec.

The watchdog also keeps a run's *last word*: a driver that calls stages in its own process
(``single`` without a timeout, ``dagrun.run.pending``) writes ``P <json>`` to it before each
run (the run's folder, its attempt folder, the attempt and the time) and ``C`` after it
(or, once the run's last marker is committed, the next ``P``). The records to commit are
the driver's, sent once per stage and attempt as ``T <json>`` lines (the record's text
before and after its time). When the driver ends with a run pending (a stage called
``os._exit``, segfaulted, was SIGKILLed), the watchdog commits the record of the first
stage without a marker the way a fenced write does: a temporary file in the attempt folder,
renamed onto the record's name; nothing when the attempt folder is gone (another holder
fenced it).

The happy path costs nothing per run: ``/proc`` is scanned only when a run is killed, crashed
or the sweep ends. What escapes all three: a process that clears its environment *and* leaves
the host's session while the host is SIGKILLed (the subreaper then re-parents it to init).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

# The watchdog is this file run by a fresh interpreter (``-I -S``) at the start of a sweep,
# and a short sweep waits for it to end: it imports only what its own path needs (json when
# a line is to be read or a record written; subprocess, threading and typing are the
# driver's side): its life from start to exit 27 -> 17 ms (a bare ``python -I -S``: 7.5).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from types import FrameType
    from typing import Any


class _suppress:  # ``contextlib.suppress`` (contextlib would cost the watchdog 3 ms)
    def __init__(self, *kinds: type[BaseException]) -> None:
        self._kinds = kinds

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, self._kinds)


_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
TOKEN_ENV = "DAGRUN_SWEEP_TOKEN"  # the tag every process of a sweep's runs inherits
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL (below pebble's 3 s for a worker)
CHECK_EVERY = 0.5  # seconds between a watchdog's looks at the driver


def _prctl(option: int, value: int) -> None:
    """``prctl(option, value)`` on Linux; nothing elsewhere or when libc refuses."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes  # here: every sweep imports this module, few call this

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(option, value, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); exit at once if
    the parent is already gone (the race between fork and this call)."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(root: int) -> set[int]:
    """``root`` and its descendants, also those that left its process group (Linux /proc)."""
    if not os.path.isdir("/proc"):
        return {root}
    kids, found, todo = children_map(), set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(kids.get(pid, ()))
    return found


def signal_tree(pgid: int, sig: int, known: set[int]) -> set[int]:
    """Signal the group and every descendant (plus pids seen before, orphaned since)."""
    known |= tree(pgid)
    with _suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for pid in known:
        with _suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return known


def reap(pid: int, timeout: float) -> int | None:
    """Wait (bounded) for the child; its wait status, or None while it still runs."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return 0
        if done:
            return status
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def pids_tagged(var: str, prefix: str) -> set[int]:
    """pids of this user's processes whose environment has ``var`` starting with ``prefix``
    (Linux ``/proc/PID/environ``), this process excluded.

    An environment variable set on a run's process is inherited by everything it starts,
    also by a double-forked daemon (``setsid -f``) whose parent is long gone, which the tree
    walk of ``tree`` cannot reach. Other users' processes cannot be read and are skipped."""
    if not os.path.isdir("/proc"):
        return set()
    wanted = f"{var}={prefix}".encode()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                entries = f.read().split(b"\0")
        except OSError:
            continue
        if any(entry.startswith(wanted) for entry in entries):
            found.add(int(name))
    return found


def kill_tagged(var: str, prefix: str, grace: float = 2.0) -> int:
    """SIGTERM every process tagged ``var=prefix...`` (see ``pids_tagged``), SIGKILL those
    still there after ``grace`` seconds; returns how many were found."""
    found = pids_tagged(var, prefix)
    for pid in found:
        with _suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    left = found
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {pid for pid in left if _running(pid)}
    for pid in left:
        with _suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(found)


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# --------------------------------------------------------------------------------------------
# A host of runs (net 1) and its tag (net 2).

def new_token() -> str:
    """A fresh token naming one sweep's processes (random: two sweeps never share one)."""
    return os.urandom(8).hex()


def run_tag(token: str, host: int) -> str:
    """The tag value of the runs of host ``host``; the token alone prefixes the sweep's."""
    return f"{token}/{host}/"


def host_runs(token: str) -> None:
    """Make this process a host of runs: its own session, a subreaper, tagged children,
    default SIGINT for user code, and a SIGTERM that takes its whole tree along."""
    with _suppress(OSError):  # EPERM: already a session leader
        os.setsid()
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    os.environ[TOKEN_ENV] = run_tag(token, os.getpid())
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _die_with_tree)


def _die_with_tree(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler of a host: stop every process of its runs, then die by ``signum``
    (so the pool reports "killed by SIGTERM", not an exit code)."""
    signal.signal(signum, signal.SIG_IGN)  # the group-wide signal below reaches us too
    stop_own_tree(KILL_GRACE)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # not reached: the default action ends the process


def stop_own_tree(grace: float) -> None:
    """SIGTERM this process's group, descendants and tagged processes; SIGKILL what is left
    after ``grace`` seconds. This process itself is spared (it must ignore ``SIGTERM``)."""
    me = os.getpid()
    tag = os.environ.get(TOKEN_ENV)

    def others() -> set[int]:
        found = tree(me) | (pids_tagged(TOKEN_ENV, tag) if tag else set())
        return found - {me}

    found = others()
    with _suppress(ProcessLookupError, PermissionError):
        os.killpg(me, signal.SIGTERM)
    _signal_all(found, signal.SIGTERM)
    _wait_gone(found, grace)
    _signal_all(found | others(), signal.SIGKILL)


def kill_orphans(token: str, hosts: set[int], grace: float = KILL_GRACE) -> None:
    """Kill what dead hosts left behind: their process groups and every process tagged with
    them (a host killed with SIGKILL, or crashed, could not do it itself)."""
    for host in hosts:
        with _suppress(ProcessLookupError, PermissionError):
            os.killpg(host, signal.SIGTERM)
        kill_tagged(TOKEN_ENV, run_tag(token, host), grace)
        with _suppress(ProcessLookupError, PermissionError):
            os.killpg(host, signal.SIGKILL)


def _signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        with _suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(pids: set[int], grace: float) -> None:
    deadline = time.monotonic() + grace
    left = set(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = {pid for pid in left if _running(pid)}


# --------------------------------------------------------------------------------------------
# The watchdog (net 3).

def start_watchdog(var: str, prefix: str) -> subprocess.Popen[bytes] | None:
    """Start a watchdog of this process: when it ends, or ``stop_watchdog`` is called, every
    process tagged ``var=prefix...`` is killed (none when ``var`` is ``""``) and a run left
    pending is recorded (``PENDING``). None when it cannot be started."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != var}  # never kill itself
    try:
        return subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), var, prefix,
             str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, start_new_session=True)  # Ctrl-C and a hang-up reach the driver only
    except OSError:
        return None


def stop_watchdog(watchdog: subprocess.Popen[bytes] | None, *, wait: bool = True) -> None:
    """The watched work is over: the watchdog kills what is left and exits; wait for that
    (bounded), so that a finished sweep leaves no process behind, the watchdog included.

    ``wait=False`` for a watchdog that kills nothing (``var`` ``""``: it only keeps a run's
    last word, and no run is pending now): it ends by itself as soon as it reads the end of
    its input, and a thread reaps it, so the sweep does not wait for a fresh interpreter
    that may still be starting (tens of ms, most of a short sweep's fixed cost)."""
    import subprocess
    import threading

    if watchdog is None or watchdog.stdin is None:
        return
    with _suppress(OSError):
        watchdog.stdin.close()
    if not wait:
        threading.Thread(target=_reap, args=(watchdog,), name="dagrun-watchdog-reaper",
                         daemon=True).start()
        return
    with _suppress(subprocess.TimeoutExpired):
        watchdog.wait(KILL_GRACE + 2.0)


def _reap(watchdog: subprocess.Popen[bytes]) -> None:
    import subprocess

    with _suppress(subprocess.TimeoutExpired):
        watchdog.wait(KILL_GRACE + 2.0 + CHECK_EVERY)


PENDING = b"P "  # a line ``P <json>``: the run whose record to commit should the driver end
CLEAR = b"C"  # a line ``C``: no run pending
TEMPLATE = b"T "  # a line ``T <json>``: {stage, attempt, head, tail}, a record around its time
STAGE_NAMES = ("pre", "fit", "post")  # (dagrun.disk.layout.STAGES: this imports no dagrun)
_templates: dict[tuple[str, int], tuple[str, str]] = {}  # (stage, attempt) -> head, tail
GATHER = 0.02  # seconds a watchdog lets lines gather after it read some
_LINE_MAX = 1 << 20  # bytes of an unfinished line kept (a driver never sends one this long)


def wait_for_end(pid: int) -> dict[str, Any] | None:
    """Return once stdin reaches its end or our parent ``pid`` is gone (once it is, we are
    re-parented, so no reuse of its pid can fool this); the run pending then, if any (the
    last ``P`` line not followed by ``C``)."""
    buffer, pending = b"", None
    while os.getppid() == pid:
        if select.select([0], [], [], CHECK_EVERY)[0]:
            try:
                chunk = os.read(0, 1 << 20)
            except OSError:
                return pending
            if not chunk:
                return pending
            buffer, pending = _lines(buffer + chunk, pending)
            time.sleep(GATHER)  # lines gather meanwhile: no wake-up per run
    while select.select([0], [], [], 0)[0]:  # what the driver wrote before it went
        try:
            chunk = os.read(0, 1 << 20)
        except OSError:
            break
        if not chunk:
            break
        buffer, pending = _lines(buffer + chunk, pending)
    return pending


def _lines(data: bytes, pending: dict[str, Any] | None
           ) -> tuple[bytes, dict[str, Any] | None]:
    """Apply the complete lines of ``data``; returns the unfinished rest and the pending
    run. A line cut short (the driver died writing it) is never applied."""
    *lines, rest = data.split(b"\n")
    if data.startswith(TEMPLATE) or b"\n" + TEMPLATE in data:  # a few per process
        for line in lines:
            if line.startswith(TEMPLATE):
                _learn(line[len(TEMPLATE):])
    for line in reversed(lines):  # each line replaces what the one before said
        if line.startswith(TEMPLATE):
            continue
        pending = None
        if line.startswith(PENDING):
            import json

            with _suppress(ValueError):
                found = json.loads(line[len(PENDING):])
                pending = found if isinstance(found, dict) else None
        break
    return (rest if len(rest) <= _LINE_MAX else b""), pending


def _learn(text: bytes) -> None:
    """Keep a ``T`` line's record halves (one that does not parse is ignored: a run it
    was for is then recorded by nobody, as when no watchdog runs)."""
    import json

    with _suppress(ValueError):
        found = json.loads(text)
        if isinstance(found, dict) and all(isinstance(found.get(k), str)
                                           for k in ("stage", "head", "tail")) \
                and isinstance(found.get("attempt"), int):
            _templates[(found["stage"], found["attempt"])] = (found["head"], found["tail"])


def _records(pending: dict[str, Any]) -> list[Any] | None:
    """Per stage its marker, its record's path and the record's text, as ``P`` names them:
    built from the run's folder, attempt and time and the ``T`` lines' halves."""
    if "records" in pending:  # the whole records in the line (a driver of before)
        found = pending["records"]
        return found if isinstance(found, list) else None
    path, attempt, when = pending.get("path"), pending.get("attempt"), pending.get("time")
    if not (isinstance(path, str) and isinstance(attempt, int) and isinstance(when, str)):
        return None
    import json

    records = []
    for stage in STAGE_NAMES:
        halves = _templates.get((stage, attempt))
        if halves is None:
            return None
        records.append([f"{path}{os.sep}{stage}.done", f"{path}{os.sep}{stage}.error",
                        halves[0] + json.dumps(when) + halves[1]])
    return records


def write_pending(pending: dict[str, Any]) -> str | None:
    """Commit the record of the pending run's first stage without a marker (see the module
    docstring); returns the record's path, or None when nothing was written."""
    folder, records = pending.get("folder"), _records(pending)
    if records is None:
        return None
    for entry in records:
        if not (isinstance(entry, list) and len(entry) == 3
                and all(isinstance(x, str) for x in entry)):
            return None
        marker, target, text = (str(x) for x in entry)
        if os.path.exists(marker):
            continue
        where = folder if isinstance(folder, str) else os.path.dirname(target)
        if not _commit(where, target, text.encode("utf-8")):
            return None
        if isinstance(folder, str):  # the holder is gone: its attempt folder goes too
            with _suppress(OSError):
                os.rmdir(folder)
        return target
    return None


def _commit(folder: str, target: str, data: bytes) -> bool:
    """``data`` into a new temporary file in ``folder``, renamed onto ``target``; False
    when that fails (the attempt folder is gone: fenced; or the disk refuses)."""
    tmp = os.path.join(folder, f".{os.path.basename(target)}.{os.getpid()}-"
                               f"{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, target)
    except OSError:
        with _suppress(OSError):
            os.unlink(tmp)
        return False
    return True


def main(argv: list[str]) -> int:
    """``python dagrun/proctree.py VAR PREFIX PID``: the watchdog's entry point."""
    if len(argv) != 3 or not argv[2].isdigit():
        print("usage: python -m dagrun.run.proctree VAR PREFIX PID (started by dagrun)",
              file=sys.stderr)
        return 2
    var, prefix, pid = argv
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    pending = wait_for_end(int(pid))
    if pending is not None:
        write_pending(pending)
    if var:  # "": a watchdog that only keeps a run's last word
        kill_tagged(var, prefix, KILL_GRACE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
