"""``multiprocessing``: ``num_cpus`` reused worker processes on this machine.

Built on ``pebble.ProcessPool``: per-task timeouts that kill the worker (SIGTERM, then SIGKILL
after a short grace) and replace it, and a typed error for a worker that died. Workers are
started with ``spawn`` (safe with threads in the driver: the progress bar, user libraries)
and get the workflow once, through the pool initializer.
"""

from __future__ import annotations

import concurrent.futures as cf
import signal
from typing import Any

import pebble

from dagrun.backends.base import Backend
from dagrun.capture import tail
from dagrun.errors import FailureKind
from dagrun.layout import RunDir, Stage
from dagrun.plan import scan_run
from dagrun.records import Failure
from dagrun.spawning import WORKER_CONTEXT
from dagrun.stages import RunOutcome, RunTask
from dagrun.worker import init_worker, pool_args, run_task

JOIN_TIMEOUT = 30.0


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


_ENGINE_FRAMES = ("/pebble/", "/multiprocessing/", "/dagrun/", 'File "<string>"')


def log_tail(path: str, lines: int = 12) -> str:
    """The end of a crashed stage's log, without the engine's own frames of a traceback
    dump (what is left is the user's output and the user's frames)."""
    kept = [line for line in tail(path, 200).splitlines()
            if not any(frame in line for frame in _ENGINE_FRAMES)]
    return "\n".join(kept[-lines:])


def _running_stage(task: RunTask) -> Stage:
    """The stage a killed run was in: the first one without a marker (the disk decides)."""
    return scan_run(task.exp_id, task.rep, RunDir(task.path)).next_stage or Stage.POST


def lost_run_failure(task: RunTask, exc: BaseException, timeout: float) -> Failure:
    """The failure record of a run whose process was killed or died."""
    stage = _running_stage(task)
    log = log_tail(RunDir(task.path).log(stage))
    if isinstance(exc, cf.TimeoutError):
        kind, message = FailureKind.TIMEOUT, f"run exceeded the timeout of {timeout:g} s " \
                                             f"and was killed (in {stage.value})"
    elif isinstance(exc, pebble.ProcessExpired):
        code = exc.exitcode or 0
        how = f"killed by {_signal_name(code)}" if code < 0 else f"exited with code {code}"
        kind, message = FailureKind.CRASHED, f"the process running {stage.value} {how}"
    else:
        kind, message = FailureKind.ENGINE, f"{type(exc).__name__}: {exc}"
    if log:
        message += "\nlast lines of the log:\n" + log
    return Failure.make(stage, kind, message, task.attempt)


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
