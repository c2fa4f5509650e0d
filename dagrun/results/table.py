"""The results table: one row per experiment, filtered, sorted, grouped and cut to columns.

``query`` does what ``dagrun results`` and ``dagrun.results_table`` share, on plain lists
(the command needs no pandas, and 100,000 rows sort in a fraction of a second this way);
``results_table`` wraps its result in a pandas DataFrame, and ``read_runs`` gives one row per
repetition. Columns: ``experiment_id``, the config keys that vary across experiments (nested
keys dotted), each numeric metric ``M`` (``mean_M`` and its spread ``std_M``, ``sem_M`` or
``ci95_M`` over repetitions, unless every experiment has a single repetition; ``n_M`` where
fewer values than repetitions entered a mean), then dagrun's own ``state`` (done / incomplete /
failed / running) and ``n`` (repetitions done), named ``dagrun.state``/``dagrun.n`` when a
config key has that name.

Ranking (``sort``, ``top``, ``group_by``) considers the experiments whose repetitions are
all done (``read.RANKED``) unless ``include_incomplete``; ``group_by`` keeps the best row of
each group by the direction of the sort column's metric (``smaller_is_better``), which
``desc`` overrides. ``where`` takes ``KEY OP VALUE`` filters (``parse_where``).
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dagrun.disk import provenance
from dagrun.errors import DagrunError, DagrunWarning, UsageError
from dagrun.record import field, record
from dagrun.results.columns import MISSING, line_metrics, same_key
from dagrun.results.read import (
    EXPERIMENT_ID,
    STATE,
    Collected,
    ExpState,
    collect,
    gc_paused,
    is_running,
    rankable,
    smaller_is_better,
)

if TYPE_CHECKING:
    import os

    import pandas

SPREADS = ("std", "sem", "ci95")  # what follows ± : ddof=0 std, standard error, 95 % CI
_STATE_TEXT = {state: state.value for state in ExpState}  # (a lookup, not .value per row)


class PandasMissing(DagrunError, ImportError):
    """``results_table`` needs pandas, which is not installed."""


@record
class Table:
    """Rows of the results as columns (``None``: no value), the metrics among them, and
    whether they are single-repetition columns ``M`` rather than ``mean_M`` and its spread.

    For the formats: ``counts`` (per shown metric, ``n_M`` per row) and ``done``
    (repetitions done per row) give the ``(2/3)`` beside a mean; ``spread`` names the
    spread column; ``best`` (per shown metric, per row) the best rows among those ranking
    considers (``--bold-best``); ``state``: the name of dagrun's state column; ``notes``:
    what the command says on stderr (a filter matching nothing, a metric without numbers,
    how groups were reduced)."""

    columns: dict[str, list[Any]]
    metrics: list[str]
    single: bool
    counts: dict[str, list[int | None]] = field(default_factory=dict)
    done: list[int] | None = None
    spread: str = "std"
    best: dict[str, list[bool]] = field(default_factory=dict)
    state: str = STATE
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))


def metric_columns(metrics: Sequence[str], single: bool, spread: str = "std") -> list[str]:
    """The csv columns of ``metrics``: ``M``, or ``mean_M`` and its spread (``std_M``)."""
    if single:
        return list(metrics)
    return [c for m in metrics for c in (f"mean_{m}", f"{spread}_{m}")]


# --------------------------------------------------------------------------------------------
# Spread: std (ddof=0), standard error and 95 % confidence interval of the mean.

def spread_values(stds: list[float | None], counts: list[int | None],
                  spread: str) -> list[float | None]:
    """The spread column ``spread`` from the ddof=0 std and count of each row: ``std`` as
    it is; ``sem`` the sample std (ddof=1) over the square root of n; ``ci95`` the
    half-width of the 95 % confidence interval of the mean (Student's t quantile times the
    sem). ``None`` where fewer than two values entered (sem and ci95)."""
    if spread == "std":
        return stds
    out: list[float | None] = []
    for std, n in zip(stds, counts, strict=True):
        if std is None or n is None or n < 2:
            out.append(None)
            continue
        sem = std / math.sqrt(n - 1)  # sqrt(n/(n-1)) * std / sqrt(n)
        out.append(sem if spread == "sem" else t_quantile(0.975, n - 1) * sem)
    return out


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t distribution with ``df`` degrees of
    freedom, without scipy: the t CDF through the regularized incomplete beta function
    (a continued fraction), inverted by bisection to full double precision."""
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        q = 2 * p - 1
        return q * math.sqrt(2 / (1 - q * q))
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _t_cdf(t: float, df: int) -> float:
    """P(T <= t) for t >= 0."""
    x = df / (df + t * t)
    return 1 - 0.5 * _betainc(df / 2, 0.5, x)


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (Numerical Recipes' continued
    fraction, evaluated on the side where it converges fast)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    tiny, qab, qap, qam = 1e-300, a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + aa * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-16:
            break
    return h


# --------------------------------------------------------------------------------------------
# The columns.

def _all_columns(collected: Collected, spread: str) -> dict[str, list[Any]]:
    """Every column of the full table (constant keys and every ``n_M`` too), one list each.
    Config keys first: a metric's or dagrun's column never replaces one."""
    cols: dict[str, list[Any]] = {EXPERIMENT_ID: list(collected.ids)}
    for key in [*collected.varied, *collected.constant]:
        cols[key] = _cells(collected.config[key])
    own: dict[str, list[Any]] = {}
    for m in collected.metrics:
        if collected.single:
            own[m] = collected.means[m]
        else:
            own[f"mean_{m}"] = collected.means[m]
            own[f"{spread}_{m}"] = spread_values(collected.stds[m], collected.counts[m],
                                                 spread)
        own[f"n_{m}"] = collected.counts[m]
    own[collected.state_column] = list(map(_STATE_TEXT.__getitem__, collected.states))
    own[collected.n_column] = list(collected.done)
    for name, column in own.items():
        cols.setdefault(name, column)
    return cols


def _cells(column: list[Any]) -> list[Any]:
    """A config column's cells: ``None`` where the config lacks the key. The usual column,
    of one type, is taken as it is."""
    if type(MISSING) not in set(map(type, column)):
        return column
    return [None if v is MISSING else v for v in column]


def _informative_counts(collected: Collected, metric: str) -> bool:
    """Whether some experiment's mean of ``metric`` is over fewer values than it has
    repetitions done (then its ``n_M`` column is shown)."""
    counts, done = collected.counts[metric], collected.done
    if counts == done:
        return False
    differ = itertools.compress(zip(counts, done, strict=True), map(operator.ne, counts, done))
    return any(c is not None and c < d for c, d in differ)


def _pick(column: list[Any], rows: list[int]) -> list[Any]:
    """``column`` at ``rows``, in that order."""
    if len(rows) < 2:
        return [column[i] for i in rows]
    return list(operator.itemgetter(*rows)(column))


def _items(value: str | Sequence[str] | None) -> list[str]:
    """A plain string is one item, not a sequence of characters."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


# --------------------------------------------------------------------------------------------
# The query.

def query(out: str | os.PathLike[str], *, sort: str | None = None, desc: bool | None = None,
          top: int | None = None,
          where: Mapping[str, Any] | Sequence[str] | str | None = None,
          group_by: str | None = None, columns: Sequence[str] | str | None = None,
          include_incomplete: bool = False, spread: str = "std") -> Table:
    """The results of the sweep in ``out``; the arguments as in ``results_table``."""
    if spread not in SPREADS:
        raise UsageError(f"--spread takes {', '.join(SPREADS)}, got {spread!r}")
    if group_by is not None and sort is None:
        raise UsageError("--group-by needs --sort: it keeps the best row of each group")
    with gc_paused():
        return _query(out, sort=sort, desc=desc, top=top, where=where, group_by=group_by,
                      columns=columns, include_incomplete=include_incomplete, spread=spread)


def _query(out: str | os.PathLike[str], *, sort: str | None, desc: bool | None,
           top: int | None, where: Mapping[str, Any] | Sequence[str] | str | None,
           group_by: str | None, columns: Sequence[str] | str | None,
           include_incomplete: bool, spread: str) -> Table:
    collected = collect(out)
    metrics, single = collected.metrics, collected.single
    cols = _all_columns(collected, spread)
    counted = [m for m in metrics if _informative_counts(collected, m)]
    default = [EXPERIMENT_ID, *collected.varied]
    for m in metrics:
        default.extend(metric_columns([m], single, spread))
        if m in counted:
            default.append(f"n_{m}")
    _add_best(collected, cols, default)
    default += [collected.state_column, collected.n_column]
    known = list(dict.fromkeys([*default, *cols]))
    notes = _metric_notes(collected)
    resolve = _Resolver(known, metrics, single, spread)
    rows, where_notes = _where(cols, parse_where(where), resolve, collected.state_column)
    notes += where_notes
    rows = _ranked(collected, cols, rows, resolve, notes, sort=sort, desc=desc, top=top,
                   group_by=group_by, include_incomplete=include_incomplete)
    shown = _chosen_columns(_items(columns), resolve, counted) if columns else default
    if collected.state_column not in shown:
        shown.append(collected.state_column)  # an experiment's state is always attached
    everything = len(rows) == len(collected) and rows == list(range(len(rows)))

    def pick(column: list[Any]) -> list[Any]:  # (every row in order: the column itself)
        return column if everything else _pick(column, rows)

    picked = {c: pick(cols[c]) for c in shown}
    shown_metrics = [m for m in metrics
                     if any(c in shown for c in metric_columns([m], single, spread))]
    counts = {m: pick(collected.counts[m]) for m in shown_metrics}
    states = collected.states
    best = _BestRows({m: pick(collected.means[m]) for m in shown_metrics},
                     lambda: pick(rankable(states, include_incomplete)),
                     {m: _smaller(m, sort, desc, resolve) for m in shown_metrics})
    return Table(picked, shown_metrics, single, counts, pick(collected.done), spread,
                 best, collected.state_column, notes)


def _add_best(collected: Collected, cols: dict[str, list[Any]], default: list[str]) -> None:
    """A search's column ``dagrun.best`` (the best objective so far, ``dagrun.results.search``),
    shown before the state; nothing for a sweep that is not a search."""
    from dagrun.results.search import BEST, best_column

    best = best_column(collected)
    if best is not None and BEST not in cols:
        cols[BEST] = best
        default.append(BEST)


class _BestRows(dict):  # type: ignore[type-arg]
    """Per shown metric, per row: whether it has the best mean among the rows ranking
    considers (``ok``: those rows, asked for once when first needed); computed when a
    format asks (``--bold-best``)."""

    def __init__(self, means: dict[str, list[Any]], ok: Callable[[], list[bool]],
                 smaller: dict[str, bool]) -> None:
        super().__init__()
        self._means, self._smaller = means, smaller
        self._ask_ok: Callable[[], list[bool]] | None = ok
        self._ok: list[bool] = []

    def __missing__(self, metric: str) -> list[bool]:
        if metric not in self._means:
            raise KeyError(metric)
        if self._ask_ok is not None:
            self._ok, self._ask_ok = self._ask_ok(), None
        flags = _best_flags(self._means[metric], self._ok, self._smaller[metric])
        self[metric] = flags
        return flags

    def get(self, metric: str, default: Any = None) -> Any:
        try:
            return self[metric]
        except KeyError:
            return default


class _Resolver:
    """Column names as the user writes them: a column as shown, or a bare metric name
    meaning its mean."""

    def __init__(self, known: list[str], metrics: list[str], single: bool,
                 spread: str) -> None:
        self.known, self.metrics, self.single, self.spread = known, metrics, single, spread
        self._known = set(known)

    def __call__(self, name: str, what: str = "column") -> str:
        if name in self._known:
            return name
        if name in self.metrics and not self.single:
            return f"mean_{name}"
        shown = ", ".join(self.known[:30]) + (", ..." if len(self.known) > 30 else "")
        raise UsageError(f"no {what} {name!r} in the results; columns: {shown}")

    def metric_of(self, column: str) -> str | None:
        """The metric whose mean (or single value) ``column`` is, else ``None``."""
        if self.single:
            return column if column in self.metrics else None
        if column.startswith("mean_") and column[5:] in self.metrics:
            return column[5:]
        return None


def resolve_column(name: str, known: Sequence[str], metrics: Sequence[str],
                   single: bool) -> str:
    """A column as shown, or a bare metric name meaning its mean."""
    return _Resolver(list(known), list(metrics), single, "std")(name)


def _chosen_columns(columns: Sequence[str], resolve: _Resolver,
                    counted: Sequence[str]) -> list[str]:
    """``--columns``: names as given (a bare metric gives its mean and spread, and its
    ``n_M`` where it says something), comma lists split, experiment_id first."""
    names = [n.strip() for c in columns for n in c.split(",") if n.strip()]
    out = [] if EXPERIMENT_ID in names else [EXPERIMENT_ID]
    for name in names:
        if name in resolve.metrics and name not in resolve.known:
            picked = metric_columns([name], resolve.single, resolve.spread)
            if name in counted:
                picked.append(f"n_{name}")
        else:
            picked = [resolve(name)]
        out.extend(c for c in picked if c not in out)
    return out


def _metric_notes(collected: Collected) -> list[str]:
    """A line for each metric with values that are not numbers: those are not in the table
    (read_runs and results.jsonl hold them)."""
    notes = []
    for name, kinds in collected.others.items():
        what = " and ".join(kinds)
        if name in collected.metrics:
            notes.append(f"metric {name!r} is not a number ({what}) in some repetitions: "
                         "those do not enter its mean (see n); dagrun.read_runs(OUT) "
                         "gives every value")
        else:
            notes.append(f"metric {name!r} holds no numbers ({what}): not in the table; "
                         "results.jsonl and dagrun.read_runs(OUT) give its values")
    older = provenance.older_code(collected.sweep,
                                  list(zip(collected.ids, collected.repetitions, strict=True)))
    for code_id, ids in sorted(older.items()):
        shown = ", ".join(map(str, ids[:10])) + (", ..." if len(ids) > 10 else "")
        notes.append(f"{len(ids)} experiment(s) were computed with code other than the latest "
                     f"({code_id[:12] or 'unrecorded'}; ids {shown}): `dagrun show OUT ID` "
                     "says which; --rerun-changed recomputes what changed")
    return notes


# --------------------------------------------------------------------------------------------
# Ranking: sort, group-by, top.

def _smaller(metric: str, sort: str | None, desc: bool | None, resolve: _Resolver) -> bool:
    """Whether smaller is better for ``metric``: ``desc``/``--asc`` decide for the sort
    metric when given, else its name (``smaller_is_better``)."""
    if desc is not None and sort is not None:
        try:
            if resolve.metric_of(resolve(sort)) == metric:
                return not desc
        except UsageError:
            pass
    return smaller_is_better(metric)


def _best_flags(means: list[float | None], ok: list[bool], smaller: bool) -> list[bool]:
    values = [m for m, good in zip(means, ok, strict=True) if good and m is not None]
    if not values:
        return [False] * len(means)
    best = min(values) if smaller else max(values)
    return [good and m == best for m, good in zip(means, ok, strict=True)]


def _ranked(collected: Collected, cols: dict[str, list[Any]], rows: list[int],
            resolve: _Resolver, notes: list[str], *, sort: str | None, desc: bool | None,
            top: int | None, group_by: str | None, include_incomplete: bool) -> list[int]:
    """``rows`` sorted, reduced to the best of each group and cut to the top K. Only the
    experiments ranking considers take part; with ``sort`` alone the others follow them,
    with ``top`` or ``group_by`` they are left out (a note says how many)."""
    if sort is None and top is None:
        return rows
    ok = collected.rankable(include_incomplete)
    ranked = [i for i in rows if ok[i]]
    others = [i for i in rows if not ok[i]]
    if sort is not None:
        column = cols[resolve(sort)]
        ranked = _sorted(ranked, column, bool(desc))
        others = _sorted(others, column, bool(desc))
    if group_by is not None and sort is not None:
        key = resolve(group_by, "column to group by")
        sort_col = resolve(sort)
        metric = resolve.metric_of(sort_col)
        if desc is not None:
            better_desc, why = desc, "as --desc asked" if desc else "as --asc asked"
        elif metric is not None:
            better_desc = not smaller_is_better(metric)
            why = (f"{'smaller' if not better_desc else 'larger'} is better, from its name; "
                   "--asc or --desc to choose")
        else:
            better_desc, why = False, "the first in ascending order; --desc for the last"
        best_first = _sorted(ranked, cols[sort_col], better_desc)
        kept = set(_first_per_group(best_first, cols[key]))
        ranked = [i for i in ranked if i in kept]
        notes.append(f"--group-by {key}: the experiment with the "
                     f"{'largest' if better_desc else 'smallest'} {sort_col} of each "
                     f"group ({why})")
    if top is not None:
        ranked = ranked[:max(top, 0)]
    if others:
        counts = _state_counts(collected, others)
        if top is not None or group_by is not None:
            notes.append(f"{len(others)} experiment(s) not complete ({counts}) were not "
                         "ranked; --include-incomplete ranks them")
            return ranked
        notes.append(f"{len(others)} experiment(s) not complete ({counts}) are not ranked: "
                     "listed after the others; --include-incomplete ranks them")
    return ranked + others


def _state_counts(collected: Collected, rows: list[int]) -> str:
    found: dict[str, int] = {}
    for i in rows:
        found[collected.states[i].value] = found.get(collected.states[i].value, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in found.items())


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


# --------------------------------------------------------------------------------------------
# --where.

@record(frozen=True)
class Filter:
    """One ``--where`` filter: ``key op value`` (``in``: ``value`` is a tuple of values)."""

    key: str
    op: str
    value: Any
    text: str


_WHERE = re.compile(r"\s*(?P<key>.*?)\s*(?P<op>==|!=|<=|>=|=|<|>|\s(?:in|IN)\s)\s*"
                    r"(?P<value>.*?)\s*", re.DOTALL)
_SPECIAL = {"inf": math.inf, "+inf": math.inf, "infinity": math.inf, "-inf": -math.inf,
            "-infinity": -math.inf, "nan": math.nan}
WHERE_HELP = ("KEY OP VALUE with OP one of = (or ==), !=, <, <=, >, >=, in "
              "(e.g. model=small, 'lr < 0.1', 'dataset in iris,digits')")


def parse_where(where: Mapping[str, Any] | Sequence[str] | str | None) -> list[Filter]:
    """Filters: ``{"model": "small"}`` (equality), or ``KEY OP VALUE`` strings. The value is
    text in quotes (``'svc'``, ``"0.1"``), else JSON when it parses (``0.1``, ``true``,
    ``[1, 2]``), ``inf``/``nan``, else the text itself; ``in`` takes values separated by
    commas (``iris,digits``, ``[1, 2]``)."""
    if where is None:
        return []
    if isinstance(where, Mapping):
        return [Filter(str(k), "=", v, f"{k}={json.dumps(v, default=str)}")
                for k, v in where.items()]
    out = []
    for item in _items(where):
        if not isinstance(item, str):
            raise UsageError(f"--where takes {WHERE_HELP}; got {item!r}")
        found = _WHERE.fullmatch(item)
        if found is None or not found.group("key"):
            raise UsageError(f"--where takes {WHERE_HELP}; got {item!r}")
        op = found.group("op").strip().lower()
        op = "=" if op == "==" else op
        text = found.group("value")
        value = _in_values(text, item) if op == "in" else _value(text, item)
        out.append(Filter(found.group("key"), op, value, item))
    return out


def _value(text: str, item: str) -> Any:
    text = text.strip()
    if text[:1] in ("'", '"'):
        if len(text) < 2 or text[-1] != text[0]:
            raise UsageError(f"--where {item!r}: the quote is not closed")
        return text[1:-1]
    special = _SPECIAL.get(text.lower())
    if special is not None:
        return special
    try:
        return json.loads(text)
    except ValueError:
        return text


def _in_values(text: str, item: str) -> tuple[Any, ...]:
    text = text.strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except ValueError:
            values = None
        if isinstance(values, list):
            return tuple(values)
    if len(text) >= 2 and (text[0], text[-1]) in (("[", "]"), ("(", ")"), ("{", "}")):
        text = text[1:-1]
    parts, current, quote = [], "", ""
    for ch in text:
        if quote:
            current += ch
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            current += ch
            quote = ch
        elif ch == ",":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    values = tuple(_value(p, item) for p in parts if p.strip())
    if quote or not values:
        raise UsageError(f"--where {item!r}: 'in' takes values separated by commas "
                         "(dataset in iris,digits)")
    return values


def _orderable(value: Any) -> bool:
    return (type(value) in (int, float) and value == value) or type(value) is str


def _test(f: Filter, lower: bool) -> Callable[[Any], bool]:
    """The predicate of a filter on one cell; ``lower``: the state column, compared in
    lower case."""
    def norm(v: Any) -> Any:
        return v.lower() if lower and type(v) is str else v

    if f.op in ("=", "!=", "in"):
        wanted = {same_key(norm(v)) for v in (f.value if f.op == "in" else (f.value,))}
        if f.op == "!=":
            return lambda v: same_key(norm(v)) not in wanted
        return lambda v: same_key(norm(v)) in wanted
    compare = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[f.op]
    value = norm(f.value)
    if not _orderable(value):
        raise UsageError(f"--where {f.text!r}: {f.op} compares numbers or text, got "
                         f"{json.dumps(f.value, default=str)}")
    numeric = type(value) is not str

    def test(v: Any) -> bool:
        v = norm(v)
        if not _orderable(v) or (type(v) is str) == numeric:
            return False
        return bool(compare(v, value))
    return test


def _where(cols: dict[str, list[Any]], filters: Sequence[Filter], resolve: _Resolver,
           state_column: str) -> tuple[list[int], list[str]]:
    """The rows that pass every filter, and a note for a filter that leaves no row."""
    rows = list(range(len(cols[EXPERIMENT_ID])))
    notes: list[str] = []
    for f in filters:
        name = resolve(f.key, "config key or column")
        column = cols[name]
        test = _test(f, lower=name == state_column)
        before = rows
        rows = [i for i in rows if test(column[i])]
        if before and not rows:
            notes.append(_nothing_note(f, name, column, before, len(filters) > 1))
            return rows, notes
    return rows, notes


def _nothing_note(f: Filter, name: str, column: list[Any], before: list[int],
                  several: bool) -> str:
    """``--where F matches no experiment; KEY has: ...`` with the values that exist."""
    values = [column[i] for i in before]
    numbers = [v for v in values if type(v) in (int, float) and v == v]
    distinct = list({same_key(v): v for v in values}.values())
    if len(distinct) > 12 and len(numbers) == len(values):
        shown = f"values from {min(numbers)!r} to {max(numbers)!r}"
    else:
        texts = sorted(_quoted(v) for v in distinct)
        shown = ", ".join(texts[:12]) + (f", ... ({len(texts)} values)"
                                         if len(texts) > 12 else "")
    rest = " among the rows the filters before it kept" if several else ""
    hint = ""
    if f.op == "=" and isinstance(f.value, str) and "," in f.value:
        hint = f"; several values: '{name} in {f.value}'"
    return f"--where {f.text!r} matches no experiment; {name} has{rest}: {shown}{hint}"


def _quoted(value: Any) -> str:
    if value is None or value is MISSING:
        return "(none)"
    if type(value) is float and not math.isfinite(value):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, default=str)


# --------------------------------------------------------------------------------------------
# pandas.

def _pandas(what: str) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise PandasMissing(f"{what} needs pandas: pip install 'dagrun[pandas]'") from exc
    return pd


def results_table(out: str | os.PathLike[str], *, sort: str | None = None,
                  desc: bool | None = None, top: int | None = None,
                  where: Mapping[str, Any] | Sequence[str] | str | None = None,
                  group_by: str | None = None, columns: Sequence[str] | str | None = None,
                  include_incomplete: bool = False, spread: str = "std") -> pandas.DataFrame:
    """The results of the sweep in ``out`` as a DataFrame, one row per experiment, every
    planned experiment with its ``state``. The same rows as ``dagrun results``, and the
    same values as ``read_results`` (``mean_M`` here is ``scores.mean_M`` there).

    ``sort``: a column (``mean_acc``) or a bare metric name (``acc``: its mean); ascending
    unless ``desc``; rows without a value come last. ``where``: ``{"model": "small"}`` or
    ``KEY OP VALUE`` strings (``"lr<0.1"``, ``"dataset in iris,digits"``; a plain string is
    one filter). ``group_by`` (with ``sort``): the best row of each value of that key by the
    sort metric's direction (from its name; ``desc=True``/``False`` overrides). ``top``: the
    first K rows. Ranking (sort, top, group_by) considers complete experiments only unless
    ``include_incomplete``: with ``sort`` alone the others follow. ``columns``: show these
    (config keys, columns, bare metric names; a string is one name) instead of the varied
    keys, metrics, state and n; the state is always attached. ``spread``: ``std`` (ddof=0),
    ``sem`` or ``ci95`` (the columns are named after it). ``df.attrs`` holds ``metrics``,
    ``single``, ``spread``, ``state`` (the state column's name) and ``notes``; a filter that
    matches nothing warns (``DagrunWarning``).
    """
    pd = _pandas("results_table")
    table = query(out, sort=sort, desc=desc, top=top, where=where, group_by=group_by,
                  columns=columns, include_incomplete=include_incomplete, spread=spread)
    for note in table.notes:
        if "matches no experiment" in note:
            warnings.warn(note, DagrunWarning, stacklevel=2)
    numbers = set(metric_columns(table.metrics, table.single, spread))  # NaN where no value
    df = pd.DataFrame({c: pd.Series(v, dtype="float64") if c in numbers else v
                       for c, v in table.columns.items()}, columns=list(table.columns))
    df.attrs.update(metrics=table.metrics, single=table.single, spread=spread,
                    state=table.state, notes=list(table.notes))
    return df


def read_runs(out: str | os.PathLike[str]) -> pandas.DataFrame:
    """One row per repetition of every planned experiment (tidy data, for seaborn or a
    significance test): ``experiment_id``, ``run_id`` (the repetition), the config keys that
    vary, the run's ``state`` (done, pending, incomplete, failed, running; ``dagrun.state``
    when a config key is named ``state``), and each metric's value in that run (``NaN``
    where it has none; NaN and inf as the run returned them; values that are not numbers
    as they are). A metric named like a config key is ``scores.M``. ``df.attrs``:
    ``metrics`` (numeric), ``others`` (metrics that are not numbers), ``constant`` (the
    config keys every experiment shares)."""
    pd = _pandas("read_runs")
    collected = collect(out)
    lines = _results_lines(collected)
    names = [*collected.metrics, *(m for m in collected.others if m not in collected.metrics)]
    ids: list[int] = []
    reps: list[int] = []
    states: list[str] = []
    config: dict[str, list[Any]] = {k: [] for k in collected.varied}
    values: dict[str, list[Any]] = {m: [] for m in names}
    for i, exp_id in enumerate(collected.ids):
        for rep, state, scores in _experiment_runs(collected, i, lines.get(exp_id)):
            ids.append(exp_id)
            reps.append(rep)
            states.append(state)
            for key, column in config.items():
                column.append(collected.config[key][i])
            for m in names:
                values[m].append(None if scores is None else scores.get(m))
    cols: dict[str, Any] = {EXPERIMENT_ID: ids, "run_id": reps}
    for key, column in config.items():
        cols[key] = _cells(column)
    cols[collected.state_column] = states
    for m in names:
        name = m if m not in cols else f"scores.{m}"
        column = values[m]
        if m in collected.metrics and all(v is None or type(v) in (int, float)
                                          for v in column):
            cols[name] = pd.Series([math.nan if v is None else v for v in column],
                                   dtype="float64")
        else:
            cols[name] = pd.Series(column, dtype="object")
    df = pd.DataFrame(cols)
    df.attrs.update(metrics=list(collected.metrics), others=dict(collected.others),
                    constant=dict(collected.constant), state=collected.state_column)
    return df


def _results_lines(collected: Collected) -> dict[int, dict[str, Any]]:
    """The decoded results lines of the experiments the table read from results.jsonl."""
    from dagrun.results.columnscache import decode_lines

    if len(collected.runs) == len(collected):
        return {}
    try:
        with open(collected.sweep.results, "rb") as f:
            data = f.read()
    except OSError:
        return {}
    return decode_lines(data[:data.rfind(b"\n") + 1])


def _experiment_runs(collected: Collected, i: int, line: dict[str, Any] | None
                     ) -> Iterator[tuple[int, str, dict[str, Any] | None]]:
    """``(rep, state, scores)`` of each repetition of experiment ``i``: from its results
    line (a value written as null is read from the run's post.json, which keeps NaN and
    inf), else from its runs."""
    from dagrun.disk.records import read_scores
    from dagrun.disk.runs import RunState

    exp_id, reps = collected.ids[i], collected.repetitions[i]
    scanned = collected.runs.get(exp_id)
    sweep = collected.sweep
    if scanned is None and line is not None and type(line.get("scores")) is dict:
        metrics = line_metrics(line["scores"], reps)
        for rep in range(reps):
            scores = {m: v[rep] for m, v in metrics.items()}
            if any(v is None for v in scores.values()):
                post = read_scores(sweep.run_dir(exp_id, rep, reps)) or {}
                scores.update({m: post.get(m) for m, v in scores.items() if v is None})
            yield rep, ExpState.DONE.value, scores
        return
    if scanned is None:
        from dagrun.disk.runs import scan_run

        scanned = [scan_run(exp_id, rep, sweep.run_dir(exp_id, rep, reps))
                   for rep in range(reps)]
    for status in scanned:
        state = "running" if is_running(status) else status.state.value
        yield status.rep, state, \
            read_scores(status.run) if status.state is RunState.DONE else None
