"""Failures whose record could not be written into their run folder.

A failed run leaves ``RUN/<stage>.error``; the runs' state (``dagrun status``, the plan) is
read from those files. When that write fails (a read-only run folder, a full disk) the
failure would be counted by the driver and nowhere else: ``status`` would call the run
pending, and the summary would point at a file that does not exist. So the driver checks
that the record of each failed run is on disk, writes it itself when it is not, and when
that fails too keeps the failure in ``OUT/.dagrun/unrecorded.jsonl`` (one JSON line per
run: its path, the failure, why it could not be written). ``status`` counts such a run as
failed for as long as the run still resumes at the failed stage and has no record of its
own; the summary says which records are missing and why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from dagrun.disk import atomic
from dagrun.disk.layout import RunDir, Stage, SweepDir
from dagrun.disk.plan import PlannedRun, Reason
from dagrun.disk.records import Failure
from dagrun.disk.runs import RunStatus, scan_run
from dagrun.record import record


@record(frozen=True)
class Unrecorded:
    """A failure kept in ``unrecorded.jsonl``: the run, the failure, and why its own
    record could not be written."""

    exp_id: int
    rep: int
    path: str
    failure: Failure
    reason: str


def ensure_recorded(sweep: SweepDir, exp_id: int, rep: int, path: str,
                    failure: Failure) -> str:
    """Make sure ``failure`` is on disk; returns ``""`` when the run folder holds it, else
    the words of the summary: why it is missing and where it is kept instead."""
    run = RunDir(path)
    stage = Stage(failure.stage)
    if _holds(run, stage, failure):
        return ""
    try:
        atomic.makedirs(run.path)
        failure.write(run)
        return ""
    except OSError as exc:
        reason = str(exc.strerror or exc)
    try:
        _keep(sweep, Unrecorded(exp_id, rep, path, failure, reason))
    except OSError as exc:
        return f"{reason}; not kept anywhere either ({sweep.unrecorded}: {exc.strerror})"
    return f"{reason}; kept in {sweep.unrecorded}"


def _holds(run: RunDir, stage: Stage, failure: Failure) -> bool:
    """Whether the run's error record is this very failure (not an older attempt's)."""
    found = Failure.read(run, stage)
    return found is not None and (found.time, found.pid, found.attempt) == \
        (failure.time, failure.pid, failure.attempt)


def _keep(sweep: SweepDir, entry: Unrecorded) -> None:
    """Rewrite ``unrecorded.jsonl`` with ``entry`` and the still-valid older entries."""
    kept = {p: e for p, e in read(sweep).items() if _still_failed(e) and p != entry.path}
    kept[entry.path] = entry
    atomic.makedirs(sweep.state)
    atomic.write_text(sweep.unrecorded, "".join(_dumps(e) for e in kept.values()))


def _dumps(entry: Unrecorded) -> str:
    return json.dumps({"exp_id": entry.exp_id, "rep": entry.rep, "path": entry.path,
                       "failure": dict(vars(entry.failure)), "reason": entry.reason}) + "\n"


def read(sweep: SweepDir) -> dict[str, Unrecorded]:
    """The kept failures by run path; lines that cannot be parsed are skipped."""
    try:
        with open(sweep.unrecorded, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError:
        return {}
    out: dict[str, Unrecorded] = {}
    for line in lines:
        try:
            data = json.loads(line)
            entry = Unrecorded(int(data["exp_id"]), int(data["rep"]), str(data["path"]),
                               Failure(**data["failure"]), str(data["reason"]))
        except (ValueError, TypeError, KeyError):
            continue
        out[entry.path] = entry
    return out


def _applies(status: RunStatus, entry: Unrecorded) -> bool:
    """The run still resumes at the failed stage, and no record of its own says more."""
    stage = Stage(entry.failure.stage)
    return status.next_stage is stage and stage not in status.failed


def _still_failed(entry: Unrecorded) -> bool:
    return _applies(scan_run(entry.exp_id, entry.rep, RunDir(entry.path)), entry)


def overlay(runs: Sequence[PlannedRun], kept: Mapping[str, Unrecorded]) -> list[PlannedRun]:
    """``runs`` with those that failed without a record counted as failed in that stage."""
    if not kept:
        return list(runs)
    out = []
    for run in runs:
        entry = kept.get(run.status.run.path)
        if entry is not None and run.reason is not Reason.DONE and _applies(run.status, entry):
            stage = Stage(entry.failure.stage)
            status = run.status._replace(failed=run.status.failed | {stage})
            run = PlannedRun(status, Reason.FAILED, stage)
        out.append(run)
    return out


def failure_line(entry: Unrecorded) -> str:
    """What ``status`` lists for such a run."""
    f = entry.failure
    return (f"{f.stage} {f.kind} (attempt {f.attempt}): {f.first_line} [no record in the run "
            f"folder: {entry.reason}]")

