"""Start worker processes with ``spawn`` without re-running the user's main script.

``multiprocessing``'s spawn start method makes every child import the parent's ``__main__``
file, which re-executes a script's top level (and, in a script without an
``if __name__ == "__main__":`` guard, tries to start the sweep again in each worker). dagrun's
workers do not need ``__main__``: they receive the workflow cloudpickled, functions of
``__main__`` included by value. ``WORKER_CONTEXT`` is a spawn context whose processes skip
that import; other processes of the program are unaffected.
"""

from __future__ import annotations

import multiprocessing.spawn
import threading
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

_local = threading.local()
_original_preparation_data = multiprocessing.spawn.get_preparation_data


def _preparation_data(name: str) -> dict[str, Any]:
    data: dict[str, Any] = _original_preparation_data(name)
    if getattr(_local, "skip_main", False):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


class _WorkerProcess(SpawnProcess):
    """A spawned process that does not import the parent's ``__main__``."""

    def start(self) -> None:
        _local.skip_main = True
        try:
            super().start()
        finally:
            _local.skip_main = False


class _WorkerContext(SpawnContext):
    Process = _WorkerProcess


# The preparation data is built inside ``Process.start`` on the starting thread, so the
# thread-local flag confines the change to dagrun's own workers.
multiprocessing.spawn.get_preparation_data = _preparation_data
WORKER_CONTEXT = _WorkerContext()
