"""One way to load the workflow in every process: the plan-time copy of the user's code.

Every process that runs stages imports the copy kept in OUT/.dagrun as a real module, so
module-level code runs there too, workflow functions are importable by name, a sweep runs the
code it was planned with while files are edited, and ``resume`` needs no workflow file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import child_env, read_jsonl, run_dagrun, wait_for, write_workflow

BACKENDS = ["single", "multiprocessing"]

MODULE_SETUP = """
import logging
import multiprocessing as mp

import helper

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
log = logging.getLogger("wf")
SETUP = "module-level code ran"


def square(v):
    return v * v


def pre(cfg):
    log.info("pre of %s: %s", cfg["x"], SETUP)
    return helper.value(cfg["x"])


def fit(cfg, v):
    with mp.get_context("spawn").Pool(1) as pool:  # a pool over a function of this file
        return pool.map(square, [v])[0]


def post(cfg, v):
    return {"v": v}


basecfg = {"out_path": "out"}
cfgs = [{"x": i} for i in range(3)]
"""


def _helper(folder: Path, scale: int) -> None:
    (folder / "helper.py").write_text(f"SCALE = {scale}\n\ndef value(x):\n"
                                      "    return x * SCALE\n")


@pytest.mark.parametrize("backend", BACKENDS)
def test_module_level_code_and_own_pools_work_everywhere(tmp_path: Path, backend: str) -> None:
    _helper(tmp_path, 2)
    wf = write_workflow(tmp_path, MODULE_SETUP, name="wf.py")
    result = run_dagrun("execute", wf, "--backend", backend, "--timeout", "60", "-q",
                        cwd=tmp_path, timeout=120)
    assert result.rc == 0, result.stderr
    scores = [line["scores"]["mean_v"] for line in
              read_jsonl(tmp_path / "out" / "results.jsonl")]
    assert scores == [0, 4, 16]
    log = (tmp_path / "out" / "1" / "pre.log").read_text()
    assert "INFO wf pre of 1: module-level code ran" in log
    code = tmp_path / "out" / ".dagrun" / "code"
    (copy,) = [p for p in code.iterdir() if p.is_dir() and p.name != "files"]
    assert sorted(p.name for p in copy.iterdir() if p.name != "__pycache__") == \
        ["dagrun_workflow_wf.py", "helper.py"]


def test_resume_needs_neither_the_file_nor_its_sibling_module(tmp_path: Path) -> None:
    _helper(tmp_path, 3)
    wf = write_workflow(tmp_path, MODULE_SETUP, name="wf.py")
    assert run_dagrun("execute", wf, "-q", cwd=tmp_path, timeout=120).rc == 0
    assert run_dagrun("clean", tmp_path / "out", "--ids", "2", cwd=tmp_path).rc == 0
    (tmp_path / "helper.py").unlink()
    wf.unlink()
    result = run_dagrun("resume", tmp_path / "out", "--backend", "multiprocessing", "-q",
                        cwd=tmp_path, timeout=120)
    assert result.rc == 0, result.stderr
    last = read_jsonl(tmp_path / "out" / "results.jsonl")[-1]
    assert last["scores"]["mean_v"] == 36


WAITING = """
import os
import time

import helper


def pre(cfg):
    return None


def fit(cfg, _):
    deadline = time.time() + 60
    while not os.path.exists(RELEASE) and time.time() < deadline:
        time.sleep(0.05)
    return helper.value(cfg["x"])


def post(cfg, v):
    return {{"v": v}}


RELEASE = {release!r}
basecfg = {{"out_path": "out", "backend": "multiprocessing", "num_cpus": 2}}
cfgs = [{{"x": 1}}, {{"x": 2}}]
"""


def test_a_sweep_runs_the_code_it_was_planned_with(tmp_path: Path) -> None:
    """Editing a helper module while the sweep runs changes nothing in that sweep."""
    _helper(tmp_path, 2)
    release = tmp_path / "release"
    wf = write_workflow(tmp_path, WAITING.format(release=str(release)), name="wf.py")
    proc = subprocess.Popen([sys.executable, "-m", "dagrun", "execute", str(wf), "-q"],
                            cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "out" / "0" / "pre.done").exists(), 60, "pre to finish")
        _helper(tmp_path, 100)  # the user edits the helper while fit waits
        release.touch()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    scores = [line["scores"]["mean_v"] for line in
              read_jsonl(tmp_path / "out" / "results.jsonl")]
    assert scores == [2, 4]


def test_script_without_main_guard_runs_one_sweep_on_workers(tmp_path: Path) -> None:
    _helper(tmp_path, 2)
    script = write_workflow(tmp_path, """
        import os
        from dagrun import run_experiments
        import helper

        def pre(cfg):
            return os.getpid()

        def fit(cfg, pid):
            return helper.value(cfg["x"])

        def post(cfg, v):
            return {"v": v}

        print("sweep starting")
        run_experiments({"pre": pre, "fit": fit, "post": post, "out_path": "out",
                         "backend": "multiprocessing", "num_cpus": 2, "verbose": False},
                        [{"x": i} for i in range(4)])
        print("sweep over")
        """, name="script.py")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("sweep over") == 1
    assert len(list((tmp_path / "out").glob("*/config.json"))) == 4
    scores = [line["scores"]["mean_v"] for line in
              read_jsonl(tmp_path / "out" / "results.jsonl")]
    assert scores == [0, 2, 4, 6]


def test_execute_of_a_script_that_runs_its_sweep_at_import_is_one_clear_error(
        tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, """
        from dagrun import run_experiments

        def pre(cfg):
            return None

        def fit(cfg, _):
            return 1

        def post(cfg, v):
            return {"v": v}

        basecfg = {"out_path": "out"}
        cfgs = [{"x": 1}]
        run_experiments({**basecfg, "pre": pre, "fit": fit, "post": post}, cfgs)
        """, name="top.py")
    result = run_dagrun("execute", wf, cwd=tmp_path)
    assert result.rc == 2
    assert result.error_lines == [
        "dagrun: error: top.py calls run_experiments while being loaded (line 14): "
        "`dagrun execute` loads the file and runs the sweep itself; put that call under "
        "`if __name__ == \"__main__\":` (or run `python top.py`)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_names_bound_only_under_main_are_explained(tmp_path: Path, start: str) -> None:
    """A spawned worker has the copy of the script, not what its ``__main__`` block bound:
    the run fails saying so. A worker forked from the driver has the driver's (as
    ``single`` does)."""
    script = write_workflow(tmp_path, """
        import argparse
        from dagrun import run_experiments

        def pre(cfg):
            return args.scale

        def fit(cfg, v):
            return v

        def post(cfg, v):
            return {"v": v}

        if __name__ == "__main__":
            args = argparse.Namespace(scale=3)
            run_experiments({"pre": pre, "fit": fit, "post": post, "out_path": "out",
                             "backend": "multiprocessing", "verbose": False}, [{"x": 1}])
        """, name="script.py")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, timeout=120,
                          env=child_env({"DAGRUN_WORKER_START": start}),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr  # run_experiments returns; the run failed
    if start == "fork":
        assert read_jsonl(tmp_path / "out" / "results.jsonl")[0]["scores"]["v"] == [3]
        return
    error = json.loads((tmp_path / "out" / "0" / "pre.error").read_text())
    assert error["kind"] == "exception"
    assert ("name 'args' is set only inside the `if __name__ == \"__main__\":` block of "
            "script.py") in error["message"]


def test_worker_tracebacks_name_a_real_file(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, """
        def pre(cfg):
            raise ValueError("from pre")

        def fit(cfg, _):
            return 1

        def post(cfg, v):
            return {"v": v}

        basecfg = {"out_path": "out", "backend": "multiprocessing"}
        cfgs = [{"x": 1}]
        """, name="wf.py")
    assert run_dagrun("execute", wf, "-q", cwd=tmp_path).rc == 1
    error = json.loads((tmp_path / "out" / "0" / "pre.error").read_text())
    assert "<dynamic-code>" not in error["traceback"]
    assert "dagrun_workflow_wf.py\", line 2, in pre" in error["traceback"]


def test_big_module_data_stays_out_of_the_pickled_workflow(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, """
        BIG = bytes(50_000_000)

        def pre(cfg):
            return len(BIG)

        def fit(cfg, n):
            return n

        def post(cfg, n):
            return {"n": n}

        basecfg = {"out_path": "out", "backend": "multiprocessing"}
        cfgs = [{"x": 1}]
        """, name="wf.py")
    assert run_dagrun("execute", wf, "-q", cwd=tmp_path, timeout=120).rc == 0
    assert (tmp_path / "out" / ".dagrun" / "workflow.pkl").stat().st_size < 100_000


def test_resume_after_an_edit_runs_the_planned_code(tmp_path: Path) -> None:
    """A sweep continued later runs the code it was planned with; the edit shows up as a
    code change only when the workflow is executed again."""
    _helper(tmp_path, 2)
    fail = tmp_path / "fail"
    fail.touch()
    wf = write_workflow(tmp_path, f"""
        import os
        import helper

        def pre(cfg):
            return None

        def fit(cfg, _):
            if os.path.exists({str(fail)!r}):
                raise RuntimeError("not yet")
            return helper.value(cfg["x"])

        def post(cfg, v):
            return {{"v": v}}

        basecfg = {{"out_path": "out", "backend": "multiprocessing"}}
        cfgs = [{{"x": 1}}, {{"x": 2}}]
        """, name="wf.py")
    assert run_dagrun("execute", wf, "-q", cwd=tmp_path).rc == 1
    _helper(tmp_path, 100)
    fail.unlink()
    result = run_dagrun("resume", tmp_path / "out", "-q", cwd=tmp_path)
    assert result.rc == 0, result.stderr
    scores = [line["scores"]["mean_v"] for line in
              read_jsonl(tmp_path / "out" / "results.jsonl")]
    assert scores == [2, 4]
