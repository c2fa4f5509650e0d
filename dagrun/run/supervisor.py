"""The ``dagrun`` command's own process, while the sweep's process may call stages itself.

``dagrun execute`` and ``dagrun resume`` (when their flags do not rule out ``single``
without a timeout) execute the sweep in a child of the command's process: the same command
line, in the same terminal (stdin, stdout and stderr inherited, so ``breakpoint()`` works)
and the same process group. The child announces each run it executes in itself on a pipe
(``dagrun.run.pending``) and says when it ends normally; its exit code is then the
command's.

When the child ends without saying so while a run is announced (a stage called
``os._exit``, segfaulted, was killed by SIGKILL), this process records that run as
``crashed`` in ``RUN/<stage>.error`` (with the exit status and the end of the stage's log,
committed through the run's attempt folder like every record) and executes the rest of the
sweep in a new child. Ending the process is one failed attempt of the run, like an
exception: the next child executes it again while ``retries`` leave it an attempt (as the
next attempt), and after its last attempt leaves it out of this invocation, counting its
crash record as its outcome. Every restart follows a crash of a run that had an attempt
left, and uses one up, so the restarts end. The last child prints
the summary (the runs left out are among the failed) and exits 1 like any sweep with a
failed run. A child that ends without saying so and without a run announced (the workflow
file ended the process while loading, dagrun itself crashed) ends the command.

SIGINT, SIGTERM and SIGHUP sent to this process are forwarded to the child, except those a
terminal sent (Ctrl-C, a hang-up): they reached the whole process group, the child too. A
signal sent to the group by a program (``kill -INT -PGID``, ``timeout``) reaches the child
twice; it acts once (``dagrun.run.signals.once_per_burst``). When this process is killed
(``kill -9``) the child dies with it and nothing is recorded: the sweep was stopped, not
crashed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import stat
import subprocess
import sys
from typing import Any

from dagrun.disk.atomic import write_all
from dagrun.record import record
from dagrun.run.proctree import die_with_parent
from dagrun.run.signals import FORWARDED, exit_code, once_per_burst

# The pipe from the sweep's process (dagrun.run.pending writes its runs; the engine is
# imported here only once a run crashed, so the command's own process starts light).
ENV = "DAGRUN_SUPERVISOR"  # JSON {"fd", "pid", "crashed"}: the pipe, this process, and
# [exp_id, rep, attempt] of each run that ended an earlier child (its last such attempt)
RUN = b"R "  # a line ``R <json task>``: the run the child is executing in itself
CLEAR = b"C"  # a line ``C``: that run ended (whatever its outcome)
END = b"E"  # a line ``E``: the command ends normally (its exit code says how)

TICK = 0.05  # seconds between looks at the child's lines, the signals received, the child
PIPE_SIZE = 1 << 20  # bytes the pipe holds (Linux; best effort): lines of a tick of fast runs
_SI_KERNEL = 0x80  # si_code of a signal the kernel sent (Linux): a terminal's, not a kill()


# --------------------------------------------------------------------------------------------
# The child: the sweep's process.

@record(frozen=True)
class _Attached:
    fd: int  # the pipe to the supervisor
    pid: int  # the supervisor: the dagrun command the user started
    crashed: dict[tuple[int, int], int]  # (exp_id, rep) -> attempt that ended a child


_attached: _Attached | None = None


def attach() -> bool:
    """In the sweep's process under the ``dagrun`` command (``ENV`` set by its supervisor):
    take the stop signals (blocked until now; one that arrives twice acts once), the pipe,
    and die with the supervisor (its ``kill -9`` stops the sweep). The variable leaves the
    environment, so processes the stages start never see it. Returns whether this process
    is supervised; a stop signal that came meanwhile raises here."""
    global _attached
    raw = os.environ.pop(ENV, None)
    if raw is None:
        return False
    once_per_burst()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    try:
        data = json.loads(raw)
        fd, pid = int(data["fd"]), int(data["pid"])
        crashed = {(int(e), int(r)): int(n) for e, r, n in data.get("crashed", [])}
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
    except (ValueError, KeyError, TypeError, OSError):
        return False
    os.set_inheritable(fd, False)
    die_with_parent(pid)
    _attached = _Attached(fd, pid, crashed)
    return True


def pipe() -> int | None:
    """The pipe to the supervisor, when this process has one."""
    return _attached.fd if _attached is not None else None


def command_pid() -> int:
    """The pid of the dagrun command executing this sweep (its supervisor when there is
    one): the process a user sees, signals, and reads in messages."""
    return _attached.pid if _attached is not None else os.getpid()


def crashed_attempt(exp_id: int, rep: int) -> int:
    """The attempt of run ``exp_id``/``rep`` that ended an earlier sweep's process of this
    command (the last one), 0 when none did."""
    return _attached.crashed.get((exp_id, rep), 0) if _attached is not None else 0


def ended() -> None:
    """Tell the supervisor, if any, that the command ends normally."""
    if _attached is not None:
        Pipe(_attached.fd).send(END + b"\n")


class Pipe:
    """The writing end of a pipe; a reader that is gone ends the writing, nothing else."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def send(self, line: bytes) -> None:
        if self.fd is None:
            return
        try:
            write_all(self.fd, line)
        except OSError:
            self.fd = None


# --------------------------------------------------------------------------------------------
# The supervisor: the dagrun command's own process.

@record(frozen=True)
class _Ended:
    status: int  # the child's returncode (negative: killed by that signal)
    said: bool  # it said it ends normally
    announced: dict[str, Any] | None  # the run announced when it ended


def command_line() -> list[str] | None:
    """The command line that started this process, to start it again as the child; None
    when ``sys.argv`` is not what it was given (a program that calls ``main()`` after
    changing it) or the interpreter read its program from stdin."""
    original = list(getattr(sys, "orig_argv", []))
    args = sys.argv[1:]
    if len(original) < 2 or original[len(original) - len(args):] != args:
        return None
    if original[len(original) - len(args) - 1:][:1] == ["-"]:
        return None
    return [sys.executable, *original[1:]]


class Supervisor:
    """Executes a sweep in a child of this process until a child ends normally."""

    def __init__(self, command: list[str], quiet: bool) -> None:
        self.command = command
        self.quiet = quiet
        self.crashed: dict[tuple[int, int], int] = {}  # run -> attempt that ended a child
        self.stopped: int | None = None  # the last stop signal this process received

    def run(self) -> int:
        """The command's exit code. The stop signals are blocked here (and taken with
        ``sigtimedwait``, which says who sent them) and in the child until it attaches."""
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        try:
            while True:
                ended = self._child_run()
                if ended.said:
                    return ended.status if ended.status >= 0 else exit_code(-ended.status)
                if ended.announced is not None:
                    self._record(ended)
                if ended.announced is None or self.stopped is not None:
                    return self._stop(ended)
        finally:  # signals still pending are dropped: the child has handled its own
            previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in FORWARDED}
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _child_run(self) -> _Ended:
        read, write = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # F_SETPIPE_SZ: Linux
            fcntl.fcntl(read, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        crashed = [[e, r, n] for (e, r), n in self.crashed.items()]
        env = {**os.environ, ENV: json.dumps({"fd": write, "pid": os.getpid(),
                                              "crashed": crashed})}
        try:
            child = subprocess.Popen(self.command, env=env, pass_fds=(write,))
        finally:
            os.close(write)
        try:
            said, announced = self._watch(child, read)
        finally:
            os.close(read)
        return _Ended(child.wait(), said, announced)

    def _watch(self, child: subprocess.Popen[bytes], read: int
               ) -> tuple[bool, dict[str, Any] | None]:
        """Follow the child's lines and pass it the stop signals until it exits: whether it
        said it ends normally, and the run it announced last and did not clear."""
        said, announced, rest = False, None, b""
        os.set_blocking(read, False)
        exited = _exit_fd(child.pid)
        try:
            while True:
                done = child.poll() is not None  # (then what it wrote is all in the pipe)
                if not done:
                    self._pass_signals(child.pid)
                with contextlib.suppress(BlockingIOError):
                    while chunk := os.read(read, 1 << 16):
                        said, announced, rest = _apply(rest + chunk, said, announced)
                if done:
                    return said, announced
                # lines gather meanwhile (no wake-up per run); the child's exit wakes us
                select.select([exited] if exited is not None else [], [], [], TICK)
        finally:
            if exited is not None:
                os.close(exited)

    def _pass_signals(self, child: int) -> None:
        """Forward the stop signals received since the last look, except those a terminal
        sent (Ctrl-C, a hang-up): those reached the child's process group, the child too."""
        while (info := signal.sigtimedwait(FORWARDED, 0)) is not None:
            self.stopped = info.si_signo
            if info.si_code != _SI_KERNEL:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, info.si_signo)

    def _record(self, ended: _Ended) -> None:
        """Record the announced run as crashed (fenced: nothing when another holder has
        claimed it meanwhile) and remember its attempt for the next child."""
        from dagrun.disk import fence
        from dagrun.disk.layout import RunDir, Stage
        from dagrun.disk.runs import scan_run
        from dagrun.run import failures
        from dagrun.run.stages import RunTask

        data = ended.announced or {}
        try:
            task = RunTask(int(data["exp_id"]), int(data["rep"]), str(data["path"]),
                           int(data["attempt"]), data.get("folder"))
        except (KeyError, TypeError, ValueError):
            return
        if scan_run(task.exp_id, task.rep, RunDir(task.path)).next_stage is None:
            return  # it ended after the run's last marker: the run is done
        key = (task.exp_id, task.rep)
        self.crashed[key] = max(self.crashed.get(key, 0), task.attempt)
        failure = failures.crashed_failure(task, ended.status)
        outcome = failures.commit(failure, task)
        if task.folder is not None:  # its holder is gone: so is its attempt
            with contextlib.suppress(OSError):
                fence.destroy(RunDir(task.path).entry(task.folder))
        if self.quiet:
            return
        record = RunDir(task.path).error(Stage(failure.stage))
        where = ("another holder claimed it meanwhile: nothing recorded"
                 if outcome.superseded else f"recorded as crashed in {record}")
        _say(f"dagrun: run {task.label} ended the sweep's process in {failure.stage} "
             f"({failure.first_line}); {where}; the sweep goes on in a new process")

    def _stop(self, ended: _Ended) -> int:
        """The exit code of a child that ended without saying so: the sweep stops."""
        from dagrun.run.failures import exit_description

        if self.stopped is not None:
            words = {int(signal.SIGTERM): "terminated (SIGTERM)",
                     int(signal.SIGHUP): "hung up (SIGHUP)"}
            what = words.get(self.stopped, "interrupted")
            _say(f"dagrun: {what}; finished stages are kept, run again to resume")
            return exit_code(self.stopped)
        how = "exited with code 0" if ended.status == 0 else exit_description(ended.status)
        _say(f"dagrun: error: the process executing the sweep {how} outside any run, before "
             "its end; finished stages are kept, run again to resume")
        return exit_code(-ended.status) if ended.status < 0 else (ended.status or 1)


def _exit_fd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (``pidfd_open``, Linux 5.3),
    or None."""
    try:
        fd: int = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
    return fd


def _say(message: str) -> None:
    """A line on stderr, after a progress bar the child may have left unfinished."""
    start = "\n" if sys.stderr.isatty() else ""
    print(f"{start}{message}", file=sys.stderr, flush=True)


def _apply(data: bytes, said: bool, announced: dict[str, Any] | None
           ) -> tuple[bool, dict[str, Any] | None, bytes]:
    """The complete lines of ``data`` applied; the unfinished rest is returned."""
    *lines, rest = data.split(b"\n")
    for line in lines:
        if line == END:
            said = True
        elif line.startswith(RUN):
            try:
                found = json.loads(line[len(RUN):])
            except ValueError:
                found = None
            announced = found if isinstance(found, dict) else None
        else:
            announced = None
    return said, announced, rest
