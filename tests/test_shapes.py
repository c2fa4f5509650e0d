"""Every shape of the fake-repository corpus (tests/shapes) runs as ``python`` runs it.

A sweep's runs compute what the user's code computes when Python runs it directly: on
every backend, after a resume in another process, and from the copy of the code kept in
OUT (packages whole, under their own names, with the script's ``sys.argv``)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import dagrun_command, read_jsonl
from tests.shapes import ALL, Repo, env_for

TIMEOUT = 240


def _run(repo: Repo, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=repo.cwd, env=env_for(repo), capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False)


def _dagrun(repo: Repo, *args: str) -> subprocess.CompletedProcess[str]:
    command = dagrun_command(*args)
    return _run(repo, [repo.python, *command[1:]])


def _ys(repo: Repo) -> dict[int, float]:
    lines = read_jsonl(repo.out / "results.jsonl")
    return {line["experiment_id"]: line["scores"]["mean_y"] for line in lines}


def _errors(repo: Repo) -> str:
    return "\n".join(f"{p}: {json.loads(p.read_text())['message']}"
                     for p in repo.out.rglob("*.error"))


@pytest.mark.parametrize("backend", ["single", "multiprocessing"])
@pytest.mark.parametrize("name", list(ALL))
def test_each_shape_runs_its_sweep_as_python_runs_it(tmp_path: Path, name: str,
                                                     backend: str) -> None:
    repo = ALL[name](tmp_path)
    proc = _run(repo, repo.command(backend))
    assert proc.returncode == 0, proc.stderr
    assert _ys(repo) == repo.expected, _errors(repo) or proc.stderr


@pytest.mark.parametrize("name", list(ALL))
def test_each_shape_resumes_in_other_processes(tmp_path: Path, name: str) -> None:
    """Planned and run in the user's process (single), then fit recomputed by a
    multiprocessing resume from OUT alone: the same results (``pre``'s output, pickled in
    the user's process, is what ``fit`` expects there too)."""
    repo = ALL[name](tmp_path)
    proc = _run(repo, repo.command("single"))
    assert proc.returncode == 0, proc.stderr
    clean = _dagrun(repo, "clean", str(repo.out), "--stage", "fit")
    assert clean.returncode == 0, clean.stderr
    resumed = _dagrun(repo, "resume", str(repo.out), "--backend", "multiprocessing", "-j", "2",
                      "-q")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout + _errors(repo)
    assert _ys(repo) == repo.expected, _errors(repo)


def test_a_worker_started_after_an_edit_runs_the_planned_code(tmp_path: Path) -> None:
    """``experiments/wf.py`` with a src-layout package of the user's own (outside both the
    workflow's folder and the working folder): planned, then the package is edited, then a
    ``dagrun worker`` starts — it runs the code of the plan."""
    repo = ALL["src_layout"](tmp_path)
    planned = _dagrun(repo, "plan", "wf.py")
    assert planned.returncode == 0, planned.stderr
    scale = repo.root / "src" / "tools" / "scale.py"
    scale.write_text(scale.read_text().replace("7 * x", "100 * x"))
    worker = _dagrun(repo, "worker", str(repo.out))
    assert worker.returncode == 0, worker.stderr + _errors(repo)
    assert _ys(repo) == repo.expected


NOTEBOOK = r'''
import json, os, sys, time
from IPython.core.interactiveshell import InteractiveShell

os.chdir(sys.argv[1])
shell = InteractiveShell.instance()
seen = {}


def cell(source):
    result = shell.run_cell(source, silent=True)
    error = result.error_in_exec or result.error_before_exec
    return None if error is None else f"{type(error).__name__}: {error}"


def helper(factor):
    with open("helper.py", "w") as f:
        # a size of its own per version: Python's .pyc check compares size and mtime in
        # whole seconds, so a reload in the same second could keep the old bytecode
        f.write(f"def value(x):\n    return x * {factor}\n" + "#" * factor + "\n")
    future = time.time() + 2  # a later mtime than the process's start, whatever the clock
    os.utime("helper.py", (future, future))


helper(2)
assert cell("import sys\nimport helper\nfrom dagrun import run_experiments") is None
assert cell("""
def pre(cfg):
    return cfg["x"]

def fit(cfg, x):
    return helper.value(x)

def post(cfg, y):
    return {"y": y}

basecfg = {"pre": pre, "fit": fit, "post": post, "out_path": "out", "verbose": False,
           "backend": sys.argv[2], "num_cpus": 2}
cfgs = [{"x": i} for i in range(3)]
""") is None
seen["first"] = cell("run_experiments(basecfg, cfgs)")
helper(5)
seen["edited"] = cell("run_experiments(basecfg, cfgs, rerun_changed=True)")
seen["reloaded"] = cell("import importlib; importlib.reload(helper); "
                        "run_experiments(basecfg, cfgs, rerun_changed=True)")
print(json.dumps(seen))
'''


@pytest.mark.parametrize("backend", ["single", "multiprocessing"])
def test_notebook_session_refuses_a_module_edited_after_it_was_loaded(
        tmp_path: Path, backend: str) -> None:
    """A notebook (IPython, no autoreload) edits ``helper.py`` after importing it: the
    sweep refuses to run the old code in memory under the new file's fingerprint; after a
    reload it recomputes with the new code."""
    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK)
    repo = Repo("notebook", tmp_path, [], tmp_path, tmp_path / "out", {})
    proc = _run(repo, [repo.python, str(script), str(tmp_path), backend])
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["first"] is None
    assert seen["edited"] is not None and "helper.py was edited after it was loaded" in \
        seen["edited"] and "reload" in seen["edited"], seen
    assert seen["reloaded"] is None, seen
    assert _ys(repo) == {i: 5 * i for i in range(3)}


SLOW_IMPORT = '''
import os
import time

import helper

open("loaded", "w").close()
deadline = time.time() + 60
while not os.path.exists("go") and time.time() < deadline:
    time.sleep(0.02)


def pre(cfg):
    return cfg["x"]


def fit(cfg, x):
    return helper.value(x)


def post(cfg, y):
    return {"y": y}


basecfg = {"out_path": "out", "verbose": False}
cfgs = [{"x": 1}]
'''


def test_a_helper_edited_while_the_workflow_loads_is_refused(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("def value(x):\n    return x * 2\n")
    (tmp_path / "wf.py").write_text(SLOW_IMPORT)
    proc = subprocess.Popen(dagrun_command("execute", "wf.py"), cwd=tmp_path,
                            env=env_for(Repo("slow", tmp_path, [], tmp_path, tmp_path, {})),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (tmp_path / "loaded").exists() and time.time() < deadline:
            time.sleep(0.02)
        (tmp_path / "helper.py").write_text("def value(x):\n    return x * 3\n")
        (tmp_path / "go").touch()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, err
    assert "helper.py was edited after it was loaded (value differs)" in err
    assert not (tmp_path / "out" / "0" / "fit.done").exists()


@pytest.mark.parametrize("name", ["script_classes", "module_run"])
def test_script_classes_are_one_class_on_single_with_a_timeout(tmp_path: Path,
                                                                name: str) -> None:
    """On ``single`` with a timeout each run goes to a child process: the script's Enum
    member, dataclass and the class ``pre`` returns are the classes its stages see."""
    repo = ALL[name](tmp_path)
    proc = _run(repo, [*repo.command("single"), "--timeout", "60"])
    assert proc.returncode == 0, proc.stderr + _errors(repo)
    assert _ys(repo) == repo.expected, _errors(repo)


ARGV_WORKFLOW = '''
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--scale", type=float, required=True)
args = parser.parse_args()


def pre(cfg):
    return cfg["x"]


def fit(cfg, x):
    return x * args.scale


def post(cfg, y):
    return {"y": y}


basecfg = {"out_path": "out", "verbose": False}
cfgs = [{"x": float(i)} for i in range(3)]
'''


@pytest.mark.parametrize("backend", ["single", "multiprocessing"])
def test_execute_passes_arguments_after_the_separator_to_the_script(tmp_path: Path,
                                                                    backend: str) -> None:
    """``dagrun execute wf.py -- --scale 4``: the module-level parser sees ``--scale 4``
    in the driver, in every worker, and in ``dagrun resume`` later (stored with the plan)."""
    (tmp_path / "wf.py").write_text(ARGV_WORKFLOW)
    repo = Repo("argv", tmp_path, [], tmp_path, tmp_path / "out",
                {i: 4.0 * i for i in range(3)})
    proc = _dagrun(repo, "execute", "wf.py", "--backend", backend, "-j", "2", "--", "--scale",
                   "4")
    assert proc.returncode == 0, proc.stderr + _errors(repo)
    assert _ys(repo) == repo.expected
    assert _dagrun(repo, "clean", "out", "--stage", "fit").returncode == 0
    resumed = _dagrun(repo, "resume", "out", "--backend", "multiprocessing", "-j", "2")
    assert resumed.returncode == 0, resumed.stderr + _errors(repo)
    assert _ys(repo) == repo.expected


def test_a_script_parsing_its_arguments_needs_them(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(ARGV_WORKFLOW)
    repo = Repo("argv", tmp_path, [], tmp_path, tmp_path / "out", {})
    proc = _dagrun(repo, "execute", "wf.py")
    assert proc.returncode == 2
    assert "--scale" in proc.stderr and "required" in proc.stderr
