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


SLOW_TRIAL = '''
import glob
import os
import time
import dagrun

def pre(cfg):
    return None

def fit(cfg, data):
    if not cfg["slow"]:
        return (cfg["x"] - 0.3) ** 2
    # the slow trial: wait (60 s at most) until the other trials have ended, which they
    # can only do while it runs if a trial is asked whenever a slot frees
    deadline = time.monotonic() + 60
    others = 0
    while time.monotonic() < deadline:
        others = len(glob.glob(os.path.join({out!r}, "*", "post.json")))
        if others >= {n} - 1:
            break
        time.sleep(0.05)
    return float(others)

def post(cfg, value):
    return {{"loss": value}}

space = {{"x": dagrun.Float(0.0, 1.0), "slow": False}}
basecfg = {{"out_path": {out!r}, "report": False, "backend": "multiprocessing",
           "num_cpus": 2,
           "search": {{"metric": "loss", "n_trials": {n}, "seed": 0, "sampler": "random",
                       "cfgs": [{{"x": 0.5, "slow": True}}]}}}}
'''


def test_a_slot_that_frees_asks_a_trial_while_a_slow_one_runs(tmp_path: Path) -> None:
    """A trial is asked whenever a slot frees, not in rounds: while the first (enqueued,
    slow) trial runs, the other slot asks and runs every other trial of the study; the
    slow trial sees them all finished before it ends."""
    out = tmp_path / "out"
    n = 6
    wf = write_workflow(tmp_path, SLOW_TRIAL.format(out=str(out), n=n))
    result = run_dagrun("execute", wf, "-j", "2", timeout=180)
    assert result.rc == 0, result.stderr
    found = trials.read_records(SweepDir.at(out))
    assert [r.number for r in found] == list(range(n))
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == n
    slow = [line for line in lines if line["slow"]]
    assert len(slow) == 1
    assert slow[0]["scores"]["mean_loss"] == n - 1  # every other trial ended meanwhile
    assert "trial 5" in result.stderr and "best loss=" in result.stderr


CRASHING = '''
import os
import dagrun

def pre(cfg):
    return None

def fit(cfg, data):
    # the first attempt of every trial ends its worker process: the retry goes to a new
    # worker, started from the workflow as it was before this trial was asked
    flag = os.path.join({side!r}, "crashed-%d" % cfg["experiment_id"])
    if not os.path.exists(flag):
        open(flag, "w").close()
        os._exit(3)
    return (cfg["x"] - 0.3) ** 2

def post(cfg, value):
    return {{"loss": value}}

space = {{"x": dagrun.Float(0.0, 1.0)}}
basecfg = {{"out_path": {out!r}, "report": False, "backend": "multiprocessing",
           "num_cpus": 2, "retries": 1,
           "search": {{"metric": "loss", "n_trials": 6, "seed": 0, "sampler": "random"}}}}
'''


def test_a_worker_started_after_a_trial_was_asked_learns_it(tmp_path: Path) -> None:
    """Every trial's first attempt kills its worker; the retry runs in a worker started
    after (from the workflow without that trial), which learns the trial from the run."""
    out = tmp_path / "out"
    side = tmp_path / "side"
    side.mkdir()
    wf = write_workflow(tmp_path, CRASHING.format(out=str(out), side=str(side)))
    result = run_dagrun("execute", wf, "-j", "2", timeout=180)
    assert result.rc == 0, result.stderr
    assert len(list(side.glob("crashed-*"))) == 6
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 6
    assert "not in this sweep's plan" not in result.stderr


REPEATED = '''
import time
import dagrun

def pre(cfg):
    return None

def fit(cfg, data):
    time.sleep(0.05 * cfg["run_id"])  # the repetitions of a trial end at different times
    return (cfg["x"] - 0.3) ** 2 + 0.01 * cfg["run_id"]

def post(cfg, value):
    return {{"loss": value}}

space = {{"x": dagrun.Float(0.0, 1.0)}}
basecfg = {{"out_path": {out!r}, "report": False, "backend": "multiprocessing",
           "num_cpus": 2, "repetitions": 3,
           "search": {{"metric": "loss", "n_trials": 5, "seed": 0, "sampler": "random"}}}}
'''


def test_a_trial_of_several_repetitions_is_told_once_all_have_ended(tmp_path: Path) -> None:
    """A trial is told the sampler when its last repetition ends, with the mean over all
    of them (told at its first, it would be running, i.e. failed)."""
    out = tmp_path / "out"
    wf = write_workflow(tmp_path, REPEATED.format(out=str(out)))
    result = run_dagrun("execute", wf, "-j", "2", timeout=180)
    assert result.rc == 0, result.stderr
    told = [line for line in result.stderr.splitlines() if line.startswith("dagrun: trial ")]
    assert len(told) == 5 and not any("failed" in line for line in told), told
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 5
    for line in lines:
        mean = (line["x"] - 0.3) ** 2 + 0.01
        assert line["scores"]["mean_loss"] == pytest.approx(mean)
        assert f"loss={mean:.6g}" in "\n".join(told)


FAILING = '''
import os
import dagrun

def pre(cfg):
    return None

def fit(cfg, data):
    with open(os.path.join({side!r}, "fit-%d" % cfg["experiment_id"]), "a") as f:
        f.write("x\\n")
    if cfg["x"] > 0.5:
        raise ValueError("bad x")
    return (cfg["x"] - 0.3) ** 2

def post(cfg, value):
    return {{"loss": value}}

space = {{"x": dagrun.Float(0.0, 1.0)}}
basecfg = {{"out_path": {out!r}, "report": False,
           "search": {{"metric": "loss", "n_trials": 8, "seed": 0, "sampler": "random"}}}}
'''


def test_a_worker_tries_a_failed_trial_once_and_goes_on(tmp_path: Path) -> None:
    """A worker alone: the first trial fails (seed 0 asks x > 0.5). It is failed for the
    study: the worker asks the next trials (it used to claim the failed run for ever) and
    does not attempt failed trials again whenever it plans a new one."""
    out = tmp_path / "out"
    side = tmp_path / "side"
    side.mkdir()
    wf = write_workflow(tmp_path, FAILING.format(out=str(out), side=str(side)))
    assert run_dagrun("plan", wf).rc == 0
    worker = run_dagrun("worker", out, "-j", "1", timeout=120)
    assert worker.rc == 1, worker.stderr  # some trials failed
    found = trials.read_records(SweepDir.at(out))
    assert [r.number for r in found] == list(range(8))
    calls = {p.name: len(p.read_text().splitlines()) for p in side.glob("fit-*")}
    assert len(calls) == 8 and set(calls.values()) == {1}, calls
    failed = [json.loads(p.read_text()) for p in out.glob("*/fit.error")]
    assert failed and all("bad x" in f["message"] for f in failed)
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) + len(failed) == 8
