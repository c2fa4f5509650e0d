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
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

from dagrun import atomic, failures
from dagrun.backends.base import Backend
from dagrun.backends.ray.connect import Connection, connect
from dagrun.backends.ray.resources import (
    Request,
    alive_nodes,
    free_for,
    request_of,
    requests_of,
    slots,
    unschedulable_reason,
)
from dagrun.config import Settings
from dagrun.errors import BackendUnavailableError, FailureKind
from dagrun.layout import RunDir
from dagrun.progress import say
from dagrun.records import Failure
from dagrun.stages import RunOutcome, RunTask

INSTALL_HINT = "the ray backend needs Ray: pip install 'dagrun[ray]'"


def import_ray() -> ModuleType:
    """``import ray``, or a one-line ``BackendUnavailableError`` with the install hint."""
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailableError(f"{INSTALL_HINT} ({exc})") from None
    return ray


@dataclass
class _InFlight:
    """A submitted run: when it was submitted and, once cancelled by dagrun, why."""

    task: RunTask
    request: Request
    submitted: float
    cancelled: FailureKind | None = None
    cancelled_at: float = 0.0
    reason: str = ""


def record(task: RunTask, kind: FailureKind, message: str) -> Failure:
    """A failure the driver records itself (the run could not record it), with log tail."""
    return failures.record(failures.lost_run(task, kind, message), task)


class RayBackend(Backend):
    name = "ray"

    recheck_every: ClassVar[float] = 5.0  # seconds between feasibility checks of pending runs
    cancel_grace: ClassVar[float] = 15.0  # a cancelled task not reported by then is recorded

    _started = False  # connected: shutdown() must cancel and disconnect

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
        self._conn: Connection = connect(self._ray, self.settings)
        self._started = True
        self._refresh_nodes()
        self._remote = self._ray.remote(_run_on_ray())
        self._workflow_ref = self._ray.put((self.workflow.dumps(), self.fingerprints))

    def _refresh_nodes(self) -> None:
        self._nodes = alive_nodes(self._ray.nodes())
        self._checked_at = time.monotonic()

    # -- submitting -------------------------------------------------------------------

    def submit(self, task: RunTask) -> None:
        self._queue.append(task)
        self._dispatch()

    def _dispatch(self) -> None:
        """Submit queued runs while they fit; report those no node can ever hold."""
        while self._queue:
            task = self._queue[0]
            request = self._requests[task.exp_id]
            reason = unschedulable_reason(request, self._nodes)
            if reason is not None:
                self._queue.popleft()
                failure = record(task, FailureKind.UNSCHEDULABLE, reason)
                self._ready.append(RunOutcome(task, failure))
                continue
            reserved = [f.request for f in self._inflight.values()]
            if self._inflight and not free_for(request, self._nodes, reserved):
                return
            self._queue.popleft()
            ref = self._remote.options(max_retries=0, retry_exceptions=False,
                                       **request.options()).remote(
                [self._workflow_ref], task, self.sweep.workflow)
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
        recheck = now - self._checked_at >= self.recheck_every
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
        self._dispatch()
        self._watch()
        out, self._ready = self._ready, []
        if self._inflight:
            refs = list(self._inflight)
            wait = 0.0 if out else self._next_deadline(timeout)
            ready, _ = self._ray.wait(refs, num_returns=1, timeout=wait)
            if ready:
                ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
            out.extend(self._collect(ref) for ref in ready)
            out.extend(self._overdue())
        self._dispatch()
        return out

    def _overdue(self) -> list[RunOutcome]:
        """Cancelled runs Ray has not reported after ``cancel_grace``: record them anyway."""
        now = time.monotonic()
        late = [ref for ref, i in self._inflight.items()
                if i.cancelled is not None and now - i.cancelled_at > self.cancel_grace]
        outcomes = []
        for ref in late:
            info = self._inflight.pop(ref)
            kind = info.cancelled or FailureKind.ENGINE
            outcomes.append(RunOutcome(info.task, record(info.task, kind, info.reason)))
        return outcomes

    def _collect(self, ref: Any) -> RunOutcome:
        info = self._inflight.pop(ref)
        errors = self._ray.exceptions
        try:
            outcome, recorded = self._ray.get(ref, timeout=60)
        except errors.RayError as exc:
            kind, message = self._lost(info, exc)
            return RunOutcome(info.task, record(info.task, kind, message))
        if outcome.failure is not None and not recorded:  # the driver sees OUT: record it
            run = RunDir(info.task.path)
            with contextlib.suppress(OSError):
                atomic.makedirs(run.path)
                outcome.failure.write(run)
        result: RunOutcome = outcome
        return result

    def _lost(self, info: _InFlight, exc: BaseException) -> tuple[FailureKind, str]:
        """Kind and message of a run whose task did not return an outcome."""
        errors = self._ray.exceptions
        stage = failures.running_stage(info.task).value
        if info.cancelled is not None:
            return info.cancelled, info.reason
        if isinstance(exc, errors.OutOfMemoryError):
            return FailureKind.CRASHED, (f"Ray's memory monitor killed the worker running "
                                         f"{stage} (the node ran out of memory)")
        if isinstance(exc, errors.WorkerCrashedError):
            return FailureKind.CRASHED, (
                f"the Ray worker process running {stage} died (exit code or signal unknown: "
                "Ray does not report it; see python-core-worker-*.log on the node)")
        if isinstance(exc, (errors.NodeDiedError, errors.LocalRayletDiedError)):
            return FailureKind.HOST_DOWN, f"the Ray node running {stage} died: {exc}"
        first = (str(exc).strip().splitlines() or [""])[0]
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
        if kill:
            for ref in list(self._inflight):
                with contextlib.suppress(Exception):  # best effort: we are stopping anyway
                    self._ray.cancel(ref, force=True)
        self._inflight.clear()
        if self._conn.owned:
            self._ray.shutdown()
        if self._conn.local:
            say("dagrun: stopped the local Ray instance")


def _run_on_ray() -> Any:
    """The task function (imported here so the module imports without Ray on the path)."""
    from dagrun.backends.ray.task import run_on_ray

    return run_on_ray
