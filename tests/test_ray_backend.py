"""The ``ray`` backend against real local Ray clusters (``ray start --head`` on loopback).

One cluster with token auth carries most tests; one without auth runs the contract sweep with
repetitions; a third test lets ``address="auto"`` start (and stop) a local instance. Drivers
are real ``dagrun`` processes with the cluster's client environment, so this test process
never calls ``ray.init``. Skips when ray is missing, unless DAGRUN_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from dagrun.backends.ray.driver import import_ray
from dagrun.backends.ray.task import run_on_ray
from dagrun.errors import BackendUnavailableError
from dagrun.run.stages import RunTask
from tests.helpers import Sweep, child_env, dagrun_command, make_sweep, wait_for, write_workflow
from tests.services import require_service
from tests.services.ray_cluster import BASE_ENV, RayCluster, free_port, other_cluster, ray_available

require_service(ray_available(), module_level=True)

RUN_TIMEOUT = 120.0


def dagrun_env(cluster: RayCluster | None, **extra: str) -> dict[str, str]:
    env: dict[str, str] = child_env()
    for key in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    if cluster is not None:
        env.update(cluster.client_env())
    env.update(extra)
    return env


def run(env: dict[str, str], *args: str | os.PathLike[str], cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    """``dagrun ARGS`` in a fresh interpreter with ``env`` (bounded)."""
    return subprocess.run(dagrun_command(*args), env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL,
                          check=False)


def error_of(run_dir: Path, stage: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / f"{stage}.error").read_text())
    return data


# ----------------------------------------------------------------------------------------------
# Without a cluster.

def test_out_path_not_visible_on_node_fails_and_writes_nothing(tmp_path: Path) -> None:
    """The task function itself (no Ray needed): a node without OUT/.dagrun writes nothing."""
    run_path = tmp_path / "OUT" / "0"
    task = RunTask(0, 0, str(run_path))
    outcome, recorded = run_on_ray([None], task, str(tmp_path / "OUT" / ".dagrun" /
                                                      "workflow.pkl"))
    assert outcome.failure is not None and not recorded
    assert outcome.failure.kind == "engine"
    assert "is not visible on Ray node" in outcome.failure.message
    assert "shared" in outcome.failure.message
    assert not (tmp_path / "OUT").exists()


def test_without_ray_installed_the_error_names_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'dagrun\[ray\]'"):
        import_ray()


def test_unreachable_explicit_address_is_a_one_line_error(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    wf = write_workflow(tmp_path, f"""
        def pre(cfg): return 1
        def fit(cfg, x): return x
        def post(cfg, m): return {{}}
        basecfg = {{"out_path": {str(tmp_path / "OUT")!r}, "backend": "ray",
                    "address": {address!r}, "verbose": False}}
        cfgs = [{{"x": 1}}]
    """)
    started = time.monotonic()
    proc = run(dagrun_env(None), "execute", wf, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"no Ray cluster reachable at {address}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < RUN_TIMEOUT  # bounded, not Ray's minutes of retries


def test_auto_without_cluster_starts_and_stops_a_local_instance(tmp_path: Path) -> None:
    require_service(other_cluster())
    root = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths
    home = tmp_path / "home"
    home.mkdir()
    sweep = make_sweep(tmp_path)
    sweep.write([{"x": 1}, {"x": 2}], verbose=False)
    env = dagrun_env(None, RAY_TMPDIR=root, HOME=str(home), TMPDIR=root, **BASE_ENV)
    try:
        proc = run(env, "execute", sweep.workflow, "--backend", "ray", cwd=sweep.folder)
        assert proc.returncode == 0, proc.stderr
        assert "starting a local Ray instance" in proc.stderr
        assert [r["scores"]["mean_acc"] for r in sweep.results()] == [10.5, 20.5]
        deadline = time.monotonic() + 30
        while _processes_naming(root) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_naming(root) == []
    finally:
        for proc_ in _processes_naming(root):
            proc_.kill()
        subprocess.run(["rm", "-rf", root], check=False, timeout=30)


def _processes_naming(text: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(
                    text in a for a in p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            continue
    return found


# ----------------------------------------------------------------------------------------------
# A cluster without auth: the contract's results with repetitions.

@pytest.fixture(scope="class")
def plain_cluster() -> Iterator[RayCluster]:
    """Stopped after ``TestNoAuth``, before the auth cluster starts (2 cores are few)."""
    with RayCluster(auth=False) as c:
        yield c


class TestNoAuth:
    def test_sweep_with_repetitions(self, plain_cluster: RayCluster, tmp_path: Path) -> None:
        cluster = plain_cluster
        sweep = make_sweep(tmp_path, "rep sweep 'q' $(x)")
        cfgs = [{"x": 3}, {"x": 1}]
        sweep.write(cfgs, repetitions=3, verbose=False)
        proc = run(dagrun_env(cluster), "execute", sweep.workflow, "--backend", "ray",
                   cwd=sweep.folder)
        assert proc.returncode == 0, proc.stderr
        rows = sweep.results()
        assert [r["experiment_id"] for r in rows] == [0, 1]
        for row, cfg in zip(rows, cfgs, strict=True):
            scores = row["scores"]
            accs = [cfg["x"] * 10 + rep + 0.5 for rep in range(3)]
            assert scores["acc"] == accs
            assert scores["rep_seen"] == [0, 1, 2]
            assert scores["mean_acc"] == pytest.approx(sum(accs) / 3)
            assert len(scores["fit_time"]) == 3 and "std_fit_time" in scores
            assert row["out_path"] == str(sweep.out / str(row["experiment_id"]))
        for exp_id in range(2):
            for rep in range(3):
                run_dir = sweep.out / str(exp_id) / str(rep)
                assert {"pre.done", "fit.done", "post.done", "config.json"} <= {
                    p.name for p in run_dir.iterdir()}
                assert sweep.count("pre", exp_id, rep) == 1
                assert "pre says hello" in (run_dir / "pre.log").read_text()
        # Executing again on ray recomputes nothing.
        again = run(dagrun_env(cluster), "execute", sweep.workflow, "--backend", "ray",
                    cwd=sweep.folder)
        assert again.returncode == 0, again.stderr
        assert all(sweep.count("fit", e, r) == 1 for e in range(2) for r in range(3))


# ----------------------------------------------------------------------------------------------
# A cluster with token auth: resources, timeout, crash, unschedulable, resume.

@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    with RayCluster(auth=True) as c:
        yield c


FAULTY = '''
import os
import time

import ray


def pre(cfg):
    return cfg["x"]


def fit(cfg, x):
    if cfg.get("mode") == "hang":
        print("hanging now", flush=True)
        time.sleep(300)
    if cfg.get("mode") == "exit":
        os._exit(3)
    return {{"x": x, "res": ray.get_runtime_context().get_assigned_resources()}}


def post(cfg, m):
    return {{"x": m["x"], **{{"res_" + k: v for k, v in m["res"].items()}}}}


basecfg = {{"out_path": {out!r}, "backend": "ray", "address": {address!r}, "timeout": 6,
           "max_memory": 300_000_000, "redis_password": "old", "verbose": False}}
cfgs = [{{"x": 0}}, {{"x": 1, "num_cpus": 2, "max_memory": 200_000_000}},
        {{"x": 2, "mode": "hang"}}, {{"x": 3, "mode": "exit"}}, {{"x": 4, "num_gpus": 1}}]
'''


@pytest.fixture(scope="module")
def faulty(cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One sweep on the auth cluster (explicit address) with every kind of run."""
    folder = tmp_path_factory.mktemp("faulty 'q' $(x)")
    out = folder / "OUT"
    wf = folder / "faulty.py"
    wf.write_text(FAULTY.format(out=str(out), address=cluster.address))
    env = dagrun_env(cluster)
    env.pop("RAY_ADDRESS")  # the address comes from basecfg
    return run(env, "execute", wf, cwd=folder), out


def test_resources_reach_ray(faulty: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, out = faulty
    assert proc.returncode == 1, proc.stderr  # the faulty runs fail, the sweep goes on
    post0 = json.loads((out / "0" / "post.json").read_text())
    assert post0["res_CPU"] == 1.0 and post0["res_memory"] == 300_000_000
    post1 = json.loads((out / "1" / "post.json").read_text())  # the cfg's own overrides
    assert post1["res_CPU"] == 2.0 and post1["res_memory"] == 200_000_000
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["experiment_id"] for r in rows] == [0, 1]
    assert "redis_password'] is ignored" in proc.stderr  # Ray 2.60 has no such parameter


SEARCH = '''
import ray
import dagrun


def pre(cfg):
    return cfg["x"]


def fit(cfg, x):
    return {{"x": x, "res": ray.get_runtime_context().get_assigned_resources()}}


def post(cfg, m):
    return {{"loss": (m["x"] - 0.3) ** 2, "cpus": m["res"].get("CPU")}}


space = {{"x": dagrun.Float(0.0, 1.0), "num_cpus": dagrun.Categorical([1, 2])}}
basecfg = {{"out_path": {out!r}, "backend": "ray", "verbose": False,
           "search": {{"metric": "loss", "n_trials": 6, "seed": 1, "sampler": "random"}}}}
'''


def test_search_on_ray_asks_as_slots_free(cluster: RayCluster, tmp_path: Path) -> None:
    """A search on Ray: trials asked while others run reach the Ray workers (which loaded
    the workflow before they were planned), each with its own resource request."""
    out = tmp_path / "OUT"
    wf = tmp_path / "search.py"
    wf.write_text(SEARCH.format(out=str(out)))
    proc = run(dagrun_env(cluster), "execute", wf, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert row["scores"]["mean_cpus"] == row["num_cpus"], row
        assert row["scores"]["mean_loss"] == pytest.approx((row["x"] - 0.3) ** 2)
    assert len({r["num_cpus"] for r in rows}) == 2  # both requests were asked and met


def test_hung_run_is_stopped_by_timeout(
        faulty: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _proc, out = faulty
    err = error_of(out / "2", "fit")
    assert err["kind"] == "timeout"
    assert "timeout of 6 s" in err["message"] and "hanging now" in err["message"]
    assert (out / "2" / "pre.done").exists() and not (out / "2" / "fit.done").exists()


def test_os_exit_is_recorded_as_crashed(
        faulty: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _proc, out = faulty
    err = error_of(out / "3", "fit")
    assert err["kind"] == "crashed"
    assert "Ray worker process running fit died" in err["message"]


def test_unschedulable_run_is_reported(
        faulty: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _proc, out = faulty
    err = error_of(out / "4", "pre")
    assert err["kind"] == "unschedulable"
    assert "GPU 1" in err["message"] and "GPU 0" in err["message"]
    assert not (out / "4" / "pre.done").exists()


def test_status_lists_the_ray_failures(
        faulty: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _proc, out = faulty
    status = run(dagrun_env(None), "status", out)
    assert status.returncode == 0, status.stderr
    for kind in ("timeout", "crashed", "unschedulable"):
        assert kind in status.stdout + status.stderr


def _backend(sweep: Sweep, env: dict[str, str], backend: str
             ) -> subprocess.CompletedProcess[str]:
    flags = ["--backend", backend] + (["-j", "2"] if backend == "multiprocessing" else [])
    return run(env, "execute", sweep.workflow, *flags, cwd=sweep.folder)


@pytest.mark.parametrize("first,second", [("multiprocessing", "ray"),
                                          ("ray", "multiprocessing")])
def test_resume_across_backends(cluster: RayCluster, tmp_path: Path, first: str,
                                second: str) -> None:
    """A run whose fit fails once on the first backend is finished by the second, which
    reuses the first one's pre output (the disk decides, nothing backend-specific on it)."""
    sweep = make_sweep(tmp_path, "resume 'q' $(x)")
    sweep.write([{"x": 1}, {"x": 2}, {"x": 3}], fail_once=[1], verbose=False)
    env = dagrun_env(cluster)
    one = _backend(sweep, env, first)
    assert one.returncode == 1, one.stderr
    assert error_of(sweep.out / "1", "fit")["kind"] == "exception"
    pre_marker = (sweep.out / "1" / "pre.done").read_bytes()
    two = _backend(sweep, env, second)
    assert two.returncode == 0, two.stderr
    assert [r["scores"]["mean_acc"] for r in sweep.results()] == [10.5, 20.5, 30.5]
    assert (sweep.out / "1" / "pre.done").read_bytes() == pre_marker
    assert [sweep.count(s, 1) for s in ("pre", "fit", "post")] == [1, 2, 1]
    assert all(sweep.count("fit", e) == 1 for e in (0, 2))
    assert not (sweep.out / "1" / "fit.error").exists()


def test_ctrl_c_cancels_tasks_keeps_stages_then_multiprocessing_finishes(
        cluster: RayCluster, tmp_path: Path) -> None:
    """SIGINT during fit: exit 130, the Ray workers running fit are killed, pre.done stays;
    the sweep is then finished on multiprocessing without recomputing pre."""
    release = tmp_path / "release"
    sweep = make_sweep(tmp_path, "ctrl c 'q'")
    sweep.write([{"x": 1}, {"x": 2}], wait_for=release, verbose=False)
    proc = subprocess.Popen(dagrun_command("execute", sweep.workflow, "--backend", "ray"),
                            env=dagrun_env(cluster), cwd=sweep.folder,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: all(sweep.count("fit", e) == 1 for e in (0, 1)), 60, "both fits")
        fit_pids = [int((sweep.counts / f"fit-{e}-0").read_text()) for e in (0, 1)]
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 130, err
    _gone, alive = psutil.wait_procs([psutil.Process(p) for p in fit_pids if
                                     psutil.pid_exists(p)], timeout=20)
    assert alive == []
    assert all((sweep.out / str(e) / "pre.done").exists() for e in (0, 1))
    assert not any((sweep.out / str(e) / "fit.done").exists() for e in (0, 1))
    release.touch()
    done = _backend(sweep, dagrun_env(None), "multiprocessing")
    assert done.returncode == 0, done.stderr
    assert [sweep.count(s, e) for e in (0, 1) for s in ("pre", "fit")] == [1, 2, 1, 2]
    assert [r["scores"]["mean_acc"] for r in sweep.results()] == [10.5, 20.5]


def test_token_auth_cluster_refuses_a_driver_without_token(cluster: RayCluster,
                                                           tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    sweep.write([{"x": 1}], verbose=False)
    env = dagrun_env(cluster)
    env.pop("RAY_AUTH_TOKEN")
    proc = run(env, "execute", sweep.workflow, "--backend", "ray", cwd=sweep.folder)
    assert proc.returncode == 2
    assert "RAY_AUTH_TOKEN" in proc.stderr and "Traceback" not in proc.stderr
    assert not (sweep.out / "0").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
