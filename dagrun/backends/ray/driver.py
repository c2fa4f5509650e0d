"""``ray``: each run is one Ray task executing the shared ``StageRunner`` on a cluster.

* ``start`` imports Ray lazily (install hint when missing), connects (``ray_connect``), checks
  every cfg's resource request (``ray_resources``) and puts the workflow into the object
  store once; tasks get its ref and load it once per worker process (``dagrun.backends.ray.task``).
* Runs are submitted only while the cluster's totals minus what dagrun's in-flight runs
  reserve hold them, so a submitted run starts at once and its ``timeout`` clock can start at
  submission (on a cluster shared with other jobs, waiting for resources counts towards it).
* A run no node can ever hold is reported as ``unschedulable`` without submitting it;
  pending runs are checked again every ``recheck_every`` seconds (nodes can leave).
* ``timeout``: ``ray.cancel(force=True)`` kills the worker; the driver records ``timeout``.
  A worker that died is ``crashed``. Ray's own retries are off (``max_retries=0``,
  ``retry_exceptions=False``): dagrun's ``retries`` is the only retry.
* Nothing Ray-specific is written to disk: a sweep moves freely between backends.
* The cluster itself is watched between polls (``health``): when the GCS or the driver's
  raylet stops answering, nothing more is submitted, and once it stays gone for
  ``lost_after`` seconds ``poll`` raises ``ClusterLostError``. Runs in flight are neither
  recorded nor counted as failed (the environment failed, not them); the scheduler keeps
  finished stages and rewrites results.jsonl. Left alone, Ray's core worker would end the
  driver on its own after 60 s without its GCS, with no summary.
* Messages Ray gives (a remote traceback, the memory monitor's report) keep their text and
  figures but lose their ANSI colour codes before they reach a failure record.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

from dagrun.backends.base import Backend
from dagrun.backends.ray import health
from dagrun.backends.ray.connect import Connection, bounded, connect
from dagrun.backends.ray.resources import (
    Request,
    alive_nodes,
    free_for,
    request_of,
    requests_of,
    slots,
    unschedulable_reason,
)
from dagrun.code.workflow import Workflow
from dagrun.config import Settings
from dagrun.disk.records import Failure
from dagrun.errors import BackendUnavailableError, ClusterLostError, FailureKind
from dagrun.progress import say
from dagrun.record import record
from dagrun.run import failures
from dagrun.run.proctree import stop_watchdog
from dagrun.run.stages import RunOutcome, RunTask

INSTALL_HINT = "the ray backend needs Ray: pip install 'dagrun[ray]'"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Figures of Ray's memory monitor report ("... actual memory used=1.2GB ..." and "Memory on
# the node (IP: ..., ID: ...) was 7.1GB used / 7.5GB limit (0.95) ...").
_OOM_FIGURES = (re.compile(r"actual memory used=[\d.]+\s*GB"),
                re.compile(r"was [\d.]+\s*GB used / [\d.]+\s*GB limit(?: \([\d.]+\))?"),
                re.compile(r"threshold of [\d.]+"))


def plain(text: str) -> str:
    """``text`` without ANSI escape sequences (Ray colours its tracebacks)."""
    return _ANSI.sub("", text)


def oom_message(stage: str, ray_text: str) -> str:
    """The memory monitor's kill, with Ray's figures on the first line and its report after."""
    text = plain(ray_text).strip()
    figures = [m.group(0) for pattern in _OOM_FIGURES if (m := pattern.search(text))]
    shown = f": {'; '.join(figures)}" if figures else ""
    return (f"Ray's memory monitor killed the worker running {stage} (the node ran out of "
            f"memory){shown}\n{text}").rstrip()


def import_ray() -> ModuleType:
    """``import ray``, or a one-line ``BackendUnavailableError`` with the install hint."""
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailableError(f"{INSTALL_HINT} ({exc})") from None
    return ray


@record
class _InFlight:
    """A submitted run: when it was submitted and, once cancelled by dagrun, why."""

    task: RunTask
    request: Request
    submitted: float
    cancelled: FailureKind | None = None
    cancelled_at: float = 0.0
    reason: str = ""


def record_lost(task: RunTask, kind: FailureKind, message: str) -> Failure:
    """A failure the driver records itself (the run could not record it), with log tail."""
    return failures.record(failures.lost_run(task, kind, plain(message)), task)


class RayBackend(Backend):
    name = "ray"

    recheck_every: ClassVar[float] = 5.0  # seconds between feasibility checks of pending runs
    cancel_grace: ClassVar[float] = 15.0  # a cancelled task not reported by then is recorded
    lost_after: ClassVar[float] = 3.0  # the cluster unreachable this long: it is gone
    shutdown_limit: ClassVar[float] = 20.0  # ray.shutdown may take this long, no more
    nodes_limit: ClassVar[float] = 10.0  # ... and ray.nodes

    _started = False  # connected: shutdown() must cancel and disconnect
    _gone = False  # the cluster went away: nothing left to cancel

    @property
    def capacity(self) -> int:
        return max(1, slots(self._base, self._nodes)) if self._started else 1

    @classmethod
    def check(cls, settings: Settings, cfgs: Sequence[Mapping[str, Any]]) -> None:
        """Ray importable and every resource value usable, before anything is written."""
        import_ray()
        requests_of(cfgs, settings)

    def start(self) -> None:
        self._ray = import_ray()
        self._requests = requests_of(self.workflow.cfgs, self.settings)
        self._base = request_of({}, self.settings, "basecfg")
        self._queue: collections.deque[RunTask] = collections.deque()
        self._inflight: dict[Any, _InFlight] = {}
        self._ready: list[RunOutcome] = []
        self._stranded: list[RunTask] = []  # lost with the cluster (not recorded)
        self._conn: Connection = connect(self._ray, self.settings)
        self._started = True
        self._nodes: list[dict[str, float]] = []
        self._refresh_nodes()
        self._health = health.Watch(health.endpoints(self._ray, self._conn.address),
                                    self.lost_after)
        self._cwd = os.getcwd()
        self._remote = self._ray.remote(_run_on_ray())
        self._workflow_ref = self._ray.put((self.workflow.dumps(), self.fingerprints))

    def _refresh_nodes(self) -> None:
        """The alive nodes' resources. Asked of the GCS, which may have just died: then
        ``ray.nodes`` blocks for Ray's 60 s of reconnecting, so the wait is bounded and the
        old list is kept (the health check says what happened)."""
        self._checked_at = time.monotonic()
        with contextlib.suppress(BackendUnavailableError):
            nodes = bounded(self._ray.nodes, self.nodes_limit, "ray.nodes")
            self._nodes = alive_nodes(nodes)

    # -- submitting -------------------------------------------------------------------

    def extend(self, workflow: Workflow) -> None:
        super().extend(workflow)
        if self._started:
            self._requests = requests_of(workflow.cfgs, self.settings)

    def submit(self, task: RunTask) -> None:
        self._queue.append(task)
        self._dispatch()

    def _dispatch(self) -> None:
        """Submit queued runs while they fit; report those no node can ever hold. Nothing is
        submitted while the cluster does not answer."""
        while self._queue and self._health.ok:
            task = self._queue[0]
            request = self._requests[self.workflow.position(task.exp_id)]
            reason = unschedulable_reason(request, self._nodes)
            if reason is not None:
                self._queue.popleft()
                failure = record_lost(task, FailureKind.UNSCHEDULABLE, reason)
                self._ready.append(RunOutcome(task, failure))
                continue
            reserved = [f.request for f in self._inflight.values()]
            if self._inflight and not free_for(request, self._nodes, reserved):
                return
            self._queue.popleft()
            ref = self._remote.options(max_retries=0, retry_exceptions=False,
                                       **request.options()).remote(
                [self._workflow_ref], task, self.sweep.workflow, self._cwd)
            self._inflight[ref] = _InFlight(task, request, time.monotonic())

    # -- watching ---------------------------------------------------------------------

    def _cancel(self, ref: Any, info: _InFlight, kind: FailureKind, reason: str) -> None:
        info.cancelled, info.cancelled_at, info.reason = kind, time.monotonic(), reason
        with contextlib.suppress(Exception):  # already finished or gone: nothing to stop
            self._ray.cancel(ref, force=True)

    def _watch(self) -> None:
        """Cancel runs over their timeout, and pending runs no node can hold any more."""
        now = time.monotonic()
        timeout = self.settings.timeout
        recheck = now - self._checked_at >= self.recheck_every and self._health.ok
        if recheck:
            self._refresh_nodes()
        for ref, info in self._inflight.items():
            if info.cancelled is not None:
                continue
            if timeout and now - info.submitted > timeout:
                self._cancel(ref, info, FailureKind.TIMEOUT,
                             f"run exceeded the timeout of {timeout:g} s and its Ray task "
                             "was cancelled (worker killed)")
            elif recheck:
                reason = unschedulable_reason(info.request, self._nodes)
                if reason is not None:
                    self._cancel(ref, info, FailureKind.UNSCHEDULABLE, reason)

    def _next_deadline(self, timeout: float) -> float:
        """How long ``poll`` may block: until the next run reaches its timeout at most."""
        if not self.settings.timeout:
            return timeout
        now = time.monotonic()
        due = [i.submitted + self.settings.timeout - now
               for i in self._inflight.values() if i.cancelled is None]
        return max(0.0, min([timeout, *due]))

    def poll(self, timeout: float) -> list[RunOutcome]:
        self._check_cluster()
        self._dispatch()
        self._watch()
        out, self._ready = self._ready, []
        if self._inflight:
            refs = list(self._inflight)
            wait = 0.0 if out else self._next_deadline(timeout)
            ready, _ = self._ray.wait(refs, num_returns=1, timeout=wait)
            if ready:
                ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
            collected = [self._collect(ref) for ref in ready]
            out.extend(o for o in collected if o is not None)
            out.extend(self._overdue())
        self._dispatch()
        if not out:
            self._check_cluster()
        return out

    def _check_cluster(self) -> None:
        """``ClusterLostError`` once the GCS or the raylet stayed unreachable ``lost_after`` s."""
        gone = self._health.lost()
        if gone is None:
            return
        self._gone = True
        n = len(self._inflight) + len(self._stranded)
        raise ClusterLostError(
            f"the Ray cluster at {self._conn.address} is gone ({gone}); {n} run(s) in flight "
            "were stopped and are not counted as failed; finished stages are kept: restart "
            "the cluster and run again to resume")

    def _overdue(self) -> list[RunOutcome]:
        """Cancelled runs Ray has not reported after ``cancel_grace``: record them anyway."""
        now = time.monotonic()
        late = [ref for ref, i in self._inflight.items()
                if i.cancelled is not None and now - i.cancelled_at > self.cancel_grace]
        outcomes = []
        for ref in late:
            info = self._inflight.pop(ref)
            kind = info.cancelled or FailureKind.ENGINE
            outcomes.append(RunOutcome(info.task, record_lost(info.task, kind, info.reason)))
        return outcomes

    def _collect(self, ref: Any) -> RunOutcome | None:
        """The outcome of a finished task; None when it was lost with the cluster."""
        info = self._inflight.pop(ref)
        errors = self._ray.exceptions
        try:
            outcome, recorded = self._ray.get(ref, timeout=60)
        except errors.RayError as exc:
            if info.cancelled is None and not self._health.check_now():
                self._stranded.append(info.task)  # the cluster, not the run, failed
                return None
            kind, message = self._lost(info, exc)
            return RunOutcome(info.task, record_lost(info.task, kind, message))
        if outcome.failure is not None and not recorded:  # the driver sees OUT: record it
            failures.record(outcome.failure, info.task)
        result: RunOutcome = outcome
        return result

    def _lost(self, info: _InFlight, exc: BaseException) -> tuple[FailureKind, str]:
        """Kind and message of a run whose task did not return an outcome."""
        errors = self._ray.exceptions
        stage = failures.running_stage(info.task).value
        if info.cancelled is not None:
            return info.cancelled, info.reason
        if isinstance(exc, errors.OutOfMemoryError):
            return FailureKind.CRASHED, oom_message(stage, str(exc))
        if isinstance(exc, errors.WorkerCrashedError):
            return FailureKind.CRASHED, (
                f"the Ray worker process running {stage} died (exit code or signal unknown: "
                "Ray does not report it; see python-core-worker-*.log on the node)")
        if isinstance(exc, (errors.NodeDiedError, errors.LocalRayletDiedError)):
            return FailureKind.HOST_DOWN, f"the Ray node running {stage} died: {exc}"
        first = (plain(str(exc)).strip().splitlines() or [""])[0]
        return FailureKind.ENGINE, f"Ray could not run the task: {type(exc).__name__}: {first}"

    # -- the rest of the interface ------------------------------------------------------

    def running(self) -> int:
        return len(self._inflight) if self._started else 0

    def describe(self) -> str:
        where = "a local Ray instance" if self._conn.local else f"Ray at {self._conn.address}"
        cpus = sum(n.get("CPU", 0.0) for n in self._nodes)
        gpus = sum(n.get("GPU", 0.0) for n in self._nodes)
        timeout = f", timeout {self.settings.timeout:g} s" if self.settings.timeout else ""
        return (f"{where} ({len(self._nodes)} node(s), {cpus:g} CPU, {gpus:g} GPU); "
                f"per run: {self._base}{timeout}")

    def shutdown(self, *, kill: bool = False) -> None:
        if not self._started:
            return
        self._started = False
        if kill and not self._gone:  # a lost cluster cannot be asked to cancel anything
            for ref in list(self._inflight):
                with contextlib.suppress(Exception):  # best effort: we are stopping anyway
                    self._ray.cancel(ref, force=True)
        self._inflight.clear()
        if self._conn.owned:
            with contextlib.suppress(BackendUnavailableError):  # bounded: a lost GCS hangs it
                bounded(self._ray.shutdown, self.shutdown_limit, "ray.shutdown")
        stop_watchdog(self._conn.watchdog)  # kills what the local instance left behind
        if self._conn.local:
            say("dagrun: stopped the local Ray instance")


def _run_on_ray() -> Any:
    """The task function (imported here so the module imports without Ray on the path)."""
    from dagrun.backends.ray.task import run_on_ray

    return run_on_ray
