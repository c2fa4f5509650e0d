"""The one builder of failure records for runs that could not record their own failure.

A run that raises is recorded by the stage runner itself. A run whose process was killed
(timeout), died (segfault, ``os._exit``, OOM kill), whose host went away, or that could not
start because OUT is not visible where it was sent, leaves nothing behind: the side that
notices (a pool driver, the ssh host's supervisor, the Ray driver) builds its record here,
so every backend words the same event the same way. The stage is read from the disk (the
first one without a marker) and the end of that stage's log is attached.
"""

from __future__ import annotations

import contextlib
import signal

from dagrun.disk import atomic
from dagrun.disk.fence import Attempt, Superseded
from dagrun.disk.layout import RunDir, Stage, SweepDir
from dagrun.disk.records import Failure, hostname
from dagrun.disk.runs import scan_run
from dagrun.errors import FailureKind
from dagrun.run.capture import tail
from dagrun.run.stages import RunOutcome, RunTask

# Frames of dagrun's own machinery in a traceback dump (faulthandler, pools): not the user's.
_ENGINE_FRAMES = ("/pebble/", "/multiprocessing/", "/dagrun/", 'File "<string>"')


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15; ``signal 99`` for numbers Python does not name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_description(code: int) -> str:
    """``was killed by SIGKILL`` for a negative (signal) code, ``exited with code N``
    otherwise (it follows "the process running fit")."""
    if code < 0:
        return f"was killed by {signal_name(-code)}"
    if code == 0:
        return "exited with code 0 before the stage finished"
    return f"exited with code {code}"


def log_tail(path: str, lines: int = 12) -> str:
    """The end of a stage's log without the engine's own frames of a traceback dump (what
    is left is the user's output and the user's frames)."""
    kept = [line for line in tail(path, 200).splitlines()
            if not any(frame in line for frame in _ENGINE_FRAMES)]
    return "\n".join(kept[-lines:])


def running_stage(task: RunTask) -> Stage:
    """The stage a lost run was in: the first one without a marker (the disk decides)."""
    return scan_run(task.exp_id, task.rep, RunDir(task.path)).next_stage or Stage.POST


def lost_run(task: RunTask, kind: FailureKind, message: str) -> Failure:
    """The record of a run that ended without reporting: ``message`` about ``stage`` (use
    ``{stage}`` in it), plus the last lines of that stage's log."""
    stage = running_stage(task)
    text = message.replace("{stage}", stage.value)
    log = log_tail(RunDir(task.path).log(stage))
    if log:
        text += "\nlast lines of the log:\n" + log
    return Failure.make(stage, kind, text, task.attempt)


def timeout_failure(task: RunTask, timeout: float) -> Failure:
    return lost_run(task, FailureKind.TIMEOUT,
                    f"run exceeded the timeout of {timeout:g} s and was killed (in {{stage}})")


def crashed_failure(task: RunTask, code: int) -> Failure:
    """A run whose process died with exit ``code`` (negative: killed by that signal)."""
    return lost_run(task, FailureKind.CRASHED,
                    f"the process running {{stage}} {exit_description(code)}")


def ended_driver(stage: Stage, attempt: int) -> Failure:
    """The record a driver's watchdog commits for a run whose ``stage`` ended the driver's
    own process (``single`` without a timeout, outside the ``dagrun`` command). It is made
    before the run starts (``dagrun.run.pending``), so it holds no exit status and no log
    lines: the watchdog is not the driver's parent, and only copies it into place."""
    return Failure.make(
        stage, FailureKind.CRASHED,
        f"the process running {stage.value} (the driver's own process) ended before the stage "
        "finished: os._exit, a fatal signal (a segfault, SIGKILL) or an out-of-memory kill; "
        "recorded by the driver's watchdog", attempt)


def not_visible_failure(task: RunTask, out_path: str, where: str, needs: str) -> Failure:
    """A run sent to a node or host (``where``) that does not see OUT; nothing was written
    there. ``needs`` says what the backend requires of the filesystem."""
    workflow = SweepDir.at(out_path).workflow
    return Failure.make(
        Stage.PRE, FailureKind.ENGINE,
        f"out_path {out_path} is not visible on {where} {hostname()} (no {workflow} there): "
        f"{needs}; nothing was written there", task.attempt)


def record(failure: Failure, task: RunTask) -> Failure:
    """Write ``failure`` into the run's folder (best effort: a full disk must not hide the
    failure from the driver, which reports it anyway); returns it. Fenced like every write
    of a holder (``dagrun.disk.fence``): a holder whose run was claimed by another meanwhile
    writes nothing (``commit`` says so to whoever must know)."""
    run = RunDir(task.path)
    with contextlib.suppress(OSError, Superseded):
        if task.folder is None:
            atomic.makedirs(run.path)
        failure.write(run, Attempt(run, task.folder))
    return failure


def commit(failure: Failure, task: RunTask) -> RunOutcome:
    """Record ``failure`` for a run its process could not report on; the outcome to
    count: failed, or ``superseded`` (nothing written) when another holder claimed the run
    meanwhile (this holder's lease was taken over: the timeout or crash is not the run's)."""
    run = RunDir(task.path)
    try:
        failure.write(run, Attempt(run, task.folder))
    except Superseded:
        return RunOutcome(task, None, superseded=True)
    except OSError:  # a full disk: the driver reports the failure all the same
        pass
    return RunOutcome(task, failure)
