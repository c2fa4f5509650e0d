"""Exceptions, typed by who caused them.

* ``ConfigError`` and ``UsageError``: the user asked for something that cannot work. The CLI
  prints one line and exits 2; the API raises before anything is written.
* ``SweepBusyError``: another driver holds the sweep; also the user's to resolve (exit 2).
* A failing *run* is never an exception that leaves the engine: it becomes a ``Failure``
  record on disk (see ``dagrun.run.stages``).
"""

from __future__ import annotations

import enum


class DagrunError(Exception):
    """Base class of every error dagrun raises on purpose."""


class ConfigError(DagrunError, ValueError):
    """A bad ``basecfg`` or ``cfgs``: names the key and what is expected."""


class ChangedConfigError(ConfigError):
    """Configs of existing experiment ids differ from what the sweep on disk was run with."""


class UsageError(DagrunError):
    """A bad command line, workflow file or sweep folder."""


class SweepBusyError(DagrunError):
    """Another driver is executing the same sweep."""


class BackendUnavailableError(DagrunError):
    """A backend cannot be used here (package missing, cluster or hosts unreachable)."""


class EnvironmentProblem(DagrunError):
    """dagrun cannot work in this environment (read-only or full disk, a damaged state
    folder): not a bug of the user's workflow nor of dagrun; one line, exit 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached the driver: stop like Ctrl-C (runs stopped, finished stages
    kept, results rewritten), then exit with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class ClusterLostError(DagrunError):
    """The cluster itself went away during a sweep (a Ray head or raylet died): the
    environment failed, not the user's runs nor their config. Finished stages are kept, the
    runs in flight are not counted as failed, results.jsonl is rewritten; one line says so."""


class UnsafePickleError(DagrunError):
    """A pickle file is not owned by the current user or is writable by others."""


class DagrunWarning(UserWarning):
    """A warning of dagrun itself; the CLI shows it as one ``dagrun: warning:`` line (the
    user's own warnings keep Python's format, with category and location)."""


class FailureKind(str, enum.Enum):
    """Why a run failed; written as ``kind`` into ``<stage>.error``."""

    EXCEPTION = "exception"  # the user's stage function raised
    BAD_OUTPUT = "bad_output"  # post returned something that is not a dict of metrics
    TIMEOUT = "timeout"  # the run exceeded ``timeout`` and was killed
    CRASHED = "crashed"  # the process running it died (segfault, os._exit, OOM kill)
    UNSCHEDULABLE = "unschedulable"  # the backend can never place it (resources)
    HOST_DOWN = "host_down"  # the machine running it became unreachable
    ENGINE = "engine"  # dagrun itself could not run it (e.g. out path not visible)
