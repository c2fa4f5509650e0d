"""results.jsonl as columns, kept in ``OUT/.dagrun/results-columns.marshal`` between reads.

Decoding results.jsonl is most of the cost of ``dagrun results`` on a large sweep (50 MB of
JSON at 100,000 experiments of three repetitions). The first reader keeps what it decoded,
as columns (``dagrun.results.columns``), together with the size and CRC-32 of the bytes it came from
and the digest of the plan it was interpreted with. A later reader reads results.jsonl's
bytes (cheap) and uses the kept columns when those bytes still start with exactly what was
decoded; lines appended since (a running sweep) are decoded alone. Anything else (a rewrite,
an edit, another plan, another Python) decodes the file anew. The cache is written atomically
and only ever read by checksum, so a stale or damaged one costs a decode, never a wrong row.
It is marshal, not pickle: loading it cannot run code. A reader that cannot write it (a
read-only OUT) goes without. A large file without kept columns is decoded in parts by
several processes at once (``dagrun.results.inparts``), one file's columns in the end; the
decoding starts as soon as the file is read (``Reading``), before the plan it needs is.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import marshal
import sys
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagrun.disk import atomic
from dagrun.disk.layout import SweepDir
from dagrun.disk.planstore import stored_digest
from dagrun.record import record
from dagrun.results import inparts
from dagrun.results.columns import MISSING, MetricColumns, Rows, config_columns, get_column

_FORMAT = 2  # 2: counts (n_M) and metrics that are not numbers kept too
_PYTHON = list(sys.version_info[:2])  # marshal's format may change between versions
_REWRITE_SHARE = 20  # keep a new cache when the appended lines are 1/20 of the kept ones


@record
class Listed:
    """The planned experiments results.jsonl lists (ids ascending) as columns: config keys
    (``MISSING`` where a config lacks one), each metric's mean, std and count (``n_M``), and
    the metrics with values that are not numbers (name -> what they are)."""

    ids: list[int]
    config: dict[str, list[Any]]
    means: dict[str, list[Any]]
    stds: dict[str, list[Any]]
    counts: dict[str, list[Any]]
    others: dict[str, list[str]]


def read_listed(sweep: SweepDir, plan_key: str | None, reps_of: Mapping[int, int]) -> Listed:
    """The lines of results.jsonl of planned experiments (``reps_of``: id -> repetitions,
    which decide how a line's scores read); ``plan_key`` (the plan's digest) lets the
    columns be kept and reused, ``None`` never."""
    with Reading(sweep) as reading:
        return reading.listed(plan_key, reps_of)


class Reading:
    """results.jsonl being read (``read_listed`` in two halves): made, it reads the file's
    bytes and the kept columns, and when those cannot serve (none kept, or kept for other
    bytes) a large file starts being decoded in parts at once, in forked children
    (``dagrun.results.inparts.Steps``), while the caller reads the plan that ``listed``
    (asked once) needs. The columns decoded are kept (``_store``) on leaving it (a
    ``with`` block, which also stops the children a ``listed`` did not wait for), unless
    the caller took that work (``keeping``) to do beside its own."""

    def __init__(self, sweep: SweepDir) -> None:
        self.sweep = sweep
        try:
            with open(sweep.results, "rb") as f:
                self._data = f.read()
        except FileNotFoundError:
            self._data = b""
        # what follows the last newline may be half-written
        self._end = self._data.rfind(b"\n") + 1
        self._kept = _load(sweep)
        if self._kept is not None:  # (none when kept for bytes the file does not start with)
            _plan, size, crc, _listed = self._kept
            if size > self._end or zlib.crc32(memoryview(self._data)[:size]) != crc:
                self._kept = None
        self._decoding = _decoding(self._data[:self._end]) if self._kept is None else None
        self._unkept: tuple[str, bytes, Listed] | None = None  # (plan, bytes, their columns)

    def __enter__(self) -> Reading:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._decoding is not None:
            self._decoding.close()
        self.keeping()()

    def keeping(self) -> Callable[[], None]:
        """The keeping of the columns ``listed`` decoded (or combined with lines appended
        since they were kept), handed to the caller to run where it likes (a forked child
        writes the same file): not done here any more."""
        unkept, self._unkept = self._unkept, None
        if unkept is None:
            return lambda: None
        return lambda: _store(self.sweep, *unkept)

    def listed(self, plan_key: str | None, reps_of: Mapping[int, int]) -> Listed:
        """``read_listed``'s columns of the bytes read: the kept columns where they are for
        this plan, else the lines decoded."""
        data, end = self._data, self._end
        listed = self._kept_and_appended(plan_key, reps_of)
        if listed is None:
            listed = _decoded(data[:end], reps_of, self._decoding)
            self._decoding = None
            if plan_key is not None:
                self._unkept = (plan_key, data[:end], listed)
        if data[end:].strip():
            last = _build(decode_lines(data[end:]), reps_of)
            if set(last.ids) & set(listed.ids):  # it replaces an earlier line: the rare case
                return _build(decode_lines(data), reps_of)
            listed = _combine(listed, last)
        return listed

    def _kept_and_appended(self, plan_key: str | None, reps_of: Mapping[int, int]
                           ) -> Listed | None:
        """The kept columns plus the lines appended since, when they are for this plan
        (results.jsonl starts with exactly the bytes they were decoded from: checked when
        read); ``None`` otherwise."""
        if self._kept is None or plan_key is None or self._kept[0] != plan_key:
            return None
        _plan, size, _crc, listed = self._kept
        data = self._data[:self._end]
        if size == len(data):
            return listed
        appended = _build(decode_lines(data[size:]), reps_of)
        if set(appended.ids) & set(listed.ids):  # a line was replaced: decode everything
            return None
        listed = _combine(listed, appended)
        if len(appended.ids) * _REWRITE_SHARE >= len(listed.ids):
            self._unkept = (plan_key, data, listed)
        return listed


def keep(sweep: SweepDir, data: bytes, lines: Mapping[int, dict[str, Any]],
         reps_of: Mapping[int, int]) -> None:
    """Keep the columns of a results.jsonl just written as ``data``, whose lines the writer
    has decoded already (``lines``: id -> line): the next reader then decodes nothing.
    ``reps_of`` covers the stored plan, whose digest keys the copy."""
    plan_key = stored_digest(sweep)
    if plan_key is not None:
        usable = {i: line for i, line in lines.items() if type(line.get("scores")) is dict}
        _store(sweep, plan_key, data, _build(usable, reps_of))


def decode_lines(data: bytes | memoryview) -> dict[int, dict[str, Any]]:
    """Results lines by experiment id (a later line for an id wins); a line that does not
    parse (being appended while we read, or damaged) or holds no scores is left out, and
    that experiment is read from its runs instead."""
    text = str(data, "utf-8", "replace")  # (a part of the file's bytes: decoded where it is)
    values = _whole(text) or [value for _text, value in split_lines(text)]
    if set(map(type, values)) == {dict}:  # the usual file: every line's id and scores checked
        ids = get_column(values, "experiment_id")  # a column at a time, not a call per line
        if set(map(type, ids)) == {int} and set(map(type, get_column(values, "scores"))) == {dict}:
            return dict(zip(ids, values, strict=True))
    out = {}
    for value in values:
        exp_id = line_id(value)
        if exp_id is not None:
            out[exp_id] = value
    return out


def _whole(text: str) -> list[Any] | None:
    """The values of results.jsonl's lines, decoded as one JSON array when every line
    holds exactly one value (the usual file: no list of line texts is built); ``None``
    otherwise (a blank, damaged or half-written line: ``split_lines`` then)."""
    body = text[:-1] if text.endswith("\n") else text
    if not body:
        return None
    try:
        values = json.loads("[" + body.replace("\n", ",") + "]")
    except ValueError:
        return None
    return values if len(values) == body.count("\n") + 1 else None


def split_lines(text: str) -> list[tuple[str, Any]]:
    """Each non-blank line of results.jsonl's text with its decoded value (``None`` where it
    does not parse). One decode call for the whole text (a raw newline only ever ends a
    line); when that fails or does not give one value per line, each line alone."""
    texts = [t for t in text.split("\n") if t and not t.isspace()]
    try:
        values = json.loads("[" + ",".join(texts) + "]")
    except ValueError:
        values = []
    if len(values) != len(texts):
        values = [_loads_or_none(t) for t in texts]
    return list(zip(texts, values, strict=True))


def line_id(value: Any) -> int | None:
    """The experiment id of a decoded results line; ``None`` when it is not one (not an
    object, no integer id, no scores object)."""
    if type(value) is dict and type(value.get("scores")) is dict:
        exp_id = value.get("experiment_id")
        if type(exp_id) is int:
            return exp_id
    return None


def _loads_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _build(lines: Mapping[int, dict[str, Any]], reps_of: Mapping[int, int]) -> Listed:
    """Columns of the lines of planned experiments, of either format (``MetricColumns``:
    lists with their statistics, or the older lines of one repetition holding the values)."""
    ids = sorted(i for i in lines if i in reps_of)
    rows = [lines[i] for i in ids]
    metrics = MetricColumns(len(ids))
    metrics.add_lines(list(range(len(ids))), [row["scores"] for row in rows],
                      [reps_of[i] for i in ids])
    return Listed(ids, config_columns(rows), metrics.means, metrics.stds, metrics.counts,
                  metrics.others)


PART_SIZE = 8 << 20  # bytes of results lines worth decoding in a process of their own

# The decoding of results lines in parts: each part's lines (by id), then its columns.
_Decoding = inparts.Steps[tuple[int, int], dict[int, dict[str, Any]], Listed]


def _decoding(data: bytes) -> _Decoding:
    """The decoding of the whole lines ``data`` started: in parts by several processes at
    once where the file is large (``PART_SIZE``; ``dagrun.results.inparts``), each part's
    lines decoded at once and made columns when the plan's repetitions are sent
    (``_decoded``). Every part is decoded in a child then: this process reads the plan
    meanwhile and gets the columns, never the decoded lines (most of the memory, and
    their freeing costs)."""
    view = memoryview(data)

    def decode(span: tuple[int, int]) -> tuple[dict[int, dict[str, Any]], None]:
        return decode_lines(view[span[0]:span[1]]), None  # (nothing to measure)

    return inparts.Steps(inparts.spans(data, inparts.count(len(data), PART_SIZE)), decode,
                         _build, lambda listed: marshal.dumps(_payload(listed), inparts.MARSHAL),
                         lambda payload: _listed(marshal.loads(payload)), here=False)


def _decoded(data: bytes, reps_of: Mapping[int, int], decoding: _Decoding | None = None
             ) -> Listed:
    """The columns of the whole lines ``data`` (``decoding``: their decoding started by
    ``_decoding``, or started here); a large file's parts' columns are joined. The
    joined columns are the whole file's when no experiment has lines in two parts and every
    part has the same columns in the same order (then the column order, first seen, is the
    same too); otherwise, a rare file, it is decoded again as a whole."""
    with decoding if decoding is not None else _decoding(data) as steps:
        parts = steps.results(reps_of if type(reps_of) is dict else dict(reps_of))
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    names = (list(first.config), list(first.means))
    disjoint = _in_order(parts) or \
        sum(len(p.ids) for p in parts) == len(set().union(*(p.ids for p in parts)))
    if not disjoint or any((list(p.config), list(p.means)) != names for p in parts):
        return _build(decode_lines(data), reps_of)
    return _combine(*parts)


def _in_order(parts: Sequence[Listed]) -> bool:
    """Whether every part's ids (ascending) come after the ids of the part before it."""
    return all(a.ids[-1] < b.ids[0] for a, b in itertools.pairwise(parts) if a.ids and b.ids)


def _combine(*parts: Listed) -> Listed:
    """Sets of lines for different experiments as one, ids ascending."""
    parts = tuple(p for p in parts if p.ids) or parts[:1]
    if len(parts) == 1:
        return parts[0]
    positions: list[Sequence[int]] = []
    if _in_order(parts):  # (the parts of a file in id order: their rows one after another)
        ids = list(itertools.chain.from_iterable(p.ids for p in parts))
        start = 0
        for p in parts:
            positions.append(range(start, start + len(p.ids)))
            start += len(p.ids)
    else:
        ids = sorted(i for p in parts for i in p.ids)
        where = {exp_id: k for k, exp_id in enumerate(ids)}
        positions = [[where[i] for i in p.ids] for p in parts]
    rows = Rows(len(ids), positions)
    others: dict[str, set[str]] = {}
    for p in parts:
        for name, kinds in p.others.items():
            others.setdefault(name, set()).update(kinds)
    return Listed(ids, rows.merge([p.config for p in parts], MISSING),
                  rows.merge([p.means for p in parts], None),
                  rows.merge([p.stds for p in parts], None),
                  rows.merge([p.counts for p in parts], None),
                  {name: sorted(kinds) for name, kinds in others.items()})


# --------------------------------------------------------------------------------------------
# The file. marshal holds JSON's values; MISSING is written as None plus its positions.

def _payload(listed: Listed) -> dict[str, Any]:
    """The columns as values marshal holds (``MISSING``: None plus its positions)."""
    config = {}
    for name, column in listed.config.items():
        absent = [k for k, v in enumerate(column) if v is MISSING] \
            if type(MISSING) in set(map(type, column)) else []
        config[name] = ([None if v is MISSING else v for v in column] if absent else column,
                        absent)
    return {"ids": listed.ids, "config": config, "means": listed.means, "stds": listed.stds,
            "counts": listed.counts, "others": listed.others}


def _listed(payload: dict[str, Any]) -> Listed:
    """``_payload`` read back, checked (``ValueError`` when damaged)."""
    ids = payload["ids"]
    config = {}
    for name, (column, absent) in payload["config"].items():
        for k in absent:
            column[k] = MISSING
        config[name] = column
    listed = Listed(ids, config, payload["means"], payload["stds"], payload["counts"],
                    payload["others"])
    columns = [*config.values(), *listed.means.values(), *listed.stds.values(),
               *listed.counts.values()]
    if not (type(ids) is list and type(listed.others) is dict
            and listed.means.keys() == listed.stds.keys() == listed.counts.keys()
            and all(type(c) is list and len(c) == len(ids) for c in columns)):
        raise ValueError("damaged columns")
    return listed


def _store(sweep: SweepDir, plan_key: str, data: bytes, listed: Listed) -> None:
    payload = {"format": _FORMAT, "python": _PYTHON, "plan": plan_key, "size": len(data),
               "crc": zlib.crc32(data), **_payload(listed)}
    with contextlib.suppress(OSError, ValueError):  # read-only OUT, full disk: decode again
        atomic.write_bytes(sweep.results_cache, marshal.dumps(payload))


def _load(sweep: SweepDir) -> tuple[str, int, int, Listed] | None:
    """The kept columns with the plan digest they were read with, and the size and CRC of
    the bytes they came from; ``None`` when there are none for this Python, or they are
    damaged."""
    try:
        with open(sweep.results_cache, "rb") as f:
            payload = marshal.loads(f.read())
        if not (type(payload) is dict and payload.get("format") == _FORMAT
                and payload.get("python") == _PYTHON and type(payload.get("plan")) is str):
            return None
        size, crc = payload["size"], payload["crc"]
        listed = _listed(payload)
        if not (type(size) is int and type(crc) is int):
            return None
        return payload["plan"], size, crc, listed
    except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
