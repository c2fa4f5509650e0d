"""``dagrun clean``: invalidate stages so the next execute recomputes them, or remove the
folders of experiments no longer in the cfgs (``--orphans``)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable

from dagrun.disk import atomic, leases
from dagrun.disk.identity import experiment_folders, in_folder
from dagrun.disk.layout import RunDir, Stage, SweepDir
from dagrun.disk.lock import driver_lock
from dagrun.disk.plan import Experiment, RunState, RunStatus, scan
from dagrun.disk.planstore import forget_orphans, read_plan, read_state, require_sweep
from dagrun.errors import EnvironmentProblem, UsageError
from dagrun.record import record
from dagrun.results import reduce


@record(frozen=True)
class CleanResult:
    """What ``clean`` did: runs touched, stage markers removed, lines left in results."""

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
    ``results.jsonl`` so it no longer lists experiments that are now incomplete. All or
    nothing: every file is first renamed aside, then ``results.jsonl`` is rewritten, and
    only then are the set-aside files removed; a file that cannot be renamed (a read-only
    run folder) or a rewrite that fails (a full disk) puts every file back and raises
    ``EnvironmentProblem``, so the sweep is left exactly as it was.
    """
    sweep = require_sweep(out_path)
    with driver_lock(sweep):
        plan = read_plan(sweep)
        if ids is not None and not ids & set(plan):
            raise UsageError(f"none of the ids {sorted(ids)[:10]} are in {sweep.path}")
        experiments = [e for e in plan.values() if ids is None or e.exp_id in ids]
        targets = [s for s in scan(sweep, experiments)
                   if not failed_only or s.state is RunState.FAILED]
        _refuse_held(targets)
        removal = _Removal()
        try:
            runs, stages = _set_aside(removal, targets, stage)
            _refuse_held(targets)  # a run claimed meanwhile: put everything back
            lines = _rewrite(sweep, plan.values(), removal)
        except BaseException:
            removal.undo()
            raise
        removal.commit()
    return CleanResult(runs, stages, lines)


def clean_orphans(out_path: str) -> list[int]:
    """Remove the folders of the sweep's orphans: experiments of earlier cfgs that are no
    longer in the cfgs (``dagrun.disk.identity``), and experiment folders the plan does not
    know (left by an older dagrun, or copied in). Holds the driver lock; refuses while a
    worker holds a lease in one; each folder is renamed aside before it is deleted, so a
    removal cut short leaves no half folder under an experiment's name. Returns their ids."""
    sweep = require_sweep(out_path)
    with driver_lock(sweep):
        state = read_state(sweep, full=True)
        planned = {e.exp_id for e in state.experiments}
        ids = sorted({e.exp_id for e in state.orphans} | {
            i for i in experiment_folders(sweep) if i not in planned})
        orphans = {e.exp_id: e for e in state.orphans}
        targets = [s for i in ids for s in scan(sweep, [orphans.get(i) or in_folder(sweep, i)])]
        _refuse_held(targets)
        for exp_id in ids:
            path = sweep.experiment_path(exp_id)
            if os.path.isdir(path):
                aside = f"{path}.removing-{os.getpid()}"
                os.replace(path, aside)
                shutil.rmtree(aside, ignore_errors=True)
        if state.orphans:
            forget_orphans(sweep)
    return ids


class _Removal:
    """Files renamed aside (``atomic.set_aside``), to be removed or put back together."""

    def __init__(self) -> None:
        self.moved: list[tuple[str, str]] = []  # (original name, name aside)

    def set_aside(self, path: str) -> bool:
        """Rename ``path`` aside; returns whether it existed. A file that cannot be renamed
        is an ``EnvironmentProblem`` naming it (the caller puts the others back)."""
        try:
            aside = atomic.set_aside(path)
        except OSError as exc:
            raise EnvironmentProblem(
                f"cannot remove {path} ({exc.strerror}): nothing was cleaned; make "
                f"{os.path.dirname(path)} writable and run clean again") from exc
        if aside is None:
            return False
        self.moved.append((path, aside))
        return True

    def undo(self) -> None:
        """Put every file back under its name, the last set aside first (markers, set aside
        before their artifacts, come back after them)."""
        for path, aside in reversed(self.moved):
            with contextlib.suppress(OSError):  # best effort: the error being raised says why
                os.replace(aside, path)
        self.moved.clear()

    def commit(self) -> None:
        for _path, aside in self.moved:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(aside)
        self.moved.clear()


def _refuse_held(statuses: Iterable[RunStatus], listing: int = 3) -> None:
    """``UsageError`` when a worker or driver holds a lease on one of the runs to clean: it
    would go on writing the stages being removed (a run counted done without its fit).

    Any lease counts, live or left by a holder killed with -9 (telling them apart takes a
    lease timeout of watching): the message says how to end either."""
    held = []
    for status in statuses:
        found = leases.read_lease(status.run)
        if found is not None:
            beat = leases.heartbeat_text(leases.heartbeat_age(status.run))
            held.append(f"run {status.label} by {leases.describe(found[1])}, {beat}")
    if held:
        more = f" and {len(held) - listing} more" if len(held) > listing else ""
        raise UsageError(
            f"cannot clean runs that are being executed: {'; '.join(held[:listing])}{more}; "
            "wait for them or stop their workers (a lease left by a killed worker is taken "
            "over by the next worker or execute once stale), then clean again")


def _set_aside(removal: _Removal, statuses: Iterable[RunStatus], stage: Stage
               ) -> tuple[int, int]:
    """Set aside the files of ``stage`` and later stages of each run; (runs, stages) hit."""
    runs = stages = 0
    for status in statuses:
        touched = False
        for s in stage.and_after():
            for path in status.run.stage_files(s):
                if removal.set_aside(path):
                    touched = True
                    stages += path == status.run.marker(s)
        for path in _search_records(status.run, stage):
            touched = removal.set_aside(path) or touched
        runs += touched
    return runs, stages


def _search_records(run: RunDir, stage: Stage) -> tuple[str, ...]:
    """A search trial's files that cleaning ``stage`` (and the stages after it) makes
    stale: its pruning record when the pruned stage runs again (a record naming no stage,
    or unreadable, too), and its reported values when the pruning goes or a stage before
    post runs again (values are reported while stages run, mostly in fit)."""
    found: list[str] = []
    if os.path.exists(run.pruned):
        record = atomic.read_json_or_none(run.pruned)
        pruned_at = record.get("stage") if isinstance(record, dict) else None
        if pruned_at is None or pruned_at in {s.value for s in stage.and_after()}:
            found.append(run.pruned)
    if os.path.exists(run.reports) and (found or stage is not Stage.POST):
        found.append(run.reports)
    return tuple(found)


def _rewrite(sweep: SweepDir, experiments: Iterable[Experiment], removal: _Removal) -> int:
    """``reduce.rewrite``, its failure an ``EnvironmentProblem`` saying nothing changed."""
    try:
        return reduce.rewrite(sweep, experiments)
    except OSError as exc:
        where = exc.filename or sweep.results
        raise EnvironmentProblem(
            f"cannot rewrite {where} ({exc.strerror}): nothing was cleaned; free space or "
            "make OUT writable and run clean again") from exc
