"""The built wheel, not the checkout: what an editable install hides (package data, module
paths in strings, modules missing from the package list) shows up here.

The wheel is built from a copy of the files git tracks (an ignored or forgotten file fails
here, not on a user's machine), installed into a fresh virtual environment (its
dependencies are taken from the test environment's site-packages through a ``.pth`` path
entry, so nothing is downloaded), and runs a small sweep on two processes and
``dagrun report`` from a folder outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKFLOW = """
def pre(cfg):
    return cfg["x"]

def fit(cfg, x):
    return 2 * x

def post(cfg, y):
    return {"y": y}

basecfg = {"out_path": "out", "pre": pre, "fit": fit, "post": post,
           "backend": "multiprocessing", "num_cpus": 2, "repetitions": 2}
cfgs = [{"x": x} for x in range(3)]
"""


def _run(*args: str | os.PathLike[str], cwd: Path | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run([os.fspath(a) for a in args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          check=False)
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc


def test_the_wheel_installs_and_runs_a_sweep_and_a_report(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy of what git tracks: the build writes nothing here
    tracked = _run("git", "ls-files", "-z", cwd=ROOT).stdout.split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", dist, source, cwd=tmp_path)
    (wheel,) = dist.glob("dagrun-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packaged = {n for n in names if n.startswith("dagrun/")}
    in_tree = {str(p.relative_to(ROOT)) for p in (ROOT / "dagrun").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    untracked = in_tree - {n for n in tracked if n.startswith("dagrun/")}
    assert not untracked, f"files of the package git does not track (ignored?): {untracked}"
    assert in_tree <= packaged, f"missing from the wheel: {sorted(in_tree - packaged)}"

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    py = venv / "bin" / "python"
    _run(py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel)
    purelib = _run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    ours = [p for p in site.getsitepackages() if p.endswith("site-packages")]
    Path(purelib.stdout.strip(), "test-deps.pth").write_text("\n".join(ours) + "\n")

    work = tmp_path / "work"
    work.mkdir()
    where = _run(py, "-c", "import dagrun; print(dagrun.__file__)", cwd=work)
    assert where.stdout.startswith(str(venv)), where.stdout  # not the checkout
    (work / "wf.py").write_text(WORKFLOW)
    dagrun = venv / "bin" / "dagrun"
    assert _run(dagrun, "--version", cwd=work).stdout.startswith("dagrun ")
    _run(dagrun, "execute", "wf.py", "-q", cwd=work)
    results = _run(dagrun, "results", "out", "--format", "csv", cwd=work)
    assert "mean_y" in results.stdout.splitlines()[0], results.stdout
    _run(dagrun, "report", "out", "-o", "page.html", cwd=work)
    page = (work / "page.html").read_text()
    for asset in ("report.js", "report.css"):  # packaged, then inlined into the page
        lines = (ROOT / "dagrun" / "results" / "html" / asset).read_text().splitlines()
        longest = max(lines, key=len).strip()
        assert longest in page, f"{asset} is not in the report"
