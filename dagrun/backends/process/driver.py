"""``multiprocessing``: ``num_cpus`` reused worker processes on this machine.

Built on ``pebble.ProcessPool``: per-task timeouts that kill the worker (SIGTERM, then SIGKILL
after a short grace) and replace it, and a typed error for a worker that died. Workers are
started with ``spawn`` (safe with threads in the driver: the progress bar, user libraries)
and get the workflow once, through the pool initializer.
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any

import pebble

from dagrun.backends.base import Backend
from dagrun.backends.process.spawning import WORKER_CONTEXT
from dagrun.backends.process.worker import init_worker, pool_args, run_task
from dagrun.errors import FailureKind
from dagrun.failures import crashed_failure, lost_run, timeout_failure
from dagrun.layout import RunDir
from dagrun.records import Failure
from dagrun.stages import RunOutcome, RunTask

JOIN_TIMEOUT = 30.0


def lost_run_failure(task: RunTask, exc: BaseException, timeout: float) -> Failure:
    """The failure record of a run whose worker process was killed or died."""
    if isinstance(exc, cf.TimeoutError):
        return timeout_failure(task, timeout)
    if isinstance(exc, pebble.ProcessExpired):
        return crashed_failure(task, exc.exitcode or 0)
    return lost_run(task, FailureKind.ENGINE, f"{type(exc).__name__}: {exc}")


class ProcessBackend(Backend):
    name = "multiprocessing"

    @property
    def workers(self) -> int:
        return self.settings.num_cpus

    @property
    def capacity(self) -> int:
        return self.workers

    def start(self) -> None:
        blob = self.workflow.dumps()
        self._pool: pebble.ProcessPool | None = pebble.ProcessPool(
            max_workers=self.workers, initializer=init_worker,
            initargs=pool_args(blob, self.fingerprints),
            context=WORKER_CONTEXT)
        self._futures: dict[cf.Future[Any], RunTask] = {}

    def submit(self, task: RunTask) -> None:
        timeout = self.settings.timeout or None
        if self._pool is None:
            raise RuntimeError("the process pool is not running")
        future = self._pool.schedule(run_task, args=(task,), timeout=timeout)
        self._futures[future] = task

    def poll(self, timeout: float) -> list[RunOutcome]:
        if not self._futures:
            return []
        finished, _ = cf.wait(list(self._futures), timeout=timeout,
                              return_when=cf.FIRST_COMPLETED)
        return [self._outcome(f, self._futures.pop(f)) for f in finished]

    def _outcome(self, future: cf.Future[Any], task: RunTask) -> RunOutcome:
        try:
            outcome: RunOutcome = future.result()
            return outcome
        except (cf.TimeoutError, pebble.ProcessExpired, cf.CancelledError, OSError,
                RuntimeError) as exc:
            failure = lost_run_failure(task, exc, self.settings.timeout)
            failure.write(RunDir(task.path))
            return RunOutcome(task, failure)

    def running(self) -> int:
        return sum(1 for f in self._futures if f.running())

    def describe(self) -> str:
        timeout = f", timeout {self.settings.timeout:g} s" if self.settings.timeout else ""
        return f"multiprocessing, {self.workers} worker process(es){timeout}"

    def shutdown(self, *, kill: bool = False) -> None:
        pool = getattr(self, "_pool", None)
        if pool is None:
            return
        if kill:
            pool.stop()
        else:
            pool.close()
        pool.join(timeout=JOIN_TIMEOUT)
        self._pool = None
