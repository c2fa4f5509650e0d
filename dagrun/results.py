"""``dagrun results`` and ``dagrun.results_table``: one row per experiment, read from the disk.

The table is built from what the sweep folder holds right now, so it works while a sweep is
running: ``OUT/.dagrun/plan.json`` gives every planned experiment and its config,
``results.jsonl`` the metrics of the experiments that are complete, and for the others each
run folder's markers and ``post.json`` (only those runs are looked at). Columns:
``experiment_id``, the config keys that vary across experiments (nested keys dotted), each
numeric metric ``M`` (``mean_M``/``std_M`` over repetitions unless every experiment has a
single repetition), ``state`` (done / failed / incomplete) and ``n`` (repetitions done).

Formatting for the terminal, Markdown, LaTeX, CSV and JSON lives in ``dagrun.resultsformat``.
"""

from __future__ import annotations

import enum
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from math import isfinite
from typing import TYPE_CHECKING, Any

from dagrun.errors import DagrunError, UsageError
from dagrun.layout import SweepDir
from dagrun.planstore import read_index, read_plan, require_sweep
from dagrun.records import read_scores
from dagrun.runs import Experiment, RunState, RunStatus, run_dirs, scan_run

if TYPE_CHECKING:
    import os

    import pandas

FIT_TIME = "fit_time"
_LINE_KEYS = frozenset({"experiment_id", "out_path", "scores"})  # a results line, less config
STATE, N, EXPERIMENT_ID = "state", "n", "experiment_id"

# Name parts of metrics where a smaller value is better; everything else: larger is better.
_SMALLER = frozenset({"loss", "err", "error", "errors", "mse", "mae", "rmse", "nll", "time",
                      "seconds", "duration", "latency", "regret", "perplexity", "cost",
                      "distance", "wer", "cer", "fpr", "fnr", "runtime", "memory"})


class PandasMissing(DagrunError, ImportError):
    """``results_table`` needs pandas, which is not installed (the CLI: one line, exit 2)."""


class ExpState(str, enum.Enum):
    """An experiment as a whole: every repetition done, one failed, or some not done yet."""

    DONE = "done"
    FAILED = "failed"
    INCOMPLETE = "incomplete"


Stat = tuple[float | None, float | None]  # mean and std (ddof=0); None: no numeric value
_NO_STAT: Stat = (None, None)


@dataclass(slots=True)
class ExperimentResult:
    """One experiment: its flattened config and each metric's value per repetition done."""

    exp_id: int
    repetitions: int
    config: dict[str, Any]  # dotted keys
    state: ExpState
    n: int  # repetitions done
    stats: dict[str, Stat]  # metric -> mean and std over the repetitions done
    runs: list[RunStatus] = field(default_factory=list)  # scanned runs (not listed ones)


@dataclass
class Collected:
    """Every planned experiment of a sweep with what the disk says about it."""

    sweep: SweepDir
    experiments: list[ExperimentResult]
    varied: list[str]  # config keys whose value differs between experiments
    constant: dict[str, Any]  # the others, with their one value
    metrics: list[str]  # numeric metrics, fit_time last
    single: bool  # every experiment has one repetition: columns M, not mean_M/std_M


def smaller_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better, guessed from its name
    (``test_mse``, ``val_loss``, ``fit_time``: smaller; ``accuracy``: larger)."""
    parts = [p for p in re.split(r"[^a-z0-9]+", metric.lower()) if p]
    return any(p in _SMALLER or p.startswith(("loss", "err")) for p in parts)


# --------------------------------------------------------------------------------------------
# Reading the disk.

def collect(out: str | os.PathLike[str]) -> Collected:
    """Read a sweep's plan, results.jsonl and (for experiments not listed there) its runs."""
    sweep = require_sweep(str(out))
    listed = _listed_lines(sweep)
    experiments = []
    for exp in _planned(sweep, listed):
        line = listed.get(exp.exp_id)
        scores = line.get("scores") if line is not None else None
        if line is not None and isinstance(scores, dict):
            config = exp.config or {k: v for k, v in line.items() if k not in _LINE_KEYS}
            stats = _stats_from_line(scores, exp.repetitions)
            experiments.append(ExperimentResult(exp.exp_id, exp.repetitions, flatten(config),
                                                ExpState.DONE, exp.repetitions, stats))
        else:
            experiments.append(_from_runs(sweep, exp))
    varied, constant = split_keys([e.config for e in experiments])
    return Collected(sweep, experiments, varied, constant, _numeric_metrics(experiments),
                     all(e.repetitions == 1 for e in experiments))


def _planned(sweep: SweepDir, listed: Mapping[int, Any]) -> list[Experiment]:
    """The planned experiments in id order. When results.jsonl lists every one of them, the
    plan's index (ids and repetitions) is enough: each line holds its experiment's config,
    and a 100,000-experiment plan.json is not decoded."""
    index = read_index(sweep)
    if index is not None and all(e.exp_id in listed for e in index[1]):
        return sorted(index[1], key=lambda e: e.exp_id)
    return sorted(read_plan(sweep).values(), key=lambda e: e.exp_id)


def _listed_lines(sweep: SweepDir) -> dict[int, dict[str, Any]]:
    """results.jsonl by experiment id; a line that does not parse (being appended while we
    read, or damaged) is left out, and that experiment is read from its runs instead."""
    try:
        with open(sweep.results, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    try:  # one decode call for the whole file: a raw newline only ever ends a line
        rows = json.loads("[" + text.strip().replace("\n", ",") + "]")
    except ValueError:
        rows = []
        for ln in text.split("\n"):
            try:
                rows.append(json.loads(ln))
            except ValueError:
                continue
    out = {}
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get(EXPERIMENT_ID), int):
            out[row[EXPERIMENT_ID]] = row
    return out


def _stats_from_line(scores: dict[str, Any], repetitions: int) -> dict[str, Stat]:
    """Mean and std of each metric of a results line: the metric itself for one repetition;
    else the line's ``mean_M``/``std_M`` (written when every repetition's value is a number),
    or computed from the per-repetition list."""
    if repetitions == 1:
        return {k: (float(v), 0.0) if type(v) in _NUMBER_TYPES and isfinite(v) else _NO_STAT
                for k, v in scores.items()}  # is_number, inline: once per experiment
    stats: dict[str, Stat] = {}
    for name, values in scores.items():
        if type(values) is list and len(values) == repetitions:
            mean, std = scores.get("mean_" + name), scores.get("std_" + name)
            if type(mean) is not float or type(std) is not float:
                mean, std = mean_std(values)
            stats[name] = (mean, std)
    return stats


def _from_runs(sweep: SweepDir, exp: Experiment) -> ExperimentResult:
    """An experiment results.jsonl does not list yet: its runs' markers and post.json."""
    runs = [scan_run(exp.exp_id, rep, run) for rep, run in run_dirs(sweep, exp)]
    per_rep = []
    for status in runs:
        if status.state is RunState.DONE:
            scores = read_scores(status.run)
            if scores is not None:
                per_rep.append(scores)
    names: dict[str, None] = {}
    for scores in per_rep:
        names.update(dict.fromkeys(scores))
    stats = {name: mean_std([s.get(name) for s in per_rep]) for name in names}
    if any(s.state is RunState.FAILED for s in runs):
        state = ExpState.FAILED
    elif len(per_rep) == exp.repetitions:
        state = ExpState.DONE
    else:
        state = ExpState.INCOMPLETE
    return ExperimentResult(exp.exp_id, exp.repetitions, flatten(exp.config), state,
                            len(per_rep), stats, runs)


# --------------------------------------------------------------------------------------------
# Configs and metrics.

def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: ``{"opt": {"lr": 1}}`` -> ``{"opt.lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if type(value) is dict and value:
            out.update(flatten(value, f"{prefix}{key}."))
        elif prefix:
            out[prefix + key] = value
        else:
            out[key] = value
    return out


def same_key(value: Any) -> Any:
    """A hashable stand-in for a JSON value; numbers compare by value (1 == 1.0), and
    booleans, lists and dicts by their JSON text."""
    if type(value) in (int, float, str):
        return value
    return ("json", json.dumps(value, sort_keys=True, allow_nan=True))


_MISSING = object()


def split_keys(configs: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """Config keys that vary (different values, or missing somewhere), in first-seen order,
    and the constant ones with their value. One pass per key over a column of values, with
    the comparisons done by ``list.count`` (this runs over 100,000 configs)."""
    keys = dict.fromkeys(itertools.chain.from_iterable(configs))
    varied: list[str] = []
    constant: dict[str, Any] = {}
    for key in keys:
        column = [c.get(key, _MISSING) for c in configs]
        first = column[0]
        same_type = len(set(map(type, column))) == 1
        if same_type and first is not _MISSING and column.count(first) == len(column):
            constant[key] = first
        elif (not same_type and _MISSING not in column
              and len({same_key(v) for v in column}) == 1):
            constant[key] = first  # ints and floats mixed: 1 and 1.0 are the same value
        else:
            varied.append(key)
    return varied, constant


_NUMBER_TYPES = (int, float)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return type(value) in _NUMBER_TYPES and isfinite(value)


def _numeric_metrics(experiments: Sequence[ExperimentResult]) -> list[str]:
    """Metrics with at least one numeric value, in first-seen order, fit_time last."""
    seen = dict.fromkeys(itertools.chain.from_iterable(e.stats for e in experiments))
    numeric = {n for n in seen if any(e.stats.get(n, _NO_STAT)[0] is not None
                                      for e in experiments)}
    names = [n for n in seen if n in numeric and n != FIT_TIME]
    return [*names, FIT_TIME] if FIT_TIME in numeric else names


def mean_std(values: Iterable[Any]) -> Stat:
    """Mean and standard deviation (ddof=0, as in results.jsonl) of the numeric values;
    ``(None, None)`` when there is none."""
    nums = [float(v) for v in values if is_number(v)]
    if not nums:
        return None, None
    mean = math.fsum(nums) / len(nums)
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in nums) / len(nums))


# --------------------------------------------------------------------------------------------
# The table.

def metric_columns(metrics: Sequence[str], single: bool) -> list[str]:
    """The csv columns of ``metrics``: ``M``, or ``mean_M`` and ``std_M``."""
    if single:
        return list(metrics)
    return [c for m in metrics for c in (f"mean_{m}", f"std_{m}")]


def _columns(collected: Collected) -> dict[str, list[Any]]:
    """Every column of the full table (constant keys too), one list each."""
    exps, single = collected.experiments, collected.single
    cols: dict[str, list[Any]] = {EXPERIMENT_ID: [e.exp_id for e in exps]}
    for key in [*collected.varied, *collected.constant]:
        cols[key] = [e.config.get(key) for e in exps]
    for m in collected.metrics:
        stats = [e.stats.get(m, _NO_STAT) for e in exps]
        if single:
            cols[m] = [st[0] for st in stats]
        else:
            cols[f"mean_{m}"] = [st[0] for st in stats]
            cols[f"std_{m}"] = [st[1] for st in stats]
    cols[STATE] = [e.state.value for e in exps]
    cols[N] = [e.n for e in exps]
    return cols


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
        raise PandasMissing("dagrun results needs pandas: pip install 'dagrun[pandas]'") from exc
    collected = collect(out)
    metrics, single = collected.metrics, collected.single
    default = [EXPERIMENT_ID, *collected.varied, *metric_columns(metrics, single), STATE, N]
    known = [*default, *collected.constant]
    cols = _filter(_columns(collected), parse_where(where), known)
    full = pd.DataFrame({c: cols[c] for c in known}, columns=known)
    if sort is not None:
        full = _sorted(full, resolve_column(sort, known, metrics, single), desc)
    if group_by is not None:
        if sort is None:
            raise UsageError("--group-by needs --sort: it keeps the best row of each group")
        key = resolve_column(group_by, known, metrics, single)
        full = full.groupby(full[key].map(same_key), sort=False, dropna=False).head(1)
    if top is not None:
        full = full.head(top)
    shown = _chosen_columns(columns, known, metrics, single) if columns else default
    table = full[shown].reset_index(drop=True)
    table.attrs["metrics"] = [m for m in metrics if any(c in shown for c in
                                                        metric_columns([m], single))]
    table.attrs["single"] = single
    return table


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


def _filter(cols: dict[str, list[Any]], where: Mapping[str, Any],
            known: Sequence[str]) -> dict[str, list[Any]]:
    """The rows whose value of each ``where`` key equals the value given."""
    keep: list[bool] | None = None
    for key, value in where.items():
        if key not in cols:
            raise UsageError(f"--where: no config key or column {key!r}; known: "
                             f"{', '.join(known[:30])}")
        wanted = same_key(value)
        mask = [same_key(v) == wanted for v in cols[key]]
        keep = mask if keep is None else [a and b for a, b in zip(keep, mask, strict=True)]
    if keep is None:
        return cols
    return {c: list(itertools.compress(values, keep)) for c, values in cols.items()}


def _sorted(df: pandas.DataFrame, column: str, desc: bool) -> pandas.DataFrame:
    """Stable sort, rows without a value last; mixed types are compared as text."""
    try:
        return df.sort_values(column, ascending=not desc, na_position="last", kind="stable")
    except TypeError:
        return df.sort_values(column, ascending=not desc, na_position="last", kind="stable",
                              key=lambda s: s.map(lambda v: None if v is None or v != v
                                                  else str(v)))
