"""The run in flight in the driver's own process, announced to a process that outlives it.

The ``single`` backend without a timeout calls stages in the driver's own process, so that
``breakpoint()`` works. A stage that ends that process (``os._exit``, a segfault, SIGKILL of
itself) would leave no failure record and no summary, and the runs after it would never run.
So the backend announces each run on a pipe before it calls the run's stages, with one short
line, and clears it after them with another; the reader outlives the driver and records the
run as ``crashed`` when the driver ends with a run announced:

* under the ``dagrun`` command, the command's own process, which executes the sweep in a
  child (``dagrun.run.supervisor``). Lines ``R <json task>`` (exp_id, rep, path, attempt,
  folder) before a run and ``C`` after it. It writes the record itself
  (``failures.crashed_failure``, which has the exit status), then executes the rest of the
  sweep in a new child.
* otherwise (``run_experiments`` in the user's own process), the driver's watchdog
  (``dagrun.run.proctree``): ``P <json>`` with the attempt folder and, per stage, its
  marker, its record's path and the record's bytes; ``C`` after the run. It commits the
  record of the first stage without a marker.

A line costs one ``write`` on a pipe; nothing is read back, and a reader that is gone only
ends the announcing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import threading
import time
from json.encoder import encode_basestring_ascii as _quote

from dagrun.disk.layout import STAGES, RunDir
from dagrun.disk.records import Failure, iso
from dagrun.errors import FailureKind
from dagrun.record import replace
from dagrun.run import failures, proctree, supervisor
from dagrun.run.stages import RunOutcome, RunTask
from dagrun.run.supervisor import Pipe


def crashed_attempt(task: RunTask) -> int:
    """The attempt of ``task``'s run that ended an earlier sweep's process of this command
    (0: none did)."""
    return supervisor.crashed_attempt(task.exp_id, task.rep)


def crashed_outcome(task: RunTask, attempt: int) -> RunOutcome:
    """The outcome of a run whose last attempt (``attempt``) ended an earlier sweep's
    process of this command: its crash record (the run is not executed again here; the
    next ``dagrun execute`` runs it)."""
    task = replace(task, attempt=attempt)
    failure = Failure.read(RunDir(task.path), failures.running_stage(task))
    if failure is None or failure.kind != FailureKind.CRASHED.value:
        failure = failures.lost_run(task, FailureKind.CRASHED,
                                    "the process running {stage} ended before the stage "
                                    "finished")
    return RunOutcome(task, failure)


class Announcer:
    """Announces the run this process executes in itself; this base class tells nobody."""

    def begin(self, task: RunTask) -> None:
        """``task`` is about to run here."""

    def end(self, settled: bool = False) -> None:
        """The announced run ended (done, failed, interrupted); ``settled``: its last
        stage's marker is committed, so nothing is left to record for it whatever happens
        now (an announcer may then leave the clearing to the next run's announcement)."""

    def close(self) -> None:
        """No more runs."""


class _ToSupervisor(Announcer):
    def __init__(self, fd: int) -> None:
        self.pipe = Pipe(fd)

    def begin(self, task: RunTask) -> None:
        line = json.dumps({"exp_id": task.exp_id, "rep": task.rep, "path": task.path,
                           "attempt": task.attempt, "folder": task.folder})
        self.pipe.send(supervisor.RUN + line.encode() + b"\n")

    def end(self, settled: bool = False) -> None:
        self.pipe.send(supervisor.CLEAR + b"\n")


class _ToWatchdog(Announcer):
    _STAMP = "\0time\0"  # where a record's time goes, in the records kept per stage/attempt

    def __init__(self, watchdog: subprocess.Popen[bytes]) -> None:
        self.watchdog: subprocess.Popen[bytes] | None = watchdog
        self.pipe = Pipe(watchdog.stdin.fileno() if watchdog.stdin is not None else None)
        if self.pipe.fd is not None:  # room for the lines of fast runs between two reads
            with contextlib.suppress(OSError, AttributeError):  # F_SETPIPE_SZ: Linux
                fcntl.fcntl(self.pipe.fd, fcntl.F_SETPIPE_SZ, supervisor.PIPE_SIZE)
        self._sent: set[int] = set()  # attempts whose ``T`` lines the watchdog has
        self._uncleared = False  # the last run ended settled, its ``C`` not sent
        self.pid = os.getpid()  # a forked child must not announce on its parent's pipe

    def _templates(self, attempt: int) -> bytes:
        """``T`` lines for ``attempt``, the first time a run of that attempt is announced
        to this watchdog: per stage, ``failures.ended_driver(stage, attempt).content()``
        cut where its time goes (every run's record differs only there)."""
        if attempt in self._sent:
            return b""
        self._sent.add(attempt)
        lines = []
        for stage in STAGES:
            failure = replace(failures.ended_driver(stage, attempt),
                                          time=self._STAMP)
            head, _, tail = failure.content().decode().partition(json.dumps(self._STAMP))
            lines.append(proctree.TEMPLATE + json.dumps(
                {"stage": stage.value, "attempt": attempt, "head": head, "tail": tail}
            ).encode() + b"\n")
        return b"".join(lines)

    def begin(self, task: RunTask) -> None:
        """``P`` and one JSON object: the run's folder, its attempt folder, the attempt and
        the time (the ``T`` lines before it, once per attempt number)."""
        folder = "null" if task.folder is None else _quote(f"{task.path}{os.sep}{task.folder}")
        line = (f'{{"path": {_quote(task.path)}, "folder": {folder}, "attempt": '
                f'{int(task.attempt)}, "time": {_quote(iso(time.time()))}}}')
        self.pipe.send(self._templates(task.attempt) + proctree.PENDING + line.encode()
                       + b"\n")
        self._uncleared = False

    def end(self, settled: bool = False) -> None:
        if settled:  # the next ``P`` replaces it; until then the watchdog would find its
            self._uncleared = True  # markers all there and write nothing
            return
        self.pipe.send(proctree.CLEAR + b"\n")

    def alive(self) -> bool:
        """Whether the watchdog still reads what this process announces."""
        return self.watchdog is not None and self.pipe.fd is not None \
            and self.watchdog.poll() is None

    def close(self) -> None:
        global _idle
        if self._uncleared:  # the sweep's last run: cleared for the watchdog's next use
            self._uncleared = False
            self.pipe.send(proctree.CLEAR + b"\n")
        with _idle_lock:
            if _idle is None and self.pid == os.getpid() and self.alive():
                _idle = self  # kept for this process's next sweep: see ``announcer``
                return
        watchdog, self.watchdog = self.watchdog, None
        self.pipe.fd = None
        proctree.stop_watchdog(watchdog, wait=False)  # it kills nothing: see there


_idle: _ToWatchdog | None = None  # this process's watchdog between two sweeps
_idle_lock = threading.Lock()


def announcer() -> Announcer:
    """Where this process announces the runs it executes in itself: its supervisor, else
    its watchdog, else nobody (one could not be started).

    One watchdog serves every sweep of a process in turn (a notebook's, a search's rounds):
    the sweep that ends hands it to the next (its last line cleared the run it announced),
    so a sweep does not start a fresh interpreter for it (tens of ms of CPU, most of a
    short sweep's fixed cost). It ends when this process ends: it reads the end of its
    pipe, or sees its parent gone. A sweep that starts while another of this process still
    holds it (another thread) gets one of its own, stopped when that sweep ends."""
    global _idle
    fd = supervisor.pipe()
    if fd is not None:
        return _ToSupervisor(fd)
    with _idle_lock:
        kept, _idle = _idle, None
    if kept is not None and kept.pid == os.getpid() and kept.alive():
        return kept
    with contextlib.suppress(OSError):
        watchdog = proctree.start_watchdog("", "")
        if watchdog is not None:
            return _ToWatchdog(watchdog)
    return Announcer()
