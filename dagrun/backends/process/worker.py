"""Code that runs in a worker process: receive the workflow once, then run runs.

A worker process is started with the pickled workflow as its initializer argument, so the
workflow crosses the process boundary once, not once per run. It ties its life to the
driver's (``PR_SET_PDEATHSIG``), so even ``kill -9`` of the driver leaves no worker behind.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from dagrun.capture import CaptureMode
from dagrun.errors import FailureKind
from dagrun.layout import Stage
from dagrun.proctree import die_with_parent
from dagrun.records import Failure
from dagrun.stages import RunOutcome, RunTask, StageRunner
from dagrun.workflow import Workflow

_runner: StageRunner | None = None
_init_error: str | None = None


def init_worker(blob: bytes, fingerprints: dict[str, str], parent_pid: int) -> None:
    """Pool initializer: load the workflow once. Errors are kept and reported per run,
    so a workflow that cannot load in a fresh interpreter fails runs instead of looping."""
    global _runner, _init_error
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    try:
        workflow = Workflow.loads(blob)
    except Exception as exc:  # the worker boundary: report, don't crash the pool
        _init_error = f"worker could not load the workflow: {type(exc).__name__}: {exc}"
        return
    _runner = StageRunner(workflow, CaptureMode.FD, fingerprints)


def run_task(task: RunTask) -> RunOutcome:
    """Execute one run in this worker (the pool's task function)."""
    if _runner is None:
        message = _init_error or "worker was not initialised"
        return RunOutcome(task, Failure.make(Stage.PRE, FailureKind.ENGINE, message,
                                             task.attempt))
    return _runner.run(task)


def pool_args(blob: bytes, fingerprints: dict[str, str]) -> tuple[Any, ...]:
    """Initializer arguments for a pool started by this (driver) process."""
    return (blob, fingerprints, os.getpid())
