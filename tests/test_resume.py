"""Resume and safety (CONTRACT.md sections 2-4), with real ``dagrun`` processes.

Stages of the counting workflow (see conftest) append a line to COUNTS/<stage>-<id>-<rep>
each time they run, so every test can say exactly which stages were recomputed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    Sweep,
    backend_flags,
    kill_tree,
    make_sweep,
    markers,
    read_jsonl,
    run_dagrun,
    snapshot,
    start_dagrun,
    wait_for,
    write_workflow,
)

pytestmark = pytest.mark.timeout(120)

STAGES = ("pre", "fit", "post")
CFGS = [{"x": 1}, {"x": 2}, {"x": 3}]


def counts(sweep: Sweep, exp_id: int, rep: int = 0) -> list[int]:
    return [sweep.count(stage, exp_id, rep) for stage in STAGES]


def ids(rows: list[dict[str, Any]]) -> list[object]:
    return [row["experiment_id"] for row in rows]


def without_fit_time(rows: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """Rows with fit_time (and its mean/std) dropped and out_path made relative to OUT."""
    normal = []
    for row in rows:
        scores = row["scores"]
        assert isinstance(scores, dict)
        kept = {k: v for k, v in scores.items() if "fit_time" not in k}
        out_path = Path(str(row["out_path"]))
        assert out_path.parent == out
        normal.append({**row, "out_path": out_path.name, "scores": kept})
    return normal


def one_error_line(stderr: str) -> str:
    """The single ``dagrun: error:`` line of a refused command (no traceback)."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    return lines[0]


# --------------------------------------------------------------------------------------------
# Failures and retries


def test_failed_fit_resumes_at_fit(sweep: Sweep) -> None:
    """(On worker backends, test_resume_without_the_workflow_file covers the same.)"""
    sweep.write(CFGS, fail_once=[1])
    rc, _out, err = sweep.execute()
    assert rc == 1, err
    assert "boom in fit" in err
    run = sweep.out / "1"
    assert {"pre.done", "pre.pkl", "fit.error"} <= {p.name for p in run.iterdir()}
    assert not (run / "fit.done").exists() and not (run / "fit.pkl").exists()
    error = json.loads((run / "fit.error").read_text())
    assert {"kind", "message", "traceback", "attempt", "host", "time"} <= set(error)
    assert "boom in fit" in error["message"]
    assert "RuntimeError" in error["traceback"]
    assert error["attempt"] == 1 and error["host"] == socket.gethostname()
    assert ids(sweep.results()) == [0, 2]  # a failed experiment gets no line
    assert counts(sweep, 1) == [1, 1, 0]

    rc, _out, err = sweep.execute()
    assert rc == 0, err
    assert counts(sweep, 1) == [1, 2, 1]  # resumed at fit: pre not recomputed
    assert counts(sweep, 0) == counts(sweep, 2) == [1, 1, 1]
    assert ids(sweep.results()) == [0, 1, 2]
    assert sweep.results()[1]["scores"]["mean_acc"] == 20.5


def test_a_retried_run_leaves_the_other_lines_as_they_are(sweep: Sweep) -> None:
    """After one run is retried, the other experiments' lines are copied, not recomputed
    from their post.json: the planner verified those runs against their lines (post.json
    unchanged since, by its mtime). Shown with a post.json damaged behind the planner's back
    (its mtime put back): its experiment keeps its line, which a recomputation would drop."""
    sweep.write(CFGS, fail_once=[1])
    assert sweep.execute().rc == 1
    before = {row["experiment_id"]: row for row in sweep.results()}
    post = sweep.out / "2" / "post.json"
    st = post.stat()
    post.write_text("{damaged")
    os.utime(post, ns=(st.st_atime_ns, st.st_mtime_ns))
    rc, _out, err = sweep.execute()
    assert rc == 0, err
    after = {row["experiment_id"]: row for row in sweep.results()}
    assert sorted(after) == [0, 1, 2] and after[2] == before[2] and after[0] == before[0]
    assert after[1]["scores"]["mean_acc"] == 20.5


MOVABLE = """
OUT = {out!r}


def pre(cfg):
    return cfg["x"]


def fit(cfg, x):
    return x * 2


def post(cfg, y):
    return {{"acc": y + 0.5}}


basecfg = {{"out_path": OUT, "pre": pre, "fit": fit, "post": post, "verbose": False,
           "report": False}}
cfgs = [{{"x": 1}}, {{"x": 2}}, {{"x": 3}}]
"""


def test_a_moved_sweep_gets_lines_naming_its_new_folder(awkward_dir: Path) -> None:
    """A copied sweep keeps its record of results.jsonl (mtimes preserved), so its done runs
    are verified; their lines still name the old folder, so they are recomputed, not
    copied, when one run is redone there."""
    first, second = awkward_dir / "first", awkward_dir / "second"
    for folder in (first, second):
        folder.mkdir()
        write_workflow(folder, MOVABLE.format(out=str(folder / "OUT")))
    assert run_dagrun("execute", first / "workflow.py", cwd=first).rc == 0
    shutil.copytree(first / "OUT", second / "OUT")
    (second / "OUT" / "1" / "post.done").unlink()
    result = run_dagrun("execute", second / "workflow.py", cwd=second)
    assert result.rc == 0, result.stderr
    rows = read_jsonl(second / "OUT" / "results.jsonl")
    assert [row["experiment_id"] for row in rows] == [0, 1, 2]
    assert [row["out_path"] for row in rows] == [str(second / "OUT" / str(i)) for i in range(3)]


def test_a_run_resumed_after_fit_reports_the_same_results(awkward_dir: Path) -> None:
    """fit_time of a run whose post reran comes from fit's marker; an uninterrupted run
    reports that same number (not a more precise one)."""
    write_workflow(awkward_dir, MOVABLE.format(out=str(awkward_dir / "OUT")))
    assert run_dagrun("execute", awkward_dir / "workflow.py", cwd=awkward_dir).rc == 0
    first = read_jsonl(awkward_dir / "OUT" / "results.jsonl")
    marker = json.loads((awkward_dir / "OUT" / "1" / "fit.done").read_text())
    assert first[1]["scores"]["fit_time"] == [marker["seconds"]]
    (awkward_dir / "OUT" / "1" / "post.done").unlink()
    assert run_dagrun("execute", awkward_dir / "workflow.py", cwd=awkward_dir).rc == 0
    assert read_jsonl(awkward_dir / "OUT" / "results.jsonl") == first


def test_retries_resume_at_the_failed_stage(sweep: Sweep) -> None:
    sweep.write(CFGS[:2], fail_once=[0, 1])
    rc, _out, err = sweep.execute("--retries", "1")
    assert rc == 0, err
    for exp_id in (0, 1):
        assert counts(sweep, exp_id) == [1, 2, 1]
        marker = json.loads((sweep.out / str(exp_id) / "fit.done").read_text())
        assert marker["attempt"] == 2
        assert json.loads((sweep.out / str(exp_id) / "pre.done").read_text())["attempt"] == 1
    assert ids(sweep.results()) == [0, 1]


# --------------------------------------------------------------------------------------------
# kill -9 of the driver


def test_kill_9_mid_sweep_then_resume_gives_the_same_results(awkward_dir: Path,
                                                             backend: str) -> None:
    cfgs = [{"x": i} for i in range(6)]
    reference = make_sweep(awkward_dir, "reference")
    reference.write(cfgs, repetitions=2)
    rc, _out, err = reference.execute(*backend_flags(backend))
    assert rc == 0, err

    sweep = make_sweep(awkward_dir, "killed")
    sweep.write(cfgs, repetitions=2, sleep=0.05)
    proc = start_dagrun("execute", sweep.workflow, *backend_flags(backend), cwd=sweep.folder,
                        log=awkward_dir / "killed.log")
    try:
        wait_for(lambda: len(markers(sweep.out)) >= 5 or proc.poll() is not None,
                 what="five stage markers")
        assert proc.poll() is None, "the sweep finished before it could be killed"
    finally:
        rc = kill_tree(proc, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    had_marker = markers(sweep.out)
    assert 5 <= len(had_marker) < 36
    if (sweep.out / "results.jsonl").exists():
        read_jsonl(sweep.out / "results.jsonl")  # whatever was appended is whole lines

    rc, _out, err = sweep.execute(*backend_flags(backend))
    assert rc == 0, err
    for stage, exp_id, rep in had_marker:
        assert sweep.count(stage, exp_id, rep) == 1, f"{stage} of {exp_id}/{rep} recomputed"
    assert markers(sweep.out) == {(s, e, r) for s in STAGES for e in range(6) for r in (0, 1)}
    assert without_fit_time(sweep.results(), sweep.out) == \
        without_fit_time(reference.results(), reference.out)
    # the killed driver's attempt folders (runs in flight, spares) went with the resume
    left = [p for p in sweep.out.rglob(".*") if p.name.startswith((".attempt-", ".fenced-"))]
    assert left == [] and not (sweep.out / ".dagrun" / "spares").exists()


# --------------------------------------------------------------------------------------------
# Damaged and unpicklable artifacts


def truncate(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 2
    path.write_bytes(data[: len(data) // 2])


def test_corrupt_artifacts_are_recomputed_with_a_warning(sweep: Sweep, backend: str) -> None:
    sweep.write(CFGS)
    rc, _out, err = sweep.execute(*backend_flags(backend))
    assert rc == 0, err
    before = without_fit_time(sweep.results(), sweep.out)
    # experiment 0: pre.pkl truncated, fit and post to redo; 1: fit.pkl truncated, post to
    # redo; 2: post.json (whose marker is still there) truncated.
    for exp_id, stage in ((0, "fit"), (1, "post")):
        result = run_dagrun("clean", sweep.out, "--ids", str(exp_id), "--stage", stage)
        assert result.rc == 0, result.stderr
    truncate(sweep.out / "0" / "pre.pkl")
    truncate(sweep.out / "1" / "fit.pkl")
    truncate(sweep.out / "2" / "post.json")
    assert (sweep.out / "2" / "post.done").exists()

    rc, _out, err = sweep.execute(*backend_flags(backend))
    assert rc == 0, err
    assert "warning" in err.lower()
    for name in ("pre.pkl", "fit.pkl", "post.json"):
        assert name in err, f"no warning names the unreadable {name}"
    assert counts(sweep, 0) == [2, 2, 2]
    assert counts(sweep, 1) == [1, 2, 2]
    assert counts(sweep, 2) == [1, 1, 2]
    assert without_fit_time(sweep.results(), sweep.out) == before
    rc, _out, err = sweep.execute(*backend_flags(backend))
    assert rc == 0 and "warning" not in err.lower(), err  # repaired for good


UNPICKLABLE_WORKFLOW = '''
import os
import threading

OUT = {out!r}
COUNTS = {counts!r}


def _count(stage, cfg):
    os.makedirs(COUNTS, exist_ok=True)
    with open(os.path.join(COUNTS, "%s-%d" % (stage, cfg["experiment_id"])), "a") as f:
        f.write("x\\n")


def pre(cfg):
    _count("pre", cfg)
    if cfg["bad"] == "pre":
        return {{"x": cfg["x"], "lock": threading.Lock()}}
    return {{"x": cfg["x"]}}


def fit(cfg, data):
    _count("fit", cfg)
    if cfg["bad"] == "fit":
        return (data["x"] * k for k in (1, 2, 3))
    return [data["x"] * k for k in (1, 2, 3)]


def post(cfg, values):
    _count("post", cfg)
    return {{"total": sum(values)}}


basecfg = {{"out_path": OUT}}
cfgs = [{{"x": 1, "bad": "pre"}}, {{"x": 2, "bad": "fit"}}]
'''


def test_unpicklable_output_is_tolerated(awkward_dir: Path, backend: str) -> None:
    """Experiment 0's pre returns a lock, experiment 1's fit a generator."""
    out, cnt = awkward_dir / "OUT", awkward_dir / "counts"
    wf = write_workflow(awkward_dir, UNPICKLABLE_WORKFLOW.format(out=str(out), counts=str(cnt)))

    def count(exp_id: int) -> list[int]:
        paths = [cnt / f"{stage}-{exp_id}" for stage in STAGES]
        return [len(p.read_text().splitlines()) if p.exists() else 0 for p in paths]

    result = run_dagrun("execute", wf, *backend_flags(backend), cwd=awkward_dir)
    assert result.rc == 0, result.stderr
    for exp_id, bad in ((0, "pre"), (1, "fit")):
        warning = [line for line in result.error_lines
                   if "warning" in line and f"{bad} output" in line and "pickle" in line]
        assert warning and str(out / str(exp_id)) in warning[0], result.stderr
        run = out / str(exp_id)
        assert not (run / f"{bad}.pkl").exists() and not (run / f"{bad}.done").exists()
        assert not (run / f"{bad}.error").exists()
        assert (run / "post.done").exists()
    rows = read_jsonl(out / "results.jsonl")
    assert [r["scores"]["mean_total"] for r in rows] == [6, 12]

    # Not checkpointed means: when a later stage needs it again, it is recomputed.
    for exp_id, stage in ((0, "fit"), (1, "post")):
        result = run_dagrun("clean", out, "--ids", str(exp_id), "--stage", stage)
        assert result.rc == 0, result.stderr
    result = run_dagrun("execute", wf, *backend_flags(backend), cwd=awkward_dir)
    assert result.rc == 0, result.stderr
    assert count(0) == [2, 2, 2]
    assert count(1) == [1, 2, 2]
    assert [r["scores"]["mean_total"] for r in read_jsonl(out / "results.jsonl")] == [6, 12]


# --------------------------------------------------------------------------------------------
# One driver per OUT; Ctrl-C


def test_second_driver_is_refused_and_touches_nothing(sweep: Sweep) -> None:
    release = sweep.folder / "release"
    sweep.write(CFGS, wait_for=release)
    log = sweep.folder.parent / "first driver.log"  # outside the snapshot
    first = start_dagrun("execute", sweep.workflow, cwd=sweep.folder, log=log)
    try:
        wait_for(lambda: sweep.count("fit", 0) == 1 or first.poll() is not None,
                 what="the first driver to reach fit")
        assert first.poll() is None, log.read_text()
        before = snapshot(sweep.folder)

        for args in (("execute", sweep.workflow), ("resume", sweep.out), ("clean", sweep.out)):
            result = run_dagrun(*args, cwd=sweep.folder, timeout=30)
            assert result.rc == 2, (args, result.stderr)
            line = one_error_line(result.stderr).replace(str(sweep.out), "OUT")
            assert re.search(rf"\b{first.pid}\b", line), line
            assert socket.gethostname() in line, line
            assert re.search(r"since \d{4}-\d\d-\d\d", line), line
        assert snapshot(sweep.folder) == before

        status = run_dagrun("status", sweep.out)
        assert status.rc == 0, status.stderr
        assert str(first.pid) in status.stdout

        # Ctrl-C of the first driver: exit 130, and what it finished is kept.
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=30) == 130, log.read_text()
    finally:
        if first.poll() is None:
            kill_tree(first)
    assert "interrupted" in log.read_text()
    release.touch()
    rc, _out, err = sweep.execute()
    assert rc == 0, err
    assert counts(sweep, 0) == [1, 2, 1]
    assert counts(sweep, 1) == counts(sweep, 2) == [1, 1, 1]


# --------------------------------------------------------------------------------------------
# Changed and appended configs; resume without the workflow file


def test_an_edited_config_is_a_new_experiment_and_appended_ones_are_planned(
        sweep: Sweep) -> None:
    cfgs = [{"x": 1, "opt": {"lr": 0.1}}, {"x": 2, "opt": {"lr": 0.1}},
            {"x": 3, "opt": {"lr": 0.1}}]
    sweep.write(cfgs)
    assert sweep.execute().rc == 0
    changed = [cfgs[0], {"x": 5, "opt": {"lr": 0.5}}, cfgs[2]]
    sweep.write(changed)
    before = snapshot(sweep.folder)

    dry = sweep.execute("--dry-run")  # says what execute does, and writes nothing
    assert dry.rc == 0, dry.stderr
    line = next(x for x in dry.stdout.splitlines() if "since the last plan" in x)
    assert "1 edited" in line and "1 -> 3" in line and "opt.lr: 0.1 -> 0.5" in line, line
    assert "x: 2 -> 5" in line, line
    assert snapshot(sweep.folder) == before

    rc, _out, err = sweep.execute()
    assert rc == 0, err
    assert counts(sweep, 3) == [1, 1, 1]  # the edited cfg: a new experiment
    assert counts(sweep, 1) == [1, 1, 1]  # the old one kept as it was, out of results
    assert counts(sweep, 0) == counts(sweep, 2) == [1, 1, 1]
    rows = sweep.results()
    assert ids(rows) == [0, 2, 3]
    assert rows[2]["x"] == 5 and rows[2]["opt"] == {"lr": 0.5}
    assert rows[2]["scores"]["mean_acc"] == 50.5
    config = json.loads((sweep.out / "3" / "config.json").read_text())
    assert config["x"] == 5 and config["opt"] == {"lr": 0.5}
    assert json.loads((sweep.out / "1" / "config.json").read_text())["x"] == 2

    # Appended cfgs are simply planned; nothing else runs.
    sweep.write([*changed, {"x": 7, "opt": {"lr": 0.1}}])
    rc, _out, err = sweep.execute()
    assert rc == 0, err
    assert counts(sweep, 4) == [1, 1, 1]
    assert counts(sweep, 3) == counts(sweep, 1) == [1, 1, 1]
    assert counts(sweep, 0) == counts(sweep, 2) == [1, 1, 1]
    assert ids(sweep.results()) == [0, 2, 3, 4]


def test_resume_without_the_workflow_file(sweep: Sweep, backend: str) -> None:
    sweep.write(CFGS, fail_once=[0], repetitions=2)
    rc, _out, err = sweep.execute(*backend_flags(backend))
    assert rc == 1, err
    moved = sweep.folder.parent / "elsewhere"
    moved.mkdir()
    shutil.move(sweep.workflow, moved / "w.py")
    shutil.rmtree(moved)  # the workflow file is gone for good

    result = run_dagrun("resume", sweep.out, *backend_flags(backend), cwd=sweep.folder.parent)
    assert result.rc == 0, result.stderr
    assert counts(sweep, 0, 0) == counts(sweep, 0, 1) == [1, 2, 1]
    assert counts(sweep, 1, 0) == [1, 1, 1]
    assert ids(sweep.results()) == [0, 1, 2]
    assert sweep.results()[0]["scores"]["acc"] == [10.5, 11.5]

    result = run_dagrun("resume", sweep.out, cwd=sweep.folder.parent)
    assert result.rc == 0, result.stderr
    assert counts(sweep, 0, 0) == [1, 2, 1] and counts(sweep, 2, 1) == [1, 1, 1]


# --------------------------------------------------------------------------------------------
# status, show, reduce, clean, --dry-run


def stage_row(status: str, stage: str) -> list[int]:
    for line in status.splitlines():
        words = line.split()
        if words and words[0] == stage and all(w.isdigit() for w in words[1:4]):
            return [int(w) for w in words[1:4]]
    raise AssertionError(f"no row for {stage} in:\n{status}")


def test_status_show_reduce_clean(sweep: Sweep) -> None:
    sweep.write(CFGS, fail_once=[1])
    dry = sweep.execute("--dry-run")
    assert dry.rc == 0, dry.stderr
    assert "missing" in dry.stdout
    assert not sweep.out.exists() and not sweep.counts.exists()  # a dry run runs nothing

    assert sweep.execute().rc == 1
    status = run_dagrun("status", sweep.out)
    assert status.rc == 0, status.stderr
    assert stage_row(status.stdout, "pre") == [3, 0, 0]  # done / failed / pending
    assert stage_row(status.stdout, "fit") == [2, 1, 0]
    assert stage_row(status.stdout, "post") == [2, 0, 1]
    failed = [line for line in status.stdout.splitlines() if "boom in fit" in line]
    assert len(failed) == 1 and failed[0].split()[0] in ("1", "1/0"), status.stdout
    assert "second line" not in status.stdout  # only the first line of the error

    show = run_dagrun("show", sweep.out, "1")
    assert show.rc == 0, show.stderr
    assert "boom in fit" in show.stdout and '"x": 2' in show.stdout
    assert str(sweep.out / "1") in show.stdout
    show = run_dagrun("show", sweep.out, "0/0")
    assert show.rc == 0, show.stderr
    assert socket.gethostname() in show.stdout and "pre says hello" in show.stdout
    show = run_dagrun("show", sweep.out, "7")
    assert show.rc == 2 and "7" in one_error_line(show.stderr)
    dry = sweep.execute("--dry-run")
    assert dry.rc == 0 and "failed" in dry.stdout and "fit" in dry.stdout

    assert sweep.execute().rc == 0
    status = run_dagrun("status", sweep.out)
    assert status.rc == 0 and stage_row(status.stdout, "post") == [3, 0, 0]
    assert "boom in fit" not in status.stdout
    results = sweep.out / "results.jsonl"
    good = results.read_bytes()

    # reduce rebuilds results.jsonl from the runs alone
    results.write_bytes(good + good[: len(good) // 2] + b"\n{garbage\n")
    result = run_dagrun("reduce", sweep.out)
    assert result.rc == 0, result.stderr
    assert results.read_bytes() == good

    # clean --stage post: the next execute reruns post only, everywhere
    result = run_dagrun("clean", sweep.out, "--stage", "post")
    assert result.rc == 0, result.stderr
    assert sweep.results() == []  # no experiment is complete any more
    assert sweep.execute().rc == 0
    assert [counts(sweep, i) for i in range(3)] == [[1, 1, 2], [1, 2, 2], [1, 1, 2]]
    assert without_fit_time(sweep.results(), sweep.out) == \
        without_fit_time(read_jsonl_bytes(good), sweep.out)

    # clean --ids 2 --stage fit: only experiment 2's fit and post
    assert run_dagrun("clean", sweep.out, "--ids", "2", "--stage", "fit").rc == 0
    assert ids(sweep.results()) == [0, 1]
    assert sweep.execute().rc == 0
    assert [counts(sweep, i) for i in range(3)] == [[1, 1, 2], [1, 2, 2], [1, 2, 3]]

    for args in (("clean", sweep.out, "--ids", "abc"), ("status", sweep.folder)):
        result = run_dagrun(*args)
        assert result.rc == 2, (args, result.stdout, result.stderr)
        one_error_line(result.stderr)


def read_jsonl_bytes(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]
