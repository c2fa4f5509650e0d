"""The machines of an ssh pool: one ControlMaster connection each, and whether they are usable.

A host is CONNECTING while its master starts, UP once the master's socket exists, DOWN after
``MAX_FAILURES`` failures in a row (refused or timed-out connections, a master that died
because the link dropped -- ``ServerAlive*`` notices it -- or sessions that could not start
the remote interpreter). A run that reaches the remote interpreter resets the count. Nothing
here blocks: the backend's pump thread calls ``tick`` and reacts to state changes.

The master runs in the foreground as our child (``-N``), not daemonized with ``-f``: its
liveness is a ``Popen.poll()``, and SIGTERM ends it with every session multiplexed on it.
Where ``setpriv`` exists (Linux util-linux), the master also dies with the driver
(``--pdeathsig``), so even a ``kill -9`` of the driver leaves no connection behind (remote
runs die of their stdin EOF). Its control folder (``/tmp/dagrun-ssh-*``: sockets, master
logs) names its driver; the next driver removes those whose driver is gone.
"""

from __future__ import annotations

import contextlib
import enum
import os
import shutil
import subprocess
import sys
import tempfile
import time

from dagrun.backends.ssh.command import HostSpec, SshCommand
from dagrun.disk.keeper import process_state
from dagrun.record import field, record

MAX_FAILURES = 3
RETRY_DELAY = 1.0
AUTH_SLACK = 10.0  # seconds a master may take after ConnectTimeout (auth, slow login)
STOP_TIMEOUT = 5.0


class HostState(enum.Enum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


def _die_with_driver() -> list[str]:
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def last_line(text: str) -> str:
    """The last non-empty line of ssh's stderr: usually the reason it failed."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@record
class Host:
    """One machine: its slots, master connection and health."""

    spec: HostSpec
    control_path: str
    ssh: SshCommand
    state: HostState = HostState.CONNECTING
    busy: int = 0
    failures: int = 0
    reasons: list[str] = field(default_factory=list)  # of the current streak of failures
    trouble: str = ""  # the last streak's reason, kept after recovery (for the summary)
    requeued: int = 0  # runs it had that were put back in the queue
    moved: int = 0  # ... of which later started on another host
    rerun: int = 0  # ... of which later started on this host again (after it reconnected)
    master: subprocess.Popen[bytes] | None = None
    _started: float = 0.0
    _retry_at: float | None = None
    _log_path: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def free(self) -> int:
        return self.spec.slots - self.busy if self.state is HostState.UP else 0

    def connect(self) -> None:
        """Start the master connection (non-blocking; ``tick`` sees when it is ready)."""
        self.stop_master()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.control_path)  # a dead master's socket would block the new one
        self._log_path = self.control_path + ".log"
        with open(self._log_path, "wb") as log:
            self.master = subprocess.Popen(
                [*_die_with_driver(), *self.ssh.master(self.name, self.control_path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True)  # Ctrl-C is the driver's; it stops us in order
        self._started = time.monotonic()
        self._retry_at = None
        self.state = HostState.CONNECTING

    def master_log(self) -> str:
        try:
            with open(self._log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def tick(self) -> str | None:
        """Advance the connection state; returns a message when the host just went DOWN."""
        now = time.monotonic()
        if self.state is HostState.DOWN:
            return None
        if self._retry_at is not None:
            if now >= self._retry_at:
                self.connect()
            return None
        master = self.master
        rc = master.poll() if master is not None else -1
        if self.state is HostState.CONNECTING:
            if rc is None and os.path.exists(self.control_path):
                self.state = HostState.UP
            elif rc is not None:
                return self.failed(last_line(self.master_log()) or f"ssh exited with {rc}")
            elif now - self._started > self.ssh.connect_timeout + AUTH_SLACK:
                return self.failed(f"no connection after {now - self._started:.0f} s")
        elif rc is not None:
            reason = last_line(self.master_log()) or f"ssh exited with {rc}"
            return self.failed(f"connection lost ({reason})")
        return None

    @property
    def reason(self) -> str:
        """Why the host failed: the first and the last reason of the current streak."""
        if not self.reasons:
            return ""
        first, last = self.reasons[0], self.reasons[-1]
        return first if first == last else f"{first}; then {last}"

    def _count(self, reason: str) -> None:
        self.failures += 1
        self.reasons.append(reason)
        self.trouble = self.reason

    def failed(self, reason: str) -> str | None:
        """Count a failure; reconnect after a pause, or go DOWN at ``MAX_FAILURES``."""
        self._count(reason)
        self.stop_master()
        if self.failures >= MAX_FAILURES:
            self.state = HostState.DOWN
            return f"ssh: host {self.name} is down after {self.failures} attempts: {self.reason}"
        self.state = HostState.CONNECTING
        self._retry_at = time.monotonic() + RETRY_DELAY
        return None

    def session_failed(self, reason: str) -> str | None:
        """A session failed while the master looked fine: count it, keep the connection."""
        self._count(reason)
        if self.failures >= MAX_FAILURES:
            self.state = HostState.DOWN
            self.stop_master()
            return f"ssh: host {self.name} is down after {self.failures} attempts: {self.reason}"
        return None

    def healthy(self) -> None:
        """A run reached the remote interpreter: the connection works."""
        self.failures = 0
        self.reasons.clear()

    def mark_down(self, reason: str) -> str:
        self.reasons.append(reason)
        self.trouble = self.reason
        self.state = HostState.DOWN
        self.stop_master()
        return f"ssh: host {self.name} is down: {reason}"

    def stop_master(self) -> None:
        """End the master connection (its multiplexed sessions close with it)."""
        master, self.master = self.master, None
        if master is None or master.poll() is not None:
            return
        master.terminate()  # ssh closes the connection and every session on it
        try:
            master.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait(timeout=STOP_TIMEOUT)


def requeue_note(host: Host, others_up: bool) -> str:
    """What became of the runs ``host`` lost, for the summary (empty when it lost none).

    Says where they really went: another host, the same host once it reconnected, or
    nowhere (no other host was up, or the sweep stopped first)."""
    if not host.requeued:
        return ""
    parts = []
    if host.moved:
        parts.append(f"{host.moved} ran on other hosts")
    if host.rerun:
        parts.append(f"{host.rerun} ran on it again after it reconnected")
    left = host.requeued - host.moved - host.rerun
    if left > 0:
        why = "" if others_up else ": no other host was up"
        parts.append(f"{left} did not run again{why}")
    return f"; {host.requeued} run(s) it had were re-queued ({', '.join(parts)})"


CONTROL_PREFIX = "dagrun-ssh-"
OWNER_FILE = "driver"  # "PID STARTTIME" of the driver owning a control folder


def _started_at(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (``/proc/PID/stat`` field 22), None if gone:
    a pid alone may have been reused by another process since."""
    state = process_state(pid)
    return state[1] if state is not None else None


def make_control_dir(base: str | None) -> str:
    """A new private folder for the sweep's control sockets and master logs, after removing
    those that drivers killed before they could remove their own (SIGKILL, a crash)."""
    remove_stale_control_dirs(base)
    path = tempfile.mkdtemp(prefix=CONTROL_PREFIX, dir=base)
    with open(os.path.join(path, OWNER_FILE), "w") as f:
        f.write(f"{os.getpid()} {_started_at(os.getpid()) or ''}\n")
    return path


def remove_stale_control_dirs(base: str | None) -> list[str]:
    """Remove this user's ``dagrun-ssh-*`` folders whose driver is gone; returns them.
    A folder without an owner file, or whose owner cannot be told, is left alone."""
    base = base or tempfile.gettempdir()
    removed: list[str] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(CONTROL_PREFIX) or not _mine(entry):
            continue
        try:
            with open(os.path.join(entry.path, OWNER_FILE)) as f:
                pid, _, started = f.read().strip().partition(" ")
        except OSError:
            continue
        if not pid.isdigit() or not started or _started_at(int(pid)) == started:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


def _mine(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False) and entry.stat().st_uid == os.getuid()
    except OSError:
        return False
