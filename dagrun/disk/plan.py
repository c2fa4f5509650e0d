"""What to run and why: one planner for ``execute``, ``--dry-run``, ``resume`` and ``status``.

``make_plan`` compares the current experiments with the stored plan (changed configs are
refused unless ``rerun_changed``: the same ``ChangedConfigError`` for a dry run as for an
execution), reads the state of every run (``dagrun.disk.runs``), checks each run's own markers
against its experiment's config digest and its stages' code fingerprints, and gives every run
exactly one ``Reason``. What ``--dry-run`` and ``status`` print is what ``execute`` does.

Reading is kept cheap at 100,000 runs: runs of experiments whose results.jsonl line was
reduced from the same config and repetitions are verified with two ``stat`` calls; only the
others are listed, and only their latest marker (and a done run's post.json) is read.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from dagrun.disk import atomic, codecheck, trust
from dagrun.disk.codecheck import CodeChanges
from dagrun.disk.layout import Stage, SweepDir
from dagrun.disk.planstore import changed_experiments, plan_digest, read_plan, stored_digest
from dagrun.disk.records import Marker, read_scores
from dagrun.disk.runs import Experiment, RunState, RunStatus, run_dirs, scan, scan_run
from dagrun.errors import ChangedConfigError

__all__ = ["Experiment", "Plan", "PlannedRun", "Reason", "RunState", "RunStatus",
           "make_plan", "run_dirs", "scan", "scan_run"]


class Reason(str, enum.Enum):
    """Why a run executes (or ``DONE``: it does not)."""

    DONE = "done"
    MISSING = "missing"
    FAILED = "failed"  # in PlannedRun.stage, last time
    INCOMPLETE = "incomplete"  # resumes at PlannedRun.stage
    CONFIG_CHANGED = "config changed"
    OTHER_CONFIG = "holds results of another config"  # its markers' digest is not the plan's
    CODE_CHANGED = "code changed"  # of PlannedRun.stage
    UNREADABLE = "unreadable result"  # post.done exists, post.json cannot be read


class PlannedRun(NamedTuple):
    """One run of the plan with its reason (a tuple: cheap at 100,000 runs)."""

    status: RunStatus
    reason: Reason
    stage: Stage | None = None  # the stage the reason names

    @property
    def todo(self) -> bool:
        return self.reason is not Reason.DONE

    @property
    def text(self) -> str:
        """The reason in the words of ``--dry-run`` and ``status``."""
        reason, stage, nxt = self.reason, self.stage, self.status.next_stage
        if reason is Reason.FAILED and stage is not None and nxt is not None:
            return f"failed in {stage.value} last time; resumes at {nxt.value}"
        if reason is Reason.INCOMPLETE and nxt is not None:
            return f"incomplete; resumes at {nxt.value}"
        if reason is Reason.CODE_CHANGED and stage is not None:
            return f"code of {stage.value} changed"
        if reason is Reason.UNREADABLE:
            return "unreadable result (post.done exists, post.json cannot be read)"
        return str(reason.value)

    @property
    def done_stages(self) -> frozenset[Stage]:
        """The stages that count as done (what its markers say, if they are to be kept)."""
        if self.reason in (Reason.CONFIG_CHANGED, Reason.OTHER_CONFIG):
            return frozenset()
        if self.reason is Reason.UNREADABLE:
            return self.status.done - {Stage.POST}
        return self.status.done


@dataclass
class Plan:
    """Every run of the current experiments with its reason, and what changed."""

    sweep: SweepDir
    experiments: list[Experiment]
    runs: list[PlannedRun]
    changed: dict[int, list[str]] = field(default_factory=dict)  # id -> readable diff
    code: CodeChanges = field(default_factory=lambda: CodeChanges({}))
    dropped: list[int] = field(default_factory=list)  # stored ids beyond the current cfgs
    stored_same: bool = False  # the stored plan equals this one: nothing to write

    def todo(self) -> list[PlannedRun]:
        done = Reason.DONE  # (``PlannedRun.todo``, inline: once per run at 100,000 runs)
        return [r for r in self.runs if r.reason is not done]

    def reasons(self) -> collections.Counter[str]:
        return collections.Counter(r.text for r in self.runs)

    def complete(self) -> list[Experiment]:
        """Experiments whose every run is done (verified against its config)."""
        done = Reason.DONE
        pending = {r.status.exp_id for r in self.runs if r.reason is not done}
        return [e for e in self.experiments if e.exp_id not in pending]

    def standing(self) -> list[int]:
        """Experiments whose every run the planner verified against the experiment's line
        in results.jsonl (nothing of them runs): a rewrite copies those lines as they are."""
        unverified = {r.status.exp_id for r in self.runs if not r.status.verified}
        return [e.exp_id for e in self.experiments if e.exp_id not in unverified]

    def of(self, reason: Reason) -> list[PlannedRun]:
        return [r for r in self.runs if r.reason is reason]

    def notes(self) -> list[str]:
        """Lines a user should read before runs start (removed ids, runs of other configs)."""
        lines = []
        if self.dropped:
            ids = _id_ranges(self.dropped)
            lines.append(f"{len(self.dropped)} experiment(s) beyond the current cfgs (ids "
                         f"{ids}) left the plan and results.jsonl; their folders are kept")
        other = self.of(Reason.OTHER_CONFIG)
        if other:
            lines.append(f"{len(other)} run(s) hold results computed for another config "
                         f"(e.g. {other[0].status.run.path}): they are recomputed")
        return lines


def make_plan(sweep: SweepDir, experiments: Sequence[Experiment],
              fingerprints: Mapping[str, str] | None = None, rerun_changed: bool = False,
              compare: bool = True) -> Plan:
    """The plan of ``experiments`` in ``sweep``; writes nothing.

    ``fingerprints``: the stage code now (``None``: unknown, e.g. ``status``; code changes
    are then not looked for). ``compare``: compare with the stored plan (``status`` plans
    the stored plan itself). Raises ``ChangedConfigError`` when an experiment's config
    changed and not ``rerun_changed``.
    """
    experiments = list(experiments)
    stored_same = not compare or stored_digest(sweep) == plan_digest(experiments)
    stored = {} if stored_same else read_plan(sweep)
    changed = changed_experiments(stored, experiments)
    if changed and not rerun_changed:
        raise ChangedConfigError(changed_message(sweep, changed))
    current = {e.exp_id for e in experiments}
    dropped = sorted(i for i in stored if i not in current)
    suspects = codecheck.suspect_stages(sweep, fingerprints) if fingerprints else []
    trusted = set() if changed or suspects else trust.trusted_ids(sweep, experiments)
    written = atomic.mtime_ns(sweep.results, -1) if trusted else -1
    statuses = scan(sweep, experiments, trusted, written)
    code = codecheck.find_changes(sweep, statuses, fingerprints) if fingerprints \
        else CodeChanges({})
    by_id = {e.exp_id: e for e in experiments}
    runs = [_planned(s, by_id[s.exp_id], changed, code if rerun_changed else None)
            for s in statuses]
    return Plan(sweep, experiments, runs, changed, code, dropped, stored_same)


def _planned(status: RunStatus, exp: Experiment, changed: Mapping[int, list[str]],
             code: CodeChanges | None) -> PlannedRun:
    """The one reason of one run."""
    if status.exp_id in changed:
        return PlannedRun(status, Reason.CONFIG_CHANGED)
    if status.verified:
        return PlannedRun(status, Reason.DONE)
    last = status.last_done
    if last is not None and exp.digest:
        marker = Marker.read(status.run, last)
        if marker is not None and not marker.matches(exp.digest):
            return PlannedRun(status, Reason.OTHER_CONFIG)
    stale = code.first_stage(status) if code is not None else None
    if stale is not None:
        return PlannedRun(status, Reason.CODE_CHANGED, stale)
    nxt = status.next_stage
    if nxt is None:
        if read_scores(status.run) is None:
            return PlannedRun(status, Reason.UNREADABLE, Stage.POST)
        return PlannedRun(status, Reason.DONE)
    failed = status.failed_stage
    if failed is not None:
        return PlannedRun(status, Reason.FAILED, failed)
    if status.done:
        return PlannedRun(status, Reason.INCOMPLETE, nxt)
    return PlannedRun(status, Reason.MISSING)


def changed_message(sweep: SweepDir, changed: dict[int, list[str]]) -> str:
    """The one line of a ``ChangedConfigError``."""
    shown = []
    for exp_id, diff in list(changed.items())[:5]:
        shown.append(f"experiment {exp_id}: " + "; ".join(diff[:4]))
    more = f" (and {len(changed) - 5} more)" if len(changed) > 5 else ""
    return (f"{len(changed)} experiment(s) in {sweep.path} have a different config than the "
            f"one they were run with: {' | '.join(shown)}{more}. Use --rerun-changed "
            "(rerun_changed=True) to recompute them, or a new out_path")


def _id_ranges(ids: list[int]) -> str:
    """``[5, 6, 7, 9]`` -> ``"5-7, 9"``."""
    parts: list[str] = []
    start = prev = ids[0]
    for i in [*ids[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


