"""A run cannot disturb the next one (issue: isolated runs).

What a stage changes in its process (working folder, ``os.environ``, ``sys.path``, the
``logging`` configuration) is put back after the stage call, so neither a later stage of
the same run nor another run executed by the same process sees it, and the caller of
``run_experiments`` keeps its own relative paths. A ``KeyboardInterrupt`` raised by a stage
in a worker is that run's failure; in the driver's own process it stops the sweep like
Ctrl-C. Each test runs a real ``dagrun`` (or ``python script.py``) process, with a bounded
timeout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import child_env, read_jsonl, run_dagrun, write_workflow

pytestmark = pytest.mark.timeout(240)

# Every stage reports what it sees of the process, then changes all of it.
CHANGING_WORKFLOW = """
import logging
import os
import sys

LIB = logging.getLogger("wf.lib")  # a logger that exists before any stage runs


def seen():
    root = logging.getLogger()
    return {"cwd": os.getcwd(), "leak": os.environ.get("DAGRUN_TEST_LEAK"),
            "home": os.environ.get("HOME"), "path": "/leaked" in sys.path,
            "stdout": getattr(sys.stdout, "name", None),
            "root_handlers": len(root.handlers), "root_level": root.level,
            "lib_handlers": len(LIB.handlers), "lib_level": LIB.level}


def change(cfg):
    os.chdir(cfg["out_path"])
    os.environ["DAGRUN_TEST_LEAK"] = "leaked"
    os.environ.pop("HOME", None)
    sys.path.insert(0, "/leaked")
    sys.stdout = open(os.devnull, "w")
    logging.basicConfig(level=logging.INFO, format="LOGGED %(message)s")
    LIB.addHandler(logging.FileHandler(os.path.join(cfg["out_path"], "lib.log")))
    LIB.setLevel(logging.DEBUG)
    logging.info("hello from %s", cfg["x"])


def pre(cfg):
    before = seen()
    change(cfg)
    return before


def fit(cfg, pre_seen):
    before = seen()
    change(cfg)
    return [pre_seen, before]


def post(cfg, fit_seen):
    return {"pre": fit_seen[0], "fit": fit_seen[1], "post": seen()}


basecfg = {"out_path": "out"}
cfgs = [{"x": i} for i in range(3)]
"""


@pytest.mark.parametrize("backend", ["single", "multiprocessing"])
def test_process_changes_of_a_stage_reach_no_later_stage_or_run(tmp_path: Path,
                                                                 backend: str) -> None:
    wf = write_workflow(tmp_path, CHANGING_WORKFLOW, name="wf.py")
    result = run_dagrun("execute", wf, "--backend", backend, "-j", "1", cwd=tmp_path,
                        env={"HOME": str(tmp_path)}, timeout=180)
    assert result.rc == 0, result.stderr
    assert "Logging error" not in result.stderr
    lines = read_jsonl(tmp_path / "out" / "results.jsonl")
    views = [line["scores"][stage][0] for line in lines for stage in ("pre", "fit", "post")]
    assert len(views) == 9
    first = views[0]
    assert first["leak"] is None and first["home"] == str(tmp_path)
    assert first["cwd"] == str(tmp_path) and not first["path"]
    assert views == [first] * 9  # no run and no stage saw what an earlier one changed
    fit_log = (tmp_path / "out" / "1" / "fit.log").read_text()
    assert "LOGGED hello from 1" in fit_log  # each stage's own configuration works


# The same, where nothing imported ``logging`` before the first stage did: the process's
# state before that call is how ``logging`` starts, and is put back to that.
LAZY_LOGGING_WORKFLOW = """
import os
import sys


def seen():
    import logging
    root = logging.getLogger()
    lib = logging.getLogger("wf.lib")
    return {"root_handlers": len(root.handlers), "root_level": root.level,
            "lib_handlers": len(lib.handlers), "disable": logging.root.manager.disable}


def pre(cfg):
    imported = "logging" in sys.modules
    before = seen()
    import logging
    logging.basicConfig(level=logging.INFO, format="LOGGED %(message)s")
    logging.getLogger("wf.lib").addHandler(
        logging.FileHandler(os.path.join(cfg["out_path"], "lib.log")))
    logging.disable(logging.WARNING)
    logging.getLogger().propagate = False
    return [imported, before]


def fit(cfg, pre_seen):
    return [*pre_seen, seen()]


def post(cfg, fit_seen):
    return {"imported": fit_seen[0], "pre": fit_seen[1], "fit": fit_seen[2]}


basecfg = {"out_path": "out"}
cfgs = [{"x": i} for i in range(2)]
"""


def test_logging_first_imported_by_a_stage_is_put_back_to_its_start(tmp_path: Path) -> None:
    """``run_experiments`` on ``single`` in a script that never imports ``logging`` (dagrun
    does not either): the first stage imports and configures it; every later call finds
    it as it starts."""
    write_workflow(tmp_path, LAZY_LOGGING_WORKFLOW, name="wf.py")
    script = write_workflow(tmp_path, """
        from dagrun import run_experiments
        import wf

        if __name__ == "__main__":
            run_experiments({**wf.basecfg, "pre": wf.pre, "fit": wf.fit, "post": wf.post,
                             "verbose": False}, wf.cfgs)
        """, name="script.py")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = sorted(read_jsonl(tmp_path / "out" / "results.jsonl"),
                   key=lambda line: line["experiment_id"])
    start = {"root_handlers": 0, "root_level": 30, "lib_handlers": 0, "disable": 0}
    # the first run's pre found logging not imported (so the state put back is its start)
    assert lines[0]["scores"]["imported"] == [False]
    for line in lines:
        assert line["scores"]["pre"] == [start] and line["scores"]["fit"] == [start]
    assert "LOGGED" not in proc.stderr  # the handler basicConfig added is gone after pre


def test_callers_relative_paths_work_after_a_stage_changed_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = write_workflow(tmp_path, f"""
        import os
        from dagrun import run_experiments

        def pre(cfg):
            os.chdir({str(elsewhere)!r})
            return 1

        def fit(cfg, v):
            return v

        def post(cfg, v):
            return {{"v": v}}

        if __name__ == "__main__":
            run_experiments({{"pre": pre, "fit": fit, "post": post, "out_path": "out",
                             "verbose": False}}, [{{"x": 1}}])
            with open("after.txt", "w") as f:
                f.write(os.getcwd())
        """, name="script.py")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "after.txt").read_text() == str(tmp_path)
    assert not (elsewhere / "after.txt").exists()
    assert read_jsonl(tmp_path / "out" / "results.jsonl")[0]["scores"]["mean_v"] == 1


INTERRUPTING_WORKFLOW = """
def pre(cfg):
    if cfg["x"] == 0:
        raise KeyboardInterrupt
    return cfg["x"]


def fit(cfg, v):
    return v


def post(cfg, v):
    return {"v": v}


basecfg = {"out_path": "out"}
cfgs = [{"x": 0}, {"x": 1}]
"""


def test_keyboard_interrupt_raised_in_a_worker_is_the_runs_failure(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, INTERRUPTING_WORKFLOW, name="wf.py")
    result = run_dagrun("execute", wf, "--backend", "multiprocessing", "-j", "1", "-q",
                        cwd=tmp_path, timeout=180)
    assert result.rc == 1, result.stderr
    error = json.loads((tmp_path / "out" / "0" / "pre.error").read_text())
    assert (error["kind"], error["message"]) == ("exception", "KeyboardInterrupt")
    assert [line["scores"]["mean_v"] for line in
            read_jsonl(tmp_path / "out" / "results.jsonl")] == [1]


def test_keyboard_interrupt_in_the_drivers_own_process_stops_the_sweep(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, INTERRUPTING_WORKFLOW, name="wf.py")
    result = run_dagrun("execute", wf, "--backend", "single", "-q", cwd=tmp_path)
    assert result.rc == 130, result.stderr
    assert "interrupted" in result.stderr
    assert not (tmp_path / "out" / "0" / "pre.error").exists()
    assert not (tmp_path / "out" / "1" / "pre.done").exists()  # the sweep stopped at run 0


# Each run configures a logger that does not exist before the first stage call: a
# FileHandler into its own folder, as training scripts do. Every stage reports what it
# finds left over (handlers on that logger, train.log files held open by this process).
NEW_LOGGER_SCRIPT = """
import json
import logging
import os
import sys

from dagrun import run_experiments


def leftovers():
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            held += os.readlink(os.path.join("/proc/self/fd", fd)).endswith("train.log")
        except OSError:
            pass
    return {"handlers": len(logging.getLogger("exp").handlers), "held": held}


def pre(cfg):
    before = leftovers()
    log = logging.getLogger("exp")
    log.setLevel(logging.INFO)
    log.addHandler(logging.FileHandler(os.path.join(cfg["out_path"], "train.log")))
    log.info("line of run %d", cfg["x"])
    return before


def fit(cfg, before):
    return before


def post(cfg, before):
    return before


if __name__ == "__main__":
    basecfg = {"out_path": "out", "pre": pre, "fit": fit, "post": post,
               "backend": sys.argv[1], "num_cpus": 1, "verbose": False}
    summary = run_experiments(basecfg, [{"x": x} for x in range(3)])
    with open("after.json", "w") as f:
        json.dump(leftovers(), f)
    raise SystemExit(0 if summary.ok else 1)
"""


@pytest.mark.parametrize("backend", ["single", "multiprocessing"])
def test_handlers_of_a_logger_created_in_a_stage_do_not_reach_the_next_run(
        tmp_path: Path, backend: str) -> None:
    script = write_workflow(tmp_path, NEW_LOGGER_SCRIPT, name="script.py")
    proc = subprocess.run([sys.executable, str(script), backend], cwd=tmp_path,
                          env=child_env(), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stderr
    for x in range(3):  # each run's line in its own file only
        assert (tmp_path / "out" / str(x) / "train.log").read_text() == f"line of run {x}\n"
    scores = [line["scores"] for line in read_jsonl(tmp_path / "out" / "results.jsonl")]
    assert [(s["mean_handlers"], s["mean_held"]) for s in scores] == [(0, 0)] * 3
    assert json.loads((tmp_path / "after.json").read_text()) == {"handlers": 0, "held": 0}


def test_a_runs_snapshot_serves_its_next_call_only_while_it_is_the_process_state(
        tmp_path: Path) -> None:
    """A run's stages share one snapshot of the process state (taken before the first
    call, put back after each); it is taken again once a restore cannot make it the
    state (the working folder is gone) or the logging registry shows a new logger."""
    import logging
    import os

    from dagrun.run.capture import isolated

    state = isolated()
    with state:
        os.environ["DAGRUN_TEST_SNAPSHOT"] = "1"
    assert "DAGRUN_TEST_SNAPSHOT" not in os.environ and state.current()
    logging.getLogger(f"dagrun-test-new-{tmp_path.name}")
    assert not state.current()

    here = os.getcwd()
    gone = tmp_path / "gone"
    gone.mkdir()
    try:
        os.chdir(gone)
        state = isolated()
        with state:
            os.chdir(here)
            gone.rmdir()
        assert not state.current()  # it could not go back: the next call takes its own
    finally:
        os.chdir(here)


def test_a_logger_made_in_pre_is_restored_after_fit_as_pre_left_it(tmp_path: Path) -> None:
    """pre creates a logger and sets its level (kept: it was made in the call); fit changes
    that level and adds a handler: post sees pre's level and no handler (fit's snapshot was
    taken afresh, since the registry changed after pre)."""
    import logging

    from dagrun.code.workflow import Workflow
    from dagrun.run.capture import CaptureMode
    from dagrun.run.stages import RunTask, StageRunner

    name = f"dagrun-test-made-in-pre-{tmp_path.name}"

    def pre(cfg: dict[str, int]) -> None:
        logging.getLogger(name).setLevel(logging.DEBUG)

    def fit(cfg: dict[str, int], _: None) -> None:
        logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger(name).addHandler(logging.NullHandler())

    def post(cfg: dict[str, int], _: None) -> dict[str, int]:
        made = logging.getLogger(name)
        return {"level": made.level, "handlers": len(made.handlers)}

    runner = StageRunner(Workflow(pre, fit, post, [{"x": 1}]), CaptureMode.FD)
    outcome = runner.run(RunTask(0, 0, str(tmp_path / "run"), 1))
    assert outcome.failure is None
    assert outcome.scores is not None
    assert (outcome.scores["level"], outcome.scores["handlers"]) == (logging.DEBUG, 0)
