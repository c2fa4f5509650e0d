"""``dagrun status`` and ``dagrun show``: what the disk says about a sweep and about one run."""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterator

import filelock

from dagrun import atomic
from dagrun.capture import tail
from dagrun.errors import UsageError
from dagrun.layout import STAGES, RunDir, Stage, SweepDir
from dagrun.lock import holder
from dagrun.plan import RunState, RunStatus, run_dirs, scan
from dagrun.planstore import planned_runs, read_plan, require_sweep
from dagrun.records import Failure, Marker


def _driver_line(sweep: SweepDir) -> str:
    lock = filelock.FileLock(sweep.lock, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        return f"being executed now by {holder(sweep)}"
    except OSError:
        return "no driver information (state folder not writable)"
    lock.release()
    return "no driver running"


def status_lines(out_path: str, listing: int = 50) -> Iterator[str]:
    """The text of ``dagrun status``: counts per stage and failed runs with their error."""
    sweep = require_sweep(out_path)
    experiments = planned_runs(sweep)
    statuses = scan(sweep, experiments)
    yield f"{sweep.path}: {len(experiments)} experiments, {len(statuses)} runs; " \
          f"{_driver_line(sweep)}"
    yield f"{'stage':<6} {'done':>8} {'failed':>8} {'pending':>8}"
    for stage in STAGES:
        done = sum(1 for s in statuses if stage in s.done)
        failed = sum(1 for s in statuses if stage in s.failed and stage not in s.done)
        yield f"{stage.value:<6} {done:>8} {failed:>8} {len(statuses) - done - failed:>8}"
    states = collections.Counter(s.state for s in statuses)
    yield "runs: " + ", ".join(f"{states.get(st, 0)} {st.value}" for st in RunState)
    failed_runs = [s for s in statuses if s.state is RunState.FAILED]
    if failed_runs:
        yield "failed runs:"
        for s in failed_runs[:listing]:
            yield f"  {s.label:<10} {_failure_line(s)}"
        if len(failed_runs) > listing:
            yield f"  ... and {len(failed_runs) - listing} more"
    incomplete = {s.exp_id for s in statuses if s.state is not RunState.DONE}
    complete = sum(1 for e in experiments if e.exp_id not in incomplete)
    yield f"experiments complete: {complete} of {len(experiments)} " \
          f"(results: {sweep.results})"


def _failure_line(status: RunStatus) -> str:
    nxt = status.next_stage
    stages = sorted((s for s in status.failed if nxt is None or s.order >= nxt.order),
                    key=lambda s: s.order)
    if not stages:
        return "failed"
    failure = Failure.read(status.run, stages[0])
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
    for r, run in run_dirs(sweep, exp):
        if rep is None or r == rep:
            yield from _show_run(run, f"{exp_id}/{r}", log_lines)


def _show_run(run: RunDir, label: str, log_lines: int) -> Iterator[str]:
    yield f"run {label}: {run.path}"
    config = atomic.read_json_or_none(run.config)
    yield "config: " + (json.dumps(config, sort_keys=True) if config is not None else "(none yet)")
    for stage in STAGES:
        yield from _show_stage(run, stage, log_lines)
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
