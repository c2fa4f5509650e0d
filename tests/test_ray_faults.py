"""The ray backend under faults: an address that is no Ray head, a cluster that dies during
the sweep, SIGTERM and ``kill -9`` of the driver, stages that daemonize, Ray's own messages.

Few tests start a cluster (2 cores are few): one module cluster serves the stage tests, one
more is killed, and one local instance is started by ``address="auto"``. Drivers are real
``dagrun`` processes. Skips when ray is missing, unless DAGRUN_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dagrun.backends import validate_basecfg
from dagrun.backends.ray.connect import bounded
from dagrun.backends.ray.driver import oom_message, plain
from dagrun.backends.ray.resources import request_of
from dagrun.errors import BackendUnavailableError, ConfigError
from tests.helpers import (
    child_env,
    dagrun_command,
    processes_with,
    read_jsonl,
    saw_both,
    wait_for,
    write_workflow,
)
from tests.services import require_service
from tests.services.ray_cluster import BASE_ENV, RayCluster, other_cluster, ray_available

require_service(ray_available(), module_level=True)

pytestmark = pytest.mark.timeout(300)
RUN_TIMEOUT = 150.0


def ray_env(cluster: RayCluster | None, **extra: str) -> dict[str, str]:
    env = child_env()
    for key in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    env.update(cluster.client_env() if cluster is not None else BASE_ENV)
    env.update(extra)
    return env


def start(env: dict[str, str], workflow: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(dagrun_command("execute", workflow), env=env, cwd=workflow.parent,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> str:
    """The driver's stderr once it ended (bounded; killed if it does not end)."""
    try:
        _out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    return err


def _noop(*args: object) -> None:
    return None


# ----------------------------------------------------------------------------------------------
# Without a cluster.

def test_resource_amounts_are_checked_the_way_ray_checks_them() -> None:
    """Every amount Ray refuses at submission is refused before anything runs, and only
    those (Ray's own validator is the oracle)."""
    from ray._common.ray_option_utils import _validate_resource_quantity

    settings = validate_basecfg({"out_path": "/nonexistent", "pre": _noop, "fit": _noop,
                                 "post": _noop, "backend": "ray"}).settings
    for value in (0.00001, 0.00009999, 0.0001, 0.00015, 0.5, 1, 2.5, 16):
        for key in ("num_cpus", "num_gpus"):
            ray_says = _validate_resource_quantity(key, value)  # type: ignore[no-untyped-call]
            try:
                request_of({key: value}, settings, "cfgs[0]")
            except ConfigError as exc:
                assert ray_says is not None, (key, value, exc)
                assert f"cfgs[0]['{key}']" in str(exc)
            else:
                assert ray_says is None, (key, value, ray_says)


def test_ray_messages_lose_colour_codes_and_keep_the_memory_figures() -> None:
    coloured = "\x1b[36mray::run_on_ray()\x1b[39m (pid=12, ip=10.0.0.1)\n  boom"
    assert plain(coloured) == "ray::run_on_ray() (pid=12, ip=10.0.0.1)\n  boom"
    report = ("\x1b[31mTask was killed due to the node running low on memory.\x1b[0m\n"
              "Memory on the node (IP: 10.0.0.1, ID: ab12) where the lease (actor ID: NIL_ID,"
              " lease ID: 01, name=run_on_ray, pid=4242, actual memory used=5.10GB, worker "
              "ID=cd34) was running was 7.20GB used / 7.50GB limit (0.96), which exceeds the "
              "memory usage threshold of 0.95. Ray killed this worker")
    message = oom_message("fit", report)
    first = message.splitlines()[0]
    assert "fit" in first and "actual memory used=5.10GB" in first
    assert "7.20GB used / 7.50GB limit (0.96)" in first
    assert "pid=4242" in message and "\x1b" not in message


def test_connecting_is_bounded_and_leaves_signals_to_the_driver() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=r"no answer within 0\.5 s"):
        bounded(lambda: release.wait(60), 0.5, "could not connect to the Ray cluster at x")
    release.set()
    assert time.monotonic() - started < 30


class _Http(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


def test_an_http_server_at_the_address_is_a_one_line_error(tmp_path: Path) -> None:
    """Something listens, but it is no Ray head: the driver used to hang for minutes, deaf
    to Ctrl-C and SIGTERM; now one line names the address and what answered, exit 2."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Http)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    address = f"127.0.0.1:{server.server_address[1]}"
    try:
        wf = write_workflow(tmp_path, f"""
            def pre(cfg): return 1
            def fit(cfg, x): return x
            def post(cfg, m): return {{}}
            basecfg = {{"out_path": {str(tmp_path / "OUT")!r}, "backend": "ray",
                        "address": {address!r}, "verbose": False}}
            cfgs = [{{"x": 1}}]
        """)
        err = finish(start(ray_env(None), wf))
    finally:
        server.shutdown()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert address in lines[0] and "not a Ray head" in lines[0] and "HTTP" in lines[0]
    assert not (tmp_path / "OUT" / "0").exists()


# ----------------------------------------------------------------------------------------------
# A cluster killed during the sweep.

LONG_RUNS = """
import time

def pre(cfg):
    return 1

def fit(cfg, x):
    time.sleep(cfg["sleep"])
    return x

def post(cfg, m):
    return {"m": m}
"""


def test_a_dead_head_ends_the_sweep_cleanly(tmp_path: Path) -> None:
    """``kill -9`` of the GCS mid-sweep: one line saying the cluster is gone, exit 1,
    finished experiments in results.jsonl, runs in flight not recorded as failed."""
    with RayCluster(auth=False) as doomed:
        wf = tmp_path / "wf.py"
        out = tmp_path / "OUT"
        wf.write_text(f"{LONG_RUNS}\nbasecfg = {{'out_path': {str(out)!r}, 'backend': 'ray', "
                      f"'address': {doomed.address!r}, 'verbose': False}}\n"
                      "cfgs = [{'sleep': 0}, {'sleep': 0}, {'sleep': 120}, {'sleep': 120}, "
                      "{'sleep': 120}]\n")
        proc = start(ray_env(doomed), wf)
        try:
            wait_for(lambda: (out / "1" / "post.done").exists() and
                     (out / "2" / "pre.done").exists(), 90, "two runs done, one running")
            for pid in doomed.raylet_pids():
                if psutil.Process(pid).name() == "gcs_server":
                    os.kill(pid, signal.SIGKILL)
            err = finish(proc)
            recorded = list(out.glob("*/*.error"))  # before stopping the rest kills workers
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 2, err  # the environment failed: exit 2, one line
    assert "the Ray cluster at" in err and "is gone" in err and "Traceback" not in err
    assert [r["experiment_id"] for r in read_jsonl(out / "results.jsonl")] == [0, 1]
    assert recorded == []


# A local instance started by address="auto" (before the module's cluster starts: "auto"
# would join that one).

def _tagged_with(root: str) -> list[psutil.Process]:
    """Live processes whose environment names ``root`` (Ray renames its agents' cmdlines)."""
    found = []
    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and \
                    p.environ().get("RAY_TMPDIR") == root:
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_kill_9_of_a_driver_leaves_no_local_ray_behind(tmp_path: Path) -> None:
    require_service(other_cluster())
    root = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths
    out = tmp_path / "OUT"
    wf = tmp_path / "wf.py"
    wf.write_text(f"{LONG_RUNS}\nbasecfg = {{'out_path': {str(out)!r}, 'backend': 'ray', "
                  "'verbose': False}\ncfgs = [{'sleep': 300}]\n")
    env = ray_env(None, RAY_TMPDIR=root, TMPDIR=root, HOME=str(tmp_path))
    proc = start(env, wf)
    try:
        try:
            wait_for(lambda: (out / "0" / "pre.done").exists(), 120, "the run to start")
        except BaseException:
            proc.kill()
            print(proc.communicate(timeout=30)[1])
            raise
        assert len(_tagged_with(root)) > 2  # gcs_server, raylet, agents, the worker
        proc.kill()
        proc.wait(timeout=30)
        wait_for(lambda: not _tagged_with(root), 60, "every Ray process of the driver to end")
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in _tagged_with(root):
            p.kill()
        subprocess.run(["rm", "-rf", root], check=False, timeout=30)


# ----------------------------------------------------------------------------------------------
# On a cluster of its own.

@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    with RayCluster(auth=False) as c:
        yield c


STAGES = """
import os, subprocess, time

def pre(cfg):
    with open("data.txt") as f:  # relative: the driver's folder
        return int(f.read())

def fit(cfg, x):
    with open(os.path.join(SIDE, "fit-%d" % cfg["x"]), "w"):
        pass
    subprocess.run(["setsid", "-f", "sh", "-c", "sleep 300; :", "%s-%d" % (MARKER, cfg["x"])],
                   check=True)
    time.sleep(300 if cfg["x"] == 1 else 3)  # 3: the test sees the daemon alive first
    return x

def post(cfg, m):
    return {"m": m}
"""


def _stage_sweep(folder: Path, address: str, timeout: int, marker: str) -> Path:
    folder.mkdir()
    (folder / "data.txt").write_text("42")
    side = folder / "side"
    side.mkdir()
    wf = folder / "wf.py"
    wf.write_text(f"SIDE = {str(side)!r}\nMARKER = {marker!r}\n{STAGES}\n"
                  f"basecfg = {{'out_path': {str(folder / 'OUT')!r}, 'backend': 'ray', "
                  f"'address': {address!r}, 'timeout': {timeout}, 'verbose': False}}\n"
                  "cfgs = [{'x': 0}, {'x': 1}]\n")
    return wf


def test_stages_run_in_the_driver_folder_and_leave_no_daemon(cluster: RayCluster,
                                                             tmp_path: Path) -> None:
    marker = f"dagrun-ray-daemon-{os.getpid()}-{time.monotonic_ns()}"
    wf = _stage_sweep(tmp_path / "sweep 'q'", cluster.address, 10, marker)
    try:
        proc = start(ray_env(cluster), wf)
        seen: set[str] = set()
        wait_for(lambda: saw_both(seen, marker), 90, "both daemons to start")
        err = finish(proc)
        assert proc.returncode == 1, err  # run 1 timed out
        rows = read_jsonl(wf.parent / "OUT" / "results.jsonl")
        assert [(r["experiment_id"], r["scores"]["mean_m"]) for r in rows] == [(0, 42)]
        wait_for(lambda: not processes_with(marker), 30, "the daemons of both runs to die")
    finally:
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_a_ray_driver_like_ctrl_c(cluster: RayCluster, tmp_path: Path) -> None:
    marker = f"dagrun-ray-term-{os.getpid()}-{time.monotonic_ns()}"
    wf = _stage_sweep(tmp_path / "term", cluster.address, 0, marker)
    try:
        proc = start(ray_env(cluster), wf)
        wait_for(lambda: (wf.parent / "side" / "fit-1").exists(), 90, "fit of run 1")
        proc.send_signal(signal.SIGTERM)
        err = finish(proc)
        assert proc.returncode == 143, err
        assert "terminated" in err and "Traceback" not in err
        assert (wf.parent / "OUT" / "1" / "pre.done").exists()
    finally:
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)
