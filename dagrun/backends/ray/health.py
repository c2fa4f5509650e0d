"""Is the Ray cluster still there? Bounded TCP probes of its GCS and of this machine's raylet.

Ray itself says little when its cluster goes: with the GCS killed, the driver's core worker
retries for 60 s and then ends the whole process; with the raylet killed, tasks fail one by
one as if their node died. The driver asks these questions between polls instead, so it can
stop submitting at once and stop cleanly (``RayBackend.poll`` raises ``ClusterLostError``).
A probe only connects and closes: nothing is sent to Ray.
"""

from __future__ import annotations

import socket
import time
from types import ModuleType

from dagrun.backends.ray.connect import host_port
from dagrun.record import record

PROBE_TIMEOUT = 1.0
CHECK_EVERY = 1.0


@record(frozen=True)
class Endpoint:
    """One server the driver depends on, e.g. ``the GCS at 10.0.0.1:6379``."""

    what: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.what} at {self.host}:{self.port}"

    def answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=PROBE_TIMEOUT):
                return True
        except OSError:
            return False


def endpoints(ray: ModuleType, address: str) -> list[Endpoint]:
    """What to watch once connected: the Ray Client server for ``ray://`` addresses, else
    the GCS and the raylet of the driver's own node (best effort: Ray's private details)."""
    if address.startswith("ray://"):
        host, port = host_port(address)
        return [Endpoint("the Ray Client server", host, port)]
    found: list[Endpoint] = []
    try:
        context = ray.get_runtime_context()
        host, port = host_port(str(context.gcs_address))
        found.append(Endpoint("the GCS", host, port))
        node_id = context.get_node_id()
        for node in ray.nodes():
            if node.get("NodeID") == node_id and node.get("NodeManagerPort"):
                found.append(Endpoint("this machine's raylet", str(node["NodeManagerAddress"]),
                                      int(node["NodeManagerPort"])))
    except Exception:  # Ray internals moved: watch what was found
        pass
    return found


class Watch:
    """The cluster's health, probed at most every ``CHECK_EVERY`` seconds."""

    def __init__(self, targets: list[Endpoint], lost_after: float) -> None:
        self.targets = targets
        self.lost_after = lost_after
        self.ok = True
        self._checked = 0.0
        self._down_since: float | None = None
        self._down: list[Endpoint] = []

    def check_now(self) -> bool:
        """Probe every endpoint now; whether all answered."""
        self._checked = time.monotonic()
        self._down = [t for t in self.targets if not t.answers()]
        self.ok = not self._down
        if self.ok:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = self._checked
        return self.ok

    def lost(self) -> str | None:
        """Why the cluster is gone, once it has not answered for ``lost_after`` s; else None."""
        if time.monotonic() - self._checked >= CHECK_EVERY or not self.ok:
            self.check_now()
        if self._down_since is None or time.monotonic() - self._down_since < self.lost_after:
            return None
        return " and ".join(f"{t} does not answer" for t in self._down)
