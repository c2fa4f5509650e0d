"""A stage that ends the sweep's own process on ``single`` (no timeout: stages run in the
driver's process) is a crashed run, not the end of the sweep.

Before: ``os._exit(0)`` in a stage ended ``dagrun execute`` with exit 0, no summary, no
failure record, and the runs after it never ran. Now the ``dagrun`` command records the run
as ``crashed`` (``RUN/fit.error``), goes on with the other runs, prints the summary and exits
1; ``run_experiments`` in the user's own process leaves the record through its watchdog.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers import (
    child_env,
    processes_with,
    read_jsonl,
    run_dagrun,
    wait_for,
    write_workflow,
)

pytestmark = pytest.mark.timeout(180)

# Experiment 1's fit ends the process (ENDING says how); every fit call leaves a line in
# CALLS/fit-<id>. FLAKY: it ends the process on its first call only. SLEEP: experiment 1's
# fit sleeps instead (a stage to interrupt).
WORKFLOW = '''
import ctypes
import os
import signal
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CALLS = os.path.join(HERE, "calls")
ENDING = {ending!r}
FLAKY = {flaky!r}


def pre(cfg):
    return cfg["x"]


def fit(cfg, value):
    os.makedirs(CALLS, exist_ok=True)
    with open(os.path.join(CALLS, "fit-%d" % cfg["experiment_id"]), "a") as f:
        f.write("x\\n")
    if cfg["experiment_id"] == 1:
        calls = open(os.path.join(CALLS, "fit-1")).read().count("x")
        if FLAKY and calls > 1:
            return value
        print("fit of experiment 1 ends the process", flush=True)
        if ENDING == "exit0":
            os._exit(0)
        if ENDING == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if ENDING == "segfault":
            ctypes.string_at(0)
        if ENDING == "sleep":
            time.sleep(120)
    return value * 10


def post(cfg, value):
    return {{"value": value}}


basecfg = {{"out_path": os.path.join(HERE, "OUT"), "pre": pre, "fit": fit, "post": post,
           "retries": {retries}}}
cfgs = [{{"x": i}} for i in range(3)]

if __name__ == "__main__":
    import dagrun

    dagrun.run_experiments(basecfg, cfgs)
'''

MESSAGES = {"exit0": "the process running fit exited with code 0 before the stage finished",
            "sigkill": "the process running fit was killed by SIGKILL",
            "segfault": "the process running fit was killed by SIGSEGV"}


def _workflow(folder: Path, ending: str, retries: int = 0, flaky: bool = False) -> Path:
    return write_workflow(folder, WORKFLOW.format(ending=ending, retries=retries,
                                                  flaky=flaky), name="wf.py")


def _error(folder: Path, exp_id: int = 1) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "OUT" / str(exp_id) / "fit.error").read_text())
    return data


def _fit_calls(folder: Path, exp_id: int) -> int:
    path = folder / "calls" / f"fit-{exp_id}"
    return path.read_text().count("x") if path.exists() else 0


def _assert_others_done(folder: Path) -> None:
    out = folder / "OUT"
    for exp_id in (0, 2):
        assert (out / str(exp_id) / "post.done").is_file(), exp_id
    assert not (out / "1" / "fit.done").exists()
    ids = sorted(line["experiment_id"] for line in read_jsonl(out / "results.jsonl"))
    assert ids == [0, 2]


def _assert_crash_reported(result_err: str, message: str) -> None:
    assert "3 runs planned:" in result_err and "1 failed" in result_err, result_err
    assert f"failed 1/0 in fit (crashed): {message}" in result_err, result_err
    assert "Traceback" not in result_err


@pytest.mark.parametrize("ending", ["exit0", "sigkill", "segfault"])
def test_execute_records_a_stage_that_ends_the_process_and_goes_on(tmp_path: Path,
                                                                   ending: str) -> None:
    wf = _workflow(tmp_path, ending)
    result = run_dagrun("execute", wf, cwd=tmp_path, timeout=120)
    assert result.rc == 1, result.stderr
    _assert_crash_reported(result.stderr, MESSAGES[ending])
    error = _error(tmp_path)
    assert error["kind"] == "crashed" and error["stage"] == "fit" and error["attempt"] == 1
    assert error["message"].startswith(MESSAGES[ending])
    _assert_others_done(tmp_path)
    assert _fit_calls(tmp_path, 1) == 1  # no retries: not executed again
    assert not list((tmp_path / "OUT" / "1").glob(".attempt-*"))  # its holder's, gone
    status = run_dagrun("status", tmp_path / "OUT", cwd=tmp_path)
    assert "1/0        fit crashed (attempt 1)" in status.stdout, status.stdout


def test_quiet_execute_still_reports_the_crashed_run(tmp_path: Path) -> None:
    wf = _workflow(tmp_path, "exit0")
    result = run_dagrun("execute", wf, "-q", cwd=tmp_path, timeout=120)
    assert result.rc == 1, result.stderr
    _assert_crash_reported(result.stderr, MESSAGES["exit0"])
    assert "the sweep goes on" not in result.stderr  # the restart itself is not news with -q
    _assert_others_done(tmp_path)


def test_resume_records_the_crash_and_goes_on_like_execute(tmp_path: Path) -> None:
    wf = _workflow(tmp_path, "exit0")
    assert run_dagrun("plan", wf, cwd=tmp_path).rc == 0  # plan and workflow, nothing run
    result = run_dagrun("resume", tmp_path / "OUT", cwd=tmp_path, timeout=120)
    assert result.rc == 1, result.stderr
    _assert_crash_reported(result.stderr, MESSAGES["exit0"])
    assert _error(tmp_path)["kind"] == "crashed"
    _assert_others_done(tmp_path)


def test_a_crash_is_an_attempt_retried_in_a_new_process(tmp_path: Path) -> None:
    """retries=1: the run that ends the process runs twice, then counts as failed (attempt
    2); one that ends it once is retried and done."""
    wf = _workflow(tmp_path, "exit0", retries=1)
    result = run_dagrun("execute", wf, cwd=tmp_path, timeout=120)
    assert result.rc == 1, result.stderr
    assert _fit_calls(tmp_path, 1) == 2
    assert _error(tmp_path)["attempt"] == 2
    _assert_others_done(tmp_path)

    flaky = tmp_path / "flaky"
    flaky.mkdir()
    wf = _workflow(flaky, "exit0", retries=1, flaky=True)
    result = run_dagrun("execute", wf, cwd=flaky, timeout=120)
    assert result.rc == 0, result.stderr
    assert _fit_calls(flaky, 1) == 2
    assert (flaky / "OUT" / "1" / "post.done").is_file()
    assert not (flaky / "OUT" / "1" / "fit.error").exists()  # done now: the record went
    assert len(read_jsonl(flaky / "OUT" / "results.jsonl")) == 3


@pytest.mark.parametrize("ending", ["exit0", "sigkill"])
def test_run_experiments_in_the_users_process_leaves_the_record(tmp_path: Path,
                                                               ending: str) -> None:
    """``python wf.py``: the process that ends is the user's; its watchdog records the run
    (asynchronously: the test waits for the record, bounded)."""
    wf = _workflow(tmp_path, ending)
    proc = subprocess.run([sys.executable, str(wf)], cwd=tmp_path, env=child_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == (0 if ending == "exit0" else -signal.SIGKILL), proc.stderr
    record = tmp_path / "OUT" / "1" / "fit.error"
    wait_for(record.exists, 30, "the watchdog to write the record")
    error = _error(tmp_path)
    assert error["kind"] == "crashed" and error["stage"] == "fit" and error["attempt"] == 1
    assert "recorded by the driver's watchdog" in error["message"]
    wait_for(lambda: not list((tmp_path / "OUT" / "1").glob(".attempt-*")), 30,
             "the attempt folder to go")
    assert (tmp_path / "OUT" / "0" / "post.done").is_file()
    status = run_dagrun("status", tmp_path / "OUT", cwd=tmp_path)
    assert "1/0        fit crashed" in status.stdout, status.stdout


def test_run_experiments_finishing_normally_leaves_no_record(tmp_path: Path) -> None:
    wf = _workflow(tmp_path, "none")
    proc = subprocess.run([sys.executable, str(wf)], cwd=tmp_path, env=child_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    time.sleep(1.0)  # a watchdog that wrongly wrote a record would have done so by now
    assert not list((tmp_path / "OUT").glob("*/*.error"))
    assert len(read_jsonl(tmp_path / "OUT" / "results.jsonl")) == 3


def _start(wf: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "dagrun", "execute", str(wf)], cwd=cwd,
                            env=child_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.parametrize("target", ["group", "command"])
def test_ctrl_c_stops_the_sweep_once_and_records_nothing(tmp_path: Path, target: str) -> None:
    """SIGINT to the process group (a terminal's Ctrl-C: the command and the sweep's
    process both get it) or to the command alone: exit 130, one summary, no record."""
    wf = _workflow(tmp_path, "sleep")
    proc = _start(wf, tmp_path)
    try:
        wait_for(lambda: _fit_calls(tmp_path, 1) == 1, 60, "experiment 1's fit")
        time.sleep(0.3)
        if target == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.count("runs planned") == 1, err
    assert "interrupted" in err and "Traceback" not in err
    assert not list((tmp_path / "OUT").glob("*/*.error"))
    wait_for(lambda: processes_with(str(wf)) == [], 30, "no process of the sweep left")


def test_kill_9_of_the_command_stops_the_sweep_and_records_nothing(tmp_path: Path) -> None:
    wf = _workflow(tmp_path, "sleep")
    proc = _start(wf, tmp_path)
    try:
        wait_for(lambda: _fit_calls(tmp_path, 1) == 1, 60, "experiment 1's fit")
        proc.kill()
        proc.communicate(timeout=60)
        wait_for(lambda: processes_with(str(wf)) == [], 30, "the sweep's process to die")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)
    assert not list((tmp_path / "OUT").glob("*/*.error"))
    assert not (tmp_path / "OUT" / "2").joinpath("post.done").exists()


# --------------------------------------------------------------------------------------------
# The watchdog's side, in this process: which record it commits, and when it commits none.

def _pending_line(run: Path, folder: Path | None) -> bytes:
    from dagrun.disk.layout import STAGES, RunDir
    from dagrun.run.failures import ended_driver

    rd = RunDir(str(run))
    records = [[rd.marker(s), rd.error(s), ended_driver(s, 1).content().decode()]
               for s in STAGES]
    data = {"folder": None if folder is None else str(folder), "records": records}
    return b"P " + json.dumps(data).encode() + b"\n"


def test_the_watchdog_commits_the_first_stage_without_a_marker_through_the_attempt(
        tmp_path: Path) -> None:
    from dagrun.run import proctree

    run = tmp_path / "run"
    attempt = run / ".attempt-0-abc"
    attempt.mkdir(parents=True)
    (run / "pre.done").write_text("{}")
    _, pending = proctree._lines(_pending_line(run, attempt), None)
    assert pending is not None
    assert proctree.write_pending(pending) == str(run / "fit.error")
    error = json.loads((run / "fit.error").read_text())
    assert error["kind"] == "crashed" and error["stage"] == "fit"
    assert not attempt.exists()  # its holder is gone
    assert sorted(p.name for p in run.iterdir()) == ["fit.error", "pre.done"]


def test_the_watchdog_commits_nothing_fenced_cleared_or_cut_short(tmp_path: Path) -> None:
    from dagrun.run import proctree

    run = tmp_path / "run"
    run.mkdir()
    line = _pending_line(run, run / ".attempt-1-gone")  # fenced: its folder is gone
    _, pending = proctree._lines(line, None)
    assert pending is not None and proctree.write_pending(pending) is None
    assert list(run.iterdir()) == []
    assert proctree._lines(line + b"C\n", None)[1] is None  # the run ended
    rest, pending = proctree._lines(b"C\n" + line[:-40], None)  # the driver died writing
    assert pending is None and rest == line[:-40]


SHARED = '''
import os
import dagrun
from dagrun.run import pending

HERE = os.path.dirname(os.path.abspath(__file__))


def pre(cfg):
    return cfg["x"]


def fit(cfg, value):
    if cfg.get("end"):
        os._exit(0)
    return value


def post(cfg, value):
    return {"value": value}


def sweep(name, cfgs):
    dagrun.run_experiments({"out_path": os.path.join(HERE, name), "pre": pre, "fit": fit,
                            "post": post, "report": False, "verbose": False}, cfgs)


sweep("FIRST", [{"x": 1}])
first = pending._idle.watchdog.pid
sweep("SECOND", [{"x": 2}])
assert pending._idle.watchdog.pid == first, "the second sweep started a watchdog of its own"
with open(os.path.join(HERE, "watchdog.pid"), "w") as f:
    f.write(str(first))
sweep("THIRD", [{"x": 3, "end": True}])
'''


def test_one_watchdog_serves_a_processs_sweeps_and_records_the_last_ones_crash(
        tmp_path: Path) -> None:
    """Sweeps of one process (a notebook, a search's rounds) share its watchdog; it still
    records the run that ends the process, then ends itself."""
    script = write_workflow(tmp_path, SHARED, name="sweeps.py")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=child_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    watchdog = int((tmp_path / "watchdog.pid").read_text())
    record = tmp_path / "THIRD" / "0" / "fit.error"
    wait_for(record.exists, 30, "the shared watchdog to write the record")
    assert json.loads(record.read_text())["kind"] == "crashed"
    assert (tmp_path / "FIRST" / "0" / "post.done").is_file()
    wait_for(lambda: not psutil.pid_exists(watchdog) or psutil.Process(watchdog).status()
             == psutil.STATUS_ZOMBIE, 30, "the watchdog to end with its process")
