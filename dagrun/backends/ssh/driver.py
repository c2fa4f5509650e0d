"""``ssh`` (alias ``malocher``): runs on a pool of machines that share OUT, over OpenSSH.

Each host gets one ControlMaster connection at ``start`` (so a run costs a multiplexed session,
not a handshake), and runs ``hosts`` slots at once. Each run is one ssh session executing
``python -m dagrun.backends.ssh.remote REQUEST`` on the host (``remote.py``: the shared
StageRunner plus a watchdog that kills the run's process tree when the session closes or the
heartbeat stops).

One pump thread owns every ssh process: it starts sessions on free slots, reads their output
with a selector, writes heartbeats, enforces ``timeout`` (by closing the session: the remote
watchdog kills the tree; ssh itself is killed if the remote side does not finish), and turns
the end of a session into an outcome, or, when the connection failed, re-queues the run for
another host (not counted as a retry) and counts the failure against the host. A host goes
DOWN after a bounded number of failures (``ssh_hosts.MAX_FAILURES``); when every host is down
``poll`` raises ``BackendUnavailableError``. ``notes()`` tells the summary which host failed and
why.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import selectors
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from tqdm import tqdm

from dagrun.backends.base import Backend
from dagrun.backends.ssh.command import SshCommand, parse_hosts, remote_command
from dagrun.backends.ssh.hosts import (
    AUTH_SLACK,
    MAX_FAILURES,
    RETRY_DELAY,
    Host,
    HostState,
    make_control_dir,
    requeue_note,
)
from dagrun.backends.ssh.protocol import HEARTBEAT_EVERY, Request, outcome_from_json
from dagrun.backends.ssh.remote import KILL_GRACE
from dagrun.backends.ssh.session import Ending, Session, StopReason
from dagrun.code.safety import trust_group
from dagrun.code.workflow import Workflow
from dagrun.config import Settings
from dagrun.disk.layout import Stage, SweepDir
from dagrun.disk.records import Failure
from dagrun.errors import BackendUnavailableError, ConfigError, FailureKind
from dagrun.record import replace
from dagrun.run import failures
from dagrun.run.failures import crashed_failure, timeout_failure
from dagrun.run.stages import RunOutcome, RunTask

TICK = 0.1


def _user_paths(cwd: str) -> tuple[str, ...]:
    """The driver's import path without the interpreter's own folders (a host may use
    another interpreter, ``python``): where the user's modules are found."""
    own = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths = []
    for p in sys.path:
        full = os.path.abspath(p) if p else cwd
        real = os.path.realpath(full)
        if not any(real == o or real.startswith(o + os.sep) for o in own):
            paths.append(full)
    return tuple(paths)


class SshBackend(Backend):
    name = "ssh"

    # Timing knobs (class attributes so tests can shorten them).
    connect_timeout: ClassVar[int] = 10
    alive_interval: ClassVar[int] = 5  # master keepalive: a dropped link is noticed in
    alive_count: ClassVar[int] = 3  # about interval * (count + 1) seconds
    heartbeat_timeout: ClassVar[float] = 15.0  # remote side: no heartbeat -> kill the run
    stop_grace: ClassVar[float] = 2 * KILL_GRACE + 4  # then the local ssh is killed

    @classmethod
    def check(cls, settings: Settings, cfgs: Sequence[Mapping[str, Any]]) -> None:
        """Hosts, the ssh client and the files named in settings, before anything is
        written."""
        parse_hosts(settings.hosts)
        SshCommand.from_settings(settings, connect_timeout=cls.connect_timeout,
                                 alive_interval=cls.alive_interval, alive_count=cls.alive_count)
        for key in ("ssh_config", "ssh_key"):
            path = getattr(settings, key)
            if path and not os.path.isfile(path):
                raise ConfigError(f"basecfg[{key!r}]: {path} is not a file")

    def __init__(self, settings: Settings, sweep: SweepDir, workflow: Workflow,
                 fingerprints: dict[str, str]) -> None:
        super().__init__(settings, sweep, workflow, fingerprints)
        self._specs = parse_hosts(settings.hosts)
        self._hosts: list[Host] = []
        self._pending: collections.deque[RunTask] = collections.deque()
        self._lock = threading.Lock()
        self._outcomes: queue.Queue[RunOutcome | None] = queue.Queue()
        self._sessions: list[Session] = []
        self._requeues: collections.Counter[tuple[int, int]] = collections.Counter()
        self._lost_by: dict[tuple[int, int], Host] = {}  # re-queued run -> the host it left
        self._stopped_by_watchdog = 0  # runs the hosts stopped for want of our heartbeat
        self._longest_pause = 0.0  # seconds the pump thread did not run (SIGSTOP, sleep)
        self._fatal: BackendUnavailableError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._last_beat = 0.0
        self._cwd = os.getcwd()
        self._sys_path = _user_paths(self._cwd)

    # ----------------------------------------------------------------------------------------
    # The Backend interface (driver thread).

    @property
    def capacity(self) -> int:
        if not self._hosts:
            return sum(s.slots for s in self._specs)
        return max(1, sum(h.spec.slots for h in self._hosts if h.state is not HostState.DOWN))

    def start(self) -> None:
        ssh = SshCommand.from_settings(self.settings, connect_timeout=self.connect_timeout,
                                       alive_interval=self.alive_interval,
                                       alive_count=self.alive_count)
        base = "/tmp" if os.access("/tmp", os.W_OK) else None  # socket paths must be short
        self._ctl_dir = make_control_dir(base)  # stale ones of killed drivers go first
        self._hosts = [Host(spec, os.path.join(self._ctl_dir, f"h{i}"), ssh)
                       for i, spec in enumerate(self._specs)]
        for host in self._hosts:
            host.connect()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._pump, name="dagrun-ssh", daemon=True)
        self._thread.start()
        self._wait_for_a_host()

    def _wait_for_a_host(self) -> None:
        """Block (bounded) until one host is UP; raise when none can be reached."""
        limit = (self.connect_timeout + AUTH_SLACK + RETRY_DELAY) * MAX_FAILURES + 5
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and self._fatal is None:
            if any(h.state is HostState.UP for h in self._hosts):
                return
            time.sleep(0.05)
        fatal = self._fatal or BackendUnavailableError(
            f"no ssh host answered within {limit:.0f} s: {self._host_reasons()}")
        self.shutdown(kill=True)
        raise fatal

    def submit(self, task: RunTask) -> None:
        with self._lock:
            self._pending.append(task)
        self._wakeup()

    def poll(self, timeout: float) -> list[RunOutcome]:
        if self._fatal is not None:
            raise self._fatal
        items: list[RunOutcome | None] = []
        try:
            items.append(self._outcomes.get(timeout=timeout))
            while True:
                items.append(self._outcomes.get_nowait())
        except queue.Empty:
            pass
        outcomes = [o for o in items if o is not None]
        if not outcomes and self._fatal is not None:
            raise self._fatal
        return outcomes

    def running(self) -> int:
        return len(self._sessions)

    def describe(self) -> str:
        hosts = ", ".join(f"{s.name}:{s.slots}" for s in self._specs)
        timeout = f", timeout {self.settings.timeout:g} s" if self.settings.timeout else ""
        return f"ssh, {len(self._specs)} host(s) [{hosts}], {self.capacity} slot(s){timeout}"

    def notes(self) -> list[str]:
        """Which hosts failed and why, for the summary."""
        lines = []
        if self._stopped_by_watchdog:
            paused = f" (it did not run for {self._longest_pause:.0f} s: paused or asleep)" \
                if self._longest_pause > self.heartbeat_timeout else ""
            lines.append(
                f"ssh: {self._stopped_by_watchdog} run(s) were stopped by the hosts' watchdog "
                f"because the driver sent no heartbeat for {self.heartbeat_timeout:g} s"
                f"{paused}; they were re-queued (not counted as retries or failures)")
        for h in self._hosts:
            moved = requeue_note(h, self._others_up(h))
            if h.state is HostState.DOWN:
                lines.append(f"ssh: host {h.name} is down ({h.reason}){moved}")
            elif h.trouble:
                now = "reconnected" if h.state is HostState.UP else "still unreachable at the end"
                lines.append(f"ssh: host {h.name} failed ({h.trouble}){moved}; {now}")
        return lines

    def _others_up(self, host: Host) -> bool:
        return any(h.state is HostState.UP for h in self._hosts if h is not host)

    def shutdown(self, *, kill: bool = False) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self._wakeup()
        thread.join(timeout=self.stop_grace + 10)
        if thread.is_alive():  # the pump is stuck: end what we can from here
            self._kill_everything()
            return
        self._selector.close()
        wake, self._wake_w = self._wake_w, None
        for fd in (self._wake_r, wake):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        shutil.rmtree(self._ctl_dir, ignore_errors=True)

    # ----------------------------------------------------------------------------------------
    # The pump thread.

    def _pump(self) -> None:
        try:
            last = time.time()  # wall clock: it also counts a machine's sleep
            while not self._stop.is_set():
                self._step(launch=True)
                now = time.time()
                self._longest_pause = max(self._longest_pause, now - last)
                last = now
            self._wind_down()
        except Exception as exc:  # the thread boundary: the driver must hear of it
            self._fatal = BackendUnavailableError(
                f"the ssh backend failed: {type(exc).__name__}: {exc}")
            self._outcomes.put(None)
            self._kill_everything()

    def _step(self, launch: bool) -> None:
        if launch:
            for host in self._hosts:
                self._host_event(host, host.tick())
            self._launch()
        self._read(TICK)
        self._housekeeping()
        if launch and self._fatal is None and all(h.state is HostState.DOWN
                                                  for h in self._hosts):
            self._fatal = BackendUnavailableError(
                f"all ssh hosts are down: {self._host_reasons()}. Finished stages are kept "
                "in OUT; fix the hosts (or the hosts list) and run again to resume")
            self._outcomes.put(None)

    def _launch(self) -> None:
        while True:
            free = [h for h in self._hosts if h.free > 0]
            with self._lock:
                if not free or not self._pending:
                    return
                task = self._pending.popleft()
            self._start_session(task, max(free, key=lambda h: h.free))

    def _start_session(self, task: RunTask, host: Host) -> None:
        request = Request(task, self.sweep.path, self.fingerprints, self.heartbeat_timeout,
                          trust_group(), self._cwd, self._sys_path)
        command = remote_command(self.settings.python, request.to_json())
        proc = subprocess.Popen(host.ssh.session(host.name, host.control_path, command),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        session = Session(task, host, proc)
        origin = self._lost_by.pop((task.exp_id, task.rep), None)
        if origin is host:
            host.rerun += 1
        elif origin is not None:
            origin.moved += 1
        host.busy += 1
        self._sessions.append(session)
        for stream, is_stdout in ((proc.stdout, True), (proc.stderr, False)):
            if stream is not None:
                self._selector.register(stream.fileno(), selectors.EVENT_READ,
                                        (session, is_stdout))

    def _read(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            if key.data is None:  # the wakeup pipe
                os.read(key.fd, 4096)
                continue
            session, is_stdout = key.data
            try:
                data = os.read(key.fd, 65536)
            except OSError:
                data = b""
            if not data:
                self._selector.unregister(key.fd)
            session.feed(is_stdout, data)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        beat = now - self._last_beat >= HEARTBEAT_EVERY
        if beat:
            self._last_beat = now
        timeout = self.settings.timeout
        for s in list(self._sessions):
            if beat:
                s.heartbeat()
            if timeout and s.stop_reason is None and now - s.started > timeout:
                s.stop(StopReason.TIMEOUT, self.stop_grace)
            s.kill_if_overdue()
            if s.finished:
                self._sessions.remove(s)
                s.close()
                s.host.busy -= 1
                self._finish(s)

    # ----------------------------------------------------------------------------------------
    # How a session ended.

    def _finish(self, s: Session) -> None:
        ending = s.ending()
        if ending is Ending.OUTCOME:
            s.host.healthy()
            self._deliver_reported(s)
        elif ending is Ending.STOPPED:
            if s.stop_reason is StopReason.TIMEOUT:
                if s.remote_started:
                    s.host.healthy()
                self._deliver_failure(s, timeout_failure(s.task, self.settings.timeout))
        elif ending is Ending.WATCHDOG:
            self._watchdog_stopped(s)
        elif ending is Ending.CRASHED:
            failure = crashed_failure(s.task, s.proc.returncode)
            message = f"{failure.message}\nssh said: {s.reason()}"
            self._deliver_failure(s, replace(failure, message=message))
        elif not self._stop.is_set():
            self._connection_failed(s, ending)

    def _deliver_reported(self, s: Session) -> None:
        try:
            outcome, recorded = outcome_from_json(s.outcome_json or "")
        except (ValueError, KeyError, TypeError) as exc:
            failure = Failure.make(Stage.PRE, FailureKind.ENGINE,
                                   f"unreadable outcome from host {s.host.name}: {exc}",
                                   s.task.attempt, host=s.host.name)
            self._deliver_failure(s, failure)
            return
        if not recorded and outcome.failure is not None:
            # the host cannot see OUT: record it here, and send no more runs there
            failures.record(outcome.failure, s.task)
            self._host_event(s.host, s.host.mark_down(outcome.failure.first_line))
        self._outcomes.put(outcome)

    def _deliver_failure(self, s: Session, failure: Failure) -> None:
        failure = replace(failure, host=s.host.name)
        self._outcomes.put(failures.commit(failure, s.task))

    def _watchdog_stopped(self, s: Session) -> None:
        """The host stopped the run because our heartbeat stopped: dagrun's doing, not the
        user's code, so the run is re-queued (not a retry; the host is not blamed)."""
        s.host.healthy()
        self._stopped_by_watchdog += 1
        if self.settings.verbose:
            tqdm.write(f"dagrun: run {s.task.label} on {s.host.name} was stopped by the "
                       f"host's watchdog ({s.watchdog}); re-queued, finished stages kept",
                       file=sys.stderr)
        with self._lock:
            self._pending.appendleft(s.task)

    def _connection_failed(self, s: Session, ending: Ending) -> None:
        """Count the failure against the host (once per broken master) and re-queue the run."""
        host = s.host
        reason = s.reason()
        if ending is Ending.DROPPED:
            reason = f"connection lost while running run {s.task.label} ({reason})"
        master = host.master
        if master is not None and master.poll() is None:
            # a dropped master takes its sessions with it: let it finish exiting
            with contextlib.suppress(subprocess.TimeoutExpired):
                master.wait(timeout=1.0)
        self._host_event(host, host.tick())
        if host.state is HostState.UP:
            self._host_event(host, host.session_failed(reason))
        self._requeue(s, reason)

    def _requeue(self, s: Session, reason: str) -> None:
        task, host = s.task, s.host
        host.requeued += 1
        key = (task.exp_id, task.rep)
        self._requeues[key] += 1
        self._lost_by[key] = host
        if self._requeues[key] > 2 * len(self._hosts) + 1:
            self._deliver_failure(s, Failure.make(
                Stage.PRE, FailureKind.HOST_DOWN,
                f"run {task.label} lost its host {self._requeues[key]} times; giving up "
                f"(last: {host.name}: {reason})", task.attempt))
            return
        with self._lock:
            self._pending.appendleft(task)

    def _host_event(self, host: Host, message: str | None) -> None:
        if message and self.settings.verbose:
            where = "its runs go to the other hosts" if self._others_up(host) else \
                "no other host is up to take its runs"
            tqdm.write(f"dagrun: {message}; {where}", file=sys.stderr)

    def _host_reasons(self) -> str:
        return "; ".join(f"{h.name}: {h.reason or h.state.value}" for h in self._hosts)

    # ----------------------------------------------------------------------------------------
    # Stopping.

    def _wind_down(self) -> None:
        """Stop every run (the remote watchdogs kill them), then close the connections."""
        for s in self._sessions:
            s.stop(StopReason.SHUTDOWN, self.stop_grace)
        deadline = time.monotonic() + self.stop_grace + 2
        while self._sessions and time.monotonic() < deadline:
            self._step(launch=False)
        self._kill_everything()

    def _kill_everything(self) -> None:
        for s in list(self._sessions):
            if s.proc.poll() is None:
                s.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                s.proc.wait(timeout=5)
            s.close()
        self._sessions.clear()
        for host in self._hosts:
            host.stop_master()

    def _wakeup(self) -> None:
        """Interrupt the pump's select (new work, or stop)."""
        if self._wake_w is not None:
            with contextlib.suppress(OSError):  # a full pipe wakes it just as well
                os.write(self._wake_w, b"x")
