"""Provenance per version of the code (``dagrun.disk.provenance``): a workflow or helper git
does not track is never "clean", each version of the code keeps its own record, and every
run says which version computed it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_dagrun, write_workflow

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

WORKFLOW = """
from helper import scale


def pre(cfg):
    return cfg["x"]


def fit(cfg, x):
    return scale(x)


def post(cfg, y):
    return {"y": y}


basecfg = {"out_path": "out", "report": False}
cfgs = [{"x": x} for x in range(2)]
"""


def _git(folder: Path, *args: str) -> str:
    cmd = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.org",
           *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def _repo(tmp_path: Path) -> tuple[Path, Path]:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "README.md").write_text("a study\n")
    (repo / ".gitignore").write_text("out/\n__pycache__/\n")
    _git(repo, "add", "README.md", ".gitignore")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "helper.py").write_text("def scale(x):\n    return 2 * x\n")
    return repo, write_workflow(repo, WORKFLOW, "wf.py")


def test_a_workflow_and_helper_git_does_not_track_are_dirty(tmp_path: Path) -> None:
    repo, wf = _repo(tmp_path)
    assert run_dagrun("execute", wf, cwd=repo).rc == 0
    info = json.loads((repo / "out" / ".dagrun" / "provenance.json").read_text())
    assert info["git"]["dirty"] is True
    assert info["git"]["untracked"] == ["helper.py", "wf.py"]
    shown = run_dagrun("show", repo / "out", "0")
    assert "dirty: untracked helper.py, wf.py" in shown.stdout, shown.stdout
    _git(repo, "add", "helper.py", "wf.py")
    _git(repo, "commit", "-q", "-m", "the study")
    assert run_dagrun("execute", wf, cwd=repo).rc == 0
    info = json.loads((repo / "out" / ".dagrun" / "provenance.json").read_text())
    assert info["git"]["dirty"] is False and "untracked" not in info["git"]


def test_runs_computed_with_two_versions_of_the_code_say_which(tmp_path: Path) -> None:
    repo, wf = _repo(tmp_path)
    _git(repo, "add", "helper.py", "wf.py")
    _git(repo, "commit", "-q", "-m", "the study")
    assert run_dagrun("execute", wf, cwd=repo).rc == 0
    first = json.loads((repo / "out" / ".dagrun" / "provenance.json").read_text())
    (repo / "helper.py").write_text("def scale(x):\n    return 3 * x\n")  # not committed
    wf.write_text(wf.read_text().replace("range(2)", "range(3)"))
    assert run_dagrun("execute", wf, cwd=repo).rc == 0  # old runs kept, one new run
    latest = json.loads((repo / "out" / ".dagrun" / "provenance.json").read_text())
    assert latest["code_id"] != first["code_id"]
    records = sorted(p.stem for p in (repo / "out" / ".dagrun" / "provenance").iterdir())
    assert records == sorted([first["code_id"], latest["code_id"]])
    old = run_dagrun("show", repo / "out", "0").stdout
    new = run_dagrun("show", repo / "out", "2").stdout
    assert f"code {first['code_id'][:12]} (not the latest code): git " in old, old
    assert "clean" in old.split("(not the latest code)")[1].splitlines()[0]
    assert f"code {latest['code_id'][:12]} (the latest): git " in new, new
    assert "dirty" in new.split("(the latest)")[1].splitlines()[0]


def test_results_and_the_report_flag_rows_of_older_code(tmp_path: Path) -> None:
    repo, wf = _repo(tmp_path)
    assert run_dagrun("execute", wf, cwd=repo).rc == 0
    (repo / "helper.py").write_text("def scale(x):\n    return 3 * x\n")
    wf.write_text(wf.read_text().replace("range(2)", "range(3)"))
    assert run_dagrun("execute", wf, cwd=repo).rc == 0
    results = run_dagrun("results", repo / "out")
    assert results.rc == 0, results.stderr
    assert "2 experiment(s) were computed with code other than the latest" in results.stderr
    assert "ids 0, 1)" in results.stderr
    report = run_dagrun("report", repo / "out")
    assert report.rc == 0, report.stderr
    page = (repo / "out" / "report.html").read_text()
    assert '"older_code": [{"code": ' in page or '"older_code":[{"code":' in page


def test_the_platform_is_what_platform_says_without_its_uname_process() -> None:
    """``platform_terse`` leaves out the processor ``platform`` asks ``uname -p`` for; the
    text is the same where that is the machine's name or unknown (as on Debian)."""
    import platform

    from dagrun.disk.provenance import platform_terse

    processor = platform.uname().processor
    if processor not in ("", platform.machine()):
        pytest.skip(f"uname -p says {processor!r} here: platform shows it")
    assert platform_terse() == platform.platform(terse=True)


def test_the_host_name_is_the_one_socket_gives() -> None:
    import socket

    from dagrun.disk.records import hostname

    assert hostname() == socket.gethostname()
