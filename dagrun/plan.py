"""What to run and why: the state of every run, read from the disk alone.

One ``os.scandir`` per run folder tells which markers and failure records exist; no file is
opened. That keeps planning and ``dagrun status`` fast at 100,000 runs.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass

from dagrun.layout import STAGES, RunDir, Stage, SweepDir, error_name, marker_name

_MARKERS = {marker_name(s): s for s in STAGES}
_ERRORS = {error_name(s): s for s in STAGES}


class RunState(str, enum.Enum):
    DONE = "done"
    PENDING = "pending"  # nothing done yet
    INCOMPLETE = "incomplete"  # some stages done, none failed (e.g. interrupted)
    FAILED = "failed"  # the next stage to run failed last time


@dataclass(frozen=True)
class Experiment:
    """One entry of the plan: an experiment id, its repetitions and its JSON config."""

    exp_id: int
    repetitions: int
    config: dict[str, object]


@dataclass(frozen=True)
class RunStatus:
    """One run as the disk shows it."""

    exp_id: int
    rep: int
    run: RunDir
    done: frozenset[Stage]
    failed: frozenset[Stage]

    @property
    def next_stage(self) -> Stage | None:
        """The stage the run resumes at (``None``: complete).

        Markers decide; a later marker counts even if an earlier stage is not done (a stage
        whose output could not be pickled has no marker but its successors may).
        """
        if Stage.POST in self.done:
            return None
        if Stage.FIT in self.done:
            return Stage.POST
        if Stage.PRE in self.done:
            return Stage.FIT
        return Stage.PRE

    @property
    def state(self) -> RunState:
        nxt = self.next_stage
        if nxt is None:
            return RunState.DONE
        if self.failed and any(s.order >= nxt.order for s in self.failed):
            return RunState.FAILED
        return RunState.INCOMPLETE if self.done else RunState.PENDING

    @property
    def reason(self) -> str:
        """Why the run will execute, in the words of ``--dry-run``."""
        nxt = self.next_stage
        if nxt is None:
            return "done"
        state = self.state
        if state is RunState.FAILED:
            failed = min((s for s in self.failed if s.order >= nxt.order), key=lambda s: s.order)
            return f"failed in {failed.value} last time; resumes at {nxt.value}"
        if state is RunState.INCOMPLETE:
            return f"incomplete; resumes at {nxt.value}"
        return "missing"

    @property
    def label(self) -> str:
        return f"{self.exp_id}/{self.rep}"


def scan_run(exp_id: int, rep: int, run: RunDir) -> RunStatus:
    done: set[Stage] = set()
    failed: set[Stage] = set()
    try:
        with os.scandir(run.path) as it:
            for entry in it:
                stage = _MARKERS.get(entry.name)
                if stage is not None:
                    done.add(stage)
                    continue
                stage = _ERRORS.get(entry.name)
                if stage is not None:
                    failed.add(stage)
    except (FileNotFoundError, NotADirectoryError):
        pass
    return RunStatus(exp_id, rep, run, frozenset(done), frozenset(failed))


def run_dirs(sweep: SweepDir, exp: Experiment) -> Iterator[tuple[int, RunDir]]:
    for rep in range(exp.repetitions):
        yield rep, sweep.run_dir(exp.exp_id, rep, exp.repetitions)


def scan(sweep: SweepDir, experiments: list[Experiment]) -> list[RunStatus]:
    """The status of every run of ``experiments``, in (id, rep) order."""
    return [scan_run(exp.exp_id, rep, run)
            for exp in experiments for rep, run in run_dirs(sweep, exp)]
