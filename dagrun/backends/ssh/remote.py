"""The host side of the ``ssh`` backend: ``python -m dagrun.backends.ssh.remote REQUEST``
runs ONE run.

A host of the pool runs this for each run the driver sends it, over one ssh session. It

1. says ``DAGRUN-STARTED`` (the connection works and the interpreter runs);
2. refuses, with an ``engine`` failure, to run when OUT is not visible here (no
   ``OUT/.dagrun/workflow.pkl``): the ssh backend needs a shared filesystem, and writing into
   a node-local folder of the same name would lose the results silently;
3. forks the run into its own session / process group; the child loads the workflow
   (``Workflow.load`` checks the pickle's ownership) and runs the shared ``StageRunner``;
4. watches its stdin while the run goes on: when the driver closes the session (timeout,
   Ctrl-C, the local ssh killed) or its heartbeat stops (the link dropped), it kills the
   run's whole process tree -- the group, plus descendants that left it with ``setsid`` --
   with SIGTERM, then SIGKILL after ``KILL_GRACE`` seconds. Killing the local ssh client
   alone would leave the remote processes running: sshd does not signal a command without
   a tty. Every process of the run inherits an environment tag (``RUN_TAG``): whatever
   still carries it when the run ends -- a daemon double-forked with ``setsid -f``, whose
   parent is long gone and which no tree walk finds -- is killed too, also after a
   successful run. When it was the heartbeat that stopped, ``DAGRUN-STOPPED`` tells the
   driver (a paused or sleeping driver must not have its runs recorded as crashed);
5. prints the ``RunOutcome`` as one JSON line. A child that died (segfault, ``os._exit``,
   OOM kill) is recorded here as ``crashed``, in the run folder, like the process backend does.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
import uuid
from types import FrameType

from dagrun.backends.ssh.protocol import OUTCOME, STARTED, STOPPED, Request, outcome_to_json
from dagrun.code.safety import TRUST_GROUP_ENV
from dagrun.disk.atomic import write_all
from dagrun.disk.layout import Stage, SweepDir
from dagrun.disk.records import Failure, hostname
from dagrun.errors import FailureKind
from dagrun.run import failures
from dagrun.run.failures import crashed_failure, not_visible_failure
from dagrun.run.proctree import die_with_parent, kill_tagged, reap, signal_tree
from dagrun.run.stages import RunOutcome

KILL_GRACE = 3.0
SELECT_EVERY = 0.25
EXIT_KILLED = 3  # the run was killed because the driver went away or asked for it
RUN_TAG = "DAGRUN_RUN_TAG"  # environment variable inherited by every process of a run


class _Stop(Exception):
    """Raised by the SIGTERM/SIGHUP handler: clean up the run before this process ends."""


def _emit(line: str) -> None:
    """A protocol line on stdout; the channel may be gone already (never die of it)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _log(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"dagrun.backends.ssh.remote on {hostname()}: {message}\n")
        sys.stderr.flush()


# --------------------------------------------------------------------------------------------
# The child: one run, in its own process group.

def _like_the_driver(request: Request) -> None:
    """Work in the driver's folder with its import path, as a spawned worker process would:
    stage functions pickled by reference (from the user's own modules) then import here."""
    if request.cwd and os.path.isdir(request.cwd):
        os.chdir(request.cwd)
    missing = [p for p in request.sys_path if p and p not in sys.path]
    sys.path[:0] = missing


def _run_child(request: Request) -> str:
    """Load the workflow and run the run; returns the outcome as JSON. Never raises."""
    from dagrun.code.workflow import Workflow
    from dagrun.run.capture import CaptureMode
    from dagrun.run.stages import StageRunner

    task = request.task
    path = SweepDir.at(request.out_path).workflow
    _like_the_driver(request)
    try:
        workflow = Workflow.load(path)
    except Exception as exc:  # the worker boundary: whatever loading the user's pickle raises
        failure = Failure.make(Stage.PRE, FailureKind.ENGINE,
                               f"host {hostname()} could not load {path}: "
                               f"{type(exc).__name__}: {exc}", task.attempt)
        return outcome_to_json(failures.commit(failure, task))
    outcome = StageRunner(workflow, CaptureMode.FD, request.fingerprints).run(task)
    return outcome_to_json(outcome)


def _fork_run(request: Request, tag: str) -> tuple[int, int]:
    """Start the run in a forked child (its own session, tagged ``RUN_TAG=tag``); returns
    (pid, outcome pipe)."""
    parent = os.getpid()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the parent's code
        status = 1
        try:
            os.close(reader)
            os.setsid()
            os.environ[RUN_TAG] = tag
            die_with_parent(parent)
            for sig in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)  # the ssh channel belongs to the supervisor
            os.dup2(null, 1)
            write_all(writer, _run_child(request).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(writer)
    return pid, reader


def kill_run(pid: int, reason: str, tag: str) -> int:
    """SIGTERM the run's tree, SIGKILL what is left after ``KILL_GRACE`` s; reap the child;
    then kill whatever else still carries the run's tag."""
    _log(f"stopping run (pid {pid}): {reason}")
    seen = signal_tree(pid, signal.SIGTERM, set())
    reap(pid, KILL_GRACE)
    signal_tree(pid, signal.SIGKILL, seen)  # whatever ignored SIGTERM, grandchildren too
    reap(pid, KILL_GRACE)
    kill_tagged(RUN_TAG, tag, KILL_GRACE)
    return EXIT_KILLED


# --------------------------------------------------------------------------------------------
# The supervisor.

def _read_available(fd: int, chunks: list[bytes]) -> bool:
    """Read what the pipe holds now; False at EOF."""
    while select.select([fd], [], [], 0)[0]:
        data = os.read(fd, 65536)
        if not data:
            return False
        chunks.append(data)
    return True


def _crash_outcome(request: Request, status: int) -> str:
    """The outcome of a child that died before it could report (recorded in the run folder)."""
    failure = crashed_failure(request.task, os.waitstatus_to_exitcode(status))
    return outcome_to_json(failures.commit(failure, request.task))


def supervise(request: Request, pid: int, reader: int, tag: str) -> int:
    """Wait for the run while watching stdin; kill it when the driver is gone."""
    chunks: list[bytes] = []
    last_beat = time.monotonic()
    reader_open = True
    while True:
        ready = select.select([0, reader] if reader_open else [0], [], [], SELECT_EVERY)[0]
        if reader in ready:
            reader_open = _read_available(reader, chunks)
        if 0 in ready:
            try:
                beat = os.read(0, 4096)
            except OSError:
                beat = b""
            if not beat:
                return kill_run(pid, "the driver closed the session", tag)
            last_beat = time.monotonic()
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if reader_open:
                _read_available(reader, chunks)
            break
        if time.monotonic() - last_beat > request.heartbeat_timeout:
            reason = (f"no heartbeat from the driver for {request.heartbeat_timeout:g} s "
                      "(the driver was paused or the connection was lost)")
            _emit(f"{STOPPED} {reason}")
            return kill_run(pid, reason, tag)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # processes the run left behind in its group
    kill_tagged(RUN_TAG, tag, KILL_GRACE)  # ... and those that left it (daemons)
    text = b"".join(chunks).decode(errors="replace").strip()
    if status != 0 or not text:
        text = _crash_outcome(request, status)
    _emit(f"{OUTCOME} {text}")
    return 0


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m dagrun.backends.ssh.remote REQUEST_JSON``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        _log("usage: python -m dagrun.backends.ssh.remote REQUEST_JSON "
             "(started by dagrun's ssh backend)")
        return 2
    request = Request.from_json(args[0])
    if request.trust_group:
        os.environ[TRUST_GROUP_ENV] = "1"
    _emit(f"{STARTED} {hostname()} {os.getpid()}")
    if not os.path.isfile(SweepDir.at(request.out_path).workflow):
        failure = not_visible_failure(
            request.task, request.out_path, "host",
            "the ssh backend needs a shared filesystem: every host must see OUT at the same path")
        _emit(f"{OUTCOME} {outcome_to_json(RunOutcome(request.task, failure), recorded=False)}")
        return 0
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    tag = f"ssh-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    pid, reader = _fork_run(request, tag)
    try:
        return supervise(request, pid, reader, tag)
    except _Stop as stop:
        return kill_run(pid, f"received {stop}", tag)


if __name__ == "__main__":
    sys.exit(main())
