"""What to run and why: one planner for ``execute``, ``--dry-run``, ``resume`` and ``status``.

``make_plan`` takes the current experiments (their ids already matched to the sweep's by
content, ``dagrun.disk.identity``), reads the state of every run (``dagrun.disk.runs``),
checks each run's own markers against its experiment's config digest and its stages' code
fingerprints, and gives every run exactly one ``Reason``. What ``--dry-run`` and ``status``
print is what ``execute`` does.

Reading is kept cheap at 100,000 runs: runs of experiments whose results.jsonl line was
reduced from the same config and repetitions are verified with two ``stat`` calls; only the
others are listed, and only their latest marker (and a done run's post.json) is read.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from dagrun.disk import atomic, codecheck, trust
from dagrun.disk.codecheck import CodeChanges
from dagrun.disk.layout import Stage, SweepDir
from dagrun.disk.planstore import plan_digest, stored_digest
from dagrun.disk.records import Marker, read_scores
from dagrun.disk.runs import Experiment, RunState, RunStatus, run_dirs, scan, scan_run
from dagrun.record import field, record

__all__ = ["Experiment", "Plan", "PlannedRun", "Reason", "RunState", "RunStatus",
           "make_plan", "run_dirs", "scan", "scan_run"]


class Reason(str, enum.Enum):
    """Why a run executes (or ``DONE``: it does not)."""

    DONE = "done"
    MISSING = "missing"
    FAILED = "failed"  # in PlannedRun.stage, last time
    INCOMPLETE = "incomplete"  # resumes at PlannedRun.stage
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
        if self.reason is Reason.OTHER_CONFIG:
            return frozenset()
        if self.reason is Reason.UNREADABLE:
            return self.status.done - {Stage.POST}
        return self.status.done


@record
class Plan:
    """Every run of the current experiments with its reason, and the code that changed."""

    sweep: SweepDir
    experiments: list[Experiment]
    runs: list[PlannedRun]
    code: CodeChanges = field(default_factory=lambda: CodeChanges({}))
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
        """Lines a user should read before runs start (runs of other configs)."""
        lines = []
        other = self.of(Reason.OTHER_CONFIG)
        if other:
            lines.append(f"{len(other)} run(s) hold results computed for another config "
                         f"(e.g. {other[0].status.run.path}): they are recomputed")
        return lines


def make_plan(sweep: SweepDir, experiments: Sequence[Experiment],
              fingerprints: Mapping[str, str] | None = None, rerun_changed: bool = False,
              compare: bool = True, orphans: Sequence[Experiment] = ()) -> Plan:
    """The plan of ``experiments`` in ``sweep``; writes nothing.

    ``fingerprints``: the stage code now (``None``: unknown, e.g. ``status``; code changes
    are then not looked for). ``compare``: compare with the stored plan (``status`` plans
    the stored plan itself); ``orphans``: the known experiments no longer in the cfgs.
    """
    experiments = list(experiments)
    stored_same = not compare or stored_digest(sweep) == plan_digest(experiments, orphans)
    suspects = codecheck.suspect_stages(sweep, fingerprints) if fingerprints else []
    trusted = set() if suspects else trust.trusted_ids(sweep, experiments)
    written = atomic.mtime_ns(sweep.results, -1) if trusted else -1
    statuses = scan(sweep, experiments, trusted, written)
    code = codecheck.find_changes(sweep, statuses, fingerprints) if fingerprints \
        else CodeChanges({})
    by_id = {e.exp_id: e for e in experiments}
    runs = [_planned(s, by_id[s.exp_id], code if rerun_changed else None) for s in statuses]
    return Plan(sweep, experiments, runs, code, stored_same)


def _planned(status: RunStatus, exp: Experiment, code: CodeChanges | None) -> PlannedRun:
    """The one reason of one run."""
    if not status.done and not status.failed and not status.pruned:  # nothing on disk
        return PlannedRun(status, Reason.MISSING)  # (nor any code of it to have changed)
    if status.verified or status.pruned:  # a pruned trial is done (dagrun.search)
        return PlannedRun(status, Reason.DONE)
    last = status.last_done
    if last is not None and exp.digest:
        marker = Marker.read(status.run, last)
        if marker is not None and not exp.holds(marker.config):
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
