"""Hard timeouts, crash isolation, retries and no orphans (single and multiprocessing)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import psutil
import pytest

import dagrun
from dagrun.disk.layout import SweepDir
from dagrun.run import pending
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(120)

# Backends whose runs live in child processes (single does so when a timeout is set).
ISOLATING = [("multiprocessing", 0), ("single", 60)]


def _base(out: Path, backend: str, **kw: object) -> dict[str, object]:
    """basecfg of a sweep run in this process (stages given by the caller)."""
    return {"out_path": str(out), "backend": backend, "num_cpus": 2, "verbose": False, **kw}


def pre(cfg: Mapping[str, Any]) -> Any:
    return cfg["i"]


def fit_hangs(cfg: Mapping[str, Any], x: Any) -> Any:
    if cfg["i"] == 1:
        while True:  # swallows everything, including the stop request
            with contextlib.suppress(BaseException):  # the point of the test
                time.sleep(0.05)
    return x


def post(cfg: Mapping[str, Any], x: Any) -> dict[str, Any]:
    return {"x": x}


def _workers_left() -> list[str]:
    """Child processes still there, zombies included (nobody reaped them), except those
    that serve the whole interpreter and end with it: multiprocessing's resource tracker,
    and dagrun's watchdog of the sweeps run in this process (``dagrun.run.pending``)."""
    shared = pending._idle.watchdog if pending._idle is not None else None
    left = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if shared is not None and proc.pid == shared.pid:
                continue
            if "resource_tracker" not in " ".join(proc.cmdline()):
                left.append(f"{proc.pid} {proc.name()}")
        except psutil.ZombieProcess:
            left.append(f"{proc.pid} (a zombie: exited, never reaped)")
        except psutil.NoSuchProcess:
            continue
    return left


def _error(out: Path, exp_id: int, stage: str) -> dict[str, object]:
    """The failure record of one stage of run (exp_id, 0) of a one-repetition sweep."""
    with open(SweepDir.at(out).run_dir(exp_id, 0, 1).error(dagrun.disk.layout.Stage(stage))) as f:
        record: dict[str, object] = json.load(f)
    return record


@pytest.mark.parametrize("backend", ["single", "multiprocessing"])
def test_timeout_stops_a_run_that_swallows_exceptions(tmp_path: Path, backend: str) -> None:
    out = tmp_path / "out"
    summary = dagrun.run_experiments(
        {**_base(out, backend, timeout=2), "pre": pre, "fit": fit_hangs, "post": post},
        [{"i": i} for i in range(4)])
    assert (summary.done, summary.failed) == (3, 1)
    err = _error(out, 1, "fit")
    assert err["kind"] == "timeout"
    assert "timeout of 2 s" in str(err["message"])
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["experiment_id"] for line in lines] == [0, 2, 3]
    assert _workers_left() == []


def fit_crashes(cfg: Mapping[str, Any], x: Any) -> Any:
    import ctypes

    print(f"about to crash {cfg['i']}", flush=True)
    if cfg["i"] == 1:
        os._exit(3)
    if cfg["i"] == 2:
        ctypes.string_at(0)  # a real segfault
    return x


@pytest.mark.parametrize(("backend", "timeout"), ISOLATING)
def test_exit_and_segfault_are_isolated(tmp_path: Path, backend: str, timeout: int) -> None:
    out = tmp_path / "out"
    summary = dagrun.run_experiments(
        {**_base(out, backend, timeout=timeout), "pre": pre, "fit": fit_crashes, "post": post},
        [{"i": i} for i in range(4)])
    assert (summary.done, summary.failed) == (2, 2)
    exited, segv = _error(out, 1, "fit"), _error(out, 2, "fit")
    assert exited["kind"] == segv["kind"] == "crashed"
    assert "exited with code 3" in str(exited["message"])
    assert "SIGSEGV" in str(segv["message"])
    assert "about to crash 2" in str(segv["message"])  # the log's last lines
    assert (out / "1" / "pre.done").exists() and not (out / "1" / "fit.done").exists()
    status = subprocess.run([sys.executable, "-m", "dagrun", "status", str(out)],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    assert "crashed" in status and "SIGSEGV" in status


def fit_flaky(cfg: Mapping[str, Any], x: Any) -> Any:
    """Fails the first attempt of run 0: a hard exit or an exception (cfg "hard")."""
    flag = Path(cfg["flag_dir"]) / f"tried-{cfg['i']}"
    if cfg["i"] == 0 and not flag.exists():
        flag.touch()
        if cfg["hard"]:
            os._exit(7)
        raise RuntimeError("flaky")
    return x


@pytest.mark.parametrize(("backend", "hard"), [("single", False), ("multiprocessing", True),
                                               ("multiprocessing", False)])
def test_retries_recover_a_flaky_run(tmp_path: Path, backend: str, hard: bool) -> None:
    out = tmp_path / "out"
    summary = dagrun.run_experiments(
        {**_base(out, backend, retries=1), "pre": pre, "fit": fit_flaky, "post": post},
        [{"i": i, "flag_dir": str(tmp_path), "hard": hard} for i in range(2)])
    assert (summary.done, summary.failed) == (2, 0)
    marker = json.loads((out / "0" / "fit.done").read_text())
    assert marker["attempt"] == 2
    assert not (out / "0" / "fit.error").exists()


def test_retries_exhausted_is_a_failure(tmp_path: Path) -> None:
    def always(cfg: Mapping[str, Any], x: Any) -> Any:
        raise ValueError("always broken")

    out = tmp_path / "out"
    summary = dagrun.run_experiments(
        {**_base(out, "single", retries=2), "pre": pre, "fit": always, "post": post}, [{"i": 0}])
    assert summary.failed == 1
    err = _error(out, 0, "fit")
    assert err["attempt"] == 3 and err["kind"] == "exception"
    assert "ValueError: always broken" in str(err["message"])


WORKFLOW = """
import time
def pre(cfg):
    return cfg["i"]
def fit(cfg, x):
    time.sleep(0.4)
    return x
def post(cfg, x):
    return {{"x": x}}
basecfg = {{"out_path": {out!r}, "backend": "multiprocessing", "num_cpus": 2}}
cfgs = [{{"i": i}} for i in range(16)]
"""


def _tagged(tag: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("DAGRUN_TEST_TAG") == tag:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _start_driver(tmp_path: Path, out: Path, tag: str) -> subprocess.Popen[str]:
    wf = tmp_path / "wf.py"
    wf.write_text(textwrap.dedent(WORKFLOW.format(out=str(out))))
    env = {**os.environ, "DAGRUN_TEST_TAG": tag}
    return subprocess.Popen([sys.executable, "-m", "dagrun", "execute", str(wf), "-q"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_driver_stop_leaves_no_worker_and_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "out dir"
    tag = uuid.uuid4().hex
    proc = _start_driver(tmp_path, out, tag)
    try:
        wait_for(lambda: len(list(out.glob("*/fit.done"))) >= 2, 60, "two fits done")
        assert len(_tagged(tag)) >= 3  # the driver and its workers are running
        proc.send_signal(sig)
        rc = proc.wait(timeout=30)
    finally:
        proc.kill()
    assert rc == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    wait_for(lambda: _tagged(tag) == [], 15, "every worker to be gone")
    done_before = {p.parent.name for p in out.glob("*/post.done")}
    assert 2 <= len(done_before) < 16
    markers_before = {p: p.read_bytes() for name in done_before
                      for p in (out / name).glob("*.done")}
    again = _start_driver(tmp_path, out, uuid.uuid4().hex)
    _, err = again.communicate(timeout=90)
    assert again.returncode == 0, err
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["experiment_id"] for line in lines] == list(range(16))
    # finished runs were not recomputed: their markers are untouched
    assert {p: p.read_bytes() for p in markers_before} == markers_before


NO_GUARD = """
import sys
from dagrun import run_experiments
with open(sys.argv[2], "a") as f:
    f.write("top level\\n")
def pre(cfg):
    return cfg["i"]
def fit(cfg, x):
    return x + 1
def post(cfg, x):
    return {"x": x}
run_experiments({"out_path": sys.argv[1], "pre": pre, "fit": fit, "post": post,
                 "backend": "multiprocessing", "num_cpus": 2, "verbose": False},
                [{"i": i} for i in range(6)])
with open(sys.argv[2], "a") as f:
    f.write("sweep over\\n")
"""


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_script_without_main_guard_runs_on_multiprocessing(tmp_path: Path, start: str
                                                           ) -> None:
    """Spawned workers import the script's plan-time copy (its module-level code runs there,
    as in the driver) but its top-level run_experiments starts no sweep in them; forked
    workers do not run the script at all."""
    script, out, trace = tmp_path / "sweep.py", tmp_path / "out", tmp_path / "trace"
    script.write_text(NO_GUARD)
    proc = subprocess.run([sys.executable, str(script), str(out), str(trace)],
                          capture_output=True, text=True, timeout=90,
                          env={**os.environ, "DAGRUN_WORKER_START": start})
    assert proc.returncode == 0, proc.stderr
    trace_lines = trace.read_text().splitlines()
    assert trace_lines.count("sweep over") == 1  # only the driver ran a sweep
    if start == "spawn":  # the driver and each worker process
        assert 2 <= trace_lines.count("top level") <= 3
    else:
        assert trace_lines.count("top level") == 1
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["scores"]["mean_x"] for line in lines] == [1, 2, 3, 4, 5, 6]


def _ready() -> None:
    """Pool initializer that does nothing."""


def _nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _exit_now(code: int) -> None:
    os._exit(code)


def test_pool_counts_running_tasks_back_to_zero() -> None:
    """``Pool.running`` is a count kept as tasks start and end (the driver no longer asks
    every future): never more than the workers, and 0 again after tasks that finished,
    overstayed their timeout, or whose worker exited (code 0 included)."""
    from dagrun.backends.process.pool import Pool
    from dagrun.backends.process.spawning import WORKER_CONTEXT

    pool = Pool(max_workers=2, initializer=_ready, initargs=(), context=WORKER_CONTEXT)
    try:
        futures: list[Future[Any]] = [
            pool.schedule(_nap, args=(60,), timeout=0.5),
            pool.schedule(_exit_now, args=(0,)), pool.schedule(_exit_now, args=(3,))]
        futures += [pool.schedule(_nap, args=(0.01,)) for _ in range(20)]
        seen: list[int] = []

        def all_ended() -> bool:
            seen.append(pool.running())
            return all(f.done() for f in futures)

        wait_for(all_ended, timeout=90, what="every task to end")
        assert max(seen) <= 2
        wait_for(lambda: pool.running() == 0, what="the running count back to 0")
        assert sum(f.exception() is None for f in futures) == 20
    finally:
        pool.stop()  # type: ignore[no-untyped-call, unused-ignore]
        pool.join(timeout=30)


# Each stage keeps a multiprocessing lock and queue alive in its worker (as tqdm's progress
# bars do with their lock); a worker started with spawn registers them with the driver's
# resource tracker, so a worker killed without its exit handlers leaves them behind.
SEMAPHORE_WORKFLOW = """
import multiprocessing

from tqdm import tqdm

KEPT = []


def pre(cfg):
    KEPT.append((multiprocessing.Lock(), multiprocessing.Queue()))
    for _ in tqdm(range(3), disable=False):
        pass
    return cfg["i"]


def fit(cfg, x):
    return x


def post(cfg, x):
    return {{"x": x}}


basecfg = {{"out_path": {out!r}, "timeout": 60}}
cfgs = [{{"i": i}} for i in range(4)]
"""


@pytest.mark.parametrize("backend", ["single", "multiprocessing"])
def test_a_sweep_leaves_no_semaphore_behind(tmp_path: Path, backend: str) -> None:
    workflow = tmp_path / "wf.py"
    workflow.write_text(SEMAPHORE_WORKFLOW.format(out=str(tmp_path / "out")))
    proc = subprocess.run([sys.executable, "-m", "dagrun", "execute", str(workflow),
                           "--backend", backend, "-j", "2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "leaked semaphore" not in proc.stderr, proc.stderr
    assert "resource_tracker" not in proc.stderr, proc.stderr
