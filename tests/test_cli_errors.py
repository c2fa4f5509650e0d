"""Errors a user can tell apart: exit codes by who caused them, signals, quiet failures, and
backend settings checked before anything is written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import child_env, run_dagrun, wait_for, write_workflow

FAILING = """
import time

def pre(cfg):
    return None

def fit(cfg, _):
    if cfg["x"] in (1, 3):
        raise ValueError(f"bad x {cfg['x']}")
    time.sleep(cfg.get("sleep", 0))
    return cfg["x"]

def post(cfg, value):
    return {"value": value}

basecfg = {"out_path": "out"}
cfgs = [{"x": i} for i in range(4)]
"""

SLOW = """
import time

def pre(cfg):
    return None

def fit(cfg, _):
    if cfg["x"] > 0:
        time.sleep(60)
    return cfg["x"]

def post(cfg, value):
    return {"value": value}

basecfg = {"out_path": "out", "backend": "multiprocessing", "num_cpus": 2}
cfgs = [{"x": i} for i in range(3)]
"""


def test_quiet_sweep_still_reports_failed_runs(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, FAILING)
    result = run_dagrun("execute", wf, "-q", cwd=tmp_path)
    assert result.rc == 1
    lines = result.error_lines
    assert any("failed 1/0 in fit (exception): ValueError: bad x 1" in line for line in lines)
    assert any("failed 3/0 in fit" in line for line in lines)
    assert lines[-1].startswith("4 runs planned: 2 done now, 0 already done, 2 failed")


def test_quiet_sweep_that_succeeds_prints_nothing(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, FAILING.replace("(1, 3)", "()"))
    result = run_dagrun("execute", wf, "-q", cwd=tmp_path)
    assert (result.rc, result.stderr, result.stdout) == (0, "", "")


def test_a_bug_in_dagrun_exits_3_with_traceback(tmp_path: Path) -> None:
    """An unexpected exception inside the engine is dagrun's fault: exit 3, not 1."""
    wf = write_workflow(tmp_path, FAILING.replace("(1, 3)", "()"))
    code = ("import sys, dagrun.results.reduce as r\n"
            "def broken(*a, **k):\n    raise ZeroDivisionError('engine bug')\n"
            "r.rewrite = broken\n"
            "from dagrun.cli import main\n"
            f"sys.exit(main(['execute', {str(wf)!r}, '-q']))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" in proc.stderr and "ZeroDivisionError: engine bug" in proc.stderr
    assert "bug in dagrun itself, not in your workflow" in proc.stderr.splitlines()[-1]


def test_environment_oserror_is_one_line_exit_2(tmp_path: Path) -> None:
    """dagrun's own I/O failing (here: its state cannot be written, as on a full disk) is
    the environment's problem: one line naming the file, exit 2, no traceback."""
    wf = write_workflow(tmp_path, FAILING.replace("(1, 3)", "()"))
    code = ("import errno, os, sys, dagrun.disk.codecheck as c\n"
            "def full(*a, **k):\n"
            "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), 'out/.dagrun/code.json')\n"
            "c.remember = full\n"
            "from dagrun.cli import main\n"
            f"sys.exit(main(['execute', {str(wf)!r}, '-q']))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ("dagrun: error: cannot use out/.dagrun/code.json: No space left on "
                    "device (free some space)")


@pytest.mark.parametrize(("sig", "rc", "word"), [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                 (signal.SIGHUP, 129, "hung up (SIGHUP)")])
def test_sigterm_and_sighup_stop_like_ctrl_c(tmp_path: Path, sig: int, rc: int,
                                             word: str) -> None:
    wf = write_workflow(tmp_path, SLOW)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "dagrun", "execute", str(wf)],
                            cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (out / "0" / "post.done").exists(), 60, "run 0 to finish")
        time.sleep(0.5)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == rc, err
    assert f"dagrun: {word}; finished stages are kept" in err
    assert "interrupted" in err  # the summary says so
    assert "Traceback" not in err and "leaked semaphore" not in err
    assert not (out / ".dagrun" / "driver.json").exists()
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"experiment_id": 0' in lines[0]
    for x in (1, 2):  # interrupted runs are not recorded as failed
        assert not list((out / str(x)).glob("*.error"))


def test_ssh_hosts_checked_before_anything_is_written(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, FAILING.replace(
        '"out_path": "out"', '"out_path": "out", "backend": "ssh", "hosts": ["a", "a"]'))
    result = run_dagrun("execute", wf, cwd=tmp_path)
    assert result.rc == 2
    assert result.error_lines[-1].startswith("dagrun: error: basecfg['hosts'] lists a more "
                                             "than once")
    assert not (tmp_path / "out").exists()


def test_tilde_expanded_in_path_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagrun.backends import validate_basecfg

    monkeypatch.setenv("HOME", str(tmp_path))
    base = validate_basecfg({"out_path": "o", "pre": print, "fit": print, "post": print,
                             "ssh_key": "~/.ssh/id", "ssh_config": "~/cfg"})
    assert base.settings.ssh_key == os.path.join(str(tmp_path), ".ssh", "id")
    assert base.settings.ssh_config == os.path.join(str(tmp_path), "cfg")


def test_registered_backend_is_valid_everywhere(recwarn: pytest.WarningsRecorder) -> None:
    from dagrun.backends import _REGISTRY, register_backend, validate_basecfg

    register_backend("mine", "dagrun.backends.single", "SingleBackend")
    try:
        base = validate_basecfg({"out_path": "o", "pre": print, "fit": print, "post": print,
                                 "backend": "mine"})
    finally:
        del _REGISTRY["mine"]
    assert base.settings.backend == "mine"
    assert not [w for w in recwarn if "unknown backend" in str(w.message)]


def test_bad_numbers_and_folders_say_what_is_expected(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, FAILING)
    result = run_dagrun("execute", wf, "--retries", "1e3", cwd=tmp_path)
    assert result.rc == 2
    assert "argument --retries: must be an integer >= 0, got '1e3'" in result.stderr
    result = run_dagrun("execute", tmp_path, cwd=tmp_path)
    assert result.rc == 2
    assert result.error_lines[-1] == (f"dagrun: error: {tmp_path} is a folder; give the "
                                      f"workflow file (e.g. {wf})")


def test_malocher_dir_is_accepted_and_not_needed() -> None:
    """The original tool's working folder for malocher: runs live in OUT, so it is ignored."""
    from dagrun.backends import validate_basecfg

    base = validate_basecfg({"out_path": "o", "pre": print, "fit": print, "post": print,
                             "malocher_dir": "/tmp/malocher"})
    assert "malocher_dir" not in vars(base.settings) and "ssh_dir" not in vars(base.settings)
