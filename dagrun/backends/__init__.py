"""The registry of backends: the only list of backend names dagrun knows.

Each entry names a module and a class, imported only when that backend is chosen, so an
optional engine (Ray) costs nothing until used. ``register_backend`` adds one; config
validation asks ``backend_names()``, so a registered backend is valid everywhere.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from dagrun.errors import BackendUnavailableError

if TYPE_CHECKING:
    from dagrun.backends.base import Backend

# name -> (module, class). Modules are imported only when their backend is chosen.
_REGISTRY: dict[str, tuple[str, str]] = {
    "single": ("dagrun.backends.single", "SingleBackend"),
    "multiprocessing": ("dagrun.backends.process.driver", "ProcessBackend"),
    "ray": ("dagrun.backends.ray.driver", "RayBackend"),
    "ssh": ("dagrun.backends.ssh.driver", "SshBackend"),
    "slurm": ("dagrun.backends.slurm.driver", "SlurmBackend"),
}
ALIASES = {"malocher": "ssh"}


def register_backend(name: str, module: str, cls: str) -> None:
    """Make a backend available by name (``module:cls`` is imported on first use)."""
    _REGISTRY[name] = (module, cls)


def backend_names() -> tuple[str, ...]:
    """Every registered backend name, in registration order."""
    return tuple(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    try:
        module_name, cls_name = _REGISTRY[name]
    except KeyError:
        raise BackendUnavailableError(
            f"backend {name!r} is not available in this version of dagrun "
            f"(available: {', '.join(sorted(_REGISTRY))})"
        ) from None
    module = importlib.import_module(module_name)
    cls: type[Backend] = getattr(module, cls_name)
    return cls


__all__ = ["ALIASES", "backend_class", "backend_names", "register_backend"]
