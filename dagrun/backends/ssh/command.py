"""Command lines of the ``ssh`` backend: the host list, and the OpenSSH client's argv.

dagrun uses the system ``ssh`` so that the user's ``~/.ssh/config``, agent, ProxyJump and
known_hosts apply as they do at the terminal (or, with ``ssh_config``, one file replaces
them: ``ssh -F``). Host key checking is never turned off here, and ``BatchMode`` makes a host
that would prompt (unknown key, password) fail instead of hanging the sweep.

Only options the user set are passed (``-p`` only for a port other than 22, ``-l``/``-i`` only
when given), because command-line options override the config file's ``Port``/``User``.
The remote command is ONE string built with ``shlex`` (ssh hands it to the remote login
shell), so paths with spaces, quotes or ``$(...)`` stay data.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from dagrun.config import Settings
from dagrun.errors import BackendUnavailableError, ConfigError


@dataclass(frozen=True)
class HostSpec:
    """One machine of the pool and how many runs it executes at once."""

    name: str
    slots: int = 1

    @classmethod
    def parse(cls, text: str) -> HostSpec:
        """``host`` or ``host:slots``; a name starting with ``-`` would be an ssh option."""
        text = text.strip()
        name, slots = text, "1"
        head, sep, tail = text.rpartition(":")
        if sep and tail.isdigit():
            name, slots = head, tail
        if not name or name.startswith("-") or any(c.isspace() for c in name):
            raise ConfigError(f"basecfg['hosts']: {text!r} is not a host name "
                              "(expected 'host' or 'host:slots')")
        if int(slots) < 1:
            raise ConfigError(f"basecfg['hosts']: {text!r} needs at least 1 slot")
        return cls(name, int(slots))


def parse_hosts(hosts: Sequence[str]) -> list[HostSpec]:
    """The pool from ``basecfg['hosts']``; each host once."""
    specs = [HostSpec.parse(h) for h in hosts]
    if not specs:
        raise ConfigError("the ssh backend needs basecfg['hosts'] (or --hosts a,b:4): "
                          "the machines to run on, as 'host' or 'host:slots'")
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"basecfg['hosts'] lists {', '.join(twice)} more than once; "
                          "use 'host:slots' for more runs at once on one machine")
    return specs


@dataclass(frozen=True)
class SshCommand:
    """Builds ``ssh`` argvs for one sweep's settings."""

    program: str
    config: str | None = None
    user: str | None = None
    port: int = 22
    key: str | None = None
    connect_timeout: int = 10
    alive_interval: int = 5
    alive_count: int = 3

    @classmethod
    def from_settings(cls, settings: Settings, *, connect_timeout: int, alive_interval: int,
                      alive_count: int) -> SshCommand:
        program = shutil.which("ssh")
        if program is None:
            raise BackendUnavailableError(
                "the ssh backend needs the OpenSSH client `ssh` on PATH "
                "(Debian/Ubuntu: apt-get install openssh-client)")
        return cls(program, settings.ssh_config, settings.ssh_user, settings.ssh_port,
                   settings.ssh_key, connect_timeout, alive_interval, alive_count)

    def _base(self, control_path: str) -> list[str]:
        argv = [self.program]
        if self.config:
            argv += ["-F", self.config]
        if self.port != 22:
            argv += ["-p", str(self.port)]
        if self.user:
            argv += ["-l", self.user]
        if self.key:
            argv += ["-i", self.key]
        for option in ("BatchMode=yes", f"ConnectTimeout={self.connect_timeout}",
                       f"ServerAliveInterval={self.alive_interval}",
                       f"ServerAliveCountMax={self.alive_count}",
                       f"ControlPath={control_path}"):
            argv += ["-o", option]
        return argv

    def master(self, host: str, control_path: str) -> list[str]:
        """The host's one connection, in the foreground (its liveness is this process's).
        Its stderr goes to a private log, so ``LogLevel=INFO`` costs nothing and gives the
        reason a connection ended (``Timeout, server ... not responding``)."""
        return [*self._base(control_path), "-o", "ControlMaster=yes",
                "-o", "ControlPersist=no", "-o", "LogLevel=INFO",  # says why it ended
                "-N", "-T", host]

    def session(self, host: str, control_path: str, remote_command: str) -> list[str]:
        """One command over the master (or a direct connection when the master is gone)."""
        return [*self._base(control_path), "-o", "ControlMaster=no", "-T", host,
                remote_command]


def remote_command(python: str | None, request_json: str) -> str:
    """The command line of the remote entry point, quoted for a POSIX login shell."""
    interpreter = python or sys.executable
    return "exec " + shlex.join([interpreter, "-m", "dagrun.backends.ssh.remote", request_json])
