"""``dagrun clean``: invalidate stages so the next execute recomputes them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dagrun import atomic, reduce
from dagrun.errors import UsageError
from dagrun.layout import Stage
from dagrun.lock import driver_lock
from dagrun.plan import RunState, scan
from dagrun.planstore import read_plan, require_sweep


@dataclass(frozen=True)
class CleanResult:
    runs: int
    stages: int
    results_lines: int


def parse_ids(items: Iterable[str]) -> set[int]:
    """``["3", "5-7", "9,10"]`` -> {3, 5, 6, 7, 9, 10}."""
    ids: set[int] = set()
    for item in items:
        for part in item.split(","):
            part = part.strip()
            lo, sep, hi = part.partition("-")
            if not lo.isdigit() or (sep and not (hi.isdigit() and int(hi) >= int(lo))):
                raise UsageError(f"--ids takes ids and ranges like 3 5-7 9,10; got {part!r}")
            ids.update(range(int(lo), int(hi if sep else lo) + 1))
    return ids


def clean(out_path: str, stage: Stage = Stage.PRE, ids: set[int] | None = None,
          failed_only: bool = False) -> CleanResult:
    """Remove ``stage`` and every later stage's marker, artifact and error record.

    Logs are kept (a recomputation appends to them). Holds the driver lock, then rebuilds
    ``results.jsonl`` so it no longer lists experiments that are now incomplete.
    """
    sweep = require_sweep(out_path)
    with driver_lock(sweep):
        plan = read_plan(sweep)
        if ids is not None and not ids & set(plan):
            raise UsageError(f"none of the ids {sorted(ids)[:10]} are in {sweep.path}")
        experiments = [e for e in plan.values() if ids is None or e.exp_id in ids]
        runs = stages = 0
        for status in scan(sweep, experiments):
            if failed_only and status.state is not RunState.FAILED:
                continue
            touched = False
            for s in stage.and_after():
                for path in status.run.stage_files(s):
                    if atomic.remove(path):
                        touched = True
                        stages += path == status.run.marker(s)
            runs += touched
        lines = reduce.rewrite(sweep, plan.values())
    return CleanResult(runs, stages, lines)
