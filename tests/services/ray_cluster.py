"""Throw-away local Ray clusters for testing dagrun's ``ray`` backend.

:class:`RayCluster` runs a real ``ray start --head`` on 127.0.0.1 with its own
short temp dir, either with token authentication (``RAY_AUTH_MODE=token`` and a
fresh random ``RAY_AUTH_TOKEN``) or explicitly without it
(``RAY_AUTH_MODE=disabled``). Clients are *separate processes*: run them with
``env={**os.environ, **cluster.client_env()}`` and call
``ray.init(address=cluster.address)`` (or ``address="auto"``).

Facts this relies on (checked against ray 2.60.0):

* The auth mode is read from the environment only. ``ray start`` with
  ``RAY_AUTH_MODE`` unset turns auth on iff a token exists (``RAY_AUTH_TOKEN``,
  ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``), so we always set it.
* Ray turns ``--node-ip-address 127.0.0.1`` into the host's routable IP (and
  then gcs_server/raylet listen on all interfaces) unless
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: with it the node IP is 127.0.0.1 and
  every listener binds 127.0.0.1 only (multi-node joins are refused, which we
  do not need).
* ``ray stop`` kills *every* Ray process on the machine, so we never call it:
  ``ray start`` runs in a new session and :meth:`RayCluster.stop` kills exactly
  the processes of that session (plus any process naming our temp dir).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from . import Service

#: Environment shared by the head and its clients, whatever the auth mode.
BASE_ENV: dict[str, str] = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # node IP = 127.0.0.1, not eth0's
    "RAY_USAGE_STATS_ENABLED": "0",
}


def ray_available() -> str | None:
    """Why a :class:`RayCluster` cannot run here (a skip reason), or None if it can."""
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed (pip install -e '.[ray]')"
    if ray_executable() is None:
        return "the 'ray' CLI was not found next to the Python interpreter or on PATH"
    return None


def ray_executable() -> str | None:
    """The ``ray`` CLI of the running interpreter's environment (venv first, then PATH)."""
    candidate = Path(sys.executable).with_name("ray")
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("ray")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (racy; good enough for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def other_cluster() -> str | None:
    """Why ``address="auto"`` could join another Ray cluster here (a live gcs_server: Ray
    finds one by scanning processes), described so that a leftover can be traced to whoever
    started it; ``None`` when there is none."""
    found = []
    for p in psutil.process_iter(["name", "status", "create_time"]):
        if p.info["name"] != "gcs_server" or p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            origin = p.environ().get("RAY_TMPDIR", "?")
            test = p.environ().get("PYTEST_CURRENT_TEST", "no test")
        except psutil.Error:
            origin, test = "?", "?"
        started = time.strftime("%H:%M:%S", time.localtime(p.info["create_time"]))
        found.append(f"pid {p.pid} since {started}, RAY_TMPDIR={origin}, started by {test}")
    if not found:
        return None
    return f"another Ray cluster runs on this machine ({'; '.join(found)}): 'auto' would join it"


def _alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie waiting to be reaped."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class RayCluster(Service):
    """A single-node Ray cluster started with ``ray start --head``; use as a context manager.

    Attributes set by :meth:`start`: :attr:`address` (``"127.0.0.1:PORT"``, for
    ``ray.init(address=...)``), :attr:`token` (None without auth), :attr:`temp_dir`.
    """

    def __init__(
        self,
        *,
        auth: bool,
        num_cpus: int = 2,
        object_store_memory: int = 100_000_000,
        start_timeout: float = 90.0,
        grace_period: float = 2.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.auth = auth
        self.num_cpus = num_cpus
        self.object_store_memory = object_store_memory
        self.start_timeout = start_timeout
        self.grace_period = grace_period
        self.stop_timeout = stop_timeout
        self.token: str | None = secrets.token_hex(32) if auth else None
        self.address = ""
        self.temp_dir: Path | None = None
        self._root: Path | None = None
        self._session_id: int | None = None
        self.start_output = ""

    # -- environment -------------------------------------------------------------

    def _auth_env(self) -> dict[str, str]:
        if self.token is None:
            return {"RAY_AUTH_MODE": "disabled"}
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def client_env(self) -> dict[str, str]:
        """Variables a driver process needs on top of its own environment.

        ``RAY_TMPDIR`` makes ``ray.init(address="auto")`` find this cluster's
        ``ray_current_cluster`` file; ``RAY_ADDRESS`` makes a bare ``ray.init()``
        connect here instead of starting a local instance.
        """
        if self._root is None:
            raise RuntimeError("cluster not started")
        return {
            **BASE_ENV,
            **self._auth_env(),
            "RAY_TMPDIR": str(self._root),
            "RAY_ADDRESS": self.address,
        }

    def _server_env(self, root: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
        env.update(BASE_ENV)
        env.update(self._auth_env())
        env["RAY_TMPDIR"] = str(root)
        return env

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> RayCluster:
        """Start the head and return once it accepts clients (or raise, leaving nothing)."""
        ray = ray_executable()
        if ray is None:
            raise RuntimeError("ray CLI not found")
        # Short path: Ray's unix sockets live under <temp>/session_<date>_<pid>/sockets/.
        self._root = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        self.temp_dir = self._root / "ray"
        port = free_port()
        cmd = [
            ray, "start", "--head",
            "--node-ip-address", "127.0.0.1",
            "--port", str(port),
            "--num-cpus", str(self.num_cpus),
            "--num-gpus", "0",
            "--object-store-memory", str(self.object_store_memory),
            "--include-dashboard", "false",
            "--dashboard-agent-listen-port", str(free_port()),
            "--temp-dir", str(self.temp_dir),
            "--disable-usage-stats",
            "--log-style", "record", "--log-color", "false",
        ]
        # A new session: every daemon (gcs_server, raylet, agents, workers) inherits its id.
        proc = subprocess.Popen(
            cmd, env=self._server_env(self._root), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self._session_id = proc.pid
        try:
            try:
                self.start_output, _ = proc.communicate(timeout=self.start_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                self.start_output, _ = proc.communicate(timeout=10)
                raise TimeoutError(
                    f"ray start did not finish in {self.start_timeout}s:\n{self.start_output}"
                ) from None
            if proc.returncode != 0:
                raise RuntimeError(f"ray start exited {proc.returncode}:\n{self.start_output}")
            self.address = f"127.0.0.1:{port}"
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Wait (bounded) for ``ray_current_cluster`` and an accepting GCS port."""
        assert self.temp_dir is not None
        deadline = time.monotonic() + self.start_timeout
        host, port = self.address.rsplit(":", 1)
        marker = self.temp_dir / "ray_current_cluster"
        while True:
            if marker.exists() and self.raylet_pids():
                try:
                    with socket.create_connection((host, int(port)), timeout=1):
                        return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Ray head at {self.address} not ready:\n{self.start_output}")
            time.sleep(0.1)

    def pids(self) -> list[int]:
        """Live (non-zombie) processes of this cluster: its session, or naming its temp dir."""
        found: list[int] = []
        root = str(self._root) if self._root is not None else None
        for p in psutil.process_iter(["pid", "cmdline"]):
            if p.pid == os.getpid():
                continue
            try:
                in_session = self._session_id is not None and os.getsid(p.pid) == self._session_id
                names_root = root is not None and any(root in a for a in p.info["cmdline"] or [])
            except (psutil.Error, OSError):
                continue
            if (in_session or names_root) and _alive(p.pid):
                found.append(p.pid)
        return found

    def raylet_pids(self) -> list[int]:
        """pids of this cluster's ``raylet`` and ``gcs_server`` processes."""
        out = []
        for pid in self.pids():
            try:
                if psutil.Process(pid).name() in ("raylet", "gcs_server"):
                    out.append(pid)
            except psutil.Error:
                continue
        return out

    def stop(self) -> None:
        """SIGTERM this cluster's processes, SIGKILL what is left, remove the temp dir.

        Like ``ray stop`` but scoped to this cluster. raylet and gcs_server often
        ignore SIGTERM for many seconds, hence the short :attr:`grace_period`
        before SIGKILL. Every wait is bounded; raises if a process survives.
        """
        for sig, wait in ((signal.SIGTERM, self.grace_period),
                          (signal.SIGKILL, self.stop_timeout)):
            procs = []
            for pid in self.pids():
                try:
                    proc = psutil.Process(pid)
                    proc.send_signal(sig)
                    procs.append(proc)
                except psutil.Error:
                    continue
            if not procs:
                break
            psutil.wait_procs(procs, timeout=wait)
        left = self.pids()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
        if left:
            raise RuntimeError(f"Ray processes survived stop(): {left}")
