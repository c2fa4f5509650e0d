"""Which experiment a cfg is: experiments are known by their content, not their position.

Every experiment of a sweep has an id (its folder ``OUT/<id>/``) and the content digest of
its config (``dagrun.code.digest``). Planning matches the current cfgs to the experiments the
sweep already knows by that digest, as a multiset: a cfg whose digest (and folder layout: one
repetition or several) equals a known experiment's takes its id, the smallest unused one when
several equal cfgs exist; a cfg matching none is a new experiment under the next id never used
in this OUT. So a reordered, shuffled, grown or shrunk list of cfgs keeps every finished
experiment, and an edited cfg is a new experiment. Known experiments no longer in the cfgs are
*orphans*: their folders are kept, the plan remembers them (a cfg that comes back finds its
folder again), results leave them out, and ``dagrun clean --orphans`` removes them.

A plan written with an older digest version (``legacy``) cannot be matched by digest: its
experiments are matched once by their stored positions (id = position then) where the stored
readable config equals the cfg's, and keep the old digest as an alias, which their markers
carry; from then on the plan holds the current digests.
"""

from __future__ import annotations

import itertools
import json
import os
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from dagrun.config import canonical
from dagrun.disk.layout import STAGES, RunDir, SweepDir
from dagrun.disk.planstore import (
    DIGEST_VERSION,
    PLAN_VERSION,
    PlanIndex,
    PlanState,
    config_diff,
    read_configs,
    read_index,
    read_state,
)
from dagrun.disk.records import Marker
from dagrun.disk.runs import Experiment
from dagrun.record import field, record


@record
class Moves:
    """What changed between the stored plan and the current cfgs, for one line."""

    reordered: int = 0
    new: int = 0
    edited: list[tuple[int, int]] = field(default_factory=list)  # (old id, new id) in place
    gone: list[int] = field(default_factory=list)  # ids that left the cfgs now
    back: int = 0  # orphans whose cfg came back
    found: int = 0  # matched to folders by their markers (the plan was lost)
    migrated: int = 0  # matched by position in a plan of an older digest version
    relaid: int = 0  # new because their repetitions moved between 1 and more
    diff: str = ""  # the readable change of the first edited cfg

    def only_new(self) -> bool:
        """Whether nothing moved but new experiments being added."""
        return not (self.found or self.reordered or self.edited or self.back or self.relaid
                    or self.migrated or self.gone)

    def line(self) -> str | None:
        """``"3 experiments reordered, 2 new, 1 no longer in cfgs"`` (None: nothing moved)."""
        parts = []
        if self.found:
            parts.append(f"{self.found} found in their folders (no plan was stored)")
        if self.reordered:
            parts.append(f"{self.reordered} reordered")
        if self.edited:
            old, new = self.edited[0]
            shown = f"; e.g. {old} -> {new}: {self.diff}" if self.diff else ""
            parts.append(f"{len(self.edited)} edited (each a new experiment, the old one "
                         f"kept{shown})")
        fresh = self.new - len(self.edited)
        if fresh:
            relaid = f", {self.relaid} of them for a new repetitions layout" \
                if self.relaid else ""
            parts.append(f"{fresh} new{relaid}")
        if self.back:
            parts.append(f"{self.back} back from earlier cfgs")
        if self.migrated:
            parts.append(f"{self.migrated} matched once by their position (the plan was "
                         "written by an older dagrun)")
        gone = len(self.gone) - len(self.edited)
        if gone:
            parts.append(f"{gone} no longer in cfgs (kept on disk; `dagrun clean --orphans` "
                         "removes them)")
        if not parts:
            return None
        return f"experiments since the last plan: {', '.join(parts)}"


@record
class Assignment:
    """The current experiments (in cfg order, with their ids), the orphans, what moved."""

    experiments: list[Experiment]
    orphans: list[Experiment]
    moves: Moves
    stored_digest: str | None  # the stored plan's digest the assignment was made against
    legacy: bool = False  # the stored plan is of an older version: write it anew


def assign(sweep: SweepDir, digests: Sequence[str], repetitions: Sequence[int],
           views: Sequence[dict[str, Any]]) -> Assignment:
    """Give each cfg (its content digest, repetitions and readable view) its experiment id."""
    count = len(digests)
    index = read_index(sweep)
    if index is not None and _unmoved(index, digests, repetitions):
        ids, aliases = index.ids, index.aliases or {}  # the common re-execute: no matching
        return Assignment([Experiment(ids[i], repetitions[i], views[i], digests[i],
                                      aliases.get(ids[i], ())) for i in range(count)],
                          [], Moves(), index.digest)
    state = read_state(sweep)
    if not state.experiments and not state.orphans:
        found = _found_in_folders(sweep)
        if found:  # the plan was lost (or never written): the markers say what is where
            state = state._replace(orphans=found)
            return _Matcher(sweep, state, digests, repetitions, views, found=True).run()
        new = _fresh_ids(sweep, state, count)
        return Assignment([Experiment(new[i], repetitions[i], views[i], digests[i])
                           for i in range(count)], [], Moves(), state.digest)
    return _Matcher(sweep, state, digests, repetitions, views).run()


def _unmoved(index: PlanIndex, digests: Sequence[str], repetitions: Sequence[int]) -> bool:
    """The stored plan (current versions, no orphans) holds exactly these digests in this
    order (its ids in the order of the cfgs), each with the same folder layout."""
    count = len(digests)
    return (index.version >= PLAN_VERSION and index.digests_version >= DIGEST_VERSION
            and not index.orphans and len(index.ids) == count
            and index.positions == list(range(count)) and index.digests == list(digests)
            and all((r == 1) is (q == 1)
                    for r, q in zip(index.repetitions, repetitions, strict=True)))


class _Matcher:
    def __init__(self, sweep: SweepDir, state: PlanState, digests: Sequence[str],
                 repetitions: Sequence[int], views: Sequence[dict[str, Any]],
                 found: bool = False) -> None:
        self.sweep, self.state, self.found = sweep, state, found
        self.digests, self.repetitions, self.views = digests, repetitions, views
        self.ids: list[int | None] = [None] * len(digests)
        self.aliases: dict[int, tuple[str, ...]] = {}
        self.moves = Moves()
        # known experiments by (digest, one repetition?), smallest id first
        self.pool: dict[tuple[str, bool], list[Experiment]] = {}
        for exp in sorted([*state.experiments, *state.orphans], key=lambda e: e.exp_id):
            self.pool.setdefault((exp.digest, exp.repetitions == 1), []).append(exp)
        self.taken: set[int] = set()

    def run(self) -> Assignment:
        if self.state.legacy:
            self._by_position()
        for i, digest in enumerate(self.digests):
            if self.ids[i] is None:
                found = self._take(digest, self.repetitions[i] == 1)
                if found is not None:
                    self.ids[i] = found.exp_id
                    self.aliases[found.exp_id] = found.aliases
        missing = [i for i, exp_id in enumerate(self.ids) if exp_id is None]
        for i, exp_id in zip(missing, _fresh_ids(self.sweep, self.state, len(missing)),
                             strict=True):
            self.ids[i] = exp_id
        experiments = [Experiment(exp_id, self.repetitions[i], self.views[i], self.digests[i],
                                  self.aliases.get(exp_id, ()))
                       for i, exp_id in enumerate(self.ids) if exp_id is not None]
        orphans = sorted((e for group in self.pool.values() for e in group
                          if e.exp_id not in self.taken), key=lambda e: e.exp_id)
        self._count(experiments, missing)
        return Assignment(experiments, orphans, self.moves, self.state.digest,
                          self.state.legacy)

    def _take(self, digest: str, single: bool) -> Experiment | None:
        group = self.pool.get((digest, single))
        while group:
            exp = group.pop(0)
            if exp.exp_id not in self.taken:
                self.taken.add(exp.exp_id)
                return exp
        return None

    def _by_position(self) -> None:
        """A plan of an older digest version: cfg ``i`` is experiment ``i`` (ids were
        positions) when its readable config is the stored one; the old digest stays an
        alias (the markers carry it). Stored configs are read only where digests differ."""
        stored = {e.exp_id: e for e in self.state.experiments}
        differ = [i for i in range(len(self.digests))
                  if i in stored and stored[i].digest != self.digests[i]]
        configs = read_configs(self.sweep, self.state.plan_index, differ) if differ else {}
        for i, digest in enumerate(self.digests):
            old = stored.get(i)
            if old is None or (old.repetitions == 1) != (self.repetitions[i] == 1):
                continue
            if old.digest != digest:
                config = configs.get(i)
                if config is None or not _same_view(config, self.views[i]):
                    continue
                self.aliases[i] = tuple(a for a in (*old.aliases, old.digest) if a)
                self.moves.migrated += 1
            else:
                self.aliases[i] = old.aliases
            self.ids[i] = i
            self.taken.add(i)

    def _count(self, experiments: list[Experiment], missing: list[int]) -> None:
        """Fill ``moves``: reordered (matched, not in their stored relative order), new,
        edited (a new cfg where a cfg that left stood), back, gone."""
        moves, state = self.moves, self.state
        before = {e.exp_id: p for p, e in enumerate(state.experiments)}
        orphan_ids = {e.exp_id for e in state.orphans}
        order = [before[e.exp_id] for e in experiments if e.exp_id in before]
        moves.reordered = len(order) - _longest_increasing(order)
        moves.new = len(missing)
        back = sum(e.exp_id in orphan_ids for e in experiments)
        if self.found:
            moves.found = back
        else:
            moves.back = back
        moves.gone = sorted(i for i in before if i not in self.taken)
        gone = set(moves.gone)
        at = {p: e for p, e in enumerate(state.experiments)}
        for i in missing:
            old = at.get(i)
            if old is None or old.exp_id not in gone or self.ids[i] is None:
                continue
            if old.digest == self.digests[i]:  # the same config, another folder layout
                moves.relaid += 1
            else:
                moves.edited.append((old.exp_id, int(self.ids[i] or 0)))
        if moves.edited:
            old_id, new_id = moves.edited[0]
            first = self.ids.index(new_id)
            configs = read_configs(self.sweep, state.plan_index, [old_id])
            if old_id in configs:
                lines = config_diff(_strip(configs[old_id]), _strip(self.views[first]))
                moves.diff = "; ".join(_short(line) for line in lines[:3]) or \
                    "the same readable view (a function's code or an object's content differs)"


def _short(line: str, width: int = 120) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


def _strip(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "repetitions"}


def _same_view(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return old == new or canonical(old) == canonical(new) or \
        json.dumps(old, sort_keys=True, default=str) == json.dumps(new, sort_keys=True,
                                                                   default=str)


def id_ranges(ids: Sequence[int]) -> str:
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


def _longest_increasing(values: list[int]) -> int:
    """The length of the longest strictly increasing subsequence (patience sorting)."""
    tails: list[int] = []
    for v in values:
        k = bisect_left(tails, v)
        if k == len(tails):
            tails.append(v)
        else:
            tails[k] = v
    return len(tails)


def _fresh_ids(sweep: SweepDir, state: PlanState, count: int) -> list[int]:
    """``count`` ids never used in this OUT: above every planned or orphaned id and every
    experiment folder holding runs on disk (a folder an older dagrun left behind, or one
    copied in, is never reused)."""
    if not count:
        return []
    used = [e.exp_id for e in itertools.chain(state.experiments, state.orphans)]
    start = max(used, default=-1) + 1
    start = max(start, _highest_folder(sweep) + 1)
    return list(range(start, start + count))


def _found_in_folders(sweep: SweepDir) -> list[Experiment]:
    """Experiments known only from their folders (OUT/.dagrun was lost): those whose
    markers say their config digest."""
    return [e for e in (in_folder(sweep, i) for i in _folder_ids(sweep)) if e.digest]


def in_folder(sweep: SweepDir, exp_id: int) -> Experiment:
    """The experiment an experiment folder holds, as far as the folder says: its layout and
    repetitions from its numbered sub-folders (several when ``0/`` exists), its config digest
    from the first marker of its first run that has one (empty when none does)."""
    path = sweep.experiment_path(exp_id)
    first = os.path.join(path, "0")
    several = os.path.isdir(first)
    reps = max(2, 1 + max(_folder_ids_in(path), default=0)) if several else 1
    run = RunDir(first if several else path)
    for stage in STAGES:
        marker = Marker.read(run, stage)
        if marker is not None and marker.config:
            return Experiment(exp_id, reps, {}, marker.config)
    return Experiment(exp_id, reps, {})


def _folder_ids(sweep: SweepDir) -> list[int]:
    return sorted(experiment_folders(sweep))


def experiment_folders(sweep: SweepDir) -> list[int]:
    """Ids of the numbered folders of OUT that hold dagrun runs (a config.json or a marker,
    directly or in a numbered repetition folder); an empty folder or one of the user's own
    is none."""
    return [i for i in _folder_ids_in(sweep.path) if _holds_runs(sweep.experiment_path(i))]


def _holds_runs(path: str) -> bool:
    return any(os.path.exists(os.path.join(run, name)) for run in (path, os.path.join(path, "0"))
               for name in ("config.json", "pre.done", "fit.done", "post.done"))


def _folder_ids_in(path: str) -> list[int]:
    """The names of the numbered folders in ``path``."""
    ids = []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                name = entry.name
                if name.isdigit() and name.isascii() and entry.is_dir(follow_symlinks=False):
                    ids.append(int(name))
    except OSError:
        pass
    return ids


def _highest_folder(sweep: SweepDir) -> int:
    """The highest id of an experiment folder holding runs in OUT (-1 when there is none)."""
    return max(experiment_folders(sweep), default=-1)
