"""dagrun: run experiment sweeps the way Make runs builds.

Every run is a folder on disk, every stage (pre -> fit -> post) leaves a marker, and running
the sweep again does only what is not done yet.
"""

from dagrun.api import read_results, resume, run_experiments
from dagrun.errors import ChangedConfigError, ConfigError, DagrunError, SweepBusyError
from dagrun.results import results_table
from dagrun.summary import Summary
from dagrun.sweep import Variation, generate_configs

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

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
