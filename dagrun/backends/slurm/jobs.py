"""``OUT/.dagrun/slurm/job.json``: the Slurm arrays submitted for a sweep.

An ``execute`` reads it before submitting: while an array listed there still has tasks
pending or running, it submits nothing (a detached sweep executed twice runs once). Job ids
are only meaningful to the cluster that gave them, so the file names the cluster's
``SLURM_CONF`` too, for the message; Slurm forgetting a job (``MinJobAge``) makes it
simply not alive.
"""

from __future__ import annotations

import time
from typing import Any

from dagrun.backends.slurm.commands import Task, squeue
from dagrun.disk import atomic
from dagrun.disk.layout import SweepDir
from dagrun.disk.records import iso
from dagrun.record import field, record


@record
class Arrays:
    """The arrays of one sweep, newest last."""

    jobs: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)  # when, per job (ISO time)

    @classmethod
    def read(cls, sweep: SweepDir) -> Arrays:
        data = atomic.read_json_or_none(sweep.slurm_jobs)
        if not isinstance(data, dict):
            return cls()
        jobs = [str(j) for j in data.get("jobs", []) if isinstance(j, (str, int))]
        when = [str(w) for w in data.get("submitted", [])]
        return cls(jobs, when)

    def add(self, sweep: SweepDir, job: str) -> None:
        """Remember a new array (written at once: a driver killed next still knows it)."""
        self.jobs.append(job)
        self.submitted.append(iso(time.time()))
        data: dict[str, Any] = {"jobs": self.jobs, "submitted": self.submitted}
        atomic.makedirs(sweep.slurm)
        atomic.write_json(sweep.slurm_jobs, data)

    def active(self, tasks: list[Task] | None = None) -> list[Task]:
        """Tasks of these arrays that are pending or running now (asks squeue)."""
        tasks = squeue(self.jobs) if tasks is None else tasks
        return [t for t in tasks if t.state.active]
