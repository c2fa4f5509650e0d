"""Code that runs inside a Ray worker process: one dagrun run per Ray task.

The driver puts ``(workflow blob, fingerprints)`` into the object store once and passes its
``ObjectRef`` to every task wrapped in a list (so Ray hands over the ref, not the value). A
worker process deserializes the workflow on its first task and keeps the ``StageRunner``
keyed by the ref, so later tasks of the same sweep on that worker reuse it.

Before touching the run folder the task checks that ``OUT/.dagrun/workflow.pkl`` (written by
the driver before any task is submitted) is visible on this node. If it is not, ``out_path``
is not on a filesystem shared with the driver: the run fails with an ``engine`` record and
nothing is written on the node (a run folder created there would be a node-local orphan).

The run works in the driver's folder (``cwd``) when the node sees it, as it would on every
other backend, so a stage reading ``data.txt`` finds it; a node that does not see that folder
runs it in Ray's own working folder and the run carries a warning saying so.

Every process a run starts inherits an environment tag (``RUN_TAG``, unique per worker and
run). When the run ends, whatever still carries its tag is killed: a daemon that a stage
double-forked (``setsid -f``) does not survive a successful run. A run stopped by its
``timeout`` kills the worker itself; a watchdog process, one per worker, then kills
everything tagged by that worker. The watchdog is double-forked: Ray kills a dying worker's
own children with it (``kill_child_processes_on_worker_exit``), so a plain child could not
outlive the worker to clean up after it.

This module is imported on the Ray workers, so dagrun must be installed on every node.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

from dagrun.code.workflow import Workflow
from dagrun.disk.layout import Stage
from dagrun.disk.records import Failure
from dagrun.errors import FailureKind
from dagrun.record import replace
from dagrun.run.capture import CaptureMode
from dagrun.run.failures import not_visible_failure
from dagrun.run.proctree import kill_tagged
from dagrun.run.runwarning import RunWarning, WarningKind
from dagrun.run.stages import RunOutcome, RunTask, StageRunner

_runners: dict[str, StageRunner] = {}  # ObjectRef hex -> runner (one sweep per worker)
_visible: set[str] = set()  # workflow.pkl paths already seen on this node
RUN_TAG = "DAGRUN_RUN_TAG"  # environment variable inherited by every process of a run
_worker: dict[str, Any] = {}  # this worker's tag prefix and watchdog, made on its first run


def _worker_tag() -> str:
    """This worker's tag prefix; its watchdog is started with the first run."""
    if "tag" not in _worker:
        _worker["tag"] = f"ray-{uuid.uuid4().hex[:12]}/"
        _worker["watchdog"] = _start_watchdog(RUN_TAG, _worker["tag"])  # lives as we do
    tag: str = _worker["tag"]
    return tag


_WATCHDOG = """
import os, select, sys
from dagrun.run.proctree import kill_tagged
var, prefix, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
if os.fork():
    os._exit(0)
os.setsid()
while os.path.exists(f"/proc/{pid}"):
    if select.select([0], [], [], 1.0)[0] and not os.read(0, 4096):
        break
kill_tagged(var, prefix)
"""


def _start_watchdog(var: str, prefix: str) -> subprocess.Popen[bytes] | None:
    """A grandchild that kills ``var=prefix...`` once this worker is gone (its stdin, our
    pipe, closes when we die, however we die); the Popen keeps our end open."""
    env = {k: v for k, v in os.environ.items() if k != var}  # never kill itself
    try:
        proc = subprocess.Popen([sys.executable, "-c", _WATCHDOG, var, prefix,
                                 str(os.getpid())], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        proc.wait(timeout=60)  # the intermediate process exits at once
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc


def _in_driver_folder(cwd: str, task: RunTask) -> RunWarning | None:
    """``chdir`` to the driver's folder; a warning when this node does not see it."""
    if not cwd:
        return None
    if os.path.isdir(cwd):
        os.chdir(cwd)
        return None
    return RunWarning(
        WarningKind.DRIVER_FOLDER, "the driver's folder is not visible on a Ray node (stages "
        "ran in another folder)",
        f"the driver's folder {cwd} is not visible on this Ray node: the stages of run "
        f"{task.label} ran in {os.getcwd()} (relative paths resolve there)")


def _tagged_run(runner: StageRunner, task: RunTask, cwd: str) -> RunOutcome:
    """Run the run with its environment tag set, then kill what it left running."""
    warning = _in_driver_folder(cwd, task)
    tag = f"{_worker_tag()}{task.exp_id}/{task.rep}/{task.attempt}"
    os.environ[RUN_TAG] = tag
    try:
        outcome = runner.run(task)
    finally:
        os.environ.pop(RUN_TAG, None)
        kill_tagged(RUN_TAG, tag)
    if warning is not None:
        outcome = replace(outcome, warnings=(*outcome.warnings, warning))
    return outcome


def out_visible(workflow_pkl: str) -> bool:
    """Whether this node sees the sweep's ``OUT/.dagrun/workflow.pkl`` (cached when true)."""
    if workflow_pkl in _visible:
        return True
    if os.path.isfile(workflow_pkl):
        _visible.add(workflow_pkl)
        return True
    return False


def _runner_for(ref: Any) -> StageRunner:
    """The stage runner of the sweep whose workflow is ``ref``, loaded once per worker."""
    import ray

    key = ref.hex()
    runner = _runners.get(key)
    if runner is None:
        blob, fingerprints = ray.get(ref)
        runner = StageRunner(Workflow.loads(blob), CaptureMode.FD, fingerprints)
        _runners.clear()  # a worker serves one sweep's driver at a time
        _runners[key] = runner
    return runner


def run_on_ray(workflow_ref: list[Any], task: RunTask, workflow_pkl: str,
               cwd: str = "") -> tuple[RunOutcome, bool]:
    """Execute one run; returns the outcome and whether its failure is already on disk.

    The failure of a run that could not start here (OUT not visible, workflow not loadable)
    is not on disk: the driver, which sees OUT, records it.
    """
    if not out_visible(workflow_pkl):
        out = os.path.dirname(os.path.dirname(workflow_pkl))
        failure = not_visible_failure(
            task, out, "Ray node",
            "out_path must be on a filesystem shared by the driver and every node of the "
            "cluster (e.g. NFS mounted at the same path)")
        return RunOutcome(task, failure), False
    try:
        runner = _runner_for(workflow_ref[0])
    except Exception as exc:  # the worker boundary: report, don't crash the worker
        failure = Failure.make(
            Stage.PRE, FailureKind.ENGINE,
            f"the Ray worker could not load the workflow: {type(exc).__name__}: {exc}",
            task.attempt)
        return RunOutcome(task, failure), False
    return _tagged_run(runner, task, cwd), True
