"""Adaptive search (issue 28): the study is the disk, every trial an experiment.

A seeded sequential search asks exactly what Optuna's own ``study.optimize`` asks (with a
pruner: the same trials pruned at the same steps); TPE beats random search; a driver killed
with SIGKILL at random points resumes the study without losing or repeating a trial or a
finished stage; a conditional space, a repeated suggestion answered from the disk, and an
edited ``post`` that reruns only post and updates the study's values.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import multiprocessing
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

import dagrun
from dagrun.disk.layout import SweepDir
from dagrun.optimize import Study
from dagrun.search import trials
from dagrun.search.trials import TrialState
from tests.helpers import finish, kill_tree, run_dagrun, start_dagrun, write_workflow
from tests.searchstages import (
    STEPS,
    best_of,
    conditional,
    conditional_fit,
    curve,
    discrete_fit,
    post,
    pre,
)

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.ERROR)

def _records(out: Path) -> list[trials.TrialRecord]:
    return trials.read_records(SweepDir.at(out))


def _search(out: Path, fit: Any, space: Any, **search: Any) -> dagrun.Summary:
    basecfg = {"out_path": str(out), "pre": pre, "fit": fit, "post": post,
               "verbose": False, "report": False, "search": {"metric": "loss", **search}}
    return dagrun.run_experiments(basecfg, space=space)


def test_sequential_study_asks_what_optuna_asks_with_a_pruner(tmp_path: Path) -> None:
    def objective(trial: Any) -> float:
        lr = trial.suggest_float("lr", 0.0, 1.0)
        value = math.nan
        for step in range(STEPS):
            value = (lr - 0.3) ** 2 + 1 / (step + 1)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    ref = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0),
                              pruner=optuna.pruners.MedianPruner())
    ref.optimize(objective, n_trials=30)
    summary = _search(tmp_path / "out", curve, {"lr": dagrun.Float(0.0, 1.0)},
                      n_trials=30, sampler="tpe", seed=0, pruner="median")
    assert summary.ok
    study = Study({"out_path": str(tmp_path / "out"), "search": {
        "metric": "loss", "n_trials": 30, "seed": 0, "pruner": "median"}}, (),
        {"lr": dagrun.Float(0.0, 1.0)})
    study.load()
    assert [t.record.params for t in study.trials] == [t.params for t in ref.trials]
    pruned = {t.number: max(t.intermediate_values) for t in ref.trials
              if t.state is optuna.trial.TrialState.PRUNED}
    assert pruned, "the reference pruned nothing: the test proves nothing"
    mine = {t.record.number: max(t.outcome.intermediate) for t in study.trials
            if t.outcome is not None and t.outcome.state is TrialState.PRUNED}
    assert mine == pruned
    run = tmp_path / "out" / str(next(iter(pruned)))  # on disk: a record, markers so far
    record = json.loads((run / "pruned.json").read_text())
    assert record["stage"] == "fit" and record["step"] == pruned[next(iter(pruned))]
    assert (run / "pre.done").exists() and not (run / "fit.done").exists()
    assert (run / "reports.json").exists()


def test_tpe_beats_random_on_a_quadratic(tmp_path: Path) -> None:
    """40 trials each, the median of the best over 5 seeds (two studies at a time)."""
    jobs = [(str(tmp_path / f"{sampler}-{seed}"), sampler, seed)
            for seed in range(5) for sampler in ("tpe", "random")]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        found = list(pool.map(best_of, *zip(*jobs, strict=True), timeout=300))
    best = {"tpe": found[0::2], "random": found[1::2]}
    assert statistics.median(best["tpe"]) < statistics.median(best["random"])


def test_conditional_space_define_by_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = _search(out, conditional_fit, conditional, n_trials=12, seed=1)
    assert summary.ok
    configs = [json.loads(p.read_text()) for p in out.glob("*/config.json")]
    for cfg in configs:
        assert ("alpha" in cfg) == (cfg["kind"] == "linear")
        assert ("depth" in cfg) == (cfg["kind"] == "tree")
    assert {c["kind"] for c in configs} == {"linear", "tree"}
    # a larger n_trials continues the same study
    _search(out, conditional_fit, conditional, n_trials=15, seed=1)
    assert len(_records(out)) == 15


def test_repeated_suggestion_is_answered_from_disk(tmp_path: Path) -> None:
    space = {"a": dagrun.Categorical([0, 1]), "b": dagrun.Int(0, 1)}

    def objective(trial: Any) -> float:
        cfg = {"a": trial.suggest_categorical("a", [0, 1]), "b": trial.suggest_int("b", 0, 1)}
        return discrete_fit(cfg, None)

    ref = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    ref.optimize(objective, n_trials=10)
    out = tmp_path / "out"
    summary = _search(out, discrete_fit, space, n_trials=10, sampler="random", seed=3)
    found = _records(out)
    assert [r.params for r in found] == [t.params for t in ref.trials]
    assert len(found) == 10
    distinct = {r.digest for r in found}
    assert summary.done == len(distinct) < 10  # each distinct config ran once
    assert sum(r.same_as is not None for r in found) == 10 - len(distinct)
    folders = [p for p in out.iterdir() if p.name.isdigit()]
    assert len(folders) == len(distinct)


EDITABLE = '''
import dagrun

def pre(cfg):
    return None

def fit(cfg, data):
    with open({counts!r}, "a") as f:
        f.write("fit\\n")
    return (cfg["x"] - 0.5) ** 2

def post(cfg, value):
    return {{"loss": value * {factor}}}

space = {{"x": dagrun.Float(0.0, 1.0)}}
basecfg = {{"out_path": {out!r}, "report": False,
           "search": {{"metric": "loss", "n_trials": 5, "seed": 0}}}}
'''


def test_edited_post_reruns_only_post_and_updates_the_study(tmp_path: Path) -> None:
    out, counts = tmp_path / "out", tmp_path / "fits.txt"
    wf = write_workflow(tmp_path, EDITABLE.format(counts=str(counts), out=str(out), factor=1))
    assert run_dagrun("execute", wf).rc == 0
    fit_markers = {p: p.read_bytes() for p in out.glob("*/fit.done")}
    assert len(fit_markers) == 5
    before = _values(out)
    write_workflow(tmp_path, EDITABLE.format(counts=str(counts), out=str(out), factor=3))
    result = run_dagrun("execute", wf, "--rerun-changed")
    assert result.rc == 0, result.stderr
    assert counts.read_text().count("fit") == 5  # fit ran once per trial, never again
    assert {p: p.read_bytes() for p in out.glob("*/fit.done")} == fit_markers
    assert len(_records(out)) == 5
    after = _values(out)
    assert after == pytest.approx([3 * v for v in before])


def _values(out: Path) -> list[float]:
    study = Study({"out_path": str(out), "search": {"metric": "loss", "n_trials": 5,
                                                    "seed": 0}}, (),
                  {"x": dagrun.Float(0.0, 1.0)})
    study.load()
    return [t.outcome.value for t in study.trials if t.outcome is not None
            and t.outcome.value is not None]


KILLABLE = '''
import time
import dagrun

def pre(cfg):
    time.sleep(0.03)
    return cfg["x"]

def fit(cfg, x):
    time.sleep(0.05)
    return (x - 0.25) ** 2 + cfg["y"]

def post(cfg, value):
    return {{"loss": value}}

space = {{"x": dagrun.Float(0.0, 1.0), "y": dagrun.Int(0, 3)}}
basecfg = {{"out_path": {out!r}, "report": False, "verbose": False,
           "search": {{"metric": "loss", "n_trials": {n}, "seed": 0}}}}
'''


def _markers(out: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in out.glob("*/*.done")}


def test_kill_the_driver_at_random_points_then_resume(tmp_path: Path) -> None:
    n = 12
    out = tmp_path / "out"
    wf = write_workflow(tmp_path, KILLABLE.format(out=str(out), n=n))
    rng = random.Random(28)
    seen: dict[Path, bytes] = {}
    for _ in range(10):
        proc = start_dagrun("execute", wf, log=tmp_path / "log.txt")
        time.sleep(rng.uniform(0.2, 0.8))
        kill_tree(proc)
        now = _markers(out)
        assert {p: now[p] for p in seen} == seen, "a finished stage was recomputed"
        seen = now
    proc = start_dagrun("execute", wf, log=tmp_path / "log.txt")
    assert finish(proc) == 0, (tmp_path / "log.txt").read_text()
    now = _markers(out)
    assert {p: now[p] for p in seen} == seen, "a finished stage was recomputed"
    found = _records(out)
    assert [r.number for r in found] == list(range(n))
    assert len({r.digest for r in found}) == n  # none asked twice
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == n
    # the resumed study asked what an uninterrupted one asks
    clean = tmp_path / "clean"
    wf2 = write_workflow(tmp_path, KILLABLE.format(out=str(clean), n=n), "clean.py")
    assert run_dagrun("execute", wf2).rc == 0
    assert [r.params for r in _records(clean)] == [r.params for r in found]


def test_clean_decides_pruning_again_only_for_the_stages_it_cleans(tmp_path: Path) -> None:
    """``dagrun clean --stage post`` keeps a trial pruned in fit (fit is not run again);
    ``--stage fit`` removes its pruning record and reported values, so the next execute
    runs fit again and the pruner decides again."""
    out = tmp_path / "out"
    _search(out, curve, {"lr": dagrun.Float(0.0, 1.0)}, n_trials=12, sampler="tpe", seed=0,
            pruner="median")
    pruned = sorted(int(p.parent.name) for p in out.glob("*/pruned.json"))
    assert pruned, "nothing was pruned: the test proves nothing"
    assert run_dagrun("clean", out, "--stage", "post").rc == 0
    assert sorted(int(p.parent.name) for p in out.glob("*/pruned.json")) == pruned
    one = out / str(pruned[0])
    assert run_dagrun("clean", out, "--stage", "fit", "--ids", str(pruned[0])).rc == 0
    assert not (one / "pruned.json").exists() and not (one / "reports.json").exists()
    assert (one / "pre.done").exists()
    others = sorted(int(p.parent.name) for p in out.glob("*/pruned.json"))
    assert others == pruned[1:]
    status = run_dagrun("status", out)
    assert status.rc == 0 and "pruned" in status.stdout
