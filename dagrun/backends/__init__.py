"""The registry of backends: the only list of backend names dagrun knows.

Each entry names a module and a class, imported only when that backend is chosen, so an
optional engine (Ray) costs nothing until used. ``register_backend`` adds one;
``validate_basecfg`` checks a basecfg against the names registered, so a registered backend is
valid everywhere.

The package holds one folder per backend beside ``base`` (the interface) and ``single``.
May import: the base modules, the wings ``disk``, ``code``, ``run``, ``results`` and this
package (never ``dagrun.worker`` or the top-level commands).
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from dagrun.config import BaseConfig, parse_basecfg
from dagrun.errors import BackendUnavailableError
from dagrun.record import replace

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


def validate_basecfg(basecfg: Any) -> BaseConfig:
    """``basecfg`` checked whole: every key's type and range (``dagrun.config``), then what
    only the registry knows: the backend's name (an alias resolved; an unknown name warned
    about and replaced by 'single') and each ssh host string, parsed strictly (brackets for
    IPv6, slots 1..1024, one ':' at most). Raises ``ConfigError`` on the first problem."""
    base = parse_basecfg(basecfg)
    settings = base.settings
    backend = ALIASES.get(settings.backend, settings.backend)
    names = backend_names()
    if backend not in names:
        aliases = ", ".join(f"{a!r} for {b}" for a, b in ALIASES.items())
        warnings.warn(
            f"unknown backend {backend!r}; valid backends are {', '.join(names)} "
            f"(and {aliases}). Using 'single'.",
            UserWarning, stacklevel=2,
        )
        backend = "single"
    if settings.hosts:
        from dagrun.backends.ssh.command import HostSpec

        for h in settings.hosts:
            HostSpec.parse(h)
    if backend == settings.backend:
        return base
    return replace(base, settings=replace(settings, backend=backend))


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


__all__ = ["ALIASES", "backend_class", "backend_names", "register_backend", "validate_basecfg"]
