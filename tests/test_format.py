"""Sweeps written by an older dagrun keep working (``dagrun.disk.formatversion``).

``tests/fixtures/format1`` holds a finished and an interrupted sweep written by dagrun 0.1.0
before the package moved into wings (on-disk format 1: no format.json, workflow.pkl naming
``dagrun.workflow.Workflow``). A current dagrun reads both, leaves the finished one alone,
resumes the interrupted one without recomputing a finished stage, and migrates what it
drives to its own format; a worker joins only an OUT of its own format; an OUT from a newer
dagrun is refused with one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dagrun.disk import formatversion
from dagrun.disk.layout import SweepDir
from dagrun.version import __version__
from tests.helpers import markers, read_jsonl, run_dagrun

FIXTURE = Path(__file__).parent / "fixtures" / "format1"
FORMAT4 = Path(__file__).parent / "fixtures" / "format4"
STAGE_FILES = (".done", ".pkl", ".json")


def _copy(fixture: Path, folder: Path) -> Path:
    """A private copy of a fixture folder (mtimes kept), as a user's moved sweep."""
    shutil.copytree(fixture, folder, copy_function=shutil.copy2)
    for path in folder.rglob("*"):  # git checks files out group-writable under umask 002
        path.chmod(path.stat().st_mode & ~0o022)
    return folder


@pytest.fixture
def old(tmp_path: Path) -> Path:
    return _copy(FIXTURE, tmp_path / "old sweeps")


def _stage_files(out: Path) -> dict[str, tuple[int, bytes]]:
    """Every run's stage file with its mtime and bytes (config.json included)."""
    return {str(p.relative_to(out)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(out.rglob("*")) if p.is_file() and ".dagrun" not in p.parts
            and p.name != "results.jsonl" and p.suffix in STAGE_FILES}


def _ys(out: Path) -> dict[int, list[float]]:
    return {row["experiment_id"]: row["scores"]["y"] for row in read_jsonl(out / "results.jsonl")}


def test_status_and_results_read_an_old_sweep(old: Path) -> None:
    status = run_dagrun("status", old / "done", cwd=old)
    assert status.rc == 0, status.stderr
    assert "runs: 8 done, 0 pending, 0 incomplete, 0 failed" in status.stdout
    status = run_dagrun("status", old / "interrupted", cwd=old)
    assert status.rc == 0, status.stderr
    assert "runs: 4 done, 3 pending, 1 incomplete, 0 failed" in status.stdout
    shown = run_dagrun("show", old / "interrupted", "2/0", cwd=old)
    assert shown.rc == 0 and "pre" in shown.stdout, shown.stderr
    results = run_dagrun("results", old / "done", "--format", "json", cwd=old)
    assert results.rc == 0, results.stderr
    rows = json.loads(results.stdout)
    assert [r["mean_y"] for r in rows] == [10.5, 20.5, 30.5, 40.5]
    report = run_dagrun("report", old / "done", cwd=old)
    assert report.rc == 0 and (old / "done" / "report.html").is_file(), report.stderr
    assert not (old / "done" / ".dagrun" / "format.json").exists()  # readers migrate nothing


def test_execute_of_the_same_workflow_recomputes_nothing(old: Path) -> None:
    out = old / "done"
    before = _stage_files(out)
    result = run_dagrun("execute", old / "wf.py", "-q", cwd=old,
                        env={"DAGRUN_FIXTURE_OUT": str(out)})
    assert result.rc == 0, result.stderr
    assert _stage_files(out) == before  # no stage file rewritten, not even touched
    assert _ys(out) == {0: [10.0, 11.0], 1: [20.0, 21.0], 2: [30.0, 31.0], 3: [40.0, 41.0]}
    assert formatversion.read(SweepDir(str(out))) == formatversion.FORMAT
    again = run_dagrun("execute", old / "wf.py", cwd=old, env={"DAGRUN_FIXTURE_OUT": str(out)})
    assert "0 done now, 8 already done" in again.stderr + again.stdout


def test_resume_continues_an_old_interrupted_sweep(old: Path) -> None:
    out = old / "interrupted"
    before = _stage_files(out)
    result = run_dagrun("resume", out, "-q", cwd=old, env={"DAGRUN_FIXTURE_OUT": str(out)})
    assert result.rc == 0, result.stderr
    after = _stage_files(out)
    assert {k: after[k] for k in before} == before  # finished stages kept as they were
    assert markers(out) == {(s, e, r) for s in ("pre", "fit", "post")
                            for e in range(4) for r in range(2)}
    assert _ys(out) == {0: [10.0, 11.0], 1: [20.0, 21.0], 2: [30.0, 31.0], 3: [40.0, 41.0]}
    written = json.loads((out / ".dagrun" / "format.json").read_text())
    assert written["format"] == formatversion.FORMAT


def test_a_worker_joins_only_its_own_format(old: Path) -> None:
    out = old / "interrupted"
    refused = run_dagrun("worker", out, cwd=old)
    assert refused.rc == 2
    assert len(refused.error_lines) == 1, refused.stderr
    assert "format 1" in refused.stderr and f"format {formatversion.FORMAT}" in refused.stderr
    assert markers(out) == {(s, e, r) for s in ("pre", "fit", "post")
                            for e in range(2) for r in range(2)} | {("pre", 2, 0)}
    planned = run_dagrun("plan", old / "wf.py", "-q", cwd=old,
                         env={"DAGRUN_FIXTURE_OUT": str(out)})
    assert planned.rc == 0, planned.stderr
    joined = run_dagrun("worker", out, "-j", "1", cwd=old, timeout=120,
                        env={"DAGRUN_FIXTURE_OUT": str(out)})
    assert joined.rc == 0, joined.stderr
    assert _ys(out) == {0: [10.0, 11.0], 1: [20.0, 21.0], 2: [30.0, 31.0], 3: [40.0, 41.0]}


@pytest.mark.parametrize("command", ["status", "show", "results", "report", "reduce", "clean",
                                     "resume", "worker", "execute", "plan"])
def test_a_newer_format_is_refused_in_one_line(old: Path, command: str) -> None:
    out = old / "done"
    (out / ".dagrun" / "format.json").write_text('{"format": 99, "dagrun": "9.0"}')
    before = _stage_files(out)
    special: dict[str, list[str | Path]] = {
        "show": [out, "0/0"], "execute": [old / "wf.py"], "plan": [old / "wf.py"]}
    args = special.get(command, [out])
    result = run_dagrun(command, *args, cwd=old, env={"DAGRUN_FIXTURE_OUT": str(out)})
    assert result.rc == 2, result.stderr
    assert result.error_lines == [
        f"dagrun: error: {out} was written by a newer dagrun (on-disk format 99); this dagrun "
        f"{__version__} reads formats 1 to {formatversion.FORMAT}: upgrade dagrun"]
    assert _stage_files(out) == before


def test_a_format4_sweep_is_matched_once_by_position_and_reruns_as_a_no_op(
        tmp_path: Path) -> None:
    """Its config digests (version 1) cannot be compared with today's and its fingerprints
    are of the older scheme: its experiments are matched once by their stored positions and
    readable configs, no stage is recomputed or said to have changed code, and from then on
    they are known by content (reversed cfgs move nothing)."""
    old = _copy(FORMAT4, tmp_path / "format4")
    out = old / "done"
    before = _stage_files(out)
    env = {"DAGRUN_FIXTURE_OUT": str(out)}
    ys = {0: [20, 21], 1: [20.0, 21.0], 2: [90, 91], 3: [80, 81]}
    for extra in ({}, {}, {"DAGRUN_FIXTURE_REVERSE": "1"}):
        result = run_dagrun("execute", old / "wf.py", cwd=old, env={**env, **extra})
        assert result.rc == 0, result.stderr
        assert "0 done now, 8 already done" in result.stdout + result.stderr
        assert "code of" not in result.stderr and "edited" not in result.stderr
        assert _stage_files(out) == before  # no stage file rewritten, not even touched
        assert _ys(out) == ys
    assert "experiments since the last plan: 3 reordered" in result.stderr, result.stderr
    assert formatversion.read(SweepDir(str(out))) == formatversion.FORMAT


def test_every_format_says_what_changed() -> None:
    assert sorted(formatversion.HISTORY) == list(range(1, formatversion.FORMAT + 1))
