"""Columns of a sweep's results: one list per config key and per metric, built a column at
a time.

At 100,000 experiments a Python object or dict per row costs more than decoding the file, so
everything between the decoded JSON and the table is a list comprehension over a column:
configs flattened to dotted keys (``config_columns``), which keys vary (``split_keys``), each
metric's mean, std and count (``MetricColumns``, with the one definition of those
statistics, ``stats``), and parts over disjoint rows joined (``Rows.merge``).
"""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from math import isfinite, sqrt
from typing import Any

FIT_TIME = "fit_time"
LINE_KEYS = frozenset({"experiment_id", "out_path", "scores"})  # a results line, less config


class _Missing:
    """The value of a config key an experiment's config does not have."""

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"  # pickled by name: a copy is still ``MISSING``


MISSING: Any = _Missing()

Stat = tuple[float | None, float | None]  # mean and std (ddof=0); None: no numeric value


def config_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """One column per config key (dicts flattened to dotted keys: ``{"opt": {"lr": 1}}``
    gives ``opt.lr``), ``MISSING`` where a config lacks the key; results lines' own keys
    (experiment_id, out_path, scores) are left out."""
    out: dict[str, list[Any]] = {}
    for key in dict.fromkeys(itertools.chain.from_iterable(rows)):
        if key not in LINE_KEYS:
            _add_column(out, str(key), get_column(rows, key, MISSING))
    return out


def get_column(rows: Sequence[Mapping[str, Any]], key: str, default: Any = None) -> list[Any]:
    """``row.get(key, default)`` of every row (one C loop when every row has the key)."""
    try:
        return list(map(operator.itemgetter(key), rows))
    except KeyError:
        return [r.get(key, default) for r in rows]


def _add_column(out: dict[str, list[Any]], name: str, column: list[Any]) -> None:
    """Put ``column`` under ``name``, its non-empty dicts spread over ``name.sub`` columns."""
    kinds = set(map(type, column))
    if kinds == {dict} and all(column):  # the usual nested key: a dict everywhere, in C loops
        for sub in dict.fromkeys(itertools.chain.from_iterable(column)):
            _add_column(out, f"{name}.{sub}", get_column(column, sub, MISSING))
        return
    if dict in kinds and any(type(v) is dict and v for v in column):
        subs = [v if type(v) is dict and v else None for v in column]
        rest = [MISSING if d is not None else v for v, d in zip(column, subs, strict=True)]
        if rest.count(MISSING) < len(rest):
            _put(out, name, rest)
        for sub in dict.fromkeys(itertools.chain.from_iterable(d for d in subs if d)):
            _add_column(out, f"{name}.{sub}",
                        [MISSING if d is None else d.get(sub, MISSING) for d in subs])
    else:
        _put(out, name, column)


def _put(out: dict[str, list[Any]], name: str, column: list[Any]) -> None:
    """A dotted key written both ways (``{"a.b": 1}`` and ``{"a": {"b": 2}}``) is one
    column; the nested value wins where a config has both."""
    old = out.get(name)
    out[name] = column if old is None else \
        [o if n is MISSING else n for o, n in zip(old, column, strict=True)]


def same_key(value: Any) -> Any:
    """A hashable stand-in for a JSON value; numbers compare by value (1 == 1.0), and
    booleans, lists and dicts by their JSON text; NaN is one value."""
    if type(value) in (int, float, str):
        return value if value == value else ("nan",)
    return ("json", json.dumps(value, sort_keys=True, allow_nan=True))


_INT_FLOAT = {int, float}


def split_keys(columns: Mapping[str, list[Any]]) -> tuple[list[str], dict[str, Any]]:
    """Config keys that vary (different values, or missing somewhere), in column order, and
    the constant ones with their value. The comparisons are done by ``list.count`` (this runs
    over 100,000 configs)."""
    varied: list[str] = []
    constant: dict[str, Any] = {}
    for key, column in columns.items():
        if not column:
            continue
        first = column[0]
        types = set(map(type, column))
        if len(types) == 1:
            same = first is not MISSING and column.count(first) == len(column)
        else:  # 1 and 1.0 are the same value; values of other types never are
            same = types == _INT_FLOAT and len({same_key(v) for v in column}) == 1
        if same:
            constant[key] = first
        else:
            varied.append(key)
    return varied, constant


_NUMBER_TYPES = (int, float)
_FLOAT_MAX = 1.7976931348623157e308


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    kind = type(value)
    if kind is float:
        return isfinite(value)
    return kind is int and -_FLOAT_MAX <= value <= _FLOAT_MAX


Stats = tuple[float | None, float | None, int]  # mean, std (ddof=0), values that entered


def stats(values: Sequence[Any]) -> Stats | None:
    """One metric of one experiment from its repetitions' values: the mean and standard
    deviation (numpy's, ddof=0) of the values that are finite numbers, and how many those
    are (``n_M``). ``None`` when the metric is not numeric: no value is a number, and some
    is text, a boolean, a list or a dict. NaN, inf and null are values that do not enter;
    with none entered the mean and std are ``None`` (a metric of nulls only is numeric).

    The one definition of a metric's statistics: results.jsonl's ``mean_M``/``std_M``/
    ``n_M`` are written with it and every reader recomputes with it."""
    if len(values) == 1 and type(values[0]) is float and isfinite(values[0]):
        return values[0], 0.0, 1  # (one repetition's finite float: the usual line's case)
    nums = [v for v in values if is_number(v)]
    if not nums and not any(type(v) in _NUMBER_TYPES for v in values) \
            and any(v is not None for v in values):
        return None  # (nulls only: numeric, nothing entered)
    n = len(nums)
    if n == 0:
        return None, None, 0
    if n == 1:
        return float(nums[0]), 0.0, 1  # numpy's mean and std of one value, without numpy
    if n < _PAIRWISE:
        return _few_stats(nums)
    import numpy as np  # imported here: most commands never aggregate, and it is slow to load

    arr = np.asarray(nums, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):  # a sum may overflow to inf
        mean, std = float(np.mean(arr)), float(np.std(arr))
    return (mean if isfinite(mean) else None, std if isfinite(std) else None, n)


_PAIRWISE = 8  # numpy sums fewer values than this one after the other, from 0.0


def _few_stats(nums: list[int | float]) -> Stats:
    """``stats`` of 2 to 7 numbers without numpy (loading it costs more than a sweep's
    reading): numpy's mean and std (ddof=0) computed as numpy does for so few values, a
    plain sum from 0.0 in order, so the floats are the same (tests compare them)."""
    total = 0.0
    values = [float(v) for v in nums]
    for v in values:
        total += v
    n = len(values)
    mean = total / n
    squares = 0.0
    for v in values:
        d = v - mean
        squares += d * d
    std = sqrt(squares / n)
    return (mean if isfinite(mean) else None, std if isfinite(std) else None, n)


def mean_std(values: Iterable[Any]) -> Stat:
    """Mean and standard deviation (ddof=0, as in results.jsonl) of the finite numeric
    values; ``(None, None)`` when there is none."""
    found = stats(list(values))
    return (None, None) if found is None else (found[0], found[1])


_KINDS = {str: "text", bool: "boolean", list: "list", dict: "dict"}


def value_kind(value: Any) -> str:
    """What a metric value that is not a number is, in words (``text``, ``list``...)."""
    return _KINDS.get(type(value), type(value).__name__)


def is_line_list_format(scores: Mapping[str, Any], reps: int | None) -> bool:
    """Whether a results line holds each metric as the list of its repetitions' values
    (results format 2, and every earlier line of several repetitions), not as the value
    itself (the lines of one repetition earlier dagrun wrote). ``fit_time`` decides: dagrun
    always writes it."""
    if reps is not None and reps != 1:
        return True
    return type(scores.get("fit_time")) is list


def line_metrics(scores: Mapping[str, Any], reps: int | None = None) -> dict[str, list[Any]]:
    """The metrics of a results line of any format, each as the list of its repetitions'
    values: keys holding a list (of ``reps`` values when given) in the list format, every key
    in the older one-repetition format; ``mean_M``/``std_M``/``n_M`` are left out."""
    if not is_line_list_format(scores, reps):
        return {str(k): [v] for k, v in scores.items()}
    if reps is None and type(scores.get("fit_time")) is list:
        reps = len(scores["fit_time"])
    return {str(k): v for k, v in scores.items()
            if type(v) is list and (reps is None or len(v) == reps)}


def current_scores(scores: Mapping[str, Any], reps: int | None = None) -> dict[str, Any]:
    """A results line's scores in the current format (what ``reduce.aggregate`` writes):
    every metric a list, plus ``mean_M``/``std_M``/``n_M`` over its finite values for each
    numeric metric. Statistics a line holds are taken as written when they are consistent
    (results format 2), else computed from the values (older lines: a mean of ``null``
    because one repetition was NaN, lines of one repetition without statistics)."""
    metrics = line_metrics(scores, reps)
    listed = is_line_list_format(scores, reps)
    out: dict[str, Any] = dict(metrics)
    for name, values in metrics.items():
        found = (_written(scores, name, values) if listed else None) or stats(values)
        if found is None:
            continue
        for key, value in zip((f"mean_{name}", f"std_{name}", f"n_{name}"), found,
                              strict=True):
            if key not in metrics:  # a metric of that name keeps its values
                out[key] = value
    return out


def _written(scores: Mapping[str, Any], name: str, values: list[Any]) -> Stats | None:
    """The statistics of metric ``name`` as its line holds them, when consistent: a count
    and a float mean and std, or a count of 0 and no mean (results format 2); a float mean
    and std and no count, all values finite numbers (earlier lines); else ``None``."""
    mean, std, n = scores.get("mean_" + name), scores.get("std_" + name), \
        scores.get("n_" + name, -1)
    if type(n) is int and 0 <= n <= len(values):
        if type(mean) is float and type(std) is float and n > 0:
            return mean, std, n
        if n == 0 and mean is None and std is None:
            return None, None, 0
        return None
    if n == -1 and type(mean) is float and type(std) is float and values \
            and all(map(is_number, values)):
        return mean, std, len(values)
    return None


_PLAIN_KINDS = {int, float, type(None), _Missing}


def _all_usual(values: list[Any], means: list[Any], stds: list[Any], counts: list[Any],
               reps: list[int]) -> bool:
    """Whether every line holds the metric as usual (checked a column at a time): a list
    of its repetitions' values, all of which entered a float mean and std."""
    return (set(map(type, values)) == {list} and set(map(type, means)) == {float}
            and set(map(type, stds)) == {float} and set(map(type, counts)) == {int}
            and min(counts) > 0 and counts == reps and list(map(len, values)) == reps)


class MetricColumns:
    """Each metric's mean, std and count per experiment, filled a group of experiments at a
    time (results lines of either format, and experiments read from their runs): one list
    per metric, not a dict per experiment. ``others``: metrics (by name) with values that
    are not numbers, and what those are (``text``, ``list``...)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.means: dict[str, list[float | None]] = {}
        self.stds: dict[str, list[float | None]] = {}
        self.counts: dict[str, list[int | None]] = {}
        self.others: dict[str, list[str]] = {}

    def _put(self, name: str, rows: list[int], means: list[Any], stds: list[Any],
             counts: list[Any]) -> None:
        if not any(c is not None for c in counts):
            return
        if len(rows) == self.size:  # every experiment, in order
            self.means[name], self.stds[name], self.counts[name] = means, stds, counts
            return
        mean_col = self.means.setdefault(name, [None] * self.size)
        std_col = self.stds.setdefault(name, [None] * self.size)
        count_col = self.counts.setdefault(name, [None] * self.size)
        for j, mean, std, count in zip(rows, means, stds, counts, strict=True):
            mean_col[j], std_col[j], count_col[j] = mean, std, count

    def _other(self, name: str, values: Iterable[Any]) -> None:
        kinds = {value_kind(v) for v in values if v is not None and not is_number(v)
                 and type(v) is not float}
        if kinds:
            self.others[name] = sorted(kinds.union(self.others.get(name, ())))

    def add_lines(self, rows: list[int], scores: list[dict[str, Any]],
                  reps: list[int]) -> None:
        """Results lines, of any format: lines that hold lists split from the older lines
        of one repetition that hold the values themselves."""
        if 1 not in reps:  # several repetitions everywhere: every line holds lists
            listed = list(range(len(rows)))
        else:  # (is_line_list_format, a column at a time)
            kinds = list(map(type, get_column(scores, FIT_TIME)))
            listed = [k for k, (kind, r) in enumerate(zip(kinds, reps, strict=True))
                      if r != 1 or kind is list]
        if len(listed) == len(rows):
            self.add_aggregates(rows, scores, reps)
            return
        if not listed:
            self.add_values(rows, scores)
            return
        alone = sorted(set(range(len(rows))) - set(listed))
        self.add_values([rows[k] for k in alone], [scores[k] for k in alone])
        self.add_aggregates([rows[k] for k in listed], [scores[k] for k in listed],
                            [reps[k] for k in listed])

    def add_values(self, rows: list[int], scores: list[dict[str, Any]]) -> None:
        """Lines of one repetition as earlier dagrun wrote them: the value itself (std 0,
        count 1) where it is a finite number; a NaN, inf or null counts 0."""
        for name in dict.fromkeys(itertools.chain.from_iterable(scores)):
            values: list[Any] = [s.get(name, MISSING) for s in scores]
            means = [v if type(v) is float and v - v == 0.0 else  # finite: v - v is 0
                     float(v) if type(v) is int and is_number(v) else None for v in values]
            counts = [1 if m is not None else 0 if v is None or type(v) is float else None
                      for v, m in zip(values, means, strict=True)]
            self._put(name, rows, means, [None if m is None else 0.0 for m in means], counts)
            if set(map(type, values)) - _PLAIN_KINDS:
                self._other(name, (v for v in values if v is not MISSING))

    def add_aggregates(self, rows: list[int], scores: list[dict[str, Any]],
                       reps: list[int]) -> None:
        """Lines that hold each metric as the list of its values per repetition: the
        statistics are taken as written where consistent (``_written``; checked a column
        at a time for the usual line), else computed from the list with ``stats``. Each
        key's column is taken from the lines once (a pass over 100,000 dicts is most of
        the cost), the statistics' columns copied (they are changed in place below)."""
        names = dict.fromkeys(itertools.chain.from_iterable(scores))
        columns = {name: get_column(scores, name) for name in names}
        absent = [None] * len(scores)  # (what get_column gives for a key no line has)
        for name, values in columns.items():
            if list not in set(map(type, values)):
                continue  # a mean_M/std_M/n_M, or not a metric
            # (lists of their own: the rows not usual are changed in place below)
            means = list(columns.get("mean_" + name, absent))
            stds = list(columns.get("std_" + name, absent))
            counts = list(columns.get("n_" + name, absent))
            if _all_usual(values, means, stds, counts, reps):
                self._put(name, rows, means, stds, counts)
                continue
            usual = [type(c) is int and type(m) is float and type(d) is float
                     and type(v) is list and 0 < c == len(v) == n
                     for v, m, d, c, n in zip(values, means, stds, counts, reps, strict=True)]
            odd: list[Any] = []
            for k in itertools.compress(range(len(usual)), [not u for u in usual]):
                vals, n = values[k], reps[k]
                found = None
                if type(vals) is list and len(vals) == n:
                    found = _written(scores[k], name, vals) or stats(vals)
                    if found is None or found[2] < n:
                        odd.extend(vals)
                means[k], stds[k], counts[k] = found if found is not None else (None,) * 3
            self._put(name, rows, means, stds, counts)
            self._other(name, odd)

    def add_stats(self, rows: list[int], found: list[dict[str, Stats]],
                  others: Mapping[str, Iterable[str]] | None = None) -> None:
        """Experiments with their statistics per metric already (read from their runs)."""
        for name in dict.fromkeys(itertools.chain.from_iterable(found)):
            cells = [f.get(name, (None, None, None)) for f in found]
            self._put(name, rows, [c[0] for c in cells], [c[1] for c in cells],
                      [c[2] for c in cells])
        for name, kinds in (others or {}).items():
            self.others[name] = sorted(set(kinds).union(self.others.get(name, ())))


class Rows:
    """Disjoint parts of ``size`` rows that cover them all (each part: its rows' positions),
    with the permutation that puts the parts' rows, joined, in row order: computed once for
    every set of columns merged over the same parts."""

    def __init__(self, size: int, parts: Sequence[Sequence[int]]) -> None:
        self.used = [k for k, positions in enumerate(parts) if positions]
        self.lengths = [len(parts[k]) for k in self.used]
        if sum(self.lengths) != size:
            raise ValueError(f"merge: the parts cover {sum(self.lengths)} of {size} rows")
        joined = [p for k in self.used for p in parts[k]]
        self.order = None if len(self.used) == 1 or joined == sorted(joined) else \
            sorted(range(len(joined)), key=joined.__getitem__)

    def merge(self, parts: Sequence[Mapping[str, list[Any]]], fill: Any
              ) -> dict[str, list[Any]]:
        """Columns over all rows from the parts' columns (in the order of the parts given
        to the constructor); a row whose part lacks a column holds ``fill`` there. Names in
        first-seen order. Each column is the parts' lists joined, then put in row order by
        one permutation (C loops, no per-row Python)."""
        used = [parts[k] for k in self.used]
        if len(used) == 1:
            return dict(used[0])
        order = self.order
        names = dict.fromkeys(itertools.chain.from_iterable(used))
        out: dict[str, list[Any]] = {}
        for name in names:
            column: list[Any] = []
            for columns, length in zip(used, self.lengths, strict=True):
                column.extend(columns.get(name) or [fill] * length)
            out[name] = column if order is None or len(order) < 2 else \
                list(operator.itemgetter(*order)(column))
        return out


def numeric_metrics(counts: Mapping[str, list[int | None]]) -> list[str]:
    """Metrics that are numeric for at least one experiment (a count there, also 0: a
    metric that was inf in every repetition is listed, with no mean), in the order given,
    fit_time last."""
    names = [n for n, col in counts.items() if col.count(None) < len(col)]
    if FIT_TIME in names:
        names.remove(FIT_TIME)
        names.append(FIT_TIME)
    return names
