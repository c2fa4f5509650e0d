"""The on-disk contract (CONTRACT.md section 3): layout, markers and results.jsonl.

Each test runs a real ``dagrun execute`` in a folder with an awkward name, on every backend.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Sweep, backend_flags, read_jsonl, run_dagrun

import dagrun

pytestmark = pytest.mark.timeout(120)

CFGS = [{"x": 3, "opt": {"lr": 0.1, "name": "a b"}}, {"x": 1, "opt": {"lr": 0.01, "name": "c"}},
        {"x": 2, "opt": {"lr": 1.0, "name": "d'e"}}]
MARKER_FIELDS = {"stage", "started", "finished", "seconds", "host", "pid", "attempt"}
RUN_FILES = {"config.json", "pre.pkl", "pre.done", "fit.pkl", "fit.done", "post.json",
             "post.done"}


def expected_post(cfg: dict[str, Any], rep: int) -> dict[str, Any]:
    """What the counting workflow's post returns for one run."""
    x = cfg["x"]
    assert isinstance(x, int)
    return {"acc": x * 10 + rep + 0.5, "rep_seen": rep, "tag": f"t{x}"}


def check_marker(path: Path, stage: str, driver_pid: int | None) -> dict[str, Any]:
    marker = json.loads(path.read_text())
    assert set(marker) >= MARKER_FIELDS, f"{path} lacks {MARKER_FIELDS - set(marker)}"
    assert marker["stage"] == stage
    assert marker["host"] == socket.gethostname()
    assert isinstance(marker["pid"], int) and marker["pid"] > 0
    assert marker["pid"] != os.getpid()  # a stage never runs in the test process
    if driver_pid is not None:
        assert marker["pid"] == driver_pid
    assert marker["attempt"] == 1
    assert isinstance(marker["seconds"], (int, float)) and marker["seconds"] >= 0
    for key in ("started", "finished"):
        assert isinstance(marker[key], (str, int, float)) and str(marker[key])
    return dict(marker)


def check_run_folder(run: Path, cfg: dict[str, Any], exp_id: int, rep: int,
                     sweep: Sweep) -> float:
    """Check one run folder completely; returns the fit time its marker recorded."""
    names = {p.name for p in run.iterdir()}
    assert names >= RUN_FILES, f"{run} lacks {RUN_FILES - names}"
    extra = names - RUN_FILES
    # pre prints, so it leaves a log; silent stages may leave none. Nothing else (no temp files).
    assert "pre.log" in extra
    assert extra <= {"pre.log", "fit.log", "post.log"}, f"unexpected files in {run}: {extra}"
    assert "pre says hello" in (run / "pre.log").read_text()

    config = json.loads((run / "config.json").read_text())
    assert config == {**cfg, "experiment_id": exp_id, "run_id": rep, "out_path": str(run)}
    assert sweep.received_cfg(exp_id, rep) == config  # the stage functions got the same keys

    with open(run / "pre.pkl", "rb") as f:
        assert pickle.load(f) == {"x": cfg["x"], "rep": rep}
    with open(run / "fit.pkl", "rb") as f:
        assert pickle.load(f) == {"w": int(cfg["x"]) * 10 + rep, "rep": rep}
    post = json.loads((run / "post.json").read_text())
    assert isinstance(post, dict)
    assert expected_post(cfg, rep).items() <= post.items()

    for stage in ("pre", "fit", "post"):
        check_marker(run / f"{stage}.done", stage, None)
    fit_marker = json.loads((run / "fit.done").read_text())
    return float(fit_marker["seconds"])


def execute(sweep: Sweep, backend: str, repetitions: int) -> None:
    sweep.write(CFGS, repetitions=repetitions)
    rc, _out, err = sweep.execute(*backend_flags(backend))
    assert rc == 0, err
    assert "Traceback" not in err


def check_top_level(sweep: Sweep) -> None:
    assert {p.name for p in sweep.out.iterdir()} == {"results.jsonl", ".dagrun", "0", "1", "2"}


def check_results_order(rows: list[dict[str, Any]]) -> None:
    ids = [row["experiment_id"] for row in rows]
    assert ids == [0, 1, 2]  # sorted, no duplicates, one line per experiment


def test_layout_and_results_one_repetition(sweep: Sweep, backend: str) -> None:
    execute(sweep, backend, repetitions=1)
    check_top_level(sweep)
    fit_seconds = {}
    for exp_id, cfg in enumerate(CFGS):
        run = sweep.out / str(exp_id)
        fit_seconds[exp_id] = check_run_folder(run, cfg, exp_id, 0, sweep)
        assert not (run / "0").exists()  # no repetition folder when repetitions == 1

    rows = sweep.results()
    check_results_order(rows)
    for row, (exp_id, cfg) in zip(rows, enumerate(CFGS), strict=True):
        scores = row["scores"]
        assert isinstance(scores, dict)
        assert set(row) == {*cfg, "experiment_id", "out_path", "scores"}
        assert {k: row[k] for k in cfg} == cfg
        assert row["out_path"] == str(sweep.out / str(exp_id))
        assert set(scores) == {"acc", "rep_seen", "tag", "fit_time"}
        assert {k: scores[k] for k in ("acc", "rep_seen", "tag")} == expected_post(cfg, 0)
        assert isinstance(scores["fit_time"], float) and scores["fit_time"] >= 0
        # fit_time is the time spent in fit, the same span the fit marker recorded
        assert scores["fit_time"] == pytest.approx(fit_seconds[exp_id], abs=1e-5)

    df = dagrun.read_results(sweep.out)
    assert list(df["experiment_id"]) == [0, 1, 2]
    assert list(df["scores.acc"]) == [30.5, 10.5, 20.5]
    assert "scores.fit_time" in df.columns
    assert list(df["opt.name"]) == ["a b", "c", "d'e"]

    # Executing a finished sweep again recomputes nothing and duplicates no line.
    before = (sweep.out / "results.jsonl").read_bytes()
    markers_before = {p: p.read_bytes() for p in sweep.out.rglob("*.done")}
    rc, _out, err = sweep.execute(*backend_flags(backend))
    assert rc == 0, err
    assert (sweep.out / "results.jsonl").read_bytes() == before
    assert {p: p.read_bytes() for p in sweep.out.rglob("*.done")} == markers_before
    for exp_id in range(3):
        assert [sweep.count(s, exp_id) for s in ("pre", "fit", "post")] == [1, 1, 1]


def test_layout_and_results_three_repetitions(sweep: Sweep, backend: str) -> None:
    execute(sweep, backend, repetitions=3)
    check_top_level(sweep)
    fit_seconds: dict[int, list[float]] = {}
    for exp_id, cfg in enumerate(CFGS):
        exp_dir = sweep.out / str(exp_id)
        assert {p.name for p in exp_dir.iterdir()} == {"0", "1", "2"}
        fit_seconds[exp_id] = [check_run_folder(exp_dir / str(rep), cfg, exp_id, rep, sweep)
                               for rep in range(3)]

    rows = sweep.results()
    check_results_order(rows)
    for row, (exp_id, cfg) in zip(rows, enumerate(CFGS), strict=True):
        assert set(row) == {*cfg, "experiment_id", "out_path", "scores"}
        assert {k: row[k] for k in cfg} == cfg
        assert row["out_path"] == str(sweep.out / str(exp_id))
        scores = row["scores"]
        assert isinstance(scores, dict)
        numeric = ("acc", "rep_seen", "fit_time")
        assert set(scores) == {"tag", *numeric, *(f"{p}_{m}" for p in ("mean", "std")
                                                  for m in numeric)}
        per_rep = [expected_post(cfg, rep) for rep in range(3)]
        assert scores["acc"] == [p["acc"] for p in per_rep]
        assert scores["rep_seen"] == [0, 1, 2]
        assert scores["tag"] == [p["tag"] for p in per_rep]  # not numeric: no mean/std
        assert scores["fit_time"] == pytest.approx(fit_seconds[exp_id], abs=1e-5)
        for m in numeric:
            values = np.asarray(scores[m], dtype=float)
            assert scores[f"mean_{m}"] == pytest.approx(float(np.mean(values)))
            assert scores[f"std_{m}"] == pytest.approx(float(np.std(values)))  # ddof=0
        assert scores["std_rep_seen"] == pytest.approx(np.sqrt(2 / 3))

    df = dagrun.read_results(sweep.out)
    assert list(df["experiment_id"]) == [0, 1, 2]
    assert "scores.mean_fit_time" in df.columns and "scores.std_fit_time" in df.columns
    assert list(df["scores.mean_acc"]) == pytest.approx([31.5, 11.5, 21.5])


def test_console_script_and_relative_out(awkward_dir: Path) -> None:
    """The installed ``dagrun`` script works too, with a relative out_path and --out."""
    (awkward_dir / "wf.py").write_text(
        "def pre(cfg):\n    return cfg['a']\n"
        "def fit(cfg, a):\n    return a + 1\n"
        "def post(cfg, b):\n    return {'b': b}\n"
        "basecfg = {'out_path': 'ignored', 'verbose': False}\n"
        "cfgs = [{'a': 1}, {'a': 5}]\n")
    result = run_dagrun("execute", "wf.py", "--out", "rel out", cwd=awkward_dir, script=True)
    assert result.rc == 0, result.stderr
    assert not (awkward_dir / "ignored").exists()
    rows = read_jsonl(awkward_dir / "rel out" / "results.jsonl")
    assert [r["scores"]["b"] for r in rows] == [2, 6]
    assert rows[1]["out_path"] == str(awkward_dir / "rel out" / "1")
