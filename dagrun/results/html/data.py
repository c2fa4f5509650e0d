"""What the HTML report shows, gathered from the disk into one JSON-able dict.

The page's script builds everything from this dict: the results table (the rows of
``dagrun results``), the plots of each metric against each varied key, failures by kind, the
stage durations read from the markers, and the provenance of the last execute. Numbers are
rounded to 7 significant digits to keep a 10,000-experiment page small.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterator
from typing import Any

from dagrun.disk import provenance
from dagrun.disk.atomic import read_json_or_none, strict_json
from dagrun.disk.layout import STAGES, RunDir, Stage
from dagrun.disk.records import Failure, iso
from dagrun.disk.runs import RunState, RunStatus, scan_run
from dagrun.results.columns import MISSING, is_number
from dagrun.results.read import Collected, ExpState, collect, smaller_is_better

FAILURES_LISTED = 2000  # failed runs listed in the page (all are counted)
SLOWEST_LISTED = 20


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.7g}")


def key_kinds(collected: Collected) -> list[dict[str, Any]]:
    """Each varied key: numeric (an axis, log when its positive values span two decades or
    more) or categorical (one group per value)."""
    out = []
    for key in collected.varied:
        values = [v for v in collected.config[key] if v is not MISSING]
        numeric = bool(values) and all(is_number(v) for v in values)
        log = numeric and min(values) > 0 and max(values) / min(values) >= 100
        out.append({"name": key, "numeric": numeric, "log": bool(log)})
    return out


def _rows(collected: Collected) -> list[list[Any]]:
    """Per experiment ``[id, state, n, repetitions, [varied key values], [[mean, std],
    ...]]``; a key the experiment's config lacks is ``{"missing": true}``."""
    missing = {"missing": True}
    keys = [[missing if v is MISSING else v for v in collected.config[k]]
            for k in collected.varied]
    stats = [[[_round(m), _round(s)] for m, s in zip(collected.means[name],
                                                     collected.stds[name], strict=True)]
             for name in collected.metrics]
    return [[exp_id, state.value, n, reps, [col[i] for col in keys],
             [col[i] for col in stats]]
            for i, (exp_id, state, n, reps) in enumerate(zip(
                collected.ids, collected.states, collected.done, collected.repetitions,
                strict=True))]


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


def _marker_seconds(run: RunDir) -> list[float | None]:
    """Seconds of each stage from its marker (``None``: no readable marker)."""
    out: list[float | None] = []
    for stage in STAGES:
        data = read_json_or_none(run.marker(stage))
        seconds = data.get("seconds") if isinstance(data, dict) else None
        out.append(float(seconds) if seconds is not None and is_number(seconds) else None)
    return out


def _failure(status: RunStatus) -> dict[str, Any]:
    stage = status.failed_stage or status.next_stage or Stage.PRE
    failure = Failure.read(status.run, stage)
    if failure is None:
        return {"run": status.label, "path": status.run.path, "stage": stage.value,
                "kind": "unreadable", "message": "(the error record cannot be read)",
                "attempt": 0, "host": "", "time": ""}
    return {"run": status.label, "path": status.run.path, "stage": stage.value,
            "kind": failure.kind, "message": failure.first_line, "attempt": failure.attempt,
            "host": failure.host, "time": failure.time}


def _times_and_failures(collected: Collected) -> dict[str, Any]:
    """Stage durations, the slowest runs, failed runs, and run counts by state."""
    durations: dict[str, list[float]] = {s.value: [] for s in STAGES}
    slowest: list[tuple[float, str, str, list[float | None]]] = []
    failures: list[dict[str, Any]] = []
    kinds: collections.Counter[str] = collections.Counter()
    states: collections.Counter[str] = collections.Counter()
    total = 0.0
    for status in _runs(collected):
        state = status.state
        states[state.value] += 1
        if state is RunState.FAILED:
            record = _failure(status)
            kinds[record["kind"]] += 1
            if len(failures) < FAILURES_LISTED:
                failures.append(record)
        if not status.done:
            continue
        seconds = _marker_seconds(status.run)
        for stage, sec in zip(STAGES, seconds, strict=True):
            if sec is not None:
                durations[stage.value].append(_round(sec) or 0.0)
        run_total = sum(s for s in seconds if s is not None)
        total += run_total
        slowest.append((run_total, status.label, status.run.path, seconds))
        if len(slowest) > 4 * SLOWEST_LISTED:
            slowest = sorted(slowest, key=lambda t: -t[0])[:SLOWEST_LISTED]
    slowest = sorted(slowest, key=lambda t: -t[0])[:SLOWEST_LISTED]
    return {
        "durations": durations,
        "slowest": [{"run": label, "path": path, "total": _round(t),
                     "stages": [_round(s) for s in secs]}
                    for t, label, path, secs in slowest],
        "failures": failures, "failure_kinds": dict(kinds), "run_states": dict(states),
        "compute_seconds": _round(total),
    }


def _backend(collected: Collected, prov: dict[str, Any] | None) -> str:
    if prov and isinstance(prov.get("backend"), str):
        return str(prov["backend"])
    plan = read_json_or_none(collected.sweep.plan)
    settings = plan.get("settings") if isinstance(plan, dict) else None
    backend = settings.get("backend") if isinstance(settings, dict) else None
    return backend if isinstance(backend, str) else "single"


def report_data(out: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything the page shows, as plain JSON values (non-finite numbers as null)."""
    collected = collect(out)
    prov = provenance.read(collected.sweep)
    runs = _times_and_failures(collected)
    exp_states = collections.Counter(s.value for s in collected.states)
    data = {
        "out": collected.sweep.path,
        "generated": iso(time.time()),
        "backend": _backend(collected, prov),
        "experiments": len(collected),
        "experiment_states": dict(exp_states),
        "single": collected.single,
        "keys": key_kinds(collected),
        "constant": collected.constant,
        "metrics": [{"name": m, "smaller": smaller_is_better(m)} for m in collected.metrics],
        "rows": _rows(collected),
        "provenance": prov,
        **runs,
    }
    return dict(strict_json(data))
