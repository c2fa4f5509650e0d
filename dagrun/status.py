"""``dagrun status`` and ``dagrun show``: what the disk says about a sweep and about one run."""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterator, Mapping

from dagrun.disk import atomic, formatversion, leases, provenance, unrecorded
from dagrun.disk.identity import id_ranges
from dagrun.disk.layout import STAGES, RunDir, Stage, SweepDir
from dagrun.disk.lock import running_driver
from dagrun.disk.plan import Plan, PlannedRun, Reason, RunState, RunStatus, make_plan, run_dirs
from dagrun.disk.planstore import planned_runs, read_plan, read_state, require_sweep
from dagrun.disk.records import Failure, Marker
from dagrun.errors import UsageError
from dagrun.run.capture import tail


def _driver_line(sweep: SweepDir) -> str:
    running = running_driver(sweep)  # queried, never taken: status blocks no driver
    return f"being executed now by {running}" if running else "no driver running"


def status_lines(out_path: str, listing: int = 50) -> Iterator[str]:
    """The text of ``dagrun status``: counts per stage and failed runs with their error.

    It is the plan ``execute`` would make (``dagrun.disk.plan``), so a run counts as done only
    when ``execute`` would skip it: its markers are those of its config and its post.json
    is readable."""
    sweep = require_sweep(out_path)
    experiments = planned_runs(sweep)
    plan = make_plan(sweep, experiments, compare=False)
    kept = unrecorded.read(sweep)  # failures whose record could not be written
    runs = unrecorded.overlay(plan.runs, kept)
    yield f"{sweep.path}: {len(experiments)} experiments, {len(runs)} runs; " \
          f"{_driver_line(sweep)}"
    origin = provenance.summary_line(sweep)
    if origin is not None:
        yield origin
    yield f"{'stage':<6} {'done':>8} {'failed':>8} {'pending':>8}"
    # one pass over the runs; the counts below go over the few distinct kinds of run
    kinds = collections.Counter((r.reason, r.status.done, r.status.failed, r.status.pruned)
                                for r in runs)
    shapes = [(PlannedRun(RunStatus(0, 0, RunDir(""), done, failed, False, pruned), reason), n)
              for (reason, done, failed, pruned), n in kinds.items()]
    for stage in STAGES:
        done = sum(n for r, n in shapes if stage in r.done_stages)
        failed = sum(n for r, n in shapes
                     if stage in r.status.failed and stage not in r.done_stages)
        yield f"{stage.value:<6} {done:>8} {failed:>8} {len(runs) - done - failed:>8}"
    states: collections.Counter[RunState] = collections.Counter()
    for r, n in shapes:
        states[_state(r)] += n
    yield "runs: " + ", ".join(f"{states.get(st, 0)} {st.value}" for st in RunState)
    yield from _not_done_lines(plan, listing)
    todo = [(r.status.label, r.status.run) for r in plan.todo()]
    if formatversion.read(plan.sweep) >= 3:  # the lease index lists the held runs
        held = {run.path for run, _seen in leases.LeaseIndex(plan.sweep).held()}
        todo = [(label, run) for label, run in todo if run.path in held]
    yield from running_lines(todo, listing)
    failed_runs = [r.status for r in runs if r.reason is Reason.FAILED]
    if failed_runs:
        yield "failed runs:"
        for s in failed_runs[:listing]:
            yield f"  {s.label:<10} {_failure_line(s, kept)}"
        if len(failed_runs) > listing:
            yield f"  ... and {len(failed_runs) - listing} more"
    complete = len(plan.complete())
    yield f"experiments complete: {complete} of {len(experiments)} " \
          f"(results: {sweep.results})"
    orphans = read_state(sweep).orphans
    if orphans:
        yield f"{len(orphans)} orphan experiment(s) of earlier cfgs kept on disk (ids " \
              f"{id_ranges([e.exp_id for e in orphans][:20])}): `dagrun clean --orphans " \
              f"{sweep.path}` removes them"


def _state(run: PlannedRun) -> RunState:
    """The state ``status`` counts a planned run in."""
    if run.status.pruned:  # a search trial its pruner stopped (dagrun.search)
        return RunState.PRUNED
    if run.reason is Reason.DONE:
        return RunState.DONE
    if run.reason is Reason.FAILED:
        return RunState.FAILED
    return RunState.INCOMPLETE if run.done_stages else RunState.PENDING


_NOT_DONE = {
    Reason.UNREADABLE: "have post.done but a post.json that cannot be read: not done, the "
                       "next execute recomputes post",
    Reason.OTHER_CONFIG: "hold results computed for another config (their markers' config "
                         "digest is not the plan's): not done, the next execute recomputes "
                         "them",
}


def running_lines(runs: list[tuple[str, RunDir]], listing: int) -> Iterator[str]:
    """Runs held by a lease now (a worker or driver runs them): holder and heartbeat age
    (the lease file's age by this host's clock: for reading, not for deciding); a lease
    not renewed for longer than its holder's timeout is shown as stale."""
    held = []
    for label, run in runs:
        found = leases.read_lease(run)
        if found is not None:
            held.append((label, run, leases.Seen(found[0], 0.0, found[1])))
    if not held:
        return
    yield f"running runs ({len(held)}):"
    for label, run, seen in held[:listing]:
        age = leases.heartbeat_age(run)
        beat = leases.heartbeat_text(age)
        # the file's age by this host's clock against the holder's own timeout: for reading
        # only (a worker or driver decides staleness by watching the lease, never by this)
        stale = age is not None and seen.timeout > 0 and age > seen.timeout
        state = "stale (holder gone?), " if stale else ""
        yield f"  {label:<10} {state}{seen.describe()}, {beat}"
    if len(held) > listing:
        yield f"  ... and {len(held) - listing} more"


def _not_done_lines(plan: Plan, listing: int) -> Iterator[str]:
    """Runs whose markers say more than they are worth, and why."""
    for reason, words in _NOT_DONE.items():
        runs = plan.of(reason)
        if runs:
            labels = ", ".join(r.status.label for r in runs[:listing])
            more = f" and {len(runs) - listing} more" if len(runs) > listing else ""
            yield f"{len(runs)} run(s) {words}: {labels}{more}"


def _failure_line(status: RunStatus,
                  kept: Mapping[str, unrecorded.Unrecorded] | None = None) -> str:
    nxt = status.next_stage
    stages = sorted((s for s in status.failed if nxt is None or s.order >= nxt.order),
                    key=lambda s: s.order)
    if not stages:
        return "failed"
    failure = Failure.read(status.run, stages[0])
    entry = (kept or {}).get(status.run.path)
    if failure is None and entry is not None:  # its record could not be written
        return unrecorded.failure_line(entry)
    if failure is None:
        return f"{stages[0].value}: (unreadable error record)"
    return f"{stages[0].value} {failure.kind} (attempt {failure.attempt}): {failure.first_line}"


def parse_run_id(text: str) -> tuple[int, int | None]:
    """``"3"`` -> (3, None); ``"3/1"`` -> (3, 1)."""
    head, _, rep = text.partition("/")
    if not head.isdigit() or (rep and not rep.isdigit()):
        raise UsageError(f"run id must look like ID or ID/REP (e.g. 3 or 3/1), got {text!r}")
    return int(head), int(rep) if rep else None


def show_lines(out_path: str, run_id: str, log_lines: int = 15) -> Iterator[str]:
    """The text of ``dagrun show``: config, markers, metrics, error and log tail of a run."""
    sweep = require_sweep(out_path)
    exp_id, rep = parse_run_id(run_id)
    exp = read_plan(sweep).get(exp_id)
    if exp is None:
        raise UsageError(f"{sweep.path} has no experiment {exp_id}")
    if rep is not None and rep >= exp.repetitions:
        raise UsageError(f"experiment {exp_id} has repetitions 0..{exp.repetitions - 1}")
    origin = provenance.summary_line(sweep)
    if origin is not None:
        yield f"sweep {origin}"
    for r, run in run_dirs(sweep, exp):
        if rep is None or r == rep:
            yield from _show_run(sweep, run, f"{exp_id}/{r}", log_lines)


def _show_run(sweep: SweepDir, run: RunDir, label: str, log_lines: int) -> Iterator[str]:
    yield f"run {label}: {run.path}"
    config = atomic.read_json_or_none(run.config)
    yield "config: " + (json.dumps(config, sort_keys=True) if config is not None else "(none yet)")
    origins = []
    for stage in STAGES:
        yield from _show_stage(run, stage, log_lines)
        marker = Marker.read(run, stage)
        if marker is not None and marker.origin not in origins:
            origins.append(marker.origin)
    for origin in origins:  # the code its stages were computed with, and where it came from
        yield provenance.code_line(sweep, origin)
    yield from running_lines([(label, run)], 1)
    from dagrun.backends.slurm.logs import worker_log_lines  # only sweeps run on Slurm

    yield from worker_log_lines(sweep, run, label)
    yield ""


def _show_stage(run: RunDir, stage: Stage, log_lines: int) -> Iterator[str]:
    marker = Marker.read(run, stage)
    if marker is not None:
        yield (f"{stage.value}: done {marker.finished} on {marker.host} (pid {marker.pid}, "
               f"attempt {marker.attempt}, {marker.seconds:.3f} s)")
    elif os.path.exists(run.marker(stage)):
        yield f"{stage.value}: marker present but unreadable"
    else:
        yield f"{stage.value}: not done"
    if stage is Stage.POST and marker is not None:
        yield "  metrics: " + json.dumps(atomic.read_json_or_none(run.artifact(stage)))
    failure = Failure.read(run, stage)
    if failure is not None:
        yield (f"  error ({failure.kind}, attempt {failure.attempt}, {failure.host}, "
               f"{failure.time}): {failure.message}")
        for line in failure.traceback.rstrip().splitlines()[-8:]:
            yield f"    {line}"
    log = tail(run.log(stage), log_lines)
    if log:
        yield f"  log ({run.log(stage)}), last lines:"
        for line in log.splitlines():
            yield f"    | {line}"
