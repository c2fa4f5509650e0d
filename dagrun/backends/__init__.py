"""Backends and the registry that picks one by name, importing optional engines lazily."""

from __future__ import annotations

import importlib

from dagrun.backends.base import Backend
from dagrun.errors import BackendUnavailableError

# name -> (module, class). Modules are imported only when their backend is chosen.
_REGISTRY: dict[str, tuple[str, str]] = {
    "single": ("dagrun.backends.single", "SingleBackend"),
    "multiprocessing": ("dagrun.backends.process", "ProcessBackend"),
    "ssh": ("dagrun.backends.ssh", "SshBackend"),
    "ray": ("dagrun.backends.ray_backend", "RayBackend"),
}


def register_backend(name: str, module: str, cls: str) -> None:
    """Make a backend available by name (``module:cls`` is imported on first use)."""
    _REGISTRY[name] = (module, cls)


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


__all__ = ["Backend", "backend_class", "register_backend"]
