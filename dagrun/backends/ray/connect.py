"""Connecting the driver to Ray: join a cluster, or start a local instance for the sweep.

Why this is more than ``ray.init(address)`` (measured with ray 2.60):

* ``ray.init`` with a dead explicit address retries for many minutes, so the GCS port is
  probed over TCP first (bounded) and an unreachable address is a one-line
  ``BackendUnavailableError`` naming it.
* ``address="auto"`` resolves ``RAY_ADDRESS``, then ``ray_current_cluster`` (under
  ``RAY_TMPDIR``), then any running ``gcs_server``. A stale ``ray_current_cluster`` would hang
  ``ray.init`` the same way, so the resolved address is probed too; when nothing is running,
  a local instance is started (``address="local"``) and shut down at the end.
* Authentication is Ray's token auth, read by Ray from the driver's environment
  (``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH`` /
  ``~/.ray/auth_token``); dagrun passes nothing, and names those variables when the
  connection is refused.
* ``redis_password`` is passed on only if ``ray.init`` still has the parameter (2.60 does
  not: then a warning says it is ignored).
* A TCP port that accepts is not yet a Ray head: an HTTP server there, or a head bound to
  loopback while Ray rewrites ``127.0.0.1`` to this machine's address before connecting, made
  ``ray.init`` hang for many minutes, deaf to Ctrl-C and SIGTERM. So the probe speaks the
  first bytes of gRPC (HTTP/2) at the address *Ray will use*, and ``ray.init`` itself runs in
  a helper thread the driver waits on for at most ``CONNECT_TIMEOUT`` seconds: the main
  thread keeps receiving Ctrl-C and SIGTERM, and Ray installs no SIGTERM handler of its own.
* A local instance started for the sweep tags its processes (``LOCAL_TAG``) and gets a
  watchdog (``dagrun.run.proctree.start_watchdog``): even after ``kill -9`` of the driver, no
  Ray agent or worker of it stays behind.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

from dagrun.config import Settings
from dagrun.errors import BackendUnavailableError
from dagrun.progress import say
from dagrun.record import record
from dagrun.run.proctree import start_watchdog, stop_watchdog

PROBE_TIMEOUT = 3.0
CONNECT_TIMEOUT = 30.0  # the whole of ray.init (a head that answers does it in seconds)
LOCAL_TAG = "DAGRUN_RAY_LOCAL"  # environment tag of a local instance's processes
# The client preface of HTTP/2 and an empty SETTINGS frame: a gRPC server (Ray's GCS and
# client server) answers with a SETTINGS frame of its own (frame type 4, the 4th byte).
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 4
DEFAULT_GCS_PORT = 6379
DEFAULT_CLIENT_PORT = 10001
AUTH_HINT = ("if the cluster uses token authentication, set RAY_AUTH_MODE=token and "
             "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) in the driver's environment")


@record(frozen=True)
class Connection:
    """How the driver is connected: the address, and whether dagrun owns the instance."""

    address: str
    local: bool = False  # a local instance started for this sweep
    owned: bool = True  # dagrun called ray.init (so it calls ray.shutdown)
    watchdog: Any = None  # the local instance's watchdog process (stopped at shutdown)


def host_port(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port``, ``ray://host[:port]`` or a bare ``host``."""
    default = DEFAULT_GCS_PORT
    if address.startswith("ray://"):
        address, default = address[len("ray://"):], DEFAULT_CLIENT_PORT
    address = address.split("/", 1)[0]
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default
    if not port.isdigit():
        raise BackendUnavailableError(f"Ray address {address!r} has no valid port")
    return host.strip("[]"), int(port)


def reachable(address: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether something accepts TCP connections at the address (bounded by ``timeout``)."""
    try:
        host, port = host_port(address)
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except (OSError, BackendUnavailableError):
        return False


def what_is_at(address: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when a gRPC server (a Ray head) answers at ``address``; else what was found
    there, in words, for the one-line error."""
    try:
        host, port = host_port(address)
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_H2_PREFACE)
            reply = _read_some(sock, 9, time.monotonic() + timeout)
    except TimeoutError:
        return f"something accepted a connection at {address} but did not answer as a Ray " \
               f"head (no gRPC reply within {timeout:g} s)"
    except OSError as exc:
        return f"nothing accepted a connection at {address} ({exc.strerror or exc})"
    if len(reply) >= 4 and reply[3] == _H2_SETTINGS:
        return None
    if reply.startswith(b"HTTP/") or reply.lstrip().startswith(b"<"):
        said = "an HTTP server answered"
    elif reply.strip():
        said = f"it answered {reply.decode('ascii', 'replace').splitlines()[0]!r}"
    else:
        said = "it closed the connection"
    return f"the server at {address} is not a Ray head ({said}, not gRPC)"


def _read_some(sock: socket.socket, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size and time.monotonic() < deadline:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def ray_target(address: str) -> str:
    """The address ``ray.init`` really connects to: Ray replaces ``127.0.0.1`` and
    ``localhost`` by this machine's address (same address when that cannot be told)."""
    if address.startswith("ray://"):
        return address
    try:
        from ray._private.services import canonicalize_bootstrap_address

        found = canonicalize_bootstrap_address(address)
    except Exception:  # a private API: never let it break connecting
        return address
    return str(found) if found else address


def check_head(address: str) -> None:
    """``BackendUnavailableError`` naming the address and what is there, unless a Ray head
    answers both at ``address`` and where Ray will actually connect."""
    problem = what_is_at(address)
    if problem is None:
        target = ray_target(address)
        if target != address:
            problem = what_is_at(target)
            if problem is not None:
                problem = (f"Ray connects to {target} instead of {address} (it replaces "
                           f"a loopback address by this machine's), and {problem}; a head "
                           "bound to loopback only cannot be joined this way: start it with "
                           "`ray start --head --node-ip-address` set to an address drivers "
                           "can reach")
    if problem is not None:
        raise BackendUnavailableError(f"no Ray cluster reachable at {address}: {problem} "
                                      "(start it with `ray start --head`, or fix "
                                      "basecfg['address'])")


def bounded(call: Callable[[], Any], limit: float, what: str) -> Any:
    """Run ``call`` in a helper thread and wait at most ``limit`` seconds for it.

    ``ray.init`` can block in Ray's C++ code for minutes where no Python signal handler
    runs; waiting from the main thread keeps Ctrl-C and SIGTERM working (they raise here),
    and a helper thread keeps Ray from replacing the driver's SIGTERM handler."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:  # handed to the waiting thread, raised there
            result["error"] = exc

    thread = threading.Thread(target=target, name="dagrun-ray-connect", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise BackendUnavailableError(f"{what}: no answer within {limit:g} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _find_running(ray: ModuleType) -> str | None:
    """The address ``"auto"`` would join, or None when no cluster is recorded or running."""
    try:
        from ray._private.services import get_ray_address_from_environment
    except ImportError:  # private API moved: let ray.init resolve "auto" itself
        return "auto"
    try:
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        return None
    return str(found) if found else None


def _init_kwargs(ray: ModuleType, settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if settings.redis_password is not None:
        if "redis_password" in inspect.signature(ray.init).parameters:
            kwargs["redis_password"] = settings.redis_password
        else:
            warnings.warn(
                f"basecfg['redis_password'] is ignored: Ray {ray.__version__} no longer "
                f"accepts it; cluster access is token authentication ({AUTH_HINT})",
                UserWarning, stacklevel=4)
    return kwargs


def _init(ray: ModuleType, address: str, kwargs: dict[str, Any]) -> Any:
    """``ray.init``; Ray's exceptions become one-line ``BackendUnavailableError``s.

    Joining a cluster is bounded (``bounded``). Starting a local instance (``"local"``)
    cannot hang on an address, and must run in the main thread: Ray ties its processes'
    lives to the thread that starts them (``PR_SET_PDEATHSIG``), which a helper thread
    would end at once."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        if address == "local":
            return ray.init(address=address, **kwargs)
        return bounded(lambda: ray.init(address=address, **kwargs), CONNECT_TIMEOUT,
                       f"could not connect to the Ray cluster at {address}")
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BackendUnavailableError(
            f"could not connect to the Ray cluster at {address}: {type(exc).__name__}: "
            f"{first} ({AUTH_HINT})") from exc
    finally:
        # Ray's C++ core installs its own SIGTERM handler (it prints stack lines and turns
        # SIGTERM into an interrupt); installing ours again puts the driver's back in place.
        if threading.current_thread() is threading.main_thread() and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def connect(ray: ModuleType, settings: Settings) -> Connection:
    """Connect to the cluster ``settings.address`` names, or start a local instance."""
    os.environ.setdefault("RAY_SCHEDULER_EVENTS", "0")  # no autoscaler lines on the terminal
    kwargs = _init_kwargs(ray, settings)
    if ray.is_initialized():  # the caller (e.g. a notebook) already connected: use that
        return Connection(str(ray.get_runtime_context().gcs_address), owned=False)
    address = settings.address
    env_address = os.environ.get("RAY_ADDRESS", "")
    if address == "auto" and env_address and env_address != "auto":
        address = env_address
        if not reachable(address):
            raise BackendUnavailableError(
                f"no Ray cluster reachable at {address} (from RAY_ADDRESS); start one or "
                "unset RAY_ADDRESS")
        check_head(address)
    if address == "auto":
        found = _find_running(ray)
        if found is not None and found != "auto" and not reachable(found):
            say(f"dagrun: the Ray cluster recorded at {found} is not running")
            found = None
        if found is None:
            return _start_local(ray, kwargs)
        if found != "auto":
            check_head(found)
        _init(ray, "auto", kwargs)
        return Connection(found)
    check_head(address)
    _init(ray, address, kwargs)
    return Connection(address)


def _start_local(ray: ModuleType, kwargs: dict[str, Any]) -> Connection:
    """Start a local instance whose processes carry ``LOCAL_TAG``, under a watchdog."""
    say("dagrun: no running Ray cluster found (address='auto'); starting a local Ray "
        "instance for this sweep, stopped at its end")
    os.environ.pop("RAY_ADDRESS", None)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    watcher = start_watchdog(LOCAL_TAG, tag)
    os.environ[LOCAL_TAG] = tag  # inherited by gcs_server, raylet, agents and workers
    try:
        info = _init(ray, "local", {"include_dashboard": False, **kwargs})
    except BackendUnavailableError as exc:
        stop_watchdog(watcher)
        raise BackendUnavailableError(f"could not start a local Ray instance: {exc}") from exc
    finally:
        os.environ.pop(LOCAL_TAG, None)
    return Connection(str(info.address_info.get("gcs_address", "local")), local=True,
                      watchdog=watcher)
