"""One run on one host: the local ``ssh`` process running ``dagrun.backends.ssh.remote``.

The session reads the remote side's protocol lines (see ``dagrun.backends.ssh.protocol``), keeps the
tail of ssh's stderr for messages, writes the heartbeat to the remote watchdog, and closes its
stdin to stop the run (timeout, Ctrl-C): the remote watchdog then kills the run's process tree.
``ending()`` classifies how it ended, which is what the backend acts on.
"""

from __future__ import annotations

import contextlib
import enum
import os
import subprocess
import time

from dagrun.backends.ssh.hosts import Host, last_line
from dagrun.backends.ssh.protocol import HEARTBEAT, OUTCOME, STARTED, STOPPED
from dagrun.record import field, record
from dagrun.run.stages import RunTask

STDERR_KEPT = 8000
SSH_FAILED = 255  # ssh's own exit status for connection and protocol errors


class StopReason(enum.Enum):
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"


class Ending(enum.Enum):
    """How a session ended, from the driver's point of view."""

    OUTCOME = "outcome"  # the remote side reported the run's outcome
    STOPPED = "stopped"  # we stopped it (timeout / shutdown)
    WATCHDOG = "watchdog"  # the remote watchdog stopped it: our heartbeat stopped (a pause)
    NO_CONNECTION = "no_connection"  # ssh failed before the remote interpreter ran
    NOT_STARTED = "not_started"  # connected, but the remote command failed to start
    DROPPED = "dropped"  # the connection broke while the run was going on
    CRASHED = "crashed"  # the remote entry point itself died without reporting


@record
class Session:
    task: RunTask
    host: Host
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    remote_started: bool = False
    outcome_json: str | None = None
    watchdog: str | None = None  # why the remote watchdog stopped the run, if it did
    stop_reason: StopReason | None = None
    kill_at: float | None = None
    open_streams: int = 2
    _out: bytearray = field(default_factory=bytearray)
    _err: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        if self.proc.stdin is not None:
            os.set_blocking(self.proc.stdin.fileno(), False)

    def feed(self, is_stdout: bool, data: bytes) -> None:
        """Bytes from ssh's stdout or stderr; an empty ``data`` is that stream's EOF."""
        if not data:
            self.open_streams -= 1
            if is_stdout and self._out:
                self._line(bytes(self._out))
            return
        if not is_stdout:
            self._err += data
            del self._err[:-STDERR_KEPT]
            return
        self._out += data
        *lines, rest = self._out.split(b"\n")
        self._out = bytearray(rest)
        for line in lines:
            self._line(bytes(line))

    def _line(self, raw: bytes) -> None:
        line = raw.decode(errors="replace").strip()
        if line.startswith(STARTED):
            self.remote_started = True
        elif line.startswith(OUTCOME):
            self.outcome_json = line[len(OUTCOME):].strip()
        elif line.startswith(STOPPED):
            self.watchdog = line[len(STOPPED):].strip() or "stopped by the remote watchdog"

    @property
    def stderr(self) -> str:
        return self._err.decode(errors="replace")

    def heartbeat(self) -> None:
        """One byte to the remote watchdog; a full or closed pipe is not our concern here."""
        stdin = self.proc.stdin
        if stdin is None or stdin.closed:
            return
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(stdin.fileno(), HEARTBEAT)

    def stop(self, reason: StopReason, grace: float) -> None:
        """Close stdin (the remote watchdog kills the run); kill ssh itself after ``grace``."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if self.kill_at is None:
            self.kill_at = time.monotonic() + grace

    def kill_if_overdue(self) -> None:
        if self.kill_at is not None and time.monotonic() > self.kill_at \
                and self.proc.poll() is None:
            self.proc.kill()

    @property
    def finished(self) -> bool:
        """Both streams are at EOF and ssh has exited."""
        return self.open_streams <= 0 and self.proc.poll() is not None

    def ending(self) -> Ending:
        if self.outcome_json is not None:
            return Ending.OUTCOME
        if self.stop_reason is not None:
            return Ending.STOPPED
        if self.watchdog is not None:
            return Ending.WATCHDOG
        rc = self.proc.returncode
        if not self.remote_started:
            return Ending.NO_CONNECTION if rc == SSH_FAILED else Ending.NOT_STARTED
        return Ending.DROPPED if rc == SSH_FAILED else Ending.CRASHED

    def reason(self) -> str:
        """A one-line why, for notes: ssh's last stderr line, or its exit status."""
        return last_line(self.stderr) or f"ssh exited with status {self.proc.returncode}"

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
