"""Code that runs in a worker process: receive the workflow once, then run runs.

A spawned worker is started with the pickled workflow as its initializer argument, so the
workflow crosses the process boundary once, not once per run; a forked one
(``dagrun.run.forking``) has the driver's. It ties its life to the
driver's (``PR_SET_PDEATHSIG``), so even ``kill -9`` of the driver leaves no worker behind,
and hosts its runs as ``dagrun.run.proctree.host_runs`` says: its own session, the sweep's tag
in the environment of every process a run starts, default SIGINT for user code, and a
SIGTERM (timeout, shutdown) that stops the run's whole process tree before the worker dies.
"""

from __future__ import annotations

import os
from typing import Any

from dagrun.code.snapshot import serve_imports
from dagrun.code.workflow import Workflow
from dagrun.disk.layout import Stage
from dagrun.disk.records import Failure
from dagrun.errors import FailureKind
from dagrun.run.capture import CaptureMode
from dagrun.run.proctree import die_with_parent, host_runs
from dagrun.run.stages import RunOutcome, RunTask, StageRunner

_runner: StageRunner | None = None
_init_error: str | None = None


def init_worker(blob: bytes, fingerprints: dict[str, str], parent_pid: int,
                token: str) -> None:
    """Pool initializer: load the workflow once. Errors are kept and reported per run,
    so a workflow that cannot load in a fresh interpreter fails runs instead of looping."""
    global _runner, _init_error
    die_with_parent(parent_pid)
    host_runs(token)  # Ctrl-C in a terminal reaches the driver only: runs have own sessions
    try:
        workflow = Workflow.loads(blob)
    except Exception as exc:  # the worker boundary: report, don't crash the pool
        _init_error = f"worker could not load the workflow: {type(exc).__name__}: {exc}"
        return
    _runner = StageRunner(workflow, CaptureMode.FD, fingerprints)


def init_forked(workflow: Workflow, fingerprints: dict[str, str], parent_pid: int,
                token: str) -> None:
    """Initializer of a worker forked from the driver (``dagrun.run.forking``): the
    workflow is the driver's own object, already loaded; the user's modules imported from
    now on come from the copy of the code."""
    global _runner
    die_with_parent(parent_pid)
    host_runs(token)
    if workflow.snapshot is not None:
        serve_imports(workflow.snapshot)
    _runner = StageRunner(workflow, CaptureMode.FD, fingerprints)


def run_task(task: RunTask) -> RunOutcome:
    """Execute one run in this worker (the pool's task function)."""
    if _runner is None:
        message = _init_error or "worker was not initialised"
        return RunOutcome(task, Failure.make(Stage.PRE, FailureKind.ENGINE, message,
                                             task.attempt))
    return _runner.run(task)


def pool_args(blob: bytes, fingerprints: dict[str, str], token: str) -> tuple[Any, ...]:
    """Initializer arguments for a pool started by this (driver) process; ``token`` tags
    the sweep's processes (``dagrun.run.proctree``)."""
    return (blob, fingerprints, os.getpid(), token)
