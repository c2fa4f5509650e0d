"""A worker's pool: one reused process per slot, with the multiprocessing backend's
timeouts, crash records and process-tree killing.

Each slot is a one-process ``dagrun.backends.process.pool.Pool`` whose process is pinned to
the slot's GPUs for life (a process replaced after a timeout or crash gets the same slot).
A run whose lease was taken over is *abandoned*: its process (and the processes it started)
is killed and nothing is recorded for it, since another worker now owns the run.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from dataclasses import dataclass
from typing import Any

import pebble

from dagrun import proctree
from dagrun.backends.process.driver import lost_run_failure
from dagrun.backends.process.pool import Pool
from dagrun.backends.process.spawning import WORKER_CONTEXT
from dagrun.layout import RunDir
from dagrun.leases import Lease
from dagrun.stages import RunOutcome, RunTask
from dagrun.worker import child

JOIN_TIMEOUT = 30.0


@dataclass
class _Slot:
    pool: Pool
    future: cf.Future[Any] | None = None
    task: RunTask | None = None
    abandoned: bool = False


class Executor:
    """Runs claimed runs, one per slot; ``cudas`` gives each slot's GPUs."""

    def __init__(self, workflow_path: str, cudas: list[str | None], timeout: float) -> None:
        self.workflow_path = workflow_path
        self.cudas = cudas
        self.timeout = timeout
        self._slots: list[_Slot] = []
        self._watchdog: Any = None
        self._token = ""

    def start(self) -> None:
        self._token = proctree.new_token()
        self._watchdog = proctree.start_watchdog(proctree.TOKEN_ENV, self._token)
        self._slots = [_Slot(Pool(max_workers=1, initializer=child.init,
                                  initargs=(self.workflow_path, os.getpid(), self._token, cuda),
                                  context=WORKER_CONTEXT))
                       for cuda in self.cudas]

    def free(self) -> int:
        return sum(1 for s in self._slots if s.future is None)

    def busy(self) -> int:
        return len(self._slots) - self.free()

    def submit(self, task: RunTask, lease: Lease) -> None:
        """Run ``task`` (whose run ``lease`` holds) in a free slot."""
        slot = next(s for s in self._slots if s.future is None)
        slot.task, slot.abandoned = task, False
        slot.future = slot.pool.schedule(child.run_claimed,
                                         args=(task, lease.run.lease, lease.inode),
                                         timeout=self.timeout or None)

    def abandon(self, path: str) -> None:
        """Kill the run in ``path`` (its lease was taken over); nothing will be recorded."""
        for slot in self._slots:
            if slot.future is not None and slot.task is not None and slot.task.path == path:
                slot.abandoned = True
                slot.future.cancel()

    def poll(self, timeout: float) -> list[RunOutcome]:
        """Outcomes of runs finished (abandoned ones left out), waiting up to ``timeout``."""
        futures = [s.future for s in self._slots if s.future is not None]
        if not futures:
            time.sleep(timeout)
            return []
        cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        outcomes = []
        for slot in self._slots:
            future, task = slot.future, slot.task
            if future is not None and task is not None and future.done():
                outcome = self._outcome(slot, future, task)
                slot.future, slot.task = None, None
                if outcome is not None:
                    outcomes.append(outcome)
        return outcomes

    def _outcome(self, slot: _Slot, future: cf.Future[Any], task: RunTask) -> RunOutcome | None:
        try:
            outcome: RunOutcome = future.result()
            return outcome
        except child.LeaseLost:
            return None
        except (cf.TimeoutError, pebble.ProcessExpired, cf.CancelledError, OSError,
                RuntimeError) as exc:
            self._kill_orphans(slot)
            if slot.abandoned:
                return None
            failure = lost_run_failure(task, exc, self.timeout)
            failure.write(RunDir(task.path))
            return RunOutcome(task, failure)

    def _kill_orphans(self, slot: _Slot) -> None:
        ended = slot.pool.take_ended()
        if ended:
            proctree.kill_orphans(self._token, ended)

    def shutdown(self, *, kill: bool = False) -> None:
        """Stop every slot's process; with ``kill`` the runs' process trees die first."""
        slots, self._slots = self._slots, []
        for slot in slots:
            if kill:
                slot.pool.stop()  # type: ignore[no-untyped-call]
            else:
                slot.pool.close()  # type: ignore[no-untyped-call]
        for slot in slots:
            slot.pool.join(timeout=JOIN_TIMEOUT)
        if kill and self._token:
            proctree.kill_tagged(proctree.TOKEN_ENV, self._token, proctree.KILL_GRACE)
        watchdog, self._watchdog = self._watchdog, None
        proctree.stop_watchdog(watchdog)
