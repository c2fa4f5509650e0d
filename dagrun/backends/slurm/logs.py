"""Which worker log tells about a run (for ``dagrun show``), without asking Slurm.

A run being executed names its Slurm task in its lease; a run that failed is named in the
log of the worker that gave up on it. Otherwise the folder of logs is all there is to say.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from dagrun.disk.layout import RunDir, SweepDir
from dagrun.disk.leases import read_lease

SEARCHED = 200  # worker logs read at most, newest first


def worker_log_lines(sweep: SweepDir, run: RunDir, label: str) -> Iterator[str]:
    """Lines for ``dagrun show``: the worker log of this run, if it ran under Slurm."""
    if not os.path.isdir(sweep.slurm):
        return
    found = read_lease(run)
    task = found[1].get("slurm") if found is not None else None
    if isinstance(task, str) and task:
        yield f"worker log (Slurm task {task}, running it now): {sweep.slurm_log(task)}"
        return
    for path in _mentioning(sweep, f"run {label} "):
        yield f"worker log (names this run): {path}"
        return
    yield f"worker logs: {sweep.slurm}"


def _mentioning(sweep: SweepDir, needle: str) -> Iterator[str]:
    """Worker logs that contain ``needle``, newest first."""
    logs = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(sweep.slurm):
            if entry.name.startswith("worker-") and entry.name.endswith(".log"):
                with contextlib.suppress(OSError):
                    logs.append((entry.stat().st_mtime, entry.path))
    for _, path in sorted(logs, reverse=True)[:SEARCHED]:
        with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as f:
            if needle in f.read():
                yield path
