"""Columns of a sweep's results: one list per config key and per metric, built a column at
a time.

At 100,000 experiments a Python object or dict per row costs more than decoding the file, so
everything between the decoded JSON and the table is a list comprehension over a column:
configs flattened to dotted keys (``config_columns``), which keys vary (``split_keys``), each
metric's mean and std (``MetricColumns``), and parts over disjoint rows joined (``merge``).
"""

from __future__ import annotations

import itertools
import json
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from math import isfinite
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
            _add_column(out, str(key), [r.get(key, MISSING) for r in rows])
    return out


def _add_column(out: dict[str, list[Any]], name: str, column: list[Any]) -> None:
    """Put ``column`` under ``name``, its non-empty dicts spread over ``name.sub`` columns."""
    if any(type(v) is dict and v for v in column):
        subs = [v if type(v) is dict and v else None for v in column]
        rest = [MISSING if d is not None else v for v, d in zip(column, subs, strict=True)]
        if any(v is not MISSING for v in rest):
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
        same_type = len(set(map(type, column))) == 1
        if same_type and first is not MISSING and column.count(first) == len(column):
            constant[key] = first
        elif (not same_type and all(v is not MISSING for v in column)
              and len({same_key(v) for v in column}) == 1):
            constant[key] = first  # ints and floats mixed: 1 and 1.0 are the same value
        else:
            varied.append(key)
    return varied, constant


_NUMBER_TYPES = (int, float)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return type(value) in _NUMBER_TYPES and isfinite(value)


class MetricColumns:
    """Each metric's mean and std per experiment, filled a group of experiments at a time
    (results lines of one repetition, of several, and experiments read from their runs):
    one list comprehension per metric and group, not a dict per experiment."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.means: dict[str, list[float | None]] = {}
        self.stds: dict[str, list[float | None]] = {}

    def _put(self, name: str, rows: list[int], means: list[Any], stds: list[Any]) -> None:
        if len(rows) == self.size:  # every experiment, in order
            self.means[name], self.stds[name] = means, stds
            return
        mean_col = self.means.setdefault(name, [None] * self.size)
        std_col = self.stds.setdefault(name, [None] * self.size)
        for j, mean, std in zip(rows, means, stds, strict=True):
            mean_col[j], std_col[j] = mean, std

    def add_values(self, rows: list[int], scores: list[dict[str, Any]]) -> None:
        """Experiments of one repetition: the value itself (std 0) where it is a number."""
        for name in dict.fromkeys(itertools.chain.from_iterable(scores)):
            values: list[Any] = [s.get(name) for s in scores]
            means = [float(v) if type(v) in _NUMBER_TYPES and isfinite(v) else None
                     for v in values]
            self._put(name, rows, means, [None if m is None else 0.0 for m in means])

    def add_aggregates(self, rows: list[int], scores: list[dict[str, Any]],
                       reps: list[int]) -> None:
        """Results lines of several repetitions: a metric is a key whose value is the list
        of its values per repetition; its ``mean_M``/``std_M`` are taken as written (they are
        when every value is a number), else computed from the list."""
        for name in dict.fromkeys(itertools.chain.from_iterable(scores)):
            values: list[Any] = [s.get(name) for s in scores]
            if list not in set(map(type, values)):
                continue  # a mean_M/std_M, or not a metric
            means: list[Any] = [s.get("mean_" + name) for s in scores]
            stds: list[Any] = [s.get("std_" + name) for s in scores]
            for k, (vals, mean, std, n) in enumerate(zip(values, means, stds, reps,
                                                         strict=True)):
                if type(vals) is not list or len(vals) != n:
                    means[k] = stds[k] = None  # not this experiment's metric
                elif type(mean) is not float or type(std) is not float:
                    means[k], stds[k] = mean_std(vals)
            self._put(name, rows, means, stds)

    def add_stats(self, rows: list[int], means: list[dict[str, float | None]],
                  stds: list[dict[str, float | None]]) -> None:
        """Experiments with a mean and std per metric already."""
        for name in dict.fromkeys(itertools.chain.from_iterable(means)):
            self._put(name, rows, [m.get(name) for m in means], [s.get(name) for s in stds])


def mean_std(values: Iterable[Any]) -> Stat:
    """Mean and standard deviation (ddof=0, as in results.jsonl) of the numeric values;
    ``(None, None)`` when there is none."""
    nums = [float(v) for v in values if is_number(v)]
    if not nums:
        return None, None
    mean = math.fsum(nums) / len(nums)
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in nums) / len(nums))


def merge(size: int, parts: Sequence[tuple[Sequence[int], Mapping[str, list[Any]]]],
          fill: Any) -> dict[str, list[Any]]:
    """Columns over all ``size`` rows from parts over disjoint rows that cover them all
    (each part: its rows' positions, and its columns in that order); a row whose part lacks
    a column holds ``fill`` there. Names in first-seen order. Each column is the parts'
    lists joined, then put in row order by one permutation (C loops, no per-row Python)."""
    parts = [(positions, columns) for positions, columns in parts if positions]
    if sum(len(positions) for positions, _ in parts) != size:
        raise ValueError(f"merge: the parts cover {sum(len(p) for p, _ in parts)} of "
                         f"{size} rows")
    if len(parts) == 1:
        return dict(parts[0][1])
    joined = [p for positions, _ in parts for p in positions]
    order = None if joined == sorted(joined) else \
        sorted(range(len(joined)), key=joined.__getitem__)
    names = dict.fromkeys(itertools.chain.from_iterable(columns for _, columns in parts))
    out: dict[str, list[Any]] = {}
    for name in names:
        column: list[Any] = []
        for positions, columns in parts:
            column.extend(columns.get(name) or [fill] * len(positions))
        out[name] = column if order is None or len(order) < 2 else \
            list(operator.itemgetter(*order)(column))
    return out


def numeric_metrics(means: Mapping[str, list[float | None]]) -> list[str]:
    """Metrics with at least one numeric value, in the order given, fit_time last."""
    names = [n for n, col in means.items() if col.count(None) < len(col)]
    if FIT_TIME in names:
        names.remove(FIT_TIME)
        names.append(FIT_TIME)
    return names
