"""The stored plan under ``OUT/.dagrun/``: plan.json and its index.

The plan lists the experiments of the last execution (the current cfgs) with their id, their
position in ``cfgs``, their JSON config and its content digest, and the *orphans*: experiments
of earlier cfgs whose folders are kept (``dagrun.disk.identity`` matches cfgs to both by
digest). ``dagrun resume``, ``status`` and ``reduce`` work from it without the workflow file.
Its ``version`` is checked: a state written by a newer dagrun is refused rather than misread;
``digests`` names the version of the config digests it holds (``dagrun.code.digest``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

from dagrun.config import canonical
from dagrun.disk import atomic, formatversion, jsontext
from dagrun.disk.layout import SweepDir
from dagrun.disk.runs import Experiment
from dagrun.errors import UsageError

# 2: experiments carry the content digest of their config; 3: experiments known by content
# (ids no longer positions): each entry's position in cfgs, the digests' version, aliases
# (digests an older dagrun gave the same config) and the orphans
PLAN_VERSION = 3
DIGEST_VERSION = formatversion.DIGESTS
_VERSION_RE = re.compile(rb'"version":\s*(\d+)')


def check_version(sweep: SweepDir, version: Any) -> None:
    """Refuse a state written by a newer dagrun (its format may mean something else)."""
    if isinstance(version, int) and not isinstance(version, bool) and version > PLAN_VERSION:
        raise UsageError(
            f"{sweep.plan} was written by a newer dagrun (plan version {version}; this one "
            f"reads up to {PLAN_VERSION}): upgrade dagrun, or use a new out_path")


def _head_version(sweep: SweepDir) -> Any:
    """The plan's version from its first bytes (plan.json starts with it), not a full read."""
    try:
        with open(sweep.plan, "rb") as f:
            match = _VERSION_RE.search(f.read(64))
    except OSError:
        return None
    return int(match.group(1)) if match else None


def read_plan(sweep: SweepDir) -> dict[int, Experiment]:
    """The stored experiments by id (empty for a new sweep); orphans are not among them."""
    return {e.exp_id: e for e in read_state(sweep, full=True).experiments}


class PlanState(NamedTuple):
    """What the stored plan says: its experiments in the order of the cfgs they were planned
    from, the orphans, whether its digests are of an older version (``legacy``: they cannot
    be compared with today's), its digest, and its index (``None``: read from plan.json)."""

    experiments: list[Experiment]
    orphans: list[Experiment]
    legacy: bool
    digest: str | None
    plan_index: PlanIndex | None


def read_state(sweep: SweepDir, full: bool = False) -> PlanState:
    """The stored plan, from its index when it can be trusted (configs empty) unless
    ``full``; from plan.json otherwise. An empty state for a new sweep."""
    index = None if full else read_index(sweep)
    if index is not None:
        exps = index.experiments
        order = index.positions
        if order is not None and order != sorted(order):  # listed by id, not by position
            exps = [e for _, e in sorted(zip(order, exps, strict=True), key=lambda pe: pe[0])]
        legacy = index.version < PLAN_VERSION or index.digests_version < DIGEST_VERSION
        return PlanState(exps, list(index.orphans), legacy, index.digest, index)
    try:
        data = atomic.read_json(sweep.plan)
    except (FileNotFoundError, NotADirectoryError):  # a new sweep (or OUT below a file)
        return PlanState([], [], False, None, None)
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{sweep.plan} cannot be read ({exc}); the sweep state is damaged") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{sweep.plan} does not hold a dagrun plan; the sweep state is "
                         "damaged")
    check_version(sweep, data.get("version"))
    try:
        entries = [_entry(e) for e in data["experiments"]]
        orphans = [_entry(e)[1] for e in data.get("orphans") or []]
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{sweep.plan} does not hold a dagrun plan ({type(exc).__name__}: "
                         f"{exc}); the sweep state is damaged") from exc
    if not all(isinstance(e.config, dict) for _, e in entries):
        raise UsageError(f"{sweep.plan} does not hold a dagrun plan (a config is not a "
                         "dict); the sweep state is damaged")
    exps = [e for _, e in sorted(entries, key=lambda pe: pe[0])]
    version, digests = data.get("version"), data.get("digests")
    legacy = not (isinstance(version, int) and version >= PLAN_VERSION
                  and isinstance(digests, int) and digests >= DIGEST_VERSION)
    return PlanState(exps, orphans, legacy, stored_digest(sweep), None)


def forget_orphans(sweep: SweepDir) -> None:
    """Write the plan again without its orphans (their folders were removed)."""
    data = atomic.read_json(sweep.plan)
    settings = data.get("settings") if isinstance(data, dict) else None
    state = read_state(sweep, full=True)
    write_plan(sweep, state.experiments, settings if isinstance(settings, dict) else {})


def _entry(e: dict[str, Any]) -> tuple[int, Experiment]:
    """One experiment entry of plan.json: (its position in cfgs, the experiment); an entry of
    an older plan has no position (its id was its position)."""
    exp = Experiment(int(e["id"]), int(e["repetitions"]), e["config"],
                     str(e.get("digest") or ""), tuple(str(a) for a in e.get("aliases") or ()))
    return int(e.get("position", exp.exp_id)), exp


def write_plan(sweep: SweepDir, experiments: Sequence[Experiment], settings: dict[str, Any],
               orphans: Sequence[Experiment] = ()) -> None:
    """Write the plan, then its index (ids, repetitions, config digests, positions, aliases,
    where each experiment's entry starts in plan.json, the orphans, and a digest of the whole
    plan). ``experiments`` come in the order of the cfgs; the plan lists them by id.
    ``version`` comes first: ``_head_version`` reads it from the first bytes. The text is
    ASCII (``json.dumps`` escapes the rest), so character offsets are byte offsets."""
    position = {e.exp_id: p for p, e in enumerate(experiments)}
    ordered = sorted(experiments, key=lambda e: e.exp_id)
    head = json.dumps({"version": PLAN_VERSION, "digests": DIGEST_VERSION,
                       "settings": settings}, allow_nan=True)
    head = head[:-1] + ', "experiments": ['
    entries = [jsontext.compact(_entry_of(e, position[e.exp_id])) for e in ordered]
    offsets, pos = [], len(head)
    for entry in entries:
        offsets.append(pos)
        pos += len(entry) + 2  # the ", " between entries
    tail = "]"
    if orphans:
        tail += ', "orphans": [' + ", ".join(json.dumps(_entry_of(e, None), allow_nan=True)
                                            for e in orphans) + "]"
    text = head + ", ".join(entries) + tail + "}\n"
    atomic.write_text(sweep.plan, text)
    index: dict[str, Any] = {
        "version": PLAN_VERSION, "digests_version": DIGEST_VERSION,
        "digest": plan_digest(experiments, orphans), "plan_bytes": len(text.encode()),
        "ids": [e.exp_id for e in ordered], "repetitions": [e.repetitions for e in ordered],
        "digests": [e.digest for e in ordered], "offsets": offsets,
        "positions": [position[e.exp_id] for e in ordered]}
    aliases = {str(e.exp_id): list(e.aliases) for e in ordered if e.aliases}
    if aliases:
        index["aliases"] = aliases
    if orphans:
        index["orphans"] = {"ids": [e.exp_id for e in orphans],
                            "repetitions": [e.repetitions for e in orphans],
                            "digests": [e.digest for e in orphans],
                            "aliases": [list(e.aliases) for e in orphans]}
    atomic.write_json(sweep.plan_index, index, indent=None)


def _entry_of(e: Experiment, position: int | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": e.exp_id}
    if position is not None:
        entry["position"] = position
    entry.update(repetitions=e.repetitions, digest=e.digest)
    if e.aliases:
        entry["aliases"] = list(e.aliases)
    entry["config"] = e.config
    return entry


def plan_digest(experiments: Sequence[Experiment], orphans: Sequence[Experiment] = ()) -> str:
    """A digest of experiments (ids, repetitions, config digests, aliases) in the order
    given (the cfgs'), and of the orphans.

    Experiments without a digest (a plan of an older dagrun) use their JSON config."""
    h = hashlib.sha256()
    for e in experiments:
        content = e.digest or json.dumps(e.config, sort_keys=True, allow_nan=True)
        h.update(f"{e.exp_id}:{e.repetitions}:{content}\n".encode())
        if e.aliases:
            h.update(f"aliases {' '.join(e.aliases)}\n".encode())
    for e in orphans:
        h.update(f"orphan {e.exp_id}:{e.repetitions}:{e.digest}:{' '.join(e.aliases)}\n"
                 .encode())
    return h.hexdigest()


_last_index: tuple[tuple[str, int, int, int], Any] | None = None  # (file's identity, data)


def _read_index_file(sweep: SweepDir) -> Any:
    """The parsed plan index, parsed once per version of the file (it is replaced, never
    written in place: a new inode, size or mtime is a new version)."""
    global _last_index
    try:
        st = os.stat(sweep.plan_index)
    except OSError:
        return None
    key = (sweep.plan_index, st.st_ino, st.st_size, st.st_mtime_ns)
    if _last_index is not None and _last_index[0] == key:
        return _last_index[1]
    data = atomic.read_json_or_none(sweep.plan_index)
    _last_index = (key, data)
    return data


def _intact_index(sweep: SweepDir) -> dict[str, Any] | None:
    """The plan index, or ``None`` when it is missing, unreadable, or plan.json is not the
    size the index recorded (damaged or edited: callers then read plan.json and say so)."""
    data = _read_index_file(sweep)
    if not isinstance(data, dict):
        return None
    check_version(sweep, data.get("version"))
    check_version(sweep, _head_version(sweep))
    try:
        if os.stat(sweep.plan).st_size != data.get("plan_bytes"):
            return None
    except OSError:
        return None
    return data


class PlanIndex(NamedTuple):
    """The plan without its configs: its digest, each experiment's id, repetitions and
    config digest, and (``None`` in an index of an older dagrun) where each experiment's entry
    starts in plan.json, so that a few configs can be read without decoding them all; each
    experiment's position in cfgs (``None``: ids were positions), aliases, the orphans, and
    the versions of the plan and of its digests."""

    digest: str
    ids: list[int]
    repetitions: list[int]
    digests: list[str]
    offsets: list[int] | None
    positions: list[int] | None = None
    aliases: dict[int, tuple[str, ...]] | None = None
    orphans: tuple[Experiment, ...] = ()
    version: int = PLAN_VERSION
    digests_version: int = DIGEST_VERSION

    @property
    def experiments(self) -> list[Experiment]:
        """The planned experiments, their configs empty."""
        aliases = self.aliases or {}
        return [Experiment(i, r, {}, d, aliases.get(i, ()))
                for i, r, d in zip(self.ids, self.repetitions, self.digests, strict=True)]


def read_index(sweep: SweepDir) -> PlanIndex | None:
    """The plan index (cheap at 100,000 runs), or ``None`` when it cannot be trusted."""
    data = _intact_index(sweep)
    if data is None:
        return None
    try:
        ids, reps = data["ids"], data["repetitions"]
        digests = data.get("digests") or [""] * len(ids)
        offsets, positions = data.get("offsets"), data.get("positions")
        if not (_all_of(ids, int, len(ids)) and _all_of(reps, int, len(ids))
                and _all_of(digests, str, len(ids))):
            return None  # not an index this version wrote
        if not _all_of(offsets, int, len(ids)):
            offsets = None
        if positions is not None and not (_all_of(positions, int, len(ids))
                                          and len(set(positions)) == len(ids)):
            return None
        aliases = {int(k): tuple(str(a) for a in v)
                   for k, v in (data.get("aliases") or {}).items()}
        orphans = _orphans(data.get("orphans"))
        version = data.get("version")
        digests_version = data.get("digests_version")
        return PlanIndex(str(data["digest"]), ids, reps, digests, offsets, positions,
                         aliases, orphans, version if type(version) is int else 1,
                         digests_version if type(digests_version) is int else 1)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _orphans(data: Any) -> tuple[Experiment, ...]:
    if not data:
        return ()
    ids, reps, digests = data["ids"], data["repetitions"], data["digests"]
    aliases = data.get("aliases") or [[]] * len(ids)
    return tuple(Experiment(int(i), int(r), {}, str(d), tuple(str(a) for a in al))
                 for i, r, d, al in zip(ids, reps, digests, aliases, strict=True))


def _all_of(values: Any, kind: type, length: int) -> bool:
    """``values`` is a list of ``length`` items, each exactly of type ``kind``."""
    return (type(values) is list and len(values) == length
            and (not values or set(map(type, values)) == {kind}))


def read_configs(sweep: SweepDir, index: PlanIndex | None,
                 ids: Collection[int]) -> dict[int, dict[str, Any]]:
    """The stored configs of ``ids``: each entry decoded where the index says it starts
    (a few configs of a 100,000-experiment plan cost no full decode), else the whole plan."""
    if not ids:
        return {}
    if index is not None and index.offsets is not None:
        found = _configs_at(sweep, index, ids)
        if found is not None:
            return found
    plan = read_plan(sweep)
    return {i: plan[i].config for i in ids if i in plan}


def _configs_at(sweep: SweepDir, index: PlanIndex,
                ids: Collection[int]) -> dict[int, dict[str, Any]] | None:
    """The configs of ``ids`` from their entries' offsets; ``None`` when plan.json does not
    hold what the index says (replaced since the index was read)."""
    assert index.offsets is not None
    where = dict(zip(index.ids, index.offsets, strict=True))
    try:
        with open(sweep.plan, "rb") as f:
            text = f.read().decode("ascii")
    except (OSError, UnicodeDecodeError):
        return None
    decoder = json.JSONDecoder()
    out: dict[int, dict[str, Any]] = {}
    for exp_id in ids:
        offset = where.get(exp_id)
        if offset is None:
            continue
        try:
            entry, _ = decoder.raw_decode(text, offset)
        except ValueError:
            return None
        if not (isinstance(entry, dict) and entry.get("id") == exp_id
                and isinstance(entry.get("config"), dict)):
            return None
        out[exp_id] = entry["config"]
    return out


def stored_digest(sweep: SweepDir) -> str | None:
    """The digest of the stored plan, or ``None`` when the index cannot be trusted."""
    data = _intact_index(sweep)
    digest = data.get("digest") if data is not None else None
    return digest if isinstance(digest, str) else None


def planned_runs(sweep: SweepDir) -> list[Experiment]:
    """Every planned experiment's id and repetitions (configs only when the index is gone)."""
    index = read_index(sweep)
    return index.experiments if index is not None else list(read_plan(sweep).values())


def require_sweep(path: str) -> SweepDir:
    """The sweep at ``path``, or a ``UsageError`` saying it is not one (or one written by a
    newer dagrun, in a format this one cannot read)."""
    sweep = SweepDir.at(path)
    if not os.path.isfile(sweep.plan):
        if not os.path.exists(sweep.path):
            raise UsageError(f"{sweep.path} does not exist")
        if not os.path.isdir(sweep.path):
            raise UsageError(f"{sweep.path} is not a dagrun sweep (a file, not a folder)")
        raise UsageError(f"{sweep.path} is not a dagrun sweep (no {sweep.plan})")
    formatversion.check_readable(sweep)
    return sweep


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two JSON configs, one line each."""
    lines = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        if key not in new:
            lines.append(f"{name}: removed (was {json.dumps(old[key])})")
        elif key not in old:
            lines.append(f"{name}: added ({json.dumps(new[key])})")
        elif isinstance(old[key], dict) and isinstance(new[key], dict):
            lines.extend(config_diff(old[key], new[key], f"{name}."))
        elif canonical(old[key]) != canonical(new[key]):
            lines.append(f"{name}: {json.dumps(old[key])} -> {json.dumps(new[key])}")
    return lines
