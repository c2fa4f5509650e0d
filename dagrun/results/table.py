"""The results table: one row per experiment, filtered, sorted, grouped and cut to columns.

``query`` does what ``dagrun results`` and ``dagrun.results_table`` share, on plain lists
(the command needs no pandas, and 100,000 rows sort in a fraction of a second this way);
``results_table`` wraps its result in a pandas DataFrame. Columns: ``experiment_id``, the
config keys that vary across experiments (nested keys dotted), each numeric metric ``M``
(``mean_M``/``std_M`` over repetitions unless every experiment has a single repetition),
``state`` (done / failed / incomplete) and ``n`` (repetitions done).
"""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagrun.errors import DagrunError, UsageError
from dagrun.results.columns import MISSING, same_key
from dagrun.results.read import EXPERIMENT_ID, STATE, Collected, N, collect

if TYPE_CHECKING:
    import os

    import pandas


class PandasMissing(DagrunError, ImportError):
    """``results_table`` needs pandas, which is not installed."""


@dataclass
class Table:
    """Rows of the results as columns (``None``: no value), the metrics among them, and
    whether they are single-repetition columns ``M`` rather than ``mean_M``/``std_M``."""

    columns: dict[str, list[Any]]
    metrics: list[str]
    single: bool

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))


def metric_columns(metrics: Sequence[str], single: bool) -> list[str]:
    """The csv columns of ``metrics``: ``M``, or ``mean_M`` and ``std_M``."""
    if single:
        return list(metrics)
    return [c for m in metrics for c in (f"mean_{m}", f"std_{m}")]


def _all_columns(collected: Collected) -> dict[str, list[Any]]:
    """Every column of the full table (constant keys too), one list each."""
    cols: dict[str, list[Any]] = {EXPERIMENT_ID: list(collected.ids)}
    for key in [*collected.varied, *collected.constant]:
        cols[key] = _cells(collected.config[key])
    for m in collected.metrics:
        if collected.single:
            cols[m] = collected.means[m]
        else:
            cols[f"mean_{m}"] = collected.means[m]
            cols[f"std_{m}"] = collected.stds[m]
    cols[STATE] = [s.value for s in collected.states]
    cols[N] = list(collected.done)
    return cols


def _cells(column: list[Any]) -> list[Any]:
    """A config column's cells: ``None`` where there is no value (MISSING, NaN), as for
    metrics. The usual column, of one type and no NaN, is taken as it is."""
    kinds = set(map(type, column))
    if float not in kinds and type(MISSING) not in kinds:
        return column
    if kinds == {float}:
        total = sum(column)
        if total == total:  # no NaN (and no inf - inf): every value is a value
            return column
    return [None if v is MISSING or (type(v) is float and v != v) else v for v in column]


def _pick(column: list[Any], rows: list[int]) -> list[Any]:
    """``column`` at ``rows``, in that order."""
    if len(rows) < 2:
        return [column[i] for i in rows]
    return list(operator.itemgetter(*rows)(column))


def query(out: str | os.PathLike[str], *, sort: str | None = None, desc: bool = False,
          top: int | None = None, where: Mapping[str, Any] | Sequence[str] | None = None,
          group_by: str | None = None, columns: Sequence[str] | None = None) -> Table:
    """The results of the sweep in ``out``; the arguments as in ``results_table``."""
    collected = collect(out)
    metrics, single = collected.metrics, collected.single
    default = [EXPERIMENT_ID, *collected.varied, *metric_columns(metrics, single), STATE, N]
    known = [*default, *collected.constant]
    cols = _all_columns(collected)
    rows = _where(cols, parse_where(where), known)
    if sort is not None:
        rows = _sorted(rows, cols[resolve_column(sort, known, metrics, single)], desc)
    if group_by is not None:
        if sort is None:
            raise UsageError("--group-by needs --sort: it keeps the best row of each group")
        rows = _first_per_group(rows, cols[resolve_column(group_by, known, metrics, single)])
    if top is not None:
        rows = rows[:max(top, 0)]
    shown = _chosen_columns(columns, known, metrics, single) if columns else default
    everything = len(rows) == len(collected) and rows == list(range(len(rows)))
    picked = {c: cols[c] if everything else _pick(cols[c], rows) for c in shown}
    return Table(picked, [m for m in metrics if any(c in shown for c in
                                                    metric_columns([m], single))], single)


def results_table(out: str | os.PathLike[str], *, sort: str | None = None, desc: bool = False,
                  top: int | None = None,
                  where: Mapping[str, Any] | Sequence[str] | None = None,
                  group_by: str | None = None,
                  columns: Sequence[str] | None = None) -> pandas.DataFrame:
    """The results of the sweep in ``out`` as a DataFrame, one row per experiment.

    ``sort``: a column (``mean_acc``) or a bare metric name (``acc``: its mean); rows
    without a value come last, also with ``desc``. ``where``: ``{"model": "small"}`` or
    ``["model=small", "lr=0.1"]`` (the value as JSON when it parses). ``group_by``: keep the
    first row of each value of that key after sorting (the best one by ``sort``). ``top``:
    the first K rows. ``columns``: show these (config keys, columns, bare metric names)
    instead of the varied keys, metrics, state and n. Experiments that failed or are not
    complete are kept, with their ``state``. ``df.attrs`` holds ``metrics`` and ``single``.
    """
    try:
        import pandas as pd
    except ImportError as exc:
        raise PandasMissing("results_table needs pandas: pip install 'dagrun[pandas]'") from exc
    table = query(out, sort=sort, desc=desc, top=top, where=where, group_by=group_by,
                  columns=columns)
    numbers = set(metric_columns(table.metrics, table.single))  # NaN where no value
    df = pd.DataFrame({c: pd.Series(v, dtype="float64") if c in numbers else v
                       for c, v in table.columns.items()}, columns=list(table.columns))
    df.attrs["metrics"] = table.metrics
    df.attrs["single"] = table.single
    return df


def resolve_column(name: str, known: Sequence[str], metrics: Sequence[str],
                   single: bool) -> str:
    """A column as shown, or a bare metric name meaning its mean."""
    if name in known:
        return name
    if name in metrics and not single:
        return f"mean_{name}"
    shown = ", ".join(known[:30]) + (", ..." if len(known) > 30 else "")
    raise UsageError(f"no column {name!r} in the results; columns: {shown}")


def _chosen_columns(columns: Sequence[str], known: Sequence[str], metrics: Sequence[str],
                    single: bool) -> list[str]:
    """``--columns``: names as given (a bare metric gives its mean and std), comma lists
    split, experiment_id first."""
    names = [n.strip() for c in columns for n in c.split(",") if n.strip()]
    out = [] if EXPERIMENT_ID in names else [EXPERIMENT_ID]
    for name in names:
        picked = metric_columns([name], single) if name in metrics and name not in known \
            else [resolve_column(name, known, metrics, single)]
        out.extend(c for c in picked if c not in out)
    return out


def parse_where(where: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings (the value as JSON when it parses, else the string itself)."""
    if where is None:
        return {}
    if isinstance(where, Mapping):
        return dict(where)
    out: dict[str, Any] = {}
    for item in where:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--where takes KEY=VALUE (e.g. model=small), got {item!r}")
        try:
            out[key.strip()] = json.loads(text)
        except ValueError:
            out[key.strip()] = text
    return out


def _where(cols: dict[str, list[Any]], where: Mapping[str, Any],
           known: Sequence[str]) -> list[int]:
    """The rows whose value of each ``where`` key equals the value given."""
    keep: list[bool] | None = None
    for key, value in where.items():
        if key not in cols:
            raise UsageError(f"--where: no config key or column {key!r}; known: "
                             f"{', '.join(known[:30])}")
        wanted = same_key(value)
        mask = [same_key(v) == wanted for v in cols[key]]
        keep = mask if keep is None else [a and b for a, b in zip(keep, mask, strict=True)]
    rows = range(len(cols[EXPERIMENT_ID]))
    return list(rows) if keep is None else list(itertools.compress(rows, keep))


def _sorted(rows: list[int], column: list[Any], desc: bool) -> list[int]:
    """A stable sort of ``rows`` by ``column``, rows without a value (None, NaN) last also
    when descending; values of types that do not compare are compared as text."""
    present = [i for i in rows if column[i] is not None and column[i] == column[i]]
    absent = [i for i in rows if column[i] is None or column[i] != column[i]]
    try:
        present.sort(key=column.__getitem__, reverse=desc)
    except TypeError:
        present.sort(key=lambda i: str(column[i]), reverse=desc)
    return present + absent


def _first_per_group(rows: list[int], column: list[Any]) -> list[int]:
    """The first row of each value of ``column``, in the order of ``rows``."""
    seen: set[Any] = set()
    out = []
    for i in rows:
        key = same_key(column[i])
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out
