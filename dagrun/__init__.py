"""dagrun: run experiment sweeps the way Make runs builds.

Every run is a folder on disk, every stage (pre -> fit -> post) leaves a marker, and running
the sweep again does only what is not done yet.
"""

from dagrun.api import read_results, resume, run_experiments
from dagrun.errors import ChangedConfigError, ConfigError, DagrunError, SweepBusyError
from dagrun.summary import Summary
from dagrun.sweep import Variation, generate_configs

__version__ = "0.1.0"

__all__ = [
    "ChangedConfigError",
    "ConfigError",
    "DagrunError",
    "Summary",
    "SweepBusyError",
    "Variation",
    "generate_configs",
    "read_results",
    "resume",
    "run_experiments",
]
