"""The stored plan under ``OUT/.dagrun/``: plan.json and its index.

The plan lists the experiments of the last execution (the current cfgs: ids beyond them
leave it) with their JSON config and its content digest, so that a re-execution can tell
new, unchanged and changed experiments apart, and ``dagrun resume``, ``status`` and
``reduce`` work without the workflow file. Its ``version`` is checked: a state written by a
newer dagrun is refused rather than misread.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Collection
from typing import Any, NamedTuple

from dagrun.config import canonical
from dagrun.disk import atomic, formatversion
from dagrun.disk.layout import SweepDir
from dagrun.disk.runs import Experiment
from dagrun.errors import UsageError

PLAN_VERSION = 2  # 2: experiments carry the content digest of their config
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
    """The stored experiments by id (empty for a new sweep)."""
    try:
        data = atomic.read_json(sweep.plan)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{sweep.plan} cannot be read ({exc}); the sweep state is damaged") from exc
    if isinstance(data, dict):
        check_version(sweep, data.get("version"))
    try:
        plan = {int(e["id"]): Experiment(int(e["id"]), int(e["repetitions"]), e["config"],
                                         str(e.get("digest") or ""))
                for e in data["experiments"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{sweep.plan} does not hold a dagrun plan ({type(exc).__name__}: "
                         f"{exc}); the sweep state is damaged") from exc
    if not all(isinstance(e.config, dict) for e in plan.values()):
        raise UsageError(f"{sweep.plan} does not hold a dagrun plan (a config is not a "
                         "dict); the sweep state is damaged")
    return plan


def write_plan(sweep: SweepDir, experiments: list[Experiment],
               settings: dict[str, Any]) -> None:
    """Write the plan, then its index (ids, repetitions, config digests, where each
    experiment's entry starts in plan.json, and a digest of the whole plan). ``version`` comes
    first: ``_head_version`` reads it from the first bytes. The text is ASCII (``json.dumps``
    escapes the rest), so character offsets are byte offsets."""
    ordered = sorted(experiments, key=lambda e: e.exp_id)
    head = json.dumps({"version": PLAN_VERSION, "settings": settings}, allow_nan=True)
    head = head[:-1] + ', "experiments": ['
    entries = [json.dumps({"id": e.exp_id, "repetitions": e.repetitions, "digest": e.digest,
                           "config": e.config}, allow_nan=True) for e in ordered]
    offsets, pos = [], len(head)
    for entry in entries:
        offsets.append(pos)
        pos += len(entry) + 2  # the ", " between entries
    text = head + ", ".join(entries) + "]}\n"
    atomic.write_text(sweep.plan, text)
    index = {"version": PLAN_VERSION, "digest": plan_digest(ordered),
             "plan_bytes": len(text.encode()), "ids": [e.exp_id for e in ordered],
             "repetitions": [e.repetitions for e in ordered],
             "digests": [e.digest for e in ordered], "offsets": offsets}
    atomic.write_json(sweep.plan_index, index, indent=None)


def plan_digest(experiments: list[Experiment]) -> str:
    """A digest of experiments (ids, repetitions, config digests), in the order given.

    Experiments without a digest (a plan of an older dagrun) use their JSON config."""
    h = hashlib.sha256()
    for e in experiments:
        content = e.digest or json.dumps(e.config, sort_keys=True, allow_nan=True)
        h.update(f"{e.exp_id}:{e.repetitions}:{content}\n".encode())
    return h.hexdigest()


def _intact_index(sweep: SweepDir) -> dict[str, Any] | None:
    """The plan index, or ``None`` when it is missing, unreadable, or plan.json is not the
    size the index recorded (damaged or edited: callers then read plan.json and say so)."""
    data = atomic.read_json_or_none(sweep.plan_index)
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
    starts in plan.json, so that a few configs can be read without decoding them all."""

    digest: str
    ids: list[int]
    repetitions: list[int]
    digests: list[str]
    offsets: list[int] | None

    @property
    def experiments(self) -> list[Experiment]:
        """The planned experiments, their configs empty."""
        return [Experiment(i, r, {}, d)
                for i, r, d in zip(self.ids, self.repetitions, self.digests, strict=True)]


def read_index(sweep: SweepDir) -> PlanIndex | None:
    """The plan index (cheap at 100,000 runs), or ``None`` when it cannot be trusted."""
    data = _intact_index(sweep)
    if data is None:
        return None
    try:
        ids, reps = data["ids"], data["repetitions"]
        digests = data.get("digests") or [""] * len(ids)
        offsets = data.get("offsets")
        if not (_all_of(ids, int, len(ids)) and _all_of(reps, int, len(ids))
                and _all_of(digests, str, len(ids))):
            return None  # not an index this version wrote
        if not _all_of(offsets, int, len(ids)):
            offsets = None
        return PlanIndex(str(data["digest"]), ids, reps, digests, offsets)
    except (KeyError, TypeError, ValueError):
        return None


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


def changed_experiments(stored: dict[int, Experiment],
                        current: list[Experiment]) -> dict[int, list[str]]:
    """Ids whose config (by content digest) or repetition layout differs from the stored
    plan, with the differences in readable form (the JSON view is for messages only)."""
    changed: dict[int, list[str]] = {}
    for exp in current:
        old = stored.get(exp.exp_id)
        if old is None:
            continue
        diff = [] if _same_config(old, exp) else _describe(old, exp)
        if (old.repetitions == 1) != (exp.repetitions == 1):
            diff.append(f"repetitions: {old.repetitions} -> {exp.repetitions} "
                        "(changes the folder layout)")
        if diff:
            changed[exp.exp_id] = diff
    return changed


def _same_config(old: Experiment, new: Experiment) -> bool:
    if old.digest and new.digest:
        return old.digest == new.digest
    # a plan of an older dagrun keeps no digest: its JSON view is all there is to compare
    return old.config == new.config or canonical(old.config) == canonical(new.config)


def _describe(old: Experiment, new: Experiment) -> list[str]:
    """The readable differences; when the JSON views are equal, say the content differs."""
    def strip(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if k != "repetitions"}

    lines = config_diff(strip(old.config), strip(new.config))
    return lines or ["its content changed (its readable JSON view is the same: a value's "
                     "elements or attributes differ)"]
