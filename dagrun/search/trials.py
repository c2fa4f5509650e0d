"""The study on disk: one record per trial asked, and each trial's outcome from its runs.

``OUT/.dagrun/search/trial-NNNNNN.json`` is written (atomically) when a trial is asked,
before its experiment is planned: its number, parameters and their distributions, the
digest of its cfg (which names its experiment, ``dagrun.disk.identity``), where it came
from (an enqueued cfg, or a repeated suggestion answered by an earlier trial) and the
sampler's state after asking it (so a driver started again asks what an uninterrupted one
would). What happened to the trial is read from its experiment's run folders alone:
post.json (the objective: the mean of the metric over the repetitions), ``pruned.json``
and ``reports.json`` (the intermediate values), failure records.
"""

from __future__ import annotations

import base64
import enum
import math
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from typing import Any

from dagrun.code.safety import check_pickle
from dagrun.disk import atomic
from dagrun.disk.layout import SweepDir
from dagrun.disk.planstore import read_state
from dagrun.disk.records import read_scores
from dagrun.disk.runs import Experiment, RunState, run_dirs, scan_run
from dagrun.record import field, record

_RECORD = re.compile(r"trial-(\d+)\.json\Z")


class TrialState(str, enum.Enum):
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    RUNNING = "running"  # asked, not finished (or not started)


@record
class TrialRecord:
    """One trial as it was asked."""

    number: int
    digest: str  # the content digest of its cfg: its experiment
    params: dict[str, Any]
    distributions: dict[str, str]  # name -> Optuna's JSON of the distribution
    cfg_index: int | None = None  # an enqueued cfg: its position in cfgs
    same_as: int | None = None  # a repeated suggestion: the trial that answers it
    sampler: str = ""  # base64 of the pickled sampler after this trial was asked
    sampler_key: str = ""  # which sampler setting it is the state of (another: not used)

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "digest": self.digest, "params": self.params,
                "distributions": self.distributions, "cfg_index": self.cfg_index,
                "same_as": self.same_as, "sampler_key": self.sampler_key,
                "sampler": self.sampler}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        return cls(int(data["number"]), str(data["digest"]), dict(data["params"]),
                   dict(data["distributions"]), data.get("cfg_index"), data.get("same_as"),
                   str(data.get("sampler", "")), str(data.get("sampler_key", "")))


def write_record(sweep: SweepDir, record: TrialRecord) -> None:
    atomic.makedirs(sweep.search)
    atomic.write_json(sweep.trial_record(record.number), record.to_json(), indent=None)


def read_records(sweep: SweepDir) -> list[TrialRecord]:
    """Every trial asked in ``sweep``, by number (a gap ends the list: numbers are given
    under the lock, one after the other)."""
    try:
        names = os.listdir(sweep.search)
    except FileNotFoundError:
        return []
    numbers = sorted(int(m.group(1)) for m in map(_RECORD.match, names) if m)
    out: list[TrialRecord] = []
    for number in numbers:
        if number != len(out):
            break
        data = atomic.read_json_or_none(sweep.trial_record(number))
        if not isinstance(data, dict):
            break  # (records are written atomically; a foreign file ends the list)
        out.append(TrialRecord.from_json(data))
    return out


def dump_sampler(sampler: Any) -> str:
    return base64.b64encode(pickle.dumps(sampler, protocol=pickle.HIGHEST_PROTOCOL)).decode()


def load_sampler(sweep: SweepDir, record: TrialRecord) -> Any:
    """The sampler as it was after ``record`` was asked (``None`` when not kept); the record
    passes the same ownership check as every pickle dagrun loads."""
    if not record.sampler:
        return None
    check_pickle(sweep.trial_record(record.number))
    return pickle.loads(base64.b64decode(record.sampler))


@record
class Outcome:
    """What happened to a trial, from its runs."""

    state: TrialState
    value: float | None = None
    intermediate: dict[int, float] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)


def experiments_by_digest(sweep: SweepDir) -> dict[str, Experiment]:
    """The planned experiments by config digest (the first of equal ones)."""
    out: dict[str, Experiment] = {}
    for exp in read_state(sweep).experiments:
        out.setdefault(exp.digest, exp)
    return out


def read_reports(path: str) -> tuple[dict[int, float], dict[str, Any]]:
    """A run's intermediate values by step, and the pruner's attributes it kept."""
    data = atomic.read_json_or_none(path)
    if not isinstance(data, dict):
        return {}, {}
    values = {int(k): float(v) if v is not None else math.nan
              for k, v in dict(data.get("values", {})).items()}
    return values, dict(data.get("system_attrs", {}))


def outcome(sweep: SweepDir, exp: Experiment | None, metric: str,
            failed_final: bool = True) -> Outcome:
    """The outcome of the trial whose experiment is ``exp`` (``None``: not planned yet).

    A pruned repetition makes the trial pruned (its last intermediate value kept); a
    trial whose repetitions are all done is complete with the mean of ``metric`` (a
    missing or non-finite mean fails it); a failed repetition fails it when
    ``failed_final`` (else it is still to run, as it is for a driver about to resume it)."""
    if exp is None:
        return Outcome(TrialState.RUNNING)
    states = []
    reports: list[tuple[dict[int, float], dict[str, Any]]] = []
    for rep, run in run_dirs(sweep, exp):
        status = scan_run(exp.exp_id, rep, run)
        states.append(status.state)
        reports.append(read_reports(run.reports))
        if status.state is RunState.PRUNED:
            values, attrs = reports[-1]
            last = values[max(values)] if values else None
            return Outcome(TrialState.PRUNED, last, values, attrs)
    intermediate = _mean_by_step([r[0] for r in reports])
    attrs = reports[0][1] if reports else {}
    if all(s is RunState.DONE for s in states):
        value = objective(sweep, exp, metric)
        state = TrialState.COMPLETE if value is not None else TrialState.FAILED
        return Outcome(state, value, intermediate, attrs)
    if failed_final and any(s is RunState.FAILED for s in states):
        return Outcome(TrialState.FAILED, None, intermediate, attrs)
    return Outcome(TrialState.RUNNING, None, intermediate, attrs)


def objective(sweep: SweepDir, exp: Experiment, metric: str) -> float | None:
    """The mean of ``metric`` over the repetitions' post.json (``None``: missing, or not a
    finite number in any)."""
    values = []
    for _rep, run in run_dirs(sweep, exp):
        scores = read_scores(run)
        value = scores.get(metric) if scores is not None else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value):
            values.append(float(value))
        else:
            return None
    return sum(values) / len(values) if values else None


def _mean_by_step(per_run: Sequence[dict[int, float]]) -> dict[int, float]:
    steps: dict[int, list[float]] = {}
    for values in per_run:
        for step, value in values.items():
            steps.setdefault(step, []).append(value)
    return {s: sum(v) / len(v) for s, v in sorted(steps.items())}
