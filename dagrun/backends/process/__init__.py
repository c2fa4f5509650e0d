"""The ``multiprocessing`` backend: a pool of worker processes on this machine.

``driver.py`` runs in the driver (the pool, timeouts, lost-run records); ``worker.py`` is the
code a worker process runs; ``spawning.py`` starts workers without re-running ``__main__``.

Nothing is imported here: a worker imports ``runpool`` and ``worker`` only, never the
driver's pebble, tqdm and backend machinery (~60 ms of every worker's start). The registry
(``dagrun.backends``) names ``driver.ProcessBackend`` itself; ``ProcessBackend`` is still
found here, imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagrun.backends.process.driver import ProcessBackend


def __getattr__(name: str) -> Any:
    if name == "ProcessBackend":
        from dagrun.backends.process.driver import ProcessBackend

        return ProcessBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ProcessBackend"]
