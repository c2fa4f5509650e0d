"""Code that runs in a worker's pool processes: load the planned workflow, run claimed runs.

A pool process is pinned to its GPU slot (``CUDA_VISIBLE_DEVICES``) before this code runs,
before any of the user's code is imported, and keeps it for life (``dagrun.backends.process.
slots``). It loads
the workflow with ``Workflow.load`` from the ``OUT/.dagrun`` this machine sees, which
imports the copy of the code the sweep was planned with. Like the multiprocessing backend's
workers it dies with its parent and hosts its runs as ``dagrun.run.proctree.host_runs`` says.

Before each stage it checks that the run's lease is still its worker's: a run whose lease was
taken over (its worker was thought dead) starts no further stage, and raises ``LeaseLost``
instead of recording anything.
"""

from __future__ import annotations

import os

from dagrun.code.workflow import Workflow
from dagrun.disk.layout import Stage
from dagrun.disk.records import Failure
from dagrun.errors import FailureKind
from dagrun.run.capture import CaptureMode
from dagrun.run.proctree import die_with_parent, host_runs
from dagrun.run.stages import RunOutcome, RunTask, StageRunner

_runner: StageRunner | None = None
_init_error: str | None = None


class LeaseLost(Exception):
    """The run's lease is no longer this worker's: another worker runs it now."""


def init(workflow_path: str, parent_pid: int, token: str) -> None:
    """Pool initializer (run once the slot is pinned): load the workflow once. A workflow
    that cannot load fails each run with the reason instead of crashing the pool."""
    global _runner, _init_error
    die_with_parent(parent_pid)
    host_runs(token)
    try:
        workflow = Workflow.load(workflow_path)
    except Exception as exc:  # the worker boundary: report, don't crash the pool
        _init_error = f"worker could not load the workflow: {type(exc).__name__}: {exc}"
        return
    _runner = StageRunner(workflow, CaptureMode.FD, workflow.fingerprints)


def _owned(lease_path: str, inode: tuple[int, int]) -> bool:
    try:
        st = os.stat(lease_path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == inode


def run_claimed(task: RunTask, lease_path: str, inode: tuple[int, int]) -> RunOutcome:
    """Execute one claimed run (the pool's task function)."""
    if _runner is None:
        message = _init_error or "worker was not initialised"
        return RunOutcome(task, Failure.make(Stage.PRE, FailureKind.ENGINE, message,
                                             task.attempt))

    def check(task: RunTask, stage: Stage) -> None:
        if not _owned(lease_path, inode):
            raise LeaseLost(f"the lease of {task.path} was taken over before {stage.value}")

    _runner.on_stage_start = check
    return _runner.run(task)
