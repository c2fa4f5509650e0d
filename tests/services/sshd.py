"""Throw-away OpenSSH servers for testing dagrun's ``ssh`` backend.

:class:`SshServer` runs a real ``sshd -D`` on 127.0.0.1 (free port) as the
current user, with its own host key and an authorized client key, and writes
an ``ssh -F`` client config in which host key checking stays on
(``StrictHostKeyChecking yes`` against a private known_hosts file).

The building blocks (:class:`SshdInstance`, :func:`write_client_config`,
:func:`kill_process_tree`, ...) are shared with :mod:`.netns`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from . import Service

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find_program(name: str) -> str | None:
    """Absolute path of ``name`` on PATH or in the sbin dirs (often not on a user's PATH)."""
    path = os.environ.get("PATH", os.defpath) + os.pathsep + os.pathsep.join(SBIN_DIRS)
    return shutil.which(name, path=path)


def sshd_unavailable_reason() -> str | None:
    """Why an :class:`SshServer` cannot be started here, or None if it can."""
    missing = [p for p in ("sshd", "ssh", "ssh-keygen") if find_program(p) is None]
    if missing:
        return (
            f"missing OpenSSH programs: {', '.join(missing)} "
            "(run scripts/install-system-deps.sh as root)"
        )
    shell = pwd.getpwuid(os.getuid()).pw_shell
    if os.path.basename(shell) in ("nologin", "false", ""):
        return f"login shell of uid {os.getuid()} is {shell!r}: sshd cannot run commands"
    return None


def short_tempdir(prefix: str) -> Path:
    """A private temp dir with a short path (unix socket paths are limited to ~104 bytes)."""
    base = "/tmp" if os.access("/tmp", os.W_OK) else tempfile.gettempdir()
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def free_port(addr: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``addr`` (racy, callers retry on bind failure)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])


def generate_key(path: Path, comment: str) -> str:
    """Create an unencrypted ed25519 key pair at ``path``; return the public key line."""
    subprocess.run(
        [
            find_program("ssh-keygen") or "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            comment,
            "-f",
            str(path),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


def kill_process_tree(pid: int, timeout: float = 5.0) -> None:
    """SIGKILL ``pid`` and all its descendants, leaving nothing behind.

    Every process is SIGSTOPped before its children are listed, so nothing can fork
    a new child between listing and killing. (sshd's per-connection children call
    setsid(), so killing a process group would miss them.)
    """
    try:
        frontier = [psutil.Process(pid)]
    except psutil.NoSuchProcess:
        return
    seen: dict[int, psutil.Process] = {}
    while frontier:
        nxt: list[psutil.Process] = []
        for proc in frontier:
            if proc.pid in seen:
                continue
            with contextlib.suppress(psutil.Error):
                proc.suspend()
                seen[proc.pid] = proc
                nxt.extend(proc.children())
        frontier = nxt
    for proc in seen.values():
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(list(seen.values()), timeout=timeout)


def wait_for_ssh_banner(
    addr: str, port: int, timeout: float, alive: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until ``addr:port`` answers with an SSH banner; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"sshd exited with status {alive.returncode}")
        try:
            with socket.create_connection((addr, port), timeout=1.0) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"no SSH banner from {addr}:{port} within {timeout}s ({last})")


@dataclass(frozen=True)
class ClientHost:
    """One ``Host`` block of a generated client config."""

    alias: str
    hostname: str
    port: int


def write_client_config(
    path: Path,
    hosts: Sequence[ClientHost],
    user: str,
    key_path: Path,
    known_hosts: Path,
    extra: Sequence[str] = (),
) -> None:
    """Write an ``ssh -F`` config: one Host block per host, strict host key checking.

    ``HostKeyAlias`` makes known_hosts entries keyed by alias, independent of IP/port.
    ``IdentityAgent none`` + ``IdentitiesOnly yes`` keep the user's agent and
    ~/.ssh keys out of the picture.
    """
    common = [
        f"User {user}",
        f"IdentityFile {key_path}",
        "IdentitiesOnly yes",
        "IdentityAgent none",
        f"UserKnownHostsFile {known_hosts}",
        "GlobalKnownHostsFile /dev/null",
        "StrictHostKeyChecking yes",
        "UpdateHostKeys no",
        "BatchMode yes",
        "LogLevel ERROR",
        *extra,
    ]
    blocks = []
    for h in hosts:
        lines = [
            f"Host {h.alias}",
            f"HostName {h.hostname}",
            f"Port {h.port}",
            f"HostKeyAlias {h.alias}",
            *common,
        ]
        blocks.append("\n    ".join(lines))
    path.write_text("\n\n".join(blocks) + "\n")


def sshd_config_text(workdir: Path, listen: str, port: int, user: str) -> str:
    """Minimal pubkey-only sshd_config whose state lives in ``workdir``."""
    return "\n".join(
        [
            f"ListenAddress {listen}",
            f"Port {port}",
            f"HostKey {workdir / 'ssh_host_ed25519_key'}",
            f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
            f"PidFile {workdir / 'sshd.pid'}",
            f"AllowUsers {user}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            # mkdtemp dirs live under world-writable /tmp, which StrictModes rejects.
            "StrictModes no",
            "PermitUserEnvironment no",
            "AllowAgentForwarding no",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PrintMotd no",
            "PrintLastLog no",
            # Default MaxSessions is 10 *per multiplexed connection*; sweeps open more.
            "MaxSessions 64",
            "MaxStartups 64:30:128",
            "LogLevel VERBOSE",
            "",  # no AcceptEnv: the remote environment is not influenced by the client's
        ]
    )


class SshdInstance:
    """One ``sshd -D`` process (optionally inside a network namespace) with its files.

    Files (host key, authorized_keys, sshd_config, log) live in ``workdir``.
    """

    def __init__(
        self,
        workdir: Path,
        listen: str,
        port: int,
        user: str,
        authorized_key: str,
        netns: str | None = None,
    ) -> None:
        self.workdir, self.listen, self.port, self.netns = workdir, listen, port, netns
        workdir.mkdir(parents=True, exist_ok=True)
        self.host_public_key = generate_key(workdir / "ssh_host_ed25519_key", f"host-{listen}")
        (workdir / "authorized_keys").write_text(authorized_key + "\n")
        self.config_path = workdir / "sshd_config"
        self.config_path.write_text(sshd_config_text(workdir, listen, port, user))
        self.log_path = workdir / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start sshd and wait until it sends its banner; raise with the log on failure."""
        sshd = find_program("sshd")
        if sshd is None:
            raise RuntimeError("sshd not found")
        with contextlib.suppress(OSError):  # privilege separation dir (needed as root)
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        subprocess.run([sshd, "-t", "-f", str(self.config_path)], check=True, capture_output=True)
        cmd = [sshd, "-D", "-e", "-f", str(self.config_path)]
        if self.netns is not None:  # `ip netns exec` execs sshd in place: same pid
            cmd = [find_program("ip") or "ip", "netns", "exec", self.netns, *cmd]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_ssh_banner(self.listen, self.port, timeout, alive=self.proc)
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}; sshd log:\n{self.log_text()}") from exc

    def log_text(self) -> str:
        """Content of the sshd log (useful in assertion messages)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Kill sshd, its per-connection children and their sessions' processes."""
        if self.proc is not None:
            kill_process_tree(self.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            self.proc = None


class SshServer(Service):
    """A real sshd on 127.0.0.1 plus an ``ssh -F`` client config to reach it.

    Use as a context manager::

        with SshServer() as srv:
            subprocess.run(["ssh", "-F", srv.config_path, srv.host_alias, "true"], check=True)
    """

    def __init__(self, host_alias: str = "dagrun-test", start_timeout: float = 10.0) -> None:
        self.host_alias = host_alias
        self.start_timeout = start_timeout
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.workdir = short_tempdir("dgssh-")
        self.key_path = self.workdir / "client_key"
        self.config_path = self.workdir / "ssh_config"
        self.known_hosts_path = self.workdir / "known_hosts"
        self.port = 0
        self._sshd: SshdInstance | None = None

    def start(self) -> SshServer:
        """Start sshd (retrying on a port race) and write the client files."""
        try:
            client_pub = generate_key(self.key_path, "dagrun-test-client")
            for attempt in range(3):
                self.port = free_port()
                sshd = SshdInstance(
                    self.workdir / "server", "127.0.0.1", self.port, self.user, client_pub
                )
                try:
                    sshd.start(self.start_timeout)
                    break
                except RuntimeError:
                    if attempt == 2 or "Address already in use" not in sshd.log_text():
                        raise
            self._sshd = sshd
            self.known_hosts_path.write_text(f"{self.host_alias} {sshd.host_public_key}\n")
            write_client_config(
                self.config_path,
                [ClientHost(self.host_alias, "127.0.0.1", self.port)],
                self.user,
                self.key_path,
                self.known_hosts_path,
            )
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int | None:
        """Pid of the listening sshd, None when stopped."""
        return self._sshd.proc.pid if self._sshd and self._sshd.proc else None

    def log_text(self) -> str:
        """The sshd log."""
        return self._sshd.log_text() if self._sshd else ""

    def stop(self) -> None:
        """Kill sshd and everything it spawned, then delete the temp dir. Idempotent."""
        if self._sshd is not None:
            self._sshd.stop()
            self._sshd = None
        shutil.rmtree(self.workdir, ignore_errors=True)
