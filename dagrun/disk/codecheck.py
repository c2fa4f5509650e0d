"""Detect stage code that changed since existing markers were written.

Each marker keeps the fingerprint of its stage's code. Reading every marker of a 100,000-run
sweep on each execution would be slow, so ``OUT/.dagrun/code.json`` remembers which
fingerprints have ever written markers here; markers are read only for a stage that has
been computed with code other than the current one, or for every stage when code.json is
missing (lost with ``.dagrun/``): the markers themselves keep the fingerprint.

Fingerprints of an older scheme (``FINGERPRINT_SCHEME``: what a fingerprint covers changed)
cannot be compared with today's: the first execution under the new scheme takes the code the
sweep was last planned with (planned-code.json, or the one fingerprint code.json lists) as
the code of now, and code.json keeps that equivalence for the markers written then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property

from dagrun.disk import atomic, formatversion
from dagrun.disk.layout import STAGES, RunDir, Stage, SweepDir
from dagrun.disk.records import Marker
from dagrun.disk.runs import RunStatus
from dagrun.record import record

SCHEME = formatversion.FINGERPRINTS
_SCHEME_KEY, _SAME_KEY = "scheme", "equivalent"


@record(frozen=True)
class CodeChanges:
    """Runs whose marker of a stage was written by other code than the current one, and the
    fingerprints of an older scheme that stand for the current code (per stage: old -> new)."""

    stale: dict[Stage, list[RunStatus]]
    equivalent: dict[str, dict[str, str]] | None = None

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


def _read_seen(sweep: SweepDir) -> dict[str, object] | None:
    data = atomic.read_json_or_none(sweep.code)
    return data if isinstance(data, dict) else None


def _fingerprints_of(seen: dict[str, object] | None, stage: Stage) -> list[str]:
    found = seen.get(stage.value) if seen is not None else None
    return [f for f in found if isinstance(f, str)] if isinstance(found, list) else []


def equivalents(sweep: SweepDir, fingerprints: Mapping[str, str],
                seen: dict[str, object] | None = None) -> dict[str, dict[str, str]]:
    """Per stage, fingerprints of an older scheme that stand for the code of now: kept in
    code.json, plus (when code.json is of an older scheme) the code the sweep was last
    planned with, taken once as equal to the current code."""
    seen = _read_seen(sweep) if seen is None else seen
    if seen is None:
        return {}
    kept = seen.get(_SAME_KEY)
    same: dict[str, dict[str, str]] = {}
    if isinstance(kept, dict):
        same = {k: {str(a): str(b) for a, b in v.items()} for k, v in kept.items()
                if isinstance(v, dict)}
    if seen.get(_SCHEME_KEY) == SCHEME:
        return same
    planned = atomic.read_json_or_none(sweep.planned_code)
    last = planned.get("fingerprints") if isinstance(planned, dict) else None
    for stage in STAGES:
        old = last.get(stage.value) if isinstance(last, dict) else None
        listed = _fingerprints_of(seen, stage)
        if not isinstance(old, str) and len(listed) == 1:
            old = listed[0]
        if isinstance(old, str) and old != fingerprints[stage.value]:
            same.setdefault(stage.value, {})[old] = fingerprints[stage.value]
    return same


def _current(fp: str | None, stage: Stage, fingerprints: Mapping[str, str],
             same: Mapping[str, Mapping[str, str]]) -> bool:
    """Whether ``fp`` (a marker's or code.json's) is the stage's code of now."""
    now = fingerprints[stage.value]
    return fp is None or fp == now or same.get(stage.value, {}).get(fp) == now


def suspect_stages(sweep: SweepDir, fingerprints: Mapping[str, str]) -> list[Stage]:
    """Stages that may have written markers here with code other than ``fingerprints``:
    those code.json says did, or all of them when code.json is missing or unreadable."""
    seen = _read_seen(sweep)
    if seen is None:
        return list(STAGES)
    same = equivalents(sweep, fingerprints, seen)
    return [s for s in STAGES
            if any(not _current(fp, s, fingerprints, same) for fp in _fingerprints_of(seen, s))]


def find_changes(sweep: SweepDir, statuses: Iterable[RunStatus],
                 fingerprints: Mapping[str, str]) -> CodeChanges:
    """Runs per stage whose marker's code differs from ``fingerprints``."""
    same = equivalents(sweep, fingerprints)
    suspects = suspect_stages(sweep, fingerprints)
    stale: dict[Stage, list[RunStatus]] = {s: [] for s in suspects}
    if suspects:
        for status in statuses:
            for stage in suspects:
                if stage in status.done and not status.verified:
                    marker = Marker.read(status.run, stage)
                    if marker is not None and not _current(marker.code, stage, fingerprints,
                                                           same):
                        stale[stage].append(status)
    return CodeChanges(stale, same)


def remember(sweep: SweepDir, fingerprints: Mapping[str, str], changes: CodeChanges,
             recomputed: bool, covers_plan: bool) -> None:
    """Record the current fingerprints (and the scheme they are of, and the older scheme's
    that stand for them), and forget old ones that no marker carries any more (known only
    when the checked runs are the whole plan and none kept stale markers)."""
    seen = _read_seen(sweep) or {}
    same = changes.equivalent if changes.equivalent is not None else \
        equivalents(sweep, fingerprints, seen)
    out: dict[str, object] = {_SCHEME_KEY: SCHEME}
    for stage in STAGES:
        old = set(_fingerprints_of(seen, stage))
        if covers_plan and (recomputed or not changes.stale.get(stage)):
            old = set()
        old.add(fingerprints[stage.value])
        out[stage.value] = sorted(old)
    if same:
        out[_SAME_KEY] = same
    atomic.write_json(sweep.code, out)


def invalidate(changes: CodeChanges) -> int:
    """Remove the stale stage and every later one of each affected run; returns run count."""
    first = changes.runs()
    for path, stage in first.items():
        run = RunDir(path)
        for s in stage.and_after():
            for name in run.stage_files(s):
                atomic.remove(name)
    return len(first)
