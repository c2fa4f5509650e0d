"""Code that runs in a worker's pool processes: load the planned workflow, run claimed runs.

A pool process is pinned to its GPU slot (``CUDA_VISIBLE_DEVICES``) before this code runs,
before any of the user's code is imported, and keeps it for life (``dagrun.backends.process.
slots``). It loads
the workflow with ``Workflow.load`` from the ``OUT/.dagrun`` this machine sees, which
imports the copy of the code the sweep was planned with. Like the multiprocessing backend's
workers it dies with its parent and hosts its runs as ``dagrun.run.proctree.host_runs`` says.

Every write of a run goes through the attempt folder its worker made when it claimed the
run (``dagrun.disk.fence``): a run whose lease was taken over (its worker was thought dead)
starts no further stage and commits nothing; its outcome says ``superseded``.
"""

from __future__ import annotations

from dagrun.code.workflow import Workflow
from dagrun.disk.layout import Stage
from dagrun.disk.records import Failure
from dagrun.errors import FailureKind
from dagrun.run.capture import CaptureMode
from dagrun.run.proctree import die_with_parent, host_runs
from dagrun.run.stages import RunOutcome, RunTask, StageRunner

_runner: StageRunner | None = None
_init_error: str | None = None


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


def run_claimed(task: RunTask) -> RunOutcome:
    """Execute one claimed run (the pool's task function)."""
    if _runner is None:
        message = _init_error or "worker was not initialised"
        return RunOutcome(task, Failure.make(Stage.PRE, FailureKind.ENGINE, message,
                                             task.attempt))

    return _runner.run(task)
