"""The ``multiprocessing`` backend: a pool of worker processes on this machine.

``driver.py`` runs in the driver (the pool, timeouts, lost-run records); ``worker.py`` is the
code a worker process runs; ``spawning.py`` starts workers without re-running ``__main__``.
"""

from dagrun.backends.process.driver import ProcessBackend

__all__ = ["ProcessBackend"]
