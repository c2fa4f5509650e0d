"""What the HTML report shows, gathered from the disk into one JSON-able dict.

The page's script builds everything from this dict: the results table (the rows of
``dagrun results``, each metric with its mean, std, how many values entered the mean and the
values of the repetitions), the plots, failures by kind, the time runs took (read from the
markers; a timed-out run counts the timeout it used), whether a driver is executing the sweep
now, and the provenance of the last execute. Numbers are rounded to 7 significant digits to
keep a 10,000-experiment page small.

The rows are ``dagrun.results.read.collect``'s, the one row definition every view shares;
the values of the repetitions come from the results lines, read in either format (each metric
a list with ``mean_M``, ``std_M`` and ``n_M``, or, as older dagrun wrote lines of one
repetition, the value itself), or from the runs of experiments not listed there yet.
"""

from __future__ import annotations

import collections
import math
import os
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from dagrun.disk import lock, provenance
from dagrun.disk.atomic import read_json_or_none, strict_json
from dagrun.disk.layout import STAGES, RunDir, Stage
from dagrun.disk.records import Failure, iso, read_scores
from dagrun.disk.runs import RunState, RunStatus, scan_run
from dagrun.results.columns import FIT_TIME, MISSING, is_number, line_metrics
from dagrun.results.columnscache import decode_lines
from dagrun.results.read import Collected, ExpState, collect, smaller_is_better
from dagrun.results.search import plan_settings, search_data

FAILURES_LISTED = 2000  # failed runs listed in the page (all are counted)
SLOWEST_LISTED = 20
PRIMARY_SETTING = "report_metric"  # basecfg key naming the metric the report ranks by
_TIMEOUT_RE = re.compile(r"timeout of ([0-9.eE+-]+) s")


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.7g}")


# --------------------------------------------------------------------------------------------
# The rows.

def _key_value(value: Any) -> Any:
    """A config value as the page reads it: ``{"missing": true}`` for a key the config
    lacks, ``{"nonfinite": "NaN"}`` (or ``inf``, ``-inf``) for a float JSON cannot hold."""
    if value is MISSING:
        return {"missing": True}
    if type(value) is float and not math.isfinite(value):
        return {"nonfinite": "NaN" if value != value else ("inf" if value > 0 else "-inf")}
    return value


def _number(value: Any) -> float | None:
    return float(value) if is_number(value) else None


def _repetitions(collected: Collected) -> list[list[list[float | None]]]:
    """Each experiment's metric values per repetition (``None``: not a finite number): from
    its results line when listed there (either format: ``line_metrics``), else from the
    post.json of each of its runs that is done."""
    try:
        with open(collected.sweep.results, "rb") as f:
            data = f.read()
    except OSError:
        data = b""
    lines = decode_lines(data[:data.rfind(b"\n") + 1])
    metrics = collected.metrics
    out = []
    for exp_id, reps in zip(collected.ids, collected.repetitions, strict=True):
        scanned = collected.runs.get(exp_id)
        if scanned is None:
            found = line_metrics(lines[exp_id]["scores"], reps) if exp_id in lines else {}
            out.append([[_number(v) for v in found.get(m, ())] for m in metrics])
            continue
        per_rep = [read_scores(s.run) for s in scanned if s.state is RunState.DONE]
        done = [s for s in per_rep if s is not None]
        out.append([[_number(s.get(m)) for s in done] for m in metrics])
    return out


def _rows(collected: Collected) -> list[list[Any]]:
    """Per experiment ``[id, state, n, repetitions, [varied key values], [[mean, std, n_M,
    values], ...]]``: ``n`` the repetitions done, ``n_M`` how many finite values entered the
    mean, ``values`` those of the repetitions (``null`` with one repetition)."""
    keys = [[_key_value(v) for v in collected.config[k]] for k in collected.varied]
    values = _repetitions(collected)
    columns = [(collected.means[m], collected.stds[m], collected.counts[m])
               for m in collected.metrics]
    return [[exp_id, state.value, done, planned, [col[i] for col in keys],
             [[_round(means[i]), _round(stds[i]), counts[i] or 0,
               [_round(v) for v in reps] if planned > 1 else None]
              for (means, stds, counts), reps in zip(columns, values[i], strict=True)]]
            for i, (exp_id, state, done, planned) in enumerate(zip(
                collected.ids, collected.states, collected.done, collected.repetitions,
                strict=True))]


def _primary(metrics: list[str], settings: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """The metric the report ranks by: basecfg ``report_metric``, else the first metric
    ``post`` returned (not ``fit_time``); with a note when ``report_metric`` names none."""
    wanted = settings.get(PRIMARY_SETTING)
    if isinstance(wanted, str) and wanted in metrics:
        return metrics.index(wanted), None
    note = (f"{PRIMARY_SETTING} {wanted!r} is not a numeric metric of this sweep"
            if wanted is not None else None)
    ranked = [i for i, m in enumerate(metrics) if m != FIT_TIME] or list(range(len(metrics)))
    return (ranked[0] if ranked else None), note


# --------------------------------------------------------------------------------------------
# Runs: time and failures.

def _runs(collected: Collected) -> Iterator[RunStatus]:
    """Every run's status: the ones scanned while collecting, and a scan of the others."""
    sweep = collected.sweep
    for exp_id, reps, state in zip(collected.ids, collected.repetitions, collected.states,
                                   strict=True):
        scanned = collected.runs.get(exp_id)
        if scanned is not None:
            yield from scanned
            continue
        for rep in range(reps):
            run = sweep.run_dir(exp_id, rep, reps)
            if state is ExpState.DONE:  # listed in results.jsonl: done, not scanned
                yield RunStatus(exp_id, rep, run, frozenset(STAGES), frozenset())
            else:
                yield scan_run(exp_id, rep, run)


def _markers(run: RunDir, stages: frozenset[Stage]) -> list[tuple[float | None, int]]:
    """Seconds and attempt of each stage from its marker (``None``: no readable marker)."""
    out: list[tuple[float | None, int]] = []
    for stage in STAGES:
        data = read_json_or_none(run.marker(stage)) if stage in stages else None
        seconds = data.get("seconds") if isinstance(data, dict) else None
        attempt = data.get("attempt") if isinstance(data, dict) else None
        out.append((_number(seconds), attempt if type(attempt) is int else 0))
    return out


def _failure(status: RunStatus) -> tuple[dict[str, Any], Failure | None]:
    stage = status.failed_stage or status.next_stage or Stage.PRE
    failure = Failure.read(status.run, stage)
    if failure is None:
        return {"run": status.label, "path": status.run.path, "stage": stage.value,
                "kind": "unreadable", "message": "(the error record cannot be read)",
                "attempt": 0, "host": "", "time": ""}, None
    return {"run": status.label, "path": status.run.path, "stage": stage.value,
            "kind": failure.kind, "message": failure.first_line, "attempt": failure.attempt,
            "host": failure.host, "time": failure.time}, failure


def _timed_out_seconds(failure: Failure, stage: Stage, timeout: Any,
                       markers: list[tuple[float | None, int]]) -> float | None:
    """The seconds the stage that timed out ran: the run's timeout less the stages that the
    same attempt finished before it (``None`` when the timeout is not known)."""
    found = _TIMEOUT_RE.search(failure.message)
    limit = float(found.group(1)) if found else timeout
    if not is_number(limit) or limit <= 0:
        return None
    before = sum(sec for s, (sec, attempt) in zip(STAGES, markers, strict=True)
                 if sec is not None and s.order < stage.order and attempt == failure.attempt)
    return max(0.0, float(limit) - before)


def _older_code(collected: Collected) -> list[dict[str, Any]]:
    """Experiments computed with code other than the latest, per version of the code (its
    short id, what its provenance record says, the experiment ids)."""
    found = provenance.older_code(collected.sweep,
                                  list(zip(collected.ids, collected.repetitions, strict=True)))
    out = []
    for code_id, ids in sorted(found.items()):
        record = provenance.of_code(collected.sweep, code_id) if code_id else None
        out.append({"code": code_id[:12] or "unrecorded (an older dagrun)", "ids": ids,
                    "git": provenance.git_text(record) if record is not None else ""})
    return out


def _times_and_failures(collected: Collected, timeout: Any) -> dict[str, Any]:
    """Stage durations, the slowest runs, failed runs, and run counts by state. Every run
    counts the stages it finished (their markers); a timed-out run also the stage that ran
    until the timeout stopped it."""
    durations: dict[str, list[float]] = {s.value: [] for s in STAGES}
    slowest: list[tuple[float, str, str, str, list[float | None]]] = []
    failures: list[dict[str, Any]] = []
    kinds: collections.Counter[str] = collections.Counter()
    states: collections.Counter[str] = collections.Counter()
    total = 0.0
    for status in _runs(collected):
        state = status.state
        states[state.value] += 1
        markers = _markers(status.run, status.done) if status.done else []
        seconds = [sec for sec, _ in markers] or [None] * len(STAGES)
        label = state.value
        if state is RunState.FAILED:
            record, failure = _failure(status)
            kinds[record["kind"]] += 1
            if len(failures) < FAILURES_LISTED:
                failures.append(record)
            label = record["kind"]
            stage = Stage(record["stage"])
            if failure is not None and failure.kind == "timeout":
                seconds[STAGES.index(stage)] = _timed_out_seconds(
                    failure, stage, timeout, markers or [(None, 0)] * len(STAGES))
        for stage, sec in zip(STAGES, seconds, strict=True):
            if sec is not None and stage in status.done:
                durations[stage.value].append(_round(sec) or 0.0)
        run_total = sum(s for s in seconds if s is not None)
        if not any(s is not None for s in seconds):
            continue
        total += run_total
        slowest.append((run_total, status.label, label, status.run.path, seconds))
        if len(slowest) > 4 * SLOWEST_LISTED:
            slowest = sorted(slowest, key=lambda t: -t[0])[:SLOWEST_LISTED]
    slowest = sorted(slowest, key=lambda t: -t[0])[:SLOWEST_LISTED]
    return {
        "durations": durations,
        "slowest": [{"run": run, "state": label, "path": path, "total": _round(t),
                     "stages": [_round(s) for s in secs]}
                    for t, run, label, path, secs in slowest],
        "failures": failures, "failure_kinds": dict(kinds), "run_states": dict(states),
        "compute_seconds": _round(total),
    }


# --------------------------------------------------------------------------------------------
# The whole page's data.

def _backend(prov: dict[str, Any] | None, settings: Mapping[str, Any]) -> str:
    for source in (prov or {}, settings):
        if isinstance(source.get("backend"), str):
            return str(source["backend"])
    return "single"


def report_data(out: str | os.PathLike[str], in_driver: bool = False) -> dict[str, Any]:
    """Everything the page shows, as plain JSON values (non-finite numbers as null).
    ``in_driver``: the caller is the driver itself, at the end of its execute (the sweep's
    lock is then not queried: closing the lock file would drop the driver's own lock)."""
    collected = collect(out)
    sweep = collected.sweep
    settings = plan_settings(sweep)
    prov = provenance.read(sweep)
    runs = _times_and_failures(collected, settings.get("timeout"))
    exp_states = collections.Counter(s.value for s in collected.states)
    primary, primary_note = _primary(collected.metrics, settings)
    data = {
        "out": sweep.path,
        "generated": iso(time.time()),
        "backend": _backend(prov, settings),
        "running": None if in_driver else lock.running_driver(sweep),
        "experiments": len(collected),
        "experiment_states": dict(exp_states),
        "single": collected.single,
        "keys": [{"name": k} for k in collected.varied],
        "constant": {k: _key_value(v) for k, v in collected.constant.items()},
        "metrics": [{"name": m, "smaller": smaller_is_better(m)} for m in collected.metrics],
        "primary": primary,
        "primary_note": primary_note,
        "own": {"state": collected.state_column, "n": collected.n_column},
        "other_metrics": collected.others,
        "rows": _rows(collected),
        "provenance": prov,
        "older_code": _older_code(collected),
        **runs,
    }
    search = search_data(sweep)
    if search is not None:  # an adaptive search: its history and parameter importances
        data["search"] = search
    return dict(strict_json(data))
