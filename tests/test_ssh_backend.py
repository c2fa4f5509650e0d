"""The ``ssh`` backend against real OpenSSH servers (tests/services): contract results, a
timeout that kills the remote process tree, a failing run, an out path that breaks shells,
a host that cannot see OUT, and a host dropped mid-sweep.

Skipped with the reason where sshd / network namespaces are unavailable, unless
DAGRUN_REQUIRE_SERVICES=1 (CI), where that is a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import dagrun
from dagrun.backends.ssh.driver import SshBackend
from dagrun.backends.ssh.protocol import OUTCOME, Request, outcome_from_json
from dagrun.run.stages import RunTask
from tests.helpers import markers, read_jsonl
from tests.services import require_service as require
from tests.services.netns import NetnsHosts, netns_unavailable_reason
from tests.services.sshd import SshServer, sshd_unavailable_reason

pytestmark = pytest.mark.timeout(150)

AWKWARD = "o u't \"dq\" $(touch pwned) `touch pwned2` ;&|"


def alive(pid: int) -> bool:
    """True if ``pid`` runs (zombies don't count: this init never reaps them)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Stage functions (pickled by reference: the remote side imports this module through the
# driver's sys.path, which the ssh backend passes on like a spawned worker inherits it).

def pre(cfg: dict[str, Any]) -> dict[str, Any]:
    side = Path(cfg["side"])
    (side / f"pre-{cfg['experiment_id']}").write_text(
        json.dumps({"pid": os.getpid(), "ssh": os.environ.get("SSH_CONNECTION", "")}))
    return {"x": cfg["x"]}


def fit(cfg: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    side = Path(cfg["side"])
    if cfg.get("hang"):
        child = subprocess.Popen(["sleep", "300"], start_new_session=True)  # escapes the group
        (side / "hang.json").write_text(json.dumps({"pid": os.getpid(), "child": child.pid}))
        while True:
            time.sleep(0.05)
    if cfg.get("fail"):
        raise ValueError(f"bad x {cfg['x']}")
    server = os.environ.get("SSH_CONNECTION", "").split()[2:3]
    time.sleep(60 if server == [cfg.get("slow_on")] else cfg.get("sleep", 0))
    return {"w": data["x"] * 10}


def post(cfg: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    return {"acc": model["w"] + 0.5}


def base(out: Path, **kw: Any) -> dict[str, Any]:
    return {"out_path": str(out), "backend": "ssh", "pre": pre, "fit": fit, "post": post,
            "verbose": False, **kw}


# --------------------------------------------------------------------------------------------
# One sshd on 127.0.0.1 with 2 slots.

@pytest.fixture(scope="module")
def server() -> Iterator[SshServer]:
    require(sshd_unavailable_reason())
    with SshServer() as srv:
        yield srv


def test_sweep_over_ssh(server: SshServer, tmp_path: Path) -> None:
    root = tmp_path / AWKWARD
    side = root / "side"
    side.mkdir(parents=True)
    out = root / "OUT dir"
    cfgs: list[dict[str, Any]] = [
        {"x": 0, "hang": True, "side": str(side)},
        {"x": 1, "side": str(side)},
        {"x": 2, "fail": True, "side": str(side)},
        {"x": 3, "side": str(side)},
    ]
    summary = dagrun.run_experiments(
        base(out, hosts=[server.host_alias + ":2"], ssh_config=str(server.config_path),
             timeout=10), cfgs)

    print(f"\n{summary}")
    assert (summary.done, summary.failed, summary.skipped) == (2, 2, 0), str(summary)
    rows = read_jsonl(out / "results.jsonl")
    assert [r["experiment_id"] for r in rows] == [1, 3]
    for row in rows:
        assert row["out_path"] == str(out / str(row["experiment_id"]))
        assert row["scores"]["mean_acc"] == row["x"] * 10 + 0.5
        assert isinstance(row["scores"]["mean_fit_time"], float)
    done = markers(out)
    for exp_id in (1, 3):
        assert {(s, exp_id, 0) for s in ("pre", "fit", "post")} <= done
        marker = json.loads((out / str(exp_id) / "fit.done").read_text())
        assert marker["pid"] != os.getpid() and marker["attempt"] == 1
    assert ("fit", 0, 0) not in done and ("fit", 2, 0) not in done

    failed = json.loads((out / "2" / "fit.error").read_text())
    assert failed["kind"] == "exception" and "bad x 2" in failed["message"]
    timed_out = json.loads((out / "0" / "fit.error").read_text())
    assert timed_out["kind"] == "timeout", timed_out
    assert "timeout of 10 s" in timed_out["message"]
    assert timed_out["host"] == server.host_alias

    # the remote run and the child it started outside its process group are gone
    hang = json.loads((side / "hang.json").read_text())
    wait_for(lambda: not alive(hang["pid"]) and not alive(hang["child"]), 15,
             "the timed-out remote processes to die")
    # it really ran remotely (through sshd), and the awkward path stayed data
    assert json.loads((side / "pre-1").read_text())["ssh"]
    for where in (root, tmp_path, Path.home(), Path.cwd()):
        assert not (where / "pwned").exists() and not (where / "pwned2").exists()


def test_search_over_ssh(server: SshServer, tmp_path: Path) -> None:
    """A search on two ssh slots: the trials asked while others run are planned into
    workflow.pkl before their runs go out (a host loads it for every run)."""
    side = tmp_path / "side"
    side.mkdir()
    out = tmp_path / "out"
    basecfg = base(out, hosts=[server.host_alias + ":2"], ssh_config=str(server.config_path),
                   search={"metric": "acc", "direction": "maximize", "n_trials": 6,
                           "seed": 0, "sampler": "random"})
    summary = dagrun.run_experiments(
        basecfg, space={"x": dagrun.Float(0.0, 1.0), "sleep": 0.0, "side": str(side)})
    assert summary.failed == 0, str(summary)
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 6
    for row in rows:
        assert row["scores"]["mean_acc"] == pytest.approx(row["x"] * 10 + 0.5)
        marker = json.loads((out / str(row["experiment_id"]) / "fit.done").read_text())
        assert marker["pid"] != os.getpid()
    assert len(list(side.glob("pre-*"))) == 6
    assert all(json.loads(p.read_text())["ssh"] for p in side.glob("pre-*"))


CTRL_C_WORKFLOW = """
import os, subprocess, time

def pre(cfg):
    return 1

def fit(cfg, x):
    child = subprocess.Popen(["sleep", "300"], start_new_session=True)
    with open(os.path.join(SIDE, "pids-%d" % cfg["experiment_id"]), "w") as f:
        f.write("%d %d" % (os.getpid(), child.pid))
    while True:
        time.sleep(0.1)

def post(cfg, model):
    return {}

basecfg = {"out_path": OUT, "ssh_config": CONFIG, "verbose": False}
cfgs = [{"x": 0}, {"x": 1}]
"""


def test_ctrl_c_kills_the_remote_runs(server: SshServer, tmp_path: Path) -> None:
    side = tmp_path / "side"
    side.mkdir()
    workflow = tmp_path / "wf.py"
    workflow.write_text(f"SIDE = {str(side)!r}\nOUT = {str(tmp_path / 'out')!r}\n"
                        f"CONFIG = {str(server.config_path)!r}\n{CTRL_C_WORKFLOW}")
    driver = subprocess.Popen(
        [sys.executable, "-m", "dagrun", "execute", str(workflow), "--backend", "ssh",
         "--hosts", f"{server.host_alias}:2"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(list(side.glob("pids-*"))) == 2, 60, "both runs to start")
        pids = [int(p) for f in side.glob("pids-*") for p in f.read_text().split()]
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 130, err
    wait_for(lambda: not any(alive(p) for p in pids), 15, "the remote runs to die")


def test_remote_refuses_an_out_it_cannot_see(tmp_path: Path) -> None:
    """A host without OUT at that path fails the run (engine), writing nothing there."""
    out = tmp_path / "not here"
    run = out / "0"
    request = Request(RunTask(0, 0, str(run)), str(out), heartbeat_timeout=5)
    proc = subprocess.run([sys.executable, "-m", "dagrun.backends.ssh.remote", request.to_json()],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    line = next(x for x in proc.stdout.splitlines() if x.startswith(OUTCOME))
    outcome, recorded = outcome_from_json(line[len(OUTCOME):])
    assert outcome.failure is not None and not recorded
    assert outcome.failure.kind == "engine"
    assert "is not visible on host" in outcome.failure.message
    assert "shared filesystem" in outcome.failure.message
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# Two hosts in network namespaces; one is dropped mid-sweep.

@pytest.fixture
def pool() -> Iterator[NetnsHosts]:
    require(netns_unavailable_reason())
    with NetnsHosts(2) as hosts:
        yield hosts


def test_dropped_host_runs_move_to_the_other(pool: NetnsHosts, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("alive_interval", 1), ("alive_count", 2), ("connect_timeout", 2),
                        ("heartbeat_timeout", 3.0)):
        monkeypatch.setattr(SshBackend, name, value)
    up, down = pool.aliases
    down_addr = pool.hosts[down].addr
    side = tmp_path / "side"
    side.mkdir()
    out = tmp_path / "out"
    # runs on the host to drop would take a minute: it must be killed there, and redone
    cfgs = [{"x": i, "sleep": 1.0, "slow_on": down_addr, "side": str(side)} for i in range(8)]

    dropped: list[dict[str, Any]] = []
    stop = threading.Event()

    def drop_when_busy() -> None:
        """Take ``down`` off the network as soon as a run has started there."""
        while not stop.is_set():
            for f in side.glob("pre-*"):
                try:
                    info = json.loads(f.read_text())
                except (OSError, ValueError):
                    continue
                if info["ssh"].split()[2:3] == [down_addr]:
                    dropped.append(info)
                    pool.take_down(down)
                    return
            time.sleep(0.05)

    watcher = threading.Thread(target=drop_when_busy, daemon=True)
    watcher.start()
    try:
        summary = dagrun.run_experiments(
            base(out, hosts=[f"{up}:2", f"{down}:2"], ssh_config=str(pool.config_path)), cfgs)
    finally:
        stop.set()
        watcher.join(timeout=10)

    print(f"\n{summary}")
    assert dropped, "no run ever started on the host to drop"
    assert (summary.done, summary.failed) == (8, 0), str(summary)
    assert [r["experiment_id"] for r in read_jsonl(out / "results.jsonl")] == list(range(8))
    notes = "\n".join(summary.notes)
    assert f"ssh: host {down} " in notes and up not in notes, notes
    assert "re-queued" in notes and notes in str(summary)
    # the run that was on the dropped host was killed there (heartbeat stopped)
    wait_for(lambda: not alive(dropped[0]["pid"]), 15, "the remote run on the dropped host")
