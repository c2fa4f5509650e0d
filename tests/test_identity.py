"""Experiments are known by their content (``dagrun.disk.identity``): a shuffled, reordered,
grown or shrunk list of cfgs keeps every finished experiment, on every local backend and for
workers that load the workflow from OUT; each run receives its own cfg wherever it runs.

Every check runs the user's script or ``dagrun`` in a real process, twice or more.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    LOCAL_BACKENDS,
    backend_flags,
    child_env,
    read_jsonl,
    run_dagrun,
    write_workflow,
)

SHUFFLED = '''
import os
import random
import sys

from dagrun import run_experiments

COUNTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "counts")


def pre(cfg):
    os.makedirs(COUNTS, exist_ok=True)
    with open(os.path.join(COUNTS, f"{cfg['x']}-{os.getpid()}"), "a") as f:
        f.write("x")
    return cfg["x"]


def fit(cfg, x):
    return x * 10


def post(cfg, y):
    return {"y": y, "x_seen": cfg["x"]}


if __name__ == "__main__":
    cfgs = [{"x": x} for x in range(int(sys.argv[2]))]
    random.shuffle(cfgs)  # as a published script did, without a seed, into a fixed out_path
    basecfg = {"out_path": "out", "pre": pre, "fit": fit, "post": post,
               "backend": sys.argv[1], "verbose": False, "report": False}
    summary = run_experiments(basecfg, cfgs)
    print(f"done now {summary.done}")
'''


def _counts(folder: Path) -> dict[int, int]:
    """How many times pre ran per x."""
    found: dict[int, int] = {}
    for path in (folder / "counts").glob("*"):
        x = int(path.name.split("-")[0])
        found[x] = found.get(x, 0) + len(path.read_text())
    return found


def _check_results(out: Path, xs: range) -> None:
    """Each experiment's line holds its own cfg's results; ids never repeat."""
    lines = read_jsonl(out / "results.jsonl")
    assert sorted(line["x"] for line in lines) == list(xs)
    assert len({line["experiment_id"] for line in lines}) == len(lines)
    for line in lines:
        assert line["scores"]["mean_x_seen"] == line["x"] and \
            line["scores"]["mean_y"] == line["x"] * 10


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_a_shuffled_cfg_list_into_a_fixed_out_path_is_a_no_op(tmp_path: Path,
                                                              backend: str) -> None:
    script = write_workflow(tmp_path, SHUFFLED, "study.py")
    for count, expected in ((4, "done now 4"), (4, "done now 0"), (6, "done now 2"),
                            (6, "done now 0")):
        proc = subprocess.run([sys.executable, str(script), backend, str(count)],
                              cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        assert expected in proc.stdout, proc.stdout + proc.stderr
        _check_results(tmp_path / "out", range(count))
    assert _counts(tmp_path) == {x: 1 for x in range(6)}


LAMBDAS = '''
import os

COUNTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "counts")


def pre(cfg):
    os.makedirs(COUNTS, exist_ok=True)
    with open(os.path.join(COUNTS, f"{{cfg['i']}}-{{os.getpid()}}"), "a") as f:
        f.write("x")
    return cfg["f"](cfg["i"])


def fit(cfg, v):
    return v


def post(cfg, v):
    return {{"y": v, "x_seen": cfg["i"]}}


basecfg = {{"out_path": "out", "pre": pre, "fit": fit, "post": post, "report": False}}
cfgs = [{{"i": i, "f": lambda v, i=i: v * 10 + i * 0}} for i in range({count})]
'''


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_growing_a_sweep_of_lambdas_on_its_line_runs_only_the_new_configs(
        tmp_path: Path, backend: str) -> None:
    """A lambda is digested by its own code, defaults and closure, not by its source line:
    ``range(3)`` -> ``range(5)`` on the cfgs line runs the two new experiments only."""
    for count, done in ((3, 3), (5, 2), (5, 0)):
        wf = write_workflow(tmp_path, LAMBDAS.format(count=count), "wf.py")
        result = run_dagrun("execute", wf, *backend_flags(backend), cwd=tmp_path)
        assert result.rc == 0, result.stderr
        assert f"{done} done now" in result.stdout + result.stderr, result.stderr
        assert "edited" not in result.stderr
    lines = read_jsonl(tmp_path / "out" / "results.jsonl")
    assert [(line["experiment_id"], line["i"], line["scores"]["mean_y"]) for line in lines] == \
        [(i, i, i * 10) for i in range(5)]
    assert _counts(tmp_path) == {i: 1 for i in range(5)}


WORKER_FLOW = '''
import os

def pre(cfg):
    return cfg["x"]

def fit(cfg, x):
    return x * 10

def post(cfg, y):
    return {{"y": y, "x_seen": cfg["x"]}}

basecfg = {{"out_path": "out", "pre": pre, "fit": fit, "post": post, "report": False}}
cfgs = [{{"x": x}} for x in {xs}]
'''


def test_workers_give_each_run_its_own_cfg_when_ids_are_not_positions(tmp_path: Path) -> None:
    """``dagrun plan`` after a reorder: the pickled workflow maps each experiment id to its
    cfg, so a ``dagrun worker`` computes experiment 3 with x = 3 wherever it sits in cfgs."""
    wf = write_workflow(tmp_path, WORKER_FLOW.format(xs="[0, 1, 2]"), "wf.py")
    assert run_dagrun("execute", wf, cwd=tmp_path).rc == 0
    write_workflow(tmp_path, WORKER_FLOW.format(xs="[5, 2, 4, 0, 3, 1]"), "wf.py")
    planned = run_dagrun("plan", wf, cwd=tmp_path)
    assert planned.rc == 0, planned.stderr
    assert "3 new" in planned.stderr, planned.stderr
    worker = run_dagrun("worker", tmp_path / "out", "-j", "2", cwd=tmp_path, timeout=120)
    assert worker.rc == 0, worker.stderr
    lines = read_jsonl(tmp_path / "out" / "results.jsonl")
    assert [(line["experiment_id"], line["x"]) for line in lines] == \
        [(0, 0), (1, 1), (2, 2), (3, 5), (4, 4), (5, 3)]
    for line in lines:
        assert line["scores"]["mean_x_seen"] == line["x"] and \
            line["scores"]["mean_y"] == line["x"] * 10


def test_a_new_repetitions_layout_is_a_new_experiment_and_the_old_one_is_kept(
        tmp_path: Path) -> None:
    """One repetition lives in OUT/ID/, several in OUT/ID/REP/: moving between them is a new
    experiment (the old folder is kept as an orphan, found again when the layout returns)."""
    wf = write_workflow(tmp_path, WORKER_FLOW.format(xs="[0, 1]"), "wf.py")
    assert run_dagrun("execute", wf, cwd=tmp_path).rc == 0
    source = wf.read_text()
    wf.write_text(source.replace('"report": False}', '"report": False, "repetitions": 2}'))
    result = run_dagrun("execute", wf, cwd=tmp_path)
    assert result.rc == 0, result.stderr
    assert "2 new, 2 of them for a new repetitions layout" in result.stderr, result.stderr
    assert "2 no longer in cfgs" in result.stderr
    assert (tmp_path / "out" / "0" / "post.json").is_file()  # the old layout kept
    assert (tmp_path / "out" / "2" / "1" / "post.json").is_file()
    wf.write_text(source)
    back = run_dagrun("execute", wf, cwd=tmp_path)
    assert back.rc == 0 and "2 back from earlier cfgs" in back.stderr, back.stderr
    assert "0 done now" in back.stdout + back.stderr


ENSEMBLE_STUDY = '''
import sys

import numpy as np
from sklearn.datasets import make_classification
from sklearn.tree import DecisionTreeClassifier

from dagrun import run_experiments


def pre(cfg):
    return [t.predict(cfg["X"]) for t in cfg["trees"]]


def fit(cfg, predictions):
    return np.mean(np.mean(predictions, axis=0).round() == cfg["Y"])


def post(cfg, accuracy):
    return {"accuracy": float(accuracy), "n_trees": len(cfg["trees"])}


X, Y = make_classification(n_samples=300, n_features=8, random_state=0)
forest = [DecisionTreeClassifier(max_depth=4, random_state=s).fit(X[s::3], Y[s::3])
          for s in range(6)]
basecfg = {"out_path": "out", "pre": pre, "fit": fit, "post": post, "verbose": False,
           "report": False}
cfgs = [{"X": X, "Y": Y, "trees": forest[:k], "pruning": name}
        for k in (2, 4, 6) for name in ("greedy", "none")]

if __name__ == "__main__":
    basecfg["backend"] = sys.argv[1]
    print("done now", run_experiments(basecfg, cfgs).done)
'''


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_an_ensemble_pruning_study_runs_again_as_a_no_op(tmp_path: Path, backend: str) -> None:
    """cfgs holding the data set and lists of fitted scikit-learn trees, built anew by each
    process: ``python study.py`` twice, then ``dagrun execute study.py``, compute once."""
    script = write_workflow(tmp_path, ENSEMBLE_STUDY, "study.py")
    for expected in ("done now 6", "done now 0"):
        proc = subprocess.run([sys.executable, str(script), backend], cwd=tmp_path,
                              env=child_env({"PYTHONHASHSEED": "random"}),
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        assert expected in proc.stdout, proc.stdout + proc.stderr
    dry = run_dagrun("execute", script, "--dry-run", *backend_flags(backend), cwd=tmp_path)
    assert dry.rc == 0, dry.stderr
    assert "6 done" in dry.stdout and "run " not in dry.stdout, dry.stdout
    assert "since the last plan" not in dry.stdout
