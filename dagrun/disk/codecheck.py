"""Detect stage code that changed since existing markers were written.

Each marker keeps the fingerprint of its stage's code. Reading every marker of a 100,000-run
sweep on each execution would be slow, so ``OUT/.dagrun/code.json`` remembers which
fingerprints have ever written markers here; markers are read only for a stage that has
been computed with code other than the current one, or for every stage when code.json is
missing (lost with ``.dagrun/``): the markers themselves keep the fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from dagrun.disk import atomic
from dagrun.disk.layout import STAGES, RunDir, Stage, SweepDir
from dagrun.disk.records import Marker
from dagrun.disk.runs import RunStatus


@dataclass(frozen=True)
class CodeChanges:
    """Runs whose marker of a stage was written by other code than the current one."""

    stale: dict[Stage, list[RunStatus]]

    def __bool__(self) -> bool:
        return any(self.stale.values())

    def lines(self) -> list[str]:
        return [f"the code of {stage.value} changed since {len(runs)} run(s) computed it"
                for stage, runs in self.stale.items() if runs]

    @cached_property
    def _first(self) -> dict[str, Stage]:
        first: dict[str, Stage] = {}
        for stage in STAGES:
            for status in self.stale.get(stage, []):
                first.setdefault(status.run.path, stage)
        return first

    def runs(self) -> dict[str, Stage]:
        """Run folder -> the earliest stage to recompute."""
        return self._first

    def first_stage(self, status: RunStatus) -> Stage | None:
        """The earliest stage of ``status`` to recompute, if any."""
        return self._first.get(status.run.path)


def _read_seen(sweep: SweepDir) -> dict[str, list[str]] | None:
    data = atomic.read_json_or_none(sweep.code)
    return data if isinstance(data, dict) else None


def suspect_stages(sweep: SweepDir, fingerprints: Mapping[str, str]) -> list[Stage]:
    """Stages that may have written markers here with code other than ``fingerprints``:
    those code.json says did, or all of them when code.json is missing or unreadable."""
    seen = _read_seen(sweep)
    if seen is None:
        return list(STAGES)
    return [s for s in STAGES if any(fp != fingerprints[s.value] for fp in seen.get(s.value, []))]


def find_changes(sweep: SweepDir, statuses: Iterable[RunStatus],
                 fingerprints: Mapping[str, str]) -> CodeChanges:
    """Runs per stage whose marker's code differs from ``fingerprints``."""
    suspects = suspect_stages(sweep, fingerprints)
    stale: dict[Stage, list[RunStatus]] = {s: [] for s in suspects}
    if suspects:
        for status in statuses:
            for stage in suspects:
                if stage in status.done and not status.verified:
                    marker = Marker.read(status.run, stage)
                    if marker is not None and marker.code not in (None,
                                                                  fingerprints[stage.value]):
                        stale[stage].append(status)
    return CodeChanges(stale)


def remember(sweep: SweepDir, fingerprints: Mapping[str, str], changes: CodeChanges,
             recomputed: bool, covers_plan: bool) -> None:
    """Record the current fingerprints, and forget old ones that no marker carries any more
    (known only when the checked runs are the whole plan and none kept stale markers)."""
    seen = _read_seen(sweep) or {}
    for stage in STAGES:
        old = set(seen.get(stage.value, []))
        if covers_plan and (recomputed or not changes.stale.get(stage)):
            old = set()
        old.add(fingerprints[stage.value])
        seen[stage.value] = sorted(old)
    atomic.write_json(sweep.code, seen)


def invalidate(changes: CodeChanges) -> int:
    """Remove the stale stage and every later one of each affected run; returns run count."""
    first = changes.runs()
    for path, stage in first.items():
        run = RunDir(path)
        for s in stage.and_after():
            for name in run.stage_files(s):
                atomic.remove(name)
    return len(first)
