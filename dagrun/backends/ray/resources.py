"""What one run asks Ray for, and whether any node of the cluster can ever give it.

A run reserves ``num_cpus``, ``num_gpus`` and ``memory`` (= ``max_memory`` bytes) from the
basecfg; a cfg may override its own with the same keys (``num_cpus``, ``num_gpus``,
``max_memory``), as it may override ``repetitions``. Those keys stay in the cfg the stage
functions receive.

Ray never fails a task that no node can hold: it stays pending for ever. So dagrun compares
each request with the *per-node* totals of ``ray.nodes()`` (a task must fit on one node;
``ray.cluster_resources()`` adds nodes up) before submitting, and again while it is pending.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dagrun.config import Settings
from dagrun.errors import ConfigError
from dagrun.record import record

# Ray stores resources as fixed-point int64 with 4 decimals: larger values overflow (and a
# task asking 10**15 bytes was seen running at once). Refuse them up front.
MAX_RAY_QUANTITY = 9.2e14
# ... and Ray refuses a non-zero amount that this fixed point rounds to 0 (``num_cpus=
# 0.00001``: "The precision of the fractional quantity ... cannot go beyond 0.0001"), raising
# ValueError at submission, after other runs have started.
RESOURCE_UNIT_SCALING = 10_000  # ray._raylet.RESOURCE_UNIT_SCALING
GB = float(1 << 30)


@record(frozen=True)
class Request:
    """The resources one run reserves on one node."""

    num_cpus: float
    num_gpus: float
    memory: int

    def as_ray(self) -> dict[str, float]:
        """Ray's resource names (``CPU``, ``GPU``, ``memory``) of the non-zero amounts."""
        amounts = {"CPU": self.num_cpus, "GPU": self.num_gpus, "memory": float(self.memory)}
        return {k: v for k, v in amounts.items() if v > 0}

    def options(self) -> dict[str, Any]:
        """Keyword arguments of ``remote_fn.options``."""
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "memory": self.memory}

    def __str__(self) -> str:
        return describe(self.as_ray())


def describe(resources: Mapping[str, float]) -> str:
    parts = []
    for key in ("CPU", "GPU", "memory"):
        value = resources.get(key, 0.0)
        parts.append(f"memory {value / GB:.3g} GB" if key == "memory" else f"{key} {value:g}")
    return ", ".join(parts)


def _number(value: Any, minimum: float, strict: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value > minimum if strict else value >= minimum


def _check_precision(where: str, key: str, value: float) -> None:
    """Ray's own rule (``ray_option_utils._validate_resource_quantity``): a fractional amount
    must not vanish in its fixed point of 0.0001 units; amounts above that are rounded."""
    if isinstance(value, float) and value != 0.0 and int(value * RESOURCE_UNIT_SCALING) == 0:
        smallest = 1 / RESOURCE_UNIT_SCALING
        raise ConfigError(f"{where}[{key!r}] = {value!r} is finer than Ray can reserve "
                          f"(fractions of at least {smallest:g}); use 0 or a larger amount")
    if value >= MAX_RAY_QUANTITY:
        raise ConfigError(f"{where}[{key!r}] = {value!r} is more than Ray can represent "
                          f"(< {MAX_RAY_QUANTITY:.2g})")


def request_of(cfg: Mapping[str, Any], settings: Settings, where: str) -> Request:
    """The request of runs of ``cfg``: its own keys, else the basecfg's; ``ConfigError`` when
    a value is not a usable amount (``where`` names the cfg in the message)."""
    cpus = cfg.get("num_cpus", settings.num_cpus)
    gpus = cfg.get("num_gpus", settings.num_gpus)
    memory = cfg.get("max_memory", settings.max_memory)
    if not _number(cpus, 0, strict=True):
        raise ConfigError(f"{where}['num_cpus'] must be a number > 0, got {cpus!r}")
    if not _number(gpus, 0, strict=False):
        raise ConfigError(f"{where}['num_gpus'] must be a number >= 0, got {gpus!r}")
    for key, value in (("num_cpus", cpus), ("num_gpus", gpus)):
        _check_precision(where, key, value)
    if isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0:
        raise ConfigError(f"{where}['max_memory'] must be a positive number of bytes, "
                          f"got {memory!r}")
    if memory >= MAX_RAY_QUANTITY:
        raise ConfigError(f"{where}['max_memory'] = {memory} bytes is more than Ray can "
                          f"represent (< {MAX_RAY_QUANTITY:.2g})")
    return Request(float(cpus), float(gpus), memory)


def requests_of(cfgs: Sequence[Mapping[str, Any]], settings: Settings) -> list[Request]:
    """One request per cfg, in their order (validated before any run starts)."""
    request_of({}, settings, "basecfg")
    return [request_of(cfg, settings, f"cfgs[{i}]") for i, cfg in enumerate(cfgs)]


def alive_nodes(nodes: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Total resources of each alive node, from ``ray.nodes()``."""
    return [dict(n.get("Resources") or {}) for n in nodes if n.get("Alive")]


def fits(request: Request, node: Mapping[str, float]) -> bool:
    return all(node.get(k, 0.0) >= v for k, v in request.as_ray().items())


def unschedulable_reason(request: Request, nodes: Sequence[Mapping[str, float]]) -> str | None:
    """Why no node can ever run ``request`` (None when one can)."""
    if any(fits(request, node) for node in nodes):
        return None
    if not nodes:
        return "the Ray cluster has no alive node"
    biggest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0),
                                        n.get("memory", 0.0)))
    return (f"the run asks for {request} on one node, but no node of the Ray cluster has "
            f"that much ({len(nodes)} node(s); the largest: {describe(biggest)}); lower "
            "num_cpus / num_gpus / max_memory (in basecfg or in this cfg) or add a node "
            "that big")


def slots(request: Request, nodes: Sequence[Mapping[str, float]]) -> int:
    """How many runs of ``request`` the cluster holds at once (whole runs per node)."""
    total = 0
    for node in nodes:
        per_node = [int(node.get(k, 0.0) // v) for k, v in request.as_ray().items()]
        total += min(per_node) if per_node else 0
    return total


def free_for(request: Request, nodes: Sequence[Mapping[str, float]],
             reserved: Sequence[Request]) -> bool:
    """Whether the cluster's totals minus what dagrun's in-flight runs reserve hold one more
    run of ``request`` (dagrun submits only then, so a submitted run starts at once)."""
    for key, amount in request.as_ray().items():
        total = sum(node.get(key, 0.0) for node in nodes)
        used = sum(r.as_ray().get(key, 0.0) for r in reserved)
        if total - used < amount - 1e-9:
            return False
    return True
