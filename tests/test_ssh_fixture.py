"""Tests of the SSH test services used by dagrun's future ``ssh`` backend.

Skipped with a reason when sshd / ip / network namespaces are unavailable,
unless DAGRUN_REQUIRE_SERVICES=1, in which case those tests fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.services import require_service as require
from tests.services.netns import NetnsHosts, netns_unavailable_reason
from tests.services.sshd import (
    SshServer,
    find_program,
    generate_key,
    short_tempdir,
    sshd_unavailable_reason,
)

SSH = find_program("ssh") or "ssh"


def alive(pid: int) -> bool:
    """True if ``pid`` runs (zombies don't count: an init that never reaps keeps them)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def ssh(
    config: Path, alias: str, command: str, *opts: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``ssh -F config [opts] alias command`` and capture its output."""
    return subprocess.run(
        [SSH, "-F", str(config), *opts, alias, command],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


@pytest.fixture
def server() -> Iterator[SshServer]:
    require(sshd_unavailable_reason())
    with SshServer() as srv:
        yield srv


@pytest.fixture
def control_dir() -> Iterator[Path]:
    """Short dir for ControlPath sockets (sun_path is limited to ~104 bytes)."""
    d = short_tempdir("dgcm-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def netns_pool() -> Iterator[NetnsHosts]:
    require(netns_unavailable_reason())
    with NetnsHosts(2) as pool:
        yield pool


def test_echo_and_multiplexing(server: SshServer, control_dir: Path) -> None:
    mux = [
        "-o",
        "ControlMaster=auto",
        "-o",
        f"ControlPath={control_dir}/%C",
        "-o",
        "ControlPersist=60",
    ]
    try:
        t0 = time.perf_counter()
        first = ssh(server.config_path, server.host_alias, "echo ok", *mux)
        t1 = time.perf_counter()
        second = ssh(server.config_path, server.host_alias, "echo ok", *mux)
        t2 = time.perf_counter()
        assert first.returncode == 0, first.stderr + server.log_text()
        assert first.stdout == second.stdout == "ok\n"
        check = ssh(server.config_path, server.host_alias, "", "-O", "check", *mux)
        assert check.returncode == 0, check.stderr
        print(
            f"\nfirst connection {1000 * (t1 - t0):.1f} ms, "
            f"multiplexed command {1000 * (t2 - t1):.1f} ms"
        )
    finally:
        ssh(server.config_path, server.host_alias, "", "-O", "exit", *mux)


def test_client_reads_only_the_given_config(server: SshServer) -> None:
    """With -F, neither ~/.ssh/config nor /etc/ssh/ssh_config is read."""
    res = ssh(server.config_path, server.host_alias, "true", "-vvv")
    assert res.returncode == 0, res.stderr
    read = re.findall(r"Reading configuration data (\S+)", res.stderr)
    assert read == [str(server.config_path)]


def test_remote_python_runs(server: SshServer) -> None:
    res = ssh(server.config_path, server.host_alias, f"{sys.executable} -c 'print(1)'")
    assert (res.returncode, res.stdout) == (0, "1\n"), res.stderr


def test_host_key_checking_is_on(server: SshServer, tmp_path: Path) -> None:
    other_pub = generate_key(tmp_path / "other_host_key", "not-the-server")
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{server.host_alias} {other_pub}\n")
    for kh in (wrong, Path(os.devnull)):  # wrong key, then unknown host
        res = ssh(server.config_path, server.host_alias, "true", "-o", f"UserKnownHostsFile={kh}")
        assert res.returncode == 255
        assert "Host key verification failed" in res.stderr


def test_stop_leaves_no_process_behind() -> None:
    require(sshd_unavailable_reason())
    srv = SshServer().start()
    client = subprocess.Popen(
        [SSH, "-F", str(srv.config_path), srv.host_alias, "echo $$; exec sleep 1000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert client.stdout is not None
        remote_pid = int(client.stdout.readline())
        assert srv.pid is not None
        tree = [srv.pid, *(p.pid for p in psutil.Process(srv.pid).children(recursive=True))]
        assert remote_pid in tree
        srv.stop()
        assert not [pid for pid in tree if alive(pid)]
        assert client.wait(timeout=10) == 255
        assert not srv.workdir.exists()
    finally:
        client.kill()
        srv.stop()


def test_netns_hosts_answer_and_share_the_filesystem(netns_pool: NetnsHosts) -> None:
    for alias in netns_pool.aliases:
        res = ssh(netns_pool.config_path, alias, f"{sys.executable} -c 'print(1)'")
        assert (res.returncode, res.stdout) == (0, "1\n"), res.stderr


def test_netns_take_down_is_detected(netns_pool: NetnsHosts) -> None:
    up, down = netns_pool.aliases
    keepalive = [
        "-o",
        "ServerAliveInterval=1",
        "-o",
        "ServerAliveCountMax=2",
        "-o",
        "ConnectTimeout=2",
    ]
    running = subprocess.Popen(
        [SSH, "-F", str(netns_pool.config_path), *keepalive, down, "echo started; sleep 1000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert running.stdout is not None
    assert running.stdout.readline() == "started\n"

    t0 = time.monotonic()
    netns_pool.take_down(down)
    try:
        assert running.wait(timeout=15) == 255
        t_running = time.monotonic() - t0
        t1 = time.monotonic()
        new = ssh(netns_pool.config_path, down, "true", *keepalive)
        t_new = time.monotonic() - t1
        assert new.returncode == 255
        print(
            f"\nrunning session noticed the drop after {t_running:.1f} s; "
            f"new connection failed after {t_new:.1f} s ({new.stderr.strip()})"
        )
        assert t_new < 10
        assert ssh(netns_pool.config_path, up, "true", *keepalive).returncode == 0
    finally:
        running.kill()
        running.communicate()
        netns_pool.bring_up(down)
    assert ssh(netns_pool.config_path, down, "true", *keepalive).returncode == 0


def test_netns_close_cleans_up() -> None:
    require(netns_unavailable_reason())
    pool = NetnsHosts(1).start()
    h = pool.hosts[pool.aliases[0]]
    assert h.sshd is not None and h.sshd.proc is not None
    sshd_pid = h.sshd.proc.pid
    pool.close()
    ip = find_program("ip") or "ip"
    listed = subprocess.run([ip, "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run([ip, "-br", "link"], capture_output=True, text=True).stdout
    routes = subprocess.run(
        [ip, "route", "show", "table", "all"], capture_output=True, text=True
    ).stdout
    assert h.netns not in listed
    assert h.veth_host not in links
    assert h.subnet not in routes
    assert not alive(sshd_pid)


def test_netns_unavailable_reason_is_str_or_none() -> None:
    reason = netns_unavailable_reason()
    assert reason is None or (isinstance(reason, str) and reason)
