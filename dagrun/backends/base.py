"""The backend interface: a backend only runs runs; the disk and the scheduler decide what.

A backend receives ``RunTask``s through ``submit`` and hands back ``RunOutcome``s from
``poll``. Everything that touches a run's files happens in ``dagrun.run.stages.StageRunner``,
wherever the backend runs it. ``shutdown(kill=True)`` must leave no process of the sweep
running (Ctrl-C, errors).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from dagrun.code.workflow import Workflow
from dagrun.config import Settings
from dagrun.disk.layout import SweepDir
from dagrun.run.stages import RunOutcome, RunTask
from dagrun.run.summary import Summary


class Backend(abc.ABC):
    """Base class of every backend; subclasses implement ``submit`` and ``poll``."""

    name: ClassVar[str]
    # its workers claim runs from the disk themselves (``dagrun worker``; slurm): the
    # scheduler hands it every run at once through ``run_pulled``, not ``submit``/``poll``
    pulls_runs: ClassVar[bool] = False
    # how many runs this execution has to do, set before ``start`` (None: not known); a
    # backend starts no more workers than that
    expected_runs: int | None = None

    def __init__(self, settings: Settings, sweep: SweepDir, workflow: Workflow,
                 fingerprints: dict[str, str]) -> None:
        self.settings = settings
        self.sweep = sweep
        self.workflow = workflow
        self.fingerprints = fingerprints

    @classmethod  # noqa: B027 - a hook that does nothing by default
    def check(cls, settings: Settings, cfgs: Sequence[Mapping[str, Any]]) -> None:
        """Check this backend's own settings (and per-cfg values it reads) before anything
        is written; raise ``ConfigError`` or ``BackendUnavailableError``. Nothing by default."""

    @classmethod
    def workers_alive(cls, sweep: SweepDir) -> bool:
        """Whether workers an earlier execute of ``sweep`` started are still there (a
        ``pulls_runs`` backend's; they outlive that execute by a moment)."""
        return False

    @property
    def capacity(self) -> int:
        """How many runs the backend can execute at once (the scheduler keeps it fed)."""
        return 1

    @property
    def ahead(self) -> int | None:
        """Runs the backend holds beside those it executes, by design (``None``: the
        scheduler's default prefetch; see ``scheduler.submit_window``)."""
        return None

    def start(self) -> None:  # noqa: B027 - a hook that does nothing by default
        """Acquire resources (processes, cluster connection). Does nothing by default."""

    def extend(self, workflow: Workflow) -> None:
        """The sweep gained experiments while it runs (a search's trials asked as slots
        free): ``workflow`` knows them too. Processes already started learn each new
        experiment from its runs (``RunTask.adds``); a backend that reads cfgs in the driver
        (resources per cfg) reads them here."""
        self.workflow = workflow

    @abc.abstractmethod
    def submit(self, task: RunTask) -> None:
        """Queue one run for execution."""

    @abc.abstractmethod
    def poll(self, timeout: float) -> list[RunOutcome]:
        """Outcomes of runs finished since the last call, waiting at most ``timeout`` s."""

    def run_pulled(self, tasks: list[RunTask], summary: Summary, *, detach: bool) -> None:
        """A ``pulls_runs`` backend: have ``tasks`` executed, filling ``summary`` (done,
        failed, notes); with ``detach``, start them and return at once."""
        raise NotImplementedError(f"backend {self.name!r} does not pull runs")

    def running(self) -> int:
        """How many submitted runs have not finished yet."""
        return 0

    def describe(self) -> str:
        """One line for the start of a sweep, e.g. ``multiprocessing, 4 workers``."""
        return self.name

    def notes(self) -> list[str]:
        """Lines for the end-of-sweep summary (e.g. which ssh host failed and why)."""
        return []

    def shutdown(self, *, kill: bool = False) -> None:  # noqa: B027 - a default hook
        """Release resources; with ``kill``, stop running runs at once. Idempotent."""

    def before_threads(self) -> None:  # noqa: B027 - a default hook
        """Called before the driver starts threads of its own for the execution (the
        progress bar's, the lease gate's): a backend that forks processes starts them here
        (``start`` is called later all the same)."""

    def __enter__(self) -> Backend:
        self.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.shutdown(kill=exc_type is not None)
