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

from dagrun.config import Settings
from dagrun.errors import BackendUnavailableError, ConfigError
from dagrun.record import record

MAX_SLOTS = 1024
HOSTS_FORM = "expected 'host', 'host:slots', '[ipv6]' or '[ipv6]:slots'"


@record(frozen=True)
class HostSpec:
    """One machine of the pool and how many runs it executes at once."""

    name: str
    slots: int = 1

    @classmethod
    def parse(cls, text: str) -> HostSpec:
        """``host``, ``host:slots``, ``[ipv6]`` or ``[ipv6]:slots`` (``user@`` allowed before
        the host), checked strictly so that nothing reaches ssh that it would misread: a
        slot count within ``1..MAX_SLOTS``, one colon at most outside brackets, no name
        starting with ``-`` (an ssh option)."""
        text = text.strip()
        if text.count("[") + text.count("]"):
            name, slots = _bracketed(text)
        else:
            name, sep, slots = text.partition(":")
            if ":" in slots or (sep and not slots):
                raise _bad(text, "more than one ':' (write an IPv6 address in brackets: "
                                 "'[::1]:2')" if ":" in slots else "a ':' without a slot count")
            slots = slots if sep else "1"
        if not name or name[0] in "-@" or name[-1] == "@" or any(c.isspace() for c in name):
            raise _bad(text, "no usable host name")
        if not slots.isdigit() or len(slots) > 4 or not 1 <= int(slots) <= MAX_SLOTS:
            raise _bad(text, f"the slot count must be a whole number from 1 to {MAX_SLOTS}")
        return cls(name, int(slots))


def _bad(text: str, why: str) -> ConfigError:
    return ConfigError(f"basecfg['hosts']: {text!r}: {why} ({HOSTS_FORM})")


def _bracketed(text: str) -> tuple[str, str]:
    """``(name, slots)`` of ``[user@]ipv6-in-brackets[:slots]``; the name without brackets
    (ssh takes ``::1``, and cannot resolve ``[::1]``)."""
    user, at, rest = text.rpartition("@") if "@" in text.split("[", 1)[0] else ("", "", text)
    inside, close, tail = rest[1:].partition("]")
    if not rest.startswith("[") or not close or "[" in inside or "]" in tail \
            or ":" not in inside:
        raise _bad(text, "brackets hold an IPv6 address, as in '[::1]'")
    if tail and not tail.startswith(":"):
        raise _bad(text, "only ':slots' may follow ']'")
    return f"{user}{at}{inside}", tail[1:] if tail else "1"


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


@record(frozen=True)
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
