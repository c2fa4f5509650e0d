"""Adaptive search in parallel (issue 28): ``-j 2`` on multiprocessing, and two
``dagrun worker``s that extend the study without a driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dagrun.disk.layout import SweepDir
from dagrun.search import trials
from tests.helpers import finish, run_dagrun, start_dagrun, write_workflow

pytest.importorskip("optuna")

WORKFLOW = '''
import os
import time
import dagrun

def _both_workers_there():
    """Under ``dagrun worker``s (their announcements exist), hold the trial until two
    are announced (at most 60 s), so that each of them asks a trial however slowly the
    second one starts; a driver's sweep has no announcements and waits for nothing."""
    folder = os.path.join({out!r}, ".dagrun", "workers")
    seen = os.path.join(os.path.dirname({out!r}), "two-workers-seen")  # once is enough
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not os.path.exists(seen):
        try:
            if len(os.listdir(folder)) >= 2:
                open(seen, "w").close()
                return
        except FileNotFoundError:
            return
        time.sleep(0.05)

def pre(cfg):
    return None

def fit(cfg, data):
    _both_workers_there()
    time.sleep(0.2)
    for step in range(3):
        dagrun.report(step, (cfg["x"] - 0.3) ** 2 + 1 / (step + 1))
    return (cfg["x"] - 0.3) ** 2 + cfg["k"]

def post(cfg, value):
    return {{"loss": value}}

space = {{"x": dagrun.Float(0.0, 1.0), "k": dagrun.Int(0, 2), "fixed": "yes"}}
basecfg = {{"out_path": {out!r}, "report": False, "backend": "multiprocessing",
           "num_cpus": 2,
           "search": {{"metric": "loss", "n_trials": {n}, "seed": 0, "pruner": "median"}}}}
'''


def _check(out: Path, n: int) -> None:
    found = trials.read_records(SweepDir.at(out))
    assert [r.number for r in found] == list(range(n))
    assert len({r.digest for r in found}) == n  # none asked twice
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    pruned = [p for p in out.glob("*/pruned.json")]
    assert len(lines) + len(pruned) == n
    assert all(line["fixed"] == "yes" for line in lines)


def test_two_at_a_time_on_multiprocessing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    wf = write_workflow(tmp_path, WORKFLOW.format(out=str(out), n=6))
    result = run_dagrun("execute", wf, "-j", "2")
    assert result.rc == 0, result.stderr
    _check(out, 6)
    again = run_dagrun("execute", wf, "-j", "2")  # a finished study: nothing runs
    assert again.rc == 0 and "trial 6" not in again.stderr
    _check(out, 6)


def test_two_workers_extend_the_study_without_a_driver(tmp_path: Path) -> None:
    out = tmp_path / "out"
    wf = write_workflow(tmp_path, WORKFLOW.format(out=str(out), n=6))
    planned = run_dagrun("plan", wf)
    assert planned.rc == 0, planned.stderr
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = [start_dagrun("worker", out, "-j", "1", log=log) for log in logs]
    codes = [finish(w, timeout=120) for w in workers]
    assert codes == [0, 0], [log.read_text() for log in logs]
    _check(out, 6)
    asked = sum(log.read_text().count("asked trial") for log in logs)
    assert asked == 5  # the first was asked by `dagrun plan`
    assert all("asked trial" in log.read_text() for log in logs)  # both asked
