"""dagrun: run experiment sweeps the way Make runs builds.

Every run is a folder on disk, every stage (pre -> fit -> post) leaves a marker, and running
the sweep again does only what is not done yet.

The API is imported on first use (``dagrun.run_experiments`` loads the engine then), so the
command line's read-only commands (``status``, ``show``, ``results``) start without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dagrun.errors import ChangedConfigError, ConfigError, DagrunError, SweepBusyError

if TYPE_CHECKING:
    from dagrun.api import read_results, resume, run_experiments
    from dagrun.resultstable import results_table
    from dagrun.summary import Summary
    from dagrun.sweep import Variation, generate_configs

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

# public name -> the module that defines it
_LAZY = {"read_results": "dagrun.api", "resume": "dagrun.api",
         "run_experiments": "dagrun.api", "results_table": "dagrun.resultstable",
         "Summary": "dagrun.summary", "Variation": "dagrun.sweep",
         "generate_configs": "dagrun.sweep"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dagrun' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


__all__ = [
    "ChangedConfigError",
    "ConfigError",
    "DagrunError",
    "Summary",
    "SweepBusyError",
    "Variation",
    "generate_configs",
    "read_results",
    "results_table",
    "resume",
    "run_experiments",
]
