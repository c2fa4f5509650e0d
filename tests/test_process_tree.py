"""A run's processes die with it: timeouts, Ctrl-C and ``kill -9`` of the driver leave none.

Every test drives ``dagrun execute`` in a subprocess and looks at the process table. The
processes a stage starts carry a unique marker in their command line; the grandchild calls
``setsid`` to leave the run's process group and session, as daemons do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.helpers import (
    child_env,
    dagrun_command,
    pool_workers,
    run_dagrun,
    wait_for,
    write_workflow,
)

pytestmark = pytest.mark.timeout(240)

GONE_WITHIN = 15.0  # seconds a killed tree may take to disappear

WORKFLOW = '''
import os, signal, subprocess, sys, time

MARK = {mark!r}
FLAGS = {flags!r}
SLEEPER = "import time; time.sleep(1000)"
# the child starts a grandchild that leaves the run's session, then both sleep
CHILD = ("import os, subprocess, sys, time; "
         "subprocess.Popen([sys.executable, '-c', "
         "'import os, sys, time; os.setsid(); open(sys.argv[1], \\"w\\").close(); "
         "time.sleep(1000)', sys.argv[1], sys.argv[2], 'grandchild']); "
         "time.sleep(1000)")


def _tree(i):
    ready = os.path.join(FLAGS, f"grandchild-{{i}}")
    subprocess.Popen([sys.executable, "-c", SLEEPER, MARK, "child"])
    subprocess.Popen([sys.executable, "-c", CHILD, ready, MARK])
    while not os.path.exists(ready):
        time.sleep(0.05)
    open(os.path.join(FLAGS, f"ready-{{i}}"), "w").close()


def pre(cfg):
    return cfg["i"]


def fit(cfg, i):
    mode = cfg["mode"]
    if mode == "tree":
        _tree(i)
        time.sleep(1000)
    elif mode == "exit0":
        os._exit(0)
    elif mode == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
    elif mode == "wait":
        open(os.path.join(FLAGS, f"waiting-{{i}}"), "w").close()
        while not os.path.exists(os.path.join(FLAGS, "go")):
            time.sleep(0.05)
    return i


def post(cfg, i):
    return {{"i": i}}


basecfg = {{"out_path": {out!r}, "verbose": False}}
cfgs = [{{"i": i, "mode": {mode!r}}} for i in range({runs})]
'''


class Sweep:
    """A workflow whose stages start marked processes, and the process table around it."""

    def __init__(self, folder: Path, mode: str, runs: int) -> None:
        self.mark = f"dagrun-test-{uuid.uuid4().hex}"
        self.out = folder / "out"
        self.flags = folder / "flags"
        self.flags.mkdir(parents=True)
        self.workflow = write_workflow(folder, WORKFLOW.format(
            mark=self.mark, flags=str(self.flags), out=str(self.out), mode=mode, runs=runs))

    def marked(self) -> list[psutil.Process]:
        """Live processes whose command line carries this sweep's marker."""
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            if (self.mark in (proc.info["cmdline"] or [])
                    and proc.info["status"] != psutil.STATUS_ZOMBIE):
                found.append(proc)
        return found

    def ready(self, runs: int) -> bool:
        return len(list(self.flags.glob("ready-*"))) >= runs

    def start(self, *flags: str) -> subprocess.Popen[str]:
        """The driver, in its own process group (as a shell starts a foreground job)."""
        return subprocess.Popen(dagrun_command("execute", self.workflow, *flags),
                                env=child_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    def assert_nothing_left(self) -> None:
        wait_for(lambda: self.marked() == [], GONE_WITHIN, "the run's processes to be gone")

    def cleanup(self) -> None:
        for proc in self.marked():
            proc.kill()


Make = Callable[..., Sweep]  # make(mode, runs=1)


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    """Makes sweeps; kills whatever marked process a failed test left behind."""
    made: list[Sweep] = []

    def _make(mode: str, runs: int = 1) -> Sweep:
        made.append(Sweep(tmp_path / f"s{len(made)}", mode, runs))
        return made[-1]

    yield _make
    for sweep in made:
        sweep.cleanup()


# Backends whose runs live in child processes (single does when a timeout is set).
CHILD_BACKENDS = [["--backend", "multiprocessing", "-j", "2"],
                  ["--backend", "single", "--timeout", "600"]]
IDS = ["multiprocessing", "single"]


def _error(sweep: Sweep, exp_id: int, stage: str) -> dict[str, str]:
    path = sweep.out / str(exp_id) / f"{stage}.error"
    with open(path) as f:
        data: dict[str, str] = json.load(f)
    return data


@pytest.mark.parametrize("backend", [["multiprocessing"], ["single"]], ids=IDS)
def test_timeout_kills_the_runs_whole_tree(make: Make, backend: list[str]) -> None:
    sweep = make("tree")
    result = run_dagrun("execute", sweep.workflow, "--backend", *backend, "--timeout", "15",
                        timeout=180)
    assert result.rc == 1, result.stderr
    assert sweep.ready(1), "the stage did not start its processes before the timeout"
    assert _error(sweep, 0, "fit")["kind"] == "timeout"
    sweep.assert_nothing_left()


@pytest.mark.parametrize("flags", CHILD_BACKENDS, ids=IDS)
def test_ctrl_c_kills_the_trees_records_nothing_exits_130(make: Make,
                                                         flags: list[str]) -> None:
    runs = 2 if "multiprocessing" in flags else 1
    sweep = make("tree", runs)
    driver = sweep.start(*flags)
    try:
        wait_for(lambda: sweep.ready(runs), 120, "the stages to start their processes")
        os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 130, err
    sweep.assert_nothing_left()
    assert list(sweep.out.glob("*/*.error")) == []  # interrupted, not failed


@pytest.mark.parametrize("flags", CHILD_BACKENDS, ids=IDS)
def test_kill_9_of_the_driver_leaves_nothing(make: Make, flags: list[str]) -> None:
    sweep = make("tree")
    driver = sweep.start(*flags)
    try:
        wait_for(lambda: sweep.ready(1), 120, "the stage to start its processes")
        driver.kill()
        driver.communicate(timeout=60)
    finally:
        driver.kill()
    sweep.assert_nothing_left()


@pytest.mark.parametrize("flags", CHILD_BACKENDS, ids=IDS)
def test_os_exit_0_in_a_stage_is_a_crash(make: Make, flags: list[str]) -> None:
    sweep = make("exit0")
    result = run_dagrun("execute", sweep.workflow, *flags, timeout=120)
    assert result.rc == 1, result.stderr
    error = _error(sweep, 0, "fit")
    assert error["kind"] == "crashed"
    assert "exited with code 0 before the stage finished" in error["message"]


def test_a_sigtermed_worker_is_killed_by_sigterm(make: Make) -> None:
    sweep = make("sigterm")
    result = run_dagrun("execute", sweep.workflow, "--backend", "multiprocessing",
                        timeout=120)
    assert result.rc == 1, result.stderr
    error = _error(sweep, 0, "fit")
    assert error["kind"] == "crashed"
    assert "the process running fit was killed by SIGTERM" in error["message"]
    assert "killed by SIGTERM" in run_dagrun("status", sweep.out).stdout


def _workers(driver: subprocess.Popen[str]) -> list[psutil.Process]:
    """The driver's worker processes (not the resource tracker, not the watchdog)."""
    return pool_workers(driver.pid)


def test_no_more_workers_than_runs(make: Make) -> None:
    jobs = max(8, (os.cpu_count() or 1) + 1)
    sweep = make("wait", runs=3)
    driver = sweep.start("--backend", "multiprocessing", "-j", str(jobs))
    try:
        wait_for(lambda: len(list(sweep.flags.glob("waiting-*"))) == 3, 120,
                 "three runs to start")
        assert len(_workers(driver)) == 3
        (sweep.flags / "go").touch()
        _, err = driver.communicate(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode == 0, err
    assert err.count(f"{jobs} worker processes") == 1  # said once: more than the CPUs
    assert "Traceback" not in err


def test_a_pool_shutting_down_prints_no_traceback(make: Make) -> None:
    """Runs finish while workers are still starting; stopping them must stay silent."""
    sweep = make("noop", runs=8)
    result = run_dagrun("execute", sweep.workflow, "--backend", "multiprocessing", "-j", "8",
                        timeout=180)
    assert result.rc == 0, result.stderr
    assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr
