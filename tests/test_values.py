"""Data in configs (``dagrun.code.values``): each big value is stored once per sweep, every
JSON view shows a short summary, small values stay exactly as they were, and every way of
running a sweep (execute, plan + worker, resume) gives stages the values themselves.

Backends are covered by the contract suite (test_contract.py); here, what a user sees.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import dagrun
from tests.helpers import read_jsonl, run_dagrun, write_workflow

WORKFLOW = '''
import numpy as np

N = {n}


def pre(cfg):
    return float(cfg["X"].sum()) + float(np.sum(cfg["small"]))


def fit(cfg, total):
    return total * cfg["scale"]


def post(cfg, total):
    return {{"total": total}}


X = np.ones((N, 100))
SMALL = np.arange(4)
basecfg = {{"out_path": "out", "pre": pre, "fit": fit, "post": post, "report": False,
           "verbose": False{extra}}}
cfgs = [{{"X": X, "small": SMALL, "scale": s}} for s in (1, 2, 3, 4)]
'''


def _write(folder: Path, n: int = 1000, extra: str = "") -> Path:
    return write_workflow(folder, WORKFLOW.format(n=n, extra=extra), "wf.py")


def _sizes(out: Path) -> dict[str, int]:
    state = out / ".dagrun"
    return {"plan": (state / "plan.json").stat().st_size,
            "workflow": (state / "workflow.pkl").stat().st_size,
            "results": (out / "results.jsonl").stat().st_size,
            "config": (out / "0" / "config.json").stat().st_size}


def test_a_shared_array_is_stored_once_and_every_view_is_small(tmp_path: Path) -> None:
    wf = _write(tmp_path)
    result = run_dagrun("execute", wf, cwd=tmp_path)
    assert result.rc == 0, result.stderr
    out = tmp_path / "out"
    stored = list((out / ".dagrun" / "values").iterdir())
    assert [p.suffix for p in stored] == [".npy"]  # 4 cfgs, one array: one file
    assert stored[0].stat().st_size < 800_000 + 1_000
    sizes = _sizes(out)
    assert all(size < 4_000 for size in sizes.values()), sizes
    lines = read_jsonl(out / "results.jsonl")
    assert [line["scores"]["mean_total"] for line in lines] == [100_006.0 * s for s in (1, 2, 3, 4)]
    summary = lines[0]["X"]
    assert summary["ndarray"]["shape"] == [1000, 100]
    assert summary["ndarray"]["dtype"] == "float64"
    assert lines[0]["small"] == [0, 1, 2, 3]  # small values stay as they were
    assert np.array_equal(dagrun.load_value(out, summary), np.ones((1000, 100)))
    assert np.array_equal(dagrun.load_value(out, summary["ndarray"]["digest"]),
                          np.ones((1000, 100)))
    table = dagrun.results_table(out)
    assert len(table) == 4


def test_the_threshold_is_a_setting(tmp_path: Path) -> None:
    """``inline_max_kb``: below it a value stays inline, as it always was."""
    wf = _write(tmp_path, n=10, extra=', "inline_max_kb": 100')
    assert run_dagrun("execute", wf, cwd=tmp_path).rc == 0
    out = tmp_path / "out"
    assert not (out / ".dagrun" / "values").exists()
    assert json.loads((out / "0" / "config.json").read_text())["X"] == [[1.0] * 100] * 10
    bad = _write(tmp_path, extra=', "inline_max_kb": 0')
    refused = run_dagrun("execute", bad, cwd=tmp_path)
    assert refused.rc == 2 and "basecfg['inline_max_kb'] must be a size in KiB > 0" in \
        refused.stderr, refused.stderr


def test_workers_and_resume_read_the_values_from_out(tmp_path: Path) -> None:
    wf = _write(tmp_path)
    planned = run_dagrun("plan", wf, cwd=tmp_path)
    assert planned.rc == 0, planned.stderr
    out = tmp_path / "out"
    worker = run_dagrun("worker", out, "-j", "2", cwd=tmp_path, timeout=120)
    assert worker.rc == 0, worker.stderr
    assert [line["scores"]["mean_total"] for line in read_jsonl(out / "results.jsonl")] == \
        [100_006.0 * s for s in (1, 2, 3, 4)]
    for folder in ("1", "3"):
        for name in ("pre.done", "pre.pkl", "fit.done", "fit.pkl", "post.done", "post.json"):
            (out / folder / name).unlink()
    resumed = run_dagrun("resume", out, "--backend", "multiprocessing", "-j", "2",
                         cwd=tmp_path)
    assert resumed.rc == 0, resumed.stderr
    assert [line["scores"]["mean_total"] for line in read_jsonl(out / "results.jsonl")] == \
        [100_006.0 * s for s in (1, 2, 3, 4)]


def test_a_lost_value_fails_its_runs_with_one_line_and_execute_writes_it_again(
        tmp_path: Path) -> None:
    wf = _write(tmp_path)
    planned = run_dagrun("plan", wf, cwd=tmp_path)
    assert planned.rc == 0, planned.stderr
    out = tmp_path / "out"
    for path in (out / ".dagrun" / "values").iterdir():
        path.unlink()
    resumed = run_dagrun("resume", out, cwd=tmp_path)
    assert resumed.rc == 1, resumed.stderr
    assert "the values store of" in resumed.stderr and "lost a cfg value" in resumed.stderr
    again = run_dagrun("execute", wf, cwd=tmp_path)
    assert again.rc == 0, again.stderr
    assert len(read_jsonl(out / "results.jsonl")) == 4


def test_a_changed_array_is_a_new_experiment(tmp_path: Path) -> None:
    wf = _write(tmp_path)
    assert run_dagrun("execute", wf, cwd=tmp_path).rc == 0
    wf.write_text(wf.read_text().replace("X = np.ones((N, 100))",
                                         "X = np.ones((N, 100))\nX[500, 5] = 2.0"))
    result = run_dagrun("execute", wf, cwd=tmp_path)
    assert result.rc == 0, result.stderr
    out = tmp_path / "out"
    lines = read_jsonl(out / "results.jsonl")
    assert [line["experiment_id"] for line in lines] == [4, 5, 6, 7]
    assert [line["scores"]["mean_total"] for line in lines] == [100_007.0 * s for s in (1, 2, 3, 4)]
    assert len(os.listdir(out / ".dagrun" / "values")) == 2


WRITING = '''
import numpy as np


def pre(cfg):
    seen = float(cfg["X"][0, 0])
    cfg["X"][0, 0] += 1.0  # a stage writing into its array: its own copy only
    cfg["X"][:, 1] = -1.0
    return seen


def fit(cfg, seen):
    assert cfg["X"].flags.writeable
    before = float(cfg["X"][0, 0])
    cfg["X"] *= 2.0
    return [seen, before, float(cfg["X"][:, 1].sum())]


def post(cfg, seen):
    return {{"pre": seen[0], "fit": seen[1], "column": seen[2],
             "post": float(cfg["X"][0, 0]), "post_column": float(cfg["X"][:, 1].sum())}}


X = np.full((1000, 4), 3.0)
basecfg = {{"out_path": "out", "pre": pre, "fit": fit, "post": post, "report": False,
           "verbose": False, "repetitions": 3, "backend": "{backend}", "num_cpus": 1}}
cfgs = [{{"X": X, "k": k}} for k in range(3)]
'''


def test_a_stage_writing_into_a_stored_array_changes_it_for_no_other_call(
        tmp_path: Path) -> None:
    """Each stage call maps the stored array anew, copy-on-write: what pre writes reaches
    neither fit nor post nor any later run of the same process, nor the store."""
    for backend in ("single", "multiprocessing"):
        folder = tmp_path / backend
        folder.mkdir()
        wf = write_workflow(folder, WRITING.format(backend=backend), "wf.py")
        result = run_dagrun("execute", wf, cwd=folder)
        assert result.rc == 0, result.stderr
        lines = read_jsonl(folder / "out" / "results.jsonl")
        assert len(lines) == 3
        for line in lines:
            scores = line["scores"]
            assert scores["pre"] == scores["fit"] == scores["post"] == [3.0] * 3, scores
            assert scores["column"] == [6000.0] * 3 and scores["post_column"] == [3000.0] * 3
        (stored,) = (folder / "out" / ".dagrun" / "values").iterdir()
        assert (np.load(stored) == 3.0).all()


def test_the_loader_reads_a_header_once_and_a_rewritten_file_anew(tmp_path: Path) -> None:
    """``values.Loader`` keeps what an array file's header says for as long as the file is
    the same file: every load is its own writable copy-on-write mapping, and a file
    written again under its name (another shape) is read by its new header."""
    from dagrun.code import values
    from dagrun.disk.layout import SweepDir

    sweep = SweepDir.at(str(tmp_path / "out"))
    first = np.arange(12.0).reshape(3, 4)
    ref = values.ValueRef("d" * 32, values.NPY, ())
    assert values.put(sweep, ref, first)
    loader = values.Loader()
    a, b = loader.load(sweep, ref), loader.load(sweep, ref)
    assert type(a) is np.ndarray and a.flags.writeable and (a == first).all()
    a[...] = -1.0
    assert (b == first).all() and (loader.load(sweep, ref) == first).all()
    assert (np.load(values.path_of(sweep, ref.digest, ref.kind)) == first).all()
    os.unlink(values.path_of(sweep, ref.digest, ref.kind))
    other = np.asfortranarray(np.arange(30, dtype=np.int32).reshape(5, 6))
    assert values.put(sweep, ref, other)  # same name, another header
    again = loader.load(sweep, ref)
    assert again.dtype == np.int32 and again.shape == (5, 6) and (again == other).all()
    empty = values.ValueRef("e" * 32, values.NPY, ())
    values.put(sweep, empty, np.zeros((0, 3)))
    assert loader.load(sweep, empty).shape == (0, 3)
    cut = values.ValueRef("c" * 32, values.NPY, ())
    values.put(sweep, cut, np.ones(1000))
    path = values.path_of(sweep, cut.digest, cut.kind)
    os.truncate(path, os.path.getsize(path) - 8000)  # its data lost: refused, as np.load does
    for load in (loader.load, values.load):
        try:
            load(sweep, cut)
        except (TypeError, ValueError):
            pass
        else:
            raise AssertionError("a truncated array file must not load")
    os.unlink(values.path_of(sweep, ref.digest, ref.kind))
    try:
        loader.load(sweep, ref)
    except dagrun.errors.UsageError as exc:
        assert "lost a cfg value" in str(exc)
    else:
        raise AssertionError("a missing value must fail as values.load fails")
