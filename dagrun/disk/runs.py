"""The state of every run, read from the disk alone.

One ``os.listdir`` per run folder tells which markers and failure records exist; no file is
opened. Runs of experiments that ``results.jsonl`` lists for the same config (see
``dagrun.results.reduce``) are checked with two ``stat`` calls instead. That keeps planning and
``dagrun status`` fast at 100,000 runs. Deciding *why* a run executes is ``dagrun.disk.plan``'s.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Iterator, Set
from typing import NamedTuple

from dagrun.disk.layout import (
    PRUNED,
    STAGES,
    RunDir,
    Stage,
    SweepDir,
    error_name,
    marker_name,
)

_MARKERS = {marker_name(s): s for s in STAGES}
_ERRORS = {error_name(s): s for s in STAGES}


class RunState(str, enum.Enum):
    DONE = "done"
    PENDING = "pending"  # nothing done yet
    INCOMPLETE = "incomplete"  # some stages done, none failed (e.g. interrupted)
    FAILED = "failed"  # the next stage to run failed last time
    PRUNED = "pruned"  # a search's pruner stopped it: done, never run again


class Experiment(NamedTuple):
    """One entry of the plan: an experiment id, its repetitions, its JSON config (the
    readable view, for results lines and messages) and its config's content digest (for
    comparisons; empty when unknown, e.g. a plan written by an older dagrun), and the digests
    an older dagrun gave the same config (``aliases``: markers written then carry one). A
    tuple: 100,000 of them are built on every status and execute."""

    exp_id: int
    repetitions: int
    config: dict[str, object]
    digest: str = ""
    aliases: tuple[str, ...] = ()

    def holds(self, config_digest: str | None) -> bool:
        """Whether a marker's config digest is this experiment's (markers without one, and
        experiments without one, match: an older dagrun wrote them)."""
        return not config_digest or not self.digest or config_digest == self.digest \
            or config_digest in self.aliases

    @property
    def key(self) -> str:
        """What a results line of this experiment must have been reduced from."""
        return f"{self.digest}/{self.repetitions}"


class RunStatus(NamedTuple):
    """One run as the disk shows it (a tuple: cheap at 100,000 runs)."""

    exp_id: int
    rep: int
    run: RunDir
    done: frozenset[Stage]
    failed: frozenset[Stage]
    verified: bool = False  # complete, and listed in results.jsonl for the same config
    pruned: bool = False  # a search's pruner stopped it (RUN/pruned.json): done

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
    def last_done(self) -> Stage | None:
        """The latest stage with a marker (whose marker describes the run best)."""
        for stage in reversed(STAGES):
            if stage in self.done:
                return stage
        return None

    @property
    def failed_stage(self) -> Stage | None:
        """The earliest failed stage at or after the resume point, if any."""
        nxt = self.next_stage
        if nxt is None:
            return None
        stages = [s for s in self.failed if s.order >= nxt.order]
        return min(stages, key=lambda s: s.order) if stages else None

    @property
    def state(self) -> RunState:
        if self.pruned:
            return RunState.PRUNED
        if self.next_stage is None:
            return RunState.DONE
        if self.failed_stage is not None:
            return RunState.FAILED
        return RunState.INCOMPLETE if self.done else RunState.PENDING

    @property
    def label(self) -> str:
        return f"{self.exp_id}/{self.rep}"


_MARKER_NAMES = frozenset(_MARKERS)
_ERROR_NAMES = frozenset(_ERRORS)
_EMPTY: frozenset[Stage] = frozenset()
_ALL = frozenset(STAGES)


def scan_run(exp_id: int, rep: int, run: RunDir) -> RunStatus:
    """One ``listdir``; set intersections keep the per-run Python work small."""
    try:
        names = os.listdir(run.path)
    except (FileNotFoundError, NotADirectoryError):
        return RunStatus(exp_id, rep, run, _EMPTY, _EMPTY)
    present = _MARKER_NAMES.intersection(names)
    done = frozenset(_MARKERS[n] for n in present) if present else _EMPTY
    errors = _ERROR_NAMES.intersection(names)
    failed = frozenset(_ERRORS[n] for n in errors) if errors else _EMPTY
    return RunStatus(exp_id, rep, run, done, failed, False, PRUNED in names)


def run_dirs(sweep: SweepDir, exp: Experiment) -> Iterator[tuple[int, RunDir]]:
    for rep in range(exp.repetitions):
        yield rep, sweep.run_dir(exp.exp_id, rep, exp.repetitions)


# post's marker and artifact relative to a run folder, spelled once (by layout) for the loop
_POST_MARKER = RunDir("").marker(Stage.POST)
_POST_ARTIFACT = RunDir("").artifact(Stage.POST)


def scan(sweep: SweepDir, experiments: Iterable[Experiment], trusted: Set[int] = frozenset(),
         newer_than: int = -1) -> list[RunStatus]:
    """The status of every run of ``experiments``, in (id, rep) order.

    Runs of ``trusted`` experiments (listed in results.jsonl for their current config and
    repetitions, the file written at ``newer_than``) are taken as complete and ``verified``
    after two ``stat`` calls when post's marker exists and post.json is unchanged since.
    Everything else is read with one ``listdir``, but for experiments whose folder OUT
    does not hold (one listing of OUT says so: a new sweep's runs cost no call each).
    """
    out: list[RunStatus] = []
    append = out.append  # the loop runs once per run: keep its Python work small
    stat = os.stat
    try:  # an experiment OUT does not hold has no run on disk: no listdir of each
        held: Set[str] | None = set(os.listdir(sweep.path))
    except FileNotFoundError:
        held = frozenset()
    except OSError:  # not listable (permissions): every run is looked at
        held = None
    for exp in experiments:
        exp_id = exp.exp_id
        quick = exp_id in trusted
        absent = held is not None and str(exp_id) not in held
        for rep, path in enumerate(sweep.run_paths(exp_id, exp.repetitions)):
            if absent:
                append(RunStatus(exp_id, rep, RunDir(path), _EMPTY, _EMPTY))
                continue
            if quick:  # post's marker exists and post.json is unchanged since it was listed
                try:
                    stat(path + _POST_MARKER)
                    if stat(path + _POST_ARTIFACT).st_mtime_ns <= newer_than:
                        append(RunStatus(exp_id, rep, RunDir(path), _ALL, _EMPTY, True))
                        continue
                except OSError:
                    pass
            append(scan_run(exp_id, rep, RunDir(path)))
    return out
