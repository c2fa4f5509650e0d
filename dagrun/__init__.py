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
from dagrun.version import __version__ as __version__

if TYPE_CHECKING:
    from dagrun.api import read_results, resume, run_experiments
    from dagrun.backends import register_backend
    from dagrun.code.values import load_value
    from dagrun.results.table import read_runs, results_table
    from dagrun.run.summary import Summary
    from dagrun.search.pruning import Pruned, report
    from dagrun.search.space import Categorical, Float, Int
    from dagrun.sweep import Variation, generate_configs


# public name -> the module that defines it
_LAZY = {"read_results": "dagrun.api", "resume": "dagrun.api",
         "run_experiments": "dagrun.api", "results_table": "dagrun.results.table",
         "read_runs": "dagrun.results.table",
         "Summary": "dagrun.run.summary", "Variation": "dagrun.sweep",
         "generate_configs": "dagrun.sweep", "register_backend": "dagrun.backends",
         "load_value": "dagrun.code.values", "Float": "dagrun.search.space",
         "Int": "dagrun.search.space", "Categorical": "dagrun.search.space",
         "report": "dagrun.search.pruning", "Pruned": "dagrun.search.pruning"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dagrun' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


__all__ = [
    "Categorical",
    "ChangedConfigError",
    "ConfigError",
    "DagrunError",
    "Float",
    "Int",
    "Pruned",
    "Summary",
    "SweepBusyError",
    "Variation",
    "generate_configs",
    "load_value",
    "read_results",
    "read_runs",
    "register_backend",
    "report",
    "results_table",
    "resume",
    "run_experiments",
]
