"""Start worker processes with ``spawn`` without re-running the user's main script.

``multiprocessing``'s spawn start method makes every child import the parent's ``__main__``
file, which re-executes a script's top level (and, in a script without an
``if __name__ == "__main__":`` guard, tries to start the sweep again in each worker). dagrun's
workers do not need ``__main__``: they receive the workflow cloudpickled, functions of
``__main__`` included by value. ``WORKER_CONTEXT`` is a spawn context whose processes skip
that import; other processes of the program are unaffected.

Its processes also start in their own session (``os.setsid()`` is the first statement the
new interpreter runs): a terminal's Ctrl-C goes to the foreground process group, so it
reaches the driver only, even while a worker is still starting up. The driver then stops the
workers itself (``dagrun.run.proctree`` says how their process trees are stopped).
"""

from __future__ import annotations

import multiprocessing.spawn
import threading
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

_local = threading.local()
_original_preparation_data = multiprocessing.spawn.get_preparation_data
_original_command_line = multiprocessing.spawn.get_command_line
_NEW_SESSION = "import os; os.setsid(); "


def _preparation_data(name: str) -> dict[str, Any]:
    data: dict[str, Any] = _original_preparation_data(name)
    if getattr(_local, "skip_main", False):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


def _command_line(**kwds: Any) -> list[str]:
    line: list[str] = _original_command_line(**kwds)
    if getattr(_local, "skip_main", False) and "-c" in line:
        at = line.index("-c") + 1
        line[at] = _NEW_SESSION + line[at]
    return line


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


# The preparation data and the command line are built inside ``Process.start`` on the
# starting thread, so the thread-local flag confines the change to dagrun's own workers.
multiprocessing.spawn.get_preparation_data = _preparation_data
multiprocessing.spawn.get_command_line = _command_line
WORKER_CONTEXT = _WorkerContext()
