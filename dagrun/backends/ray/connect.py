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
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from dagrun.config import Settings
from dagrun.errors import BackendUnavailableError
from dagrun.progress import say

PROBE_TIMEOUT = 3.0
DEFAULT_GCS_PORT = 6379
DEFAULT_CLIENT_PORT = 10001
AUTH_HINT = ("if the cluster uses token authentication, set RAY_AUTH_MODE=token and "
             "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) in the driver's environment")


@dataclass(frozen=True)
class Connection:
    """How the driver is connected: the address, and whether dagrun owns the instance."""

    address: str
    local: bool = False  # a local instance started for this sweep
    owned: bool = True  # dagrun called ray.init (so it calls ray.shutdown)


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


def _init(ray: ModuleType, address: str, kwargs: dict[str, Any]) -> None:
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BackendUnavailableError(
            f"could not connect to the Ray cluster at {address}: {type(exc).__name__}: "
            f"{first} ({AUTH_HINT})") from exc


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
    if address == "auto":
        found = _find_running(ray)
        if found is not None and found != "auto" and not reachable(found):
            say(f"dagrun: the Ray cluster recorded at {found} is not running")
            found = None
        if found is None:
            return _start_local(ray, kwargs)
        _init(ray, "auto", kwargs)
        return Connection(found)
    if not reachable(address):
        raise BackendUnavailableError(
            f"no Ray cluster reachable at {address}: nothing accepted a connection on "
            f"{':'.join(map(str, host_port(address)))} within {PROBE_TIMEOUT:g} s (start it "
            "with `ray start --head`, or fix basecfg['address'])")
    _init(ray, address, kwargs)
    return Connection(address)


def _start_local(ray: ModuleType, kwargs: dict[str, Any]) -> Connection:
    say("dagrun: no running Ray cluster found (address='auto'); starting a local Ray "
        "instance for this sweep, stopped at its end")
    os.environ.pop("RAY_ADDRESS", None)
    try:
        info = ray.init(address="local", include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        raise BackendUnavailableError(f"could not start a local Ray instance: {exc}") from exc
    return Connection(str(info.address_info.get("gcs_address", "local")), local=True)
