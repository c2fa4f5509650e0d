"""What a sweep found, read from the disk: every planned experiment as one row of columns.

This is the reading half of ``dagrun results``, ``dagrun.results_table`` and ``dagrun
report`` (the querying half, sort/where/group-by, is ``dagrun.results.table``; formatting,
``dagrun.results.formats``). It reads what the sweep folder holds right now, so it works while
a sweep is running: the plan's index gives every planned experiment, ``results.jsonl`` the
metrics and config of the experiments that are complete (decoded into columns once and kept,
``dagrun.results.columnscache``), and for the others each run folder's markers and ``post.json``
plus the experiment's config, decoded from ``plan.json`` at the offset the index records
(only those runs and configs are read).

Everything is kept column by column (``dagrun.results.columns``: a list per config key and per
metric), not as an object per experiment: at 100,000 experiments a Python object and a dict
per row cost more than decoding the file.
"""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagrun.disk.planstore import PlanIndex, read_configs, read_index, read_plan, require_sweep
from dagrun.disk.records import read_scores
from dagrun.disk.runs import Experiment, RunState, RunStatus, run_dirs, scan_run
from dagrun.results.columns import (
    MISSING,
    MetricColumns,
    config_columns,
    mean_std,
    merge,
    numeric_metrics,
    split_keys,
)
from dagrun.results.columnscache import read_listed

if TYPE_CHECKING:
    import os

    from dagrun.disk.layout import SweepDir

STATE, N, EXPERIMENT_ID = "state", "n", "experiment_id"

# Name parts of metrics where a smaller value is better; everything else: larger is better.
_SMALLER = frozenset({"loss", "err", "error", "errors", "mse", "mae", "rmse", "nll", "time",
                      "seconds", "duration", "latency", "regret", "perplexity", "cost",
                      "distance", "wer", "cer", "fpr", "fnr", "runtime", "memory"})


class ExpState(str, enum.Enum):
    """An experiment as a whole: every repetition done, one failed, or some not done yet."""

    DONE = "done"
    FAILED = "failed"
    INCOMPLETE = "incomplete"


@dataclass
class Collected:
    """Every planned experiment of a sweep, in id order, with what the disk says about it:
    one list per column, each as long as ``ids``."""

    sweep: SweepDir
    ids: list[int]
    repetitions: list[int]
    states: list[ExpState]
    done: list[int]  # repetitions done
    config: dict[str, list[Any]]  # dotted key -> its value per experiment (MISSING: absent)
    means: dict[str, list[float | None]]  # numeric metric -> mean over repetitions done
    stds: dict[str, list[float | None]]  # ... and standard deviation (ddof=0)
    runs: dict[int, list[RunStatus]]  # the runs scanned (experiments results.jsonl lacks)
    varied: list[str]  # config keys whose value differs between experiments
    constant: dict[str, Any]  # the others, with their one value
    metrics: list[str]  # numeric metrics, fit_time last
    single: bool  # every experiment has one repetition: columns M, not mean_M/std_M

    def __len__(self) -> int:
        return len(self.ids)


def smaller_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better, guessed from its name
    (``test_mse``, ``val_loss``, ``fit_time``: smaller; ``accuracy``: larger)."""
    parts = [p for p in re.split(r"[^a-z0-9]+", metric.lower()) if p]
    return any(p in _SMALLER or p.startswith(("loss", "err")) for p in parts)


# --------------------------------------------------------------------------------------------
# Reading the disk.

def collect(out: str | os.PathLike[str]) -> Collected:
    """Read a sweep's plan index, results.jsonl (its kept columns when unchanged) and, for
    experiments not listed there, their runs and stored configs."""
    sweep = require_sweep(str(out))
    index = read_index(sweep)
    ids, reps, plan = _planned(sweep, index)
    listed = read_listed(sweep, index.digest if index is not None else None,
                         dict(zip(ids, reps, strict=True)))
    listed_ids = set(listed.ids)
    where = {exp_id: j for j, exp_id in enumerate(ids)}
    unlisted = [j for j, exp_id in enumerate(ids) if exp_id not in listed_ids]
    unlisted_ids = [ids[j] for j in unlisted]
    stored = read_configs(sweep, index, unlisted_ids) if plan is None else \
        {i: plan[i].config for i in unlisted_ids}
    states, done = [ExpState.DONE] * len(ids), list(reps)
    runs, mean_rows, std_rows = {}, [], []
    for j in unlisted:
        exp = Experiment(ids[j], reps[j], {})
        scanned = [scan_run(exp.exp_id, rep, run) for rep, run in run_dirs(sweep, exp)]
        runs[exp.exp_id] = scanned
        states[j], done[j], row_means, row_stds = _from_runs(scanned, exp.repetitions)
        mean_rows.append(row_means)
        std_rows.append(row_stds)
    metrics = MetricColumns(len(unlisted))
    metrics.add_stats(list(range(len(unlisted))), mean_rows, std_rows)
    parts = [[where[i] for i in listed.ids], unlisted]
    config = merge(len(ids), [(parts[0], listed.config), (parts[1], config_columns(
        [stored.get(i, {}) for i in unlisted_ids]))], MISSING)
    means = merge(len(ids), [(parts[0], listed.means), (parts[1], metrics.means)], None)
    stds = merge(len(ids), [(parts[0], listed.stds), (parts[1], metrics.stds)], None)
    varied, constant = split_keys(config)
    names = numeric_metrics(means)
    return Collected(sweep, ids, reps, states, done, config, {m: means[m] for m in names},
                     {m: stds[m] for m in names}, runs, varied, constant, names,
                     all(r == 1 for r in reps))


def _planned(sweep: SweepDir, index: PlanIndex | None
             ) -> tuple[list[int], list[int], dict[int, Experiment] | None]:
    """The planned experiments' ids (in order) and repetitions, from the plan's index; when
    the index cannot be trusted, from plan.json, which is then returned too."""
    if index is None:
        plan = read_plan(sweep)
        ids = sorted(plan)
        return ids, [plan[i].repetitions for i in ids], plan
    ids, reps = index.ids, index.repetitions
    if ids != sorted(ids):  # write_plan sorts them; an edited index may not be
        pairs = sorted(zip(ids, reps, strict=True))
        ids, reps = [p[0] for p in pairs], [p[1] for p in pairs]
    return ids, reps, None


def _from_runs(runs: Sequence[RunStatus], repetitions: int
               ) -> tuple[ExpState, int, dict[str, float | None], dict[str, float | None]]:
    """An experiment results.jsonl does not list yet, from its runs' markers and post.json:
    its state, repetitions done, and each metric's mean and std over those."""
    per_rep = []
    for status in runs:
        if status.state is RunState.DONE:
            scores = read_scores(status.run)
            if scores is not None:
                per_rep.append(scores)
    names = dict.fromkeys(itertools.chain.from_iterable(per_rep))
    stats = {name: mean_std([s.get(name) for s in per_rep]) for name in names}
    if any(s.state is RunState.FAILED for s in runs):
        state = ExpState.FAILED
    elif len(per_rep) == repetitions:
        state = ExpState.DONE
    else:
        state = ExpState.INCOMPLETE
    return (state, len(per_rep), {k: v[0] for k, v in stats.items()},
            {k: v[1] for k, v in stats.items()})


