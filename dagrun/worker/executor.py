"""A worker's pool: one reused process per slot, with the multiprocessing backend's
timeouts, crash records and process-tree killing.

The slots are a ``dagrun.backends.process.slots.SlotPool``: each process is pinned to its
slot's GPUs for life (a process replaced after a timeout or crash gets the same slot).
A run whose lease was taken over is *abandoned*: its process (and the processes it started)
is killed and nothing is recorded for it, since another worker now owns the run.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import time
from typing import Any

import pebble

from dagrun.backends.process.driver import lost_run_failure
from dagrun.backends.process.slots import SlotPool
from dagrun.record import record
from dagrun.run import failures, proctree
from dagrun.run.stages import RunOutcome, RunTask
from dagrun.worker import child

JOIN_TIMEOUT = 30.0
OWN_SIGTERM_GRACE = 1.0  # seconds to wait for our own SIGTERM after a run's process got one


@record
class _Running:
    task: RunTask
    abandoned: bool = False


class Executor:
    """Runs claimed runs, one per slot; ``cudas`` gives each slot's GPUs."""

    def __init__(self, workflow_path: str, cudas: list[str | None], timeout: float) -> None:
        self.workflow_path = workflow_path
        self.cudas = cudas
        self.timeout = timeout
        self._pool: SlotPool | None = None
        self._running: dict[cf.Future[Any], _Running] = {}
        self._watchdog: Any = None
        self._token = ""

    def start(self) -> None:
        self._token = proctree.new_token()
        self._watchdog = proctree.start_watchdog(proctree.TOKEN_ENV, self._token)
        self._pool = SlotPool(self.cudas, child.init,
                              (self.workflow_path, os.getpid(), self._token))

    def free(self) -> int:
        """Slots that would start a run now (a slot whose GPUs another worker on this
        node uses is not free: ``SlotPool.free``)."""
        if self._pool is None:
            return 0
        return min(len(self.cudas) - len(self._running), self._pool.free())

    def busy(self) -> int:
        return len(self._running)

    def submit(self, task: RunTask) -> None:
        """Run ``task`` (a run this worker claimed, its attempt folder in
        ``task.folder``) in a free slot."""
        if self._pool is None:
            raise RuntimeError("the worker's pool is not running")
        future = self._pool.schedule(child.run_claimed, args=(task,),
                                     timeout=self.timeout or None)
        self._running[future] = _Running(task)

    def abandon(self, path: str) -> None:
        """Kill the run in ``path`` (its lease was taken over); nothing will be recorded."""
        for future, running in self._running.items():
            if running.task.path == path:
                running.abandoned = True
                future.cancel()

    def poll(self, timeout: float) -> list[RunOutcome]:
        """Outcomes of runs finished (abandoned ones left out), waiting up to ``timeout``."""
        if self._pool is not None:
            self._pool.retry()  # slots whose GPUs another process on this node freed
        if not self._running:
            time.sleep(timeout)
            return []
        done, _ = cf.wait(list(self._running), timeout=timeout,
                          return_when=cf.FIRST_COMPLETED)
        outcomes = []
        for future in done:
            outcome = self._outcome(future, self._running.pop(future))
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _outcome(self, future: cf.Future[Any], running: _Running) -> RunOutcome | None:
        task = running.task
        try:
            outcome: RunOutcome = future.result()
            return outcome
        except (cf.TimeoutError, pebble.ProcessExpired, cf.CancelledError, OSError,
                RuntimeError) as exc:
            self._kill_orphans()
            if running.abandoned:
                return None
            if isinstance(exc, pebble.ProcessExpired) and exc.exitcode == -signal.SIGTERM:
                # A batch system stopping this worker (Slurm: time limit, preemption,
                # scancel) signals every process of the job at once. Give this process's own
                # SIGTERM a moment to arrive: it stops the worker and releases the run
                # (``Terminated`` raised out of this sleep), instead of blaming the run.
                time.sleep(OWN_SIGTERM_GRACE)
            outcome = failures.commit(lost_run_failure(task, exc, self.timeout), task)
            return None if outcome.superseded else outcome

    def _kill_orphans(self) -> None:
        ended = self._pool.take_ended() if self._pool is not None else set()
        if ended:
            proctree.kill_orphans(self._token, ended)

    def shutdown(self, *, kill: bool = False) -> None:
        """Stop every slot's process; with ``kill`` the runs' process trees die first."""
        pool, self._pool = self._pool, None
        if pool is not None:
            if kill:
                pool.stop()
            else:
                pool.close()
            pool.join(JOIN_TIMEOUT)
        if kill and self._token:
            proctree.kill_tagged(proctree.TOKEN_ENV, self._token, proctree.KILL_GRACE)
        watchdog, self._watchdog = self._watchdog, None
        proctree.stop_watchdog(watchdog)
