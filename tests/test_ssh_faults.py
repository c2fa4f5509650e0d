"""The ssh backend under faults: a paused driver, daemonizing stages, killed drivers' leftovers,
awkward host strings, and what the summary says about re-queued runs.

Tests that need a server start the repository's sshd fixture on 127.0.0.1 (skipped without
sshd, unless DAGRUN_REQUIRE_SERVICES=1). "Remote" processes then run on this machine, so the
test can look for them directly.
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

import pytest

from dagrun.backends import validate_basecfg
from dagrun.backends.ssh.command import HostSpec, SshCommand
from dagrun.backends.ssh.hosts import (
    CONTROL_PREFIX,
    OWNER_FILE,
    Host,
    HostState,
    make_control_dir,
    requeue_note,
)
from dagrun.errors import ConfigError
from tests.helpers import child_env, processes_with, read_jsonl, saw_both, wait_for
from tests.services import require_service
from tests.services.sshd import SshServer, sshd_unavailable_reason

pytestmark = pytest.mark.timeout(180)


def _noop(*args: object) -> None:
    return None


# --------------------------------------------------------------------------------------------
# Without a server.

@pytest.mark.parametrize("text,name,slots", [
    ("node", "node", 1), ("node:4", "node", 4), ("[::1]", "::1", 1), ("[::1]:2", "::1", 2),
    ("me@[fe80::1]:3", "me@fe80::1", 3), ("me@node:1024", "me@node", 1024)])
def test_good_host_strings(text: str, name: str, slots: int) -> None:
    assert HostSpec.parse(text) == HostSpec(name, slots)


@pytest.mark.parametrize("text", [
    "node:99999999999999999999", "node:1025", "node:0", "node:1:2", "::1", "node:",
    "[::1]x", "[node]:2", "-oProxyCommand=x", "[::1]:2:3", "@node"])
def test_bad_host_strings_are_refused_before_anything_is_written(tmp_path: Path,
                                                                 text: str) -> None:
    with pytest.raises(ConfigError, match="basecfg\\['hosts'\\]"):
        HostSpec.parse(text)
    with pytest.raises(ConfigError):
        validate_basecfg({"out_path": str(tmp_path / "OUT"), "pre": _noop, "fit": _noop,
                          "post": _noop, "backend": "ssh", "hosts": [text]})
    assert not (tmp_path / "OUT").exists()


def _host(name: str, state: HostState, requeued: int, moved: int, rerun: int) -> Host:
    ssh = SshCommand("ssh")
    host = Host(HostSpec(name), "/nonexistent", ssh, state=state)
    host.requeued, host.moved, host.rerun = requeued, moved, rerun
    return host


def test_summary_says_where_requeued_runs_really_went() -> None:
    alone = _host("a", HostState.DOWN, 2, 0, 0)
    assert "re-queued to other hosts" not in requeue_note(alone, others_up=False)
    assert "2 did not run again: no other host was up" in requeue_note(alone, False)
    back = _host("b", HostState.UP, 3, 1, 2)
    note = requeue_note(back, others_up=True)
    assert "1 ran on other hosts" in note and "2 ran on it again" in note
    assert requeue_note(_host("c", HostState.UP, 0, 0, 0), True) == ""


def test_stale_control_folders_of_killed_drivers_are_removed() -> None:
    """A driver killed with SIGKILL leaves /tmp/dagrun-ssh-*; the next start removes it,
    and leaves alone the folder of a driver that still runs."""
    base = tempfile.mkdtemp(prefix="ctl-")
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=30)
    stale = Path(base, f"{CONTROL_PREFIX}stale")
    stale.mkdir()
    (stale / OWNER_FILE).write_text(f"{dead.pid} 12345\n")
    (stale / "h0.log").write_text("old master log")
    mine = make_control_dir(base)  # this process: a live driver
    try:
        fresh = make_control_dir(base)
        assert not stale.exists()
        assert Path(mine).is_dir() and Path(fresh).is_dir()
    finally:
        subprocess.run(["rm", "-rf", base], check=False, timeout=30)


# --------------------------------------------------------------------------------------------
# With an sshd on 127.0.0.1.

@pytest.fixture(scope="module")
def server() -> Iterator[SshServer]:
    require_service(sshd_unavailable_reason())
    with SshServer() as srv:
        yield srv


DAEMON_WORKFLOW = """
import subprocess, time

def pre(cfg):
    return 1

def fit(cfg, x):
    subprocess.run(["setsid", "-f", "sh", "-c", "sleep 300; :", "%s-%d" % (MARKER, cfg["x"])],
                   check=True)
    time.sleep(300 if cfg["x"] == 1 else 3)  # 3: the test sees the daemon alive first
    return x

def post(cfg, model):
    return {"ok": 1}

basecfg = {"out_path": OUT, "ssh_config": CONFIG, "verbose": False, "timeout": 8}
cfgs = [{"x": 0}, {"x": 1}]
"""


def test_double_forked_daemons_die_after_success_and_timeout(server: SshServer,
                                                              tmp_path: Path) -> None:
    marker = f"dagrun-daemon-{os.getpid()}-{time.monotonic_ns()}"
    workflow = tmp_path / "wf.py"
    workflow.write_text(f"MARKER = {marker!r}\nOUT = {str(tmp_path / 'out')!r}\n"
                        f"CONFIG = {str(server.config_path)!r}\n{DAEMON_WORKFLOW}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagrun", "execute", str(workflow), "--backend", "ssh",
         "--hosts", f"{server.host_alias}:2"], env=child_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        seen: set[str] = set()
        wait_for(lambda: saw_both(seen, marker), 60, "both daemons to start")
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err  # run 1 timed out
        assert [r["experiment_id"] for r in read_jsonl(tmp_path / "out" / "results.jsonl")] \
            == [0]
        wait_for(lambda: not processes_with(marker), 20, "the daemons of both runs to die")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


PAUSE_DRIVER = """
import sys
from dagrun.backends.ssh.driver import SshBackend
from dagrun.cli import main
SshBackend.heartbeat_timeout = 2.0
sys.exit(main(sys.argv[1:]))
"""

PAUSE_WORKFLOW = """
import os, time

def pre(cfg):
    return 1

def fit(cfg, x):
    with open(os.path.join(SIDE, "fit-%d-%d" % (cfg["x"], time.time_ns())), "w"):
        pass
    time.sleep(6)
    return x

def post(cfg, model):
    return {"ok": 1}

basecfg = {"out_path": OUT, "ssh_config": CONFIG, "verbose": True}
cfgs = [{"x": 0}, {"x": 1}]
"""


def test_a_paused_driver_requeues_its_runs_instead_of_blaming_them(server: SshServer,
                                                                   tmp_path: Path) -> None:
    """SIGSTOP of the driver for longer than the heartbeat limit (Ctrl-Z, a sleeping laptop):
    the hosts stop the runs, and the driver, once back, runs them again: exit 0, no record
    of a crash, and the summary says what happened."""
    side = tmp_path / "side"
    side.mkdir()
    workflow = tmp_path / "wf.py"
    workflow.write_text(f"SIDE = {str(side)!r}\nOUT = {str(tmp_path / 'out')!r}\n"
                        f"CONFIG = {str(server.config_path)!r}\n{PAUSE_WORKFLOW}")
    driver = subprocess.Popen(
        [sys.executable, "-c", PAUSE_DRIVER, "execute", str(workflow), "--backend", "ssh",
         "--hosts", f"{server.host_alias}:2"], env=child_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(list(side.glob("fit-*"))) == 2, 60, "both fits to start")
        driver.send_signal(signal.SIGSTOP)
        time.sleep(5)  # > heartbeat_timeout (2 s) + the watchdog's reaction
        driver.send_signal(signal.SIGCONT)
        _out, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.send_signal(signal.SIGCONT)
            driver.kill()
            driver.wait(timeout=30)
    assert driver.returncode == 0, err
    out = tmp_path / "out"
    assert [r["experiment_id"] for r in read_jsonl(out / "results.jsonl")] == [0, 1]
    assert not list(out.glob("*/*.error"))
    assert len(list(side.glob("fit-*"))) == 4  # each fit stopped once, then run again
    assert "stopped by the hosts' watchdog" in err and "re-queued" in err
    for exp_id in (0, 1):
        assert json.loads((out / str(exp_id) / "fit.done").read_text())["attempt"] == 1
