"""Following a sweep's runs on the disk while Slurm workers execute them.

The driver never hears from a worker: it reads the run folders. One ``listdir`` per run not
finished yet tells all it needs: ``post.done`` (done), ``lease.json`` (a worker runs it now:
its Slurm task is read from the lease), ``<stage>.error`` (it failed). A failure is final
once its record changed since the sweep was submitted, its attempt is past ``retries`` and
no worker holds the run; a failure from an earlier execution is not (a worker attempts the
run again, as ``execute`` would). Scans are spaced by at least ``SCAN_EVERY`` and by ten
times what the last one took, so a sweep of 100,000 runs on NFS is not read in a loop.
"""

from __future__ import annotations

import os
import time
from typing import Any

from dagrun.disk.layout import LEASE, STAGES, RunDir, Stage, error_name, marker_name
from dagrun.disk.leases import read_lease
from dagrun.disk.records import Failure, failure_signature
from dagrun.record import field, record
from dagrun.run.stages import RunTask
from dagrun.run.summary import FailedRun

SCAN_EVERY = 1.0
_DONE = marker_name(Stage.POST)
_ERRORS = {error_name(s): s for s in STAGES}


def _listing(path: str) -> set[str]:
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


@record
class RunWatch:
    """The runs one execution waits for, as the disk shows them."""

    retries: int
    pending: dict[str, RunTask] = field(default_factory=dict)
    done: int = 0
    failed: list[FailedRun] = field(default_factory=list)
    # runs seen held by a worker since the last ``new_round``: path -> its Slurm task
    running: dict[str, str | None] = field(default_factory=dict)
    held: int = 0  # runs held by a worker at the last scan
    _errors_before: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    _next_scan: float = 0.0

    @classmethod
    def of(cls, tasks: list[RunTask], retries: int) -> RunWatch:
        watch = cls(retries)
        for task in tasks:
            watch.pending[task.path] = task
            names = _listing(task.path) & _ERRORS.keys()
            if names:
                watch._errors_before[task.path] = failure_signature(task.path, names)
        return watch

    def scan(self, force: bool = False) -> bool:
        """Look at every pending run (unless the last look was too recent); returns
        whether anything finished."""
        now = time.monotonic()
        if not force and now < self._next_scan:
            return False
        before = len(self.pending)
        held = 0
        for path, task in list(self.pending.items()):
            held += self._look(path, task)
        self.held = held
        took = time.monotonic() - now
        self._next_scan = time.monotonic() + max(SCAN_EVERY, 10 * took)
        return len(self.pending) != before

    def _look(self, path: str, task: RunTask) -> int:
        names = _listing(path)
        if _DONE in names:
            del self.pending[path]
            self.done += 1
            return 0
        if LEASE in names:
            found = read_lease(RunDir(path))
            if found is not None:
                slurm = found[1].get("slurm")
                self.running[path] = slurm if isinstance(slurm, str) else None
                return 1
        errors = names & _ERRORS.keys()
        if errors and failure_signature(path, errors) != self._errors_before.get(path, ()):
            failure = self._last_failure(RunDir(path))
            if failure is not None and failure.attempt > self.retries:
                del self.pending[path]
                self.failed.append(FailedRun(task.label, path, failure.stage, failure.kind,
                                             failure.message))
        return 0

    @staticmethod
    def _last_failure(run: RunDir) -> Failure | None:
        found = [f for f in (Failure.read(run, s) for s in STAGES) if f is not None]
        return max(found, key=lambda f: f.attempt, default=None)

    def new_round(self) -> None:
        """A new array starts: forget which runs were seen running."""
        self.running = {}

    def stopped_runs(self) -> dict[str, str | None]:
        """Runs still pending that were seen running this round: their worker was stopped
        (by Slurm) before it finished them. Path -> the Slurm task that held it."""
        return {p: job for p, job in self.running.items() if p in self.pending}
