"""What a sweep found, read from the disk: every planned experiment as one row of columns.

This is the reading half of ``dagrun results``, ``dagrun.results_table`` and ``dagrun
report`` (the querying half, sort/where/group-by, is ``dagrun.results.table``; formatting,
``dagrun.results.formats``). It reads what the sweep folder holds right now, so it works while
a sweep is running: the plan's index gives every planned experiment, ``results.jsonl`` the
metrics and config of the experiments that are complete (lines of either format, decoded
into columns once and kept, ``dagrun.results.columnscache``; config values it holds as null
because JSON cannot hold inf or NaN are read back from the plan), and for the others each
run folder's markers and ``post.json`` plus the experiment's config, decoded from
``plan.json`` at the offset the index records (only those runs and configs are read).
``Collected`` is the one definition of an experiment's row every view shares.

On a large sweep the work is shared by forked processes (``dagrun.results.inparts``):
results.jsonl is decoded in parts while the plan is read here, and many experiments' runs
are read in parts while the columns are kept and the configs read.

Everything is kept column by column (``dagrun.results.columns``: a list per config key and per
metric), not as an object per experiment: at 100,000 experiments a Python object and a dict
per row cost more than decoding the file.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import itertools
import marshal
import operator
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from dagrun.disk.layout import STAGE_NAMED, STAGES, RunDir, Stage
from dagrun.disk.planstore import PlanIndex, read_configs, read_index, read_plan, require_sweep
from dagrun.disk.records import read_scores
from dagrun.disk.runs import Experiment, RunState, RunStatus, scan_run
from dagrun.record import record
from dagrun.results import inparts
from dagrun.results.columns import (
    MISSING,
    MetricColumns,
    Rows,
    Stats,
    config_columns,
    numeric_metrics,
    split_keys,
    stats,
    value_kind,
)
from dagrun.results.columnscache import Reading

if TYPE_CHECKING:
    from dagrun.disk.layout import SweepDir

STATE, N, EXPERIMENT_ID = "state", "n", "experiment_id"
OWN_PREFIX = "dagrun."  # dagrun's own columns when a config key has their name

# Name parts of metrics where a smaller value is better; everything else: larger is better.
_SMALLER = frozenset({"loss", "err", "error", "errors", "mse", "mae", "rmse", "nll", "time",
                      "seconds", "duration", "latency", "regret", "perplexity", "cost",
                      "distance", "wer", "cer", "fpr", "fnr", "runtime", "memory"})


class ExpState(str, enum.Enum):
    """An experiment as a whole, the one list of states every view shows (the table, the
    formats, ``results_table``, the report): every repetition done; some not done yet;
    one failed; one being executed now (a worker's or driver's lease on it)."""

    DONE = "done"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    RUNNING = "running"
    PRUNED = "pruned"  # a search's pruner stopped a repetition (dagrun.search): done


# The states ranking considers (``--sort``/``--top``/``--group-by``, the report's best):
# experiments whose repetitions are all done. ``--include-incomplete`` ranks every state.
RANKED: frozenset[ExpState] = frozenset({ExpState.DONE})


def state_of(text: str) -> ExpState | None:
    """The state named ``text`` (any case), or ``None``."""
    try:
        return ExpState(text.strip().lower())
    except ValueError:
        return None


def rankable(states: Iterable[ExpState], include_incomplete: bool = False) -> list[bool]:
    """Per experiment: whether ranking considers it (its state is in ``RANKED``, or
    ``include_incomplete``)."""
    return [include_incomplete or s in RANKED for s in states]


def own_columns(config_keys: Iterable[str]) -> tuple[str, str]:
    """The names of dagrun's own columns ``state`` and ``n`` among these config keys: a
    config key of that name keeps it, and dagrun's becomes ``dagrun.state``/``dagrun.n``
    (a config key is never shadowed)."""
    keys = set(config_keys)
    return tuple(name if name not in keys else OWN_PREFIX + name  # type: ignore[return-value]
                 for name in (STATE, N))


@record
class Collected:
    """Every planned experiment of a sweep, in id order, with what the disk says about it:
    one list per column, each as long as ``ids``. This is the one definition of an
    experiment's row that ``dagrun results``, its formats, ``results_table``,
    ``read_results`` and the report share:

    - ``states``: ``ExpState`` (done, incomplete, failed, running); ``done``: repetitions
      done; ``repetitions``: planned;
    - per numeric metric M: ``means``/``stds`` (ddof=0) over the repetitions' values that
      are finite numbers, and ``counts``, how many entered (``n_M``; fewer than ``done``
      when a value was NaN, inf or null; ``None`` where the experiment has no such metric);
      ``stats``/``results.jsonl``'s ``mean_M``/``std_M``/``n_M`` are the same numbers;
    - ``others``: metrics with values that are not numbers (name -> ``text``, ``list``...):
      never dropped without a note;
    - ``state_column``/``n_column``: the names of dagrun's own columns (``dagrun.state``,
      ``dagrun.n`` when a config key is named ``state`` or ``n``).
    """

    sweep: SweepDir
    ids: list[int]
    repetitions: list[int]
    states: list[ExpState]
    done: list[int]  # repetitions done
    config: dict[str, list[Any]]  # dotted key -> its value per experiment (MISSING: absent)
    means: dict[str, list[float | None]]  # numeric metric -> mean over its finite values
    stds: dict[str, list[float | None]]  # ... and standard deviation (ddof=0)
    counts: dict[str, list[int | None]]  # ... and how many values entered (n_M)
    others: dict[str, list[str]]  # metrics with values that are not numbers: their kinds
    runs: dict[int, list[RunStatus]]  # the runs scanned (experiments results.jsonl lacks)
    varied: list[str]  # config keys whose value differs between experiments
    constant: dict[str, Any]  # the others, with their one value
    metrics: list[str]  # numeric metrics, fit_time last
    single: bool  # every experiment has one repetition: columns M, not mean_M/std_M
    state_column: str = STATE
    n_column: str = N

    def __len__(self) -> int:
        return len(self.ids)

    def rankable(self, include_incomplete: bool = False) -> list[bool]:
        """Per experiment: whether ranking considers it (``rankable``)."""
        return rankable(self.states, include_incomplete)

    def best(self, metric: str, smaller: bool | None = None,
             include_incomplete: bool = False) -> list[int]:
        """The positions of the experiments with the best mean of ``metric`` (several when
        tied) among those ranking considers; ``smaller``: which direction is better
        (default: ``smaller_is_better(metric)``). Empty when none has a value."""
        if smaller is None:
            smaller = smaller_is_better(metric)
        means = self.means.get(metric, [])
        ranked = [i for i, ok in enumerate(self.rankable(include_incomplete))
                  if ok and means[i] is not None]
        if not ranked:
            return []
        best = (min if smaller else max)(means[i] for i in ranked)  # type: ignore[type-var]
        return [i for i in ranked if means[i] == best]


def smaller_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better, guessed from its name
    (``test_mse``, ``val_loss``, ``fit_time``: smaller; ``accuracy``: larger)."""
    parts = [p for p in re.split(r"[^a-z0-9]+", metric.lower()) if p]
    return any(p in _SMALLER or p.startswith(("loss", "err")) for p in parts)


# --------------------------------------------------------------------------------------------
# Reading the disk.

@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused (nesting allowed): reading a large sweep makes
    millions of objects, none of them in a cycle, and every full collection the growth
    triggers would walk all of them again (a third of decoding 100,000 results lines)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def collect(out: str | os.PathLike[str]) -> Collected:
    """Read a sweep's plan index, results.jsonl (its kept columns when unchanged) and, for
    experiments not listed there, their runs and stored configs."""
    with gc_paused():
        return _collect(out)


def _collect(out: str | os.PathLike[str]) -> Collected:
    sweep = require_sweep(os.fspath(out))
    with Reading(sweep) as reading:  # (a large results.jsonl is decoded meanwhile)
        index = read_index(sweep)
        ids, reps, plan = _planned(sweep, index)
        listed = reading.listed(index.digest if index is not None else None,
                                dict(zip(ids, reps, strict=True)))
        where = {exp_id: j for j, exp_id in enumerate(ids)}
        listed_rows = list(map(where.__getitem__, listed.ids))
        unlisted = list(itertools.compress(range(len(ids)), map(
            operator.not_, map(set(listed.ids).__contains__, ids))))  # (C loops: 100,000 ids)
        unlisted_ids = [ids[j] for j in unlisted]
        with _scanning(sweep, [(ids[j], reps[j]) for j in unlisted],
                       reading.keeping()) as scanning:  # (the runs are read meanwhile)
            stored = read_configs(sweep, index, unlisted_ids) if plan is None else \
                {i: plan[i].config for i in unlisted_ids}
            scans = itertools.chain.from_iterable(scanning.results(None))
    states, done = [ExpState.DONE] * len(ids), list(reps)
    runs: dict[int, list[RunStatus]] = {}
    found_rows: list[dict[str, Stats]] = []
    others: dict[str, set[str]] = {}
    for j, (statuses, state, n_done, found, kinds) in zip(unlisted, scans, strict=True):
        runs[ids[j]] = _statuses(sweep, ids[j], reps[j], statuses)
        states[j], done[j] = _EXP_STATES[state], n_done
        found_rows.append(found)
        for name, what in kinds.items():
            others.setdefault(name, set()).update(what)
    metrics = MetricColumns(len(unlisted))
    metrics.add_stats(list(range(len(unlisted))), found_rows, others)
    parts = Rows(len(ids), [listed_rows, unlisted])
    config = parts.merge([listed.config, config_columns(
        [stored.get(i, {}) for i in unlisted_ids])], MISSING)
    means = parts.merge([listed.means, metrics.means], None)
    stds = parts.merge([listed.stds, metrics.stds], None)
    counts = parts.merge([listed.counts, metrics.counts], None)
    kinds_of = {name: sorted({*listed.others.get(name, ()), *metrics.others.get(name, ())})
                for name in {**listed.others, **metrics.others}}
    _restore_non_finite(sweep, index, plan, config, listed_rows, ids)
    varied, constant = split_keys(config)
    names = numeric_metrics(counts)
    state_column, n_column = own_columns(config)
    return Collected(sweep, ids, reps, states, done, config, {m: means[m] for m in names},
                     {m: stds[m] for m in names}, {m: counts[m] for m in names}, kinds_of,
                     runs, varied, constant, names, reps.count(1) == len(reps),
                     state_column, n_column)


def _has_null(value: Any) -> bool:
    if value is None:
        return True
    if type(value) is list:
        return any(map(_has_null, value))
    if type(value) is dict:
        return any(map(_has_null, value.values()))
    return False


def _restore_non_finite(sweep: SweepDir, index: PlanIndex | None,
                        plan: dict[int, Experiment] | None, config: dict[str, list[Any]],
                        rows: list[int], ids: list[int]) -> None:
    """Config values of listed experiments that results.jsonl (strict JSON) holds as null,
    read back from the plan, which keeps inf and NaN: a config of ``lr=inf`` shows ``inf``,
    not an empty cell. Only the rows that may have lost one are read again: a null in a
    column of floats, or inside a list or dict (a column of ints or text with nulls, such
    as ``max_depth=None``, holds real nulls)."""
    suspects: set[int] = set()
    for column in config.values():
        kinds = set(map(type, column))
        if (type(None) in kinds and float in kinds) or list in kinds or dict in kinds:
            suspects.update(j for j in rows if _has_null(column[j]))
    if not suspects:
        return
    wanted = [ids[j] for j in sorted(suspects)]
    stored = read_configs(sweep, index, wanted) if plan is None else \
        {i: plan[i].config for i in wanted if i in plan}
    where = {exp_id: j for j, exp_id in enumerate(ids)}
    found = [i for i in wanted if i in stored]
    for key, column in config_columns([stored[i] for i in found]).items():
        target = config.get(key)
        if target is None:
            continue
        for exp_id, value in zip(found, column, strict=True):
            if value is not MISSING:
                target[where[exp_id]] = value


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


# --------------------------------------------------------------------------------------------
# The runs of the experiments results.jsonl does not list, read in parts.

SCAN_PART = 500  # experiments read from their runs worth a process of their own

# An experiment read from its runs as plain data (a forked child sends it back): each run's
# rep, the names of its stages done and failed and whether it was pruned, then
# ``_from_runs``'s state (its value), repetitions done, statistics and metrics that are not
# numbers.
_Scan = tuple[list[tuple[int, tuple[str, ...], tuple[str, ...], bool]], str, int,
              dict[str, Stats], dict[str, set[str]]]
_EXP_STATES = {state.value: state for state in ExpState}


def _scanning(sweep: SweepDir, experiments: list[tuple[int, int]], keep: Callable[[], None]
              ) -> inparts.Steps[tuple[list[tuple[int, int]], bool], list[_Scan], list[_Scan]]:
    """The reading of ``experiments`` (id, repetitions) from their runs started, in parts by
    several processes at once where there are many (``SCAN_PART``); ``results(None)``
    gives each part's ``_Scan`` list, in order. ``keep`` (the keeping of results.jsonl's
    columns, ``Reading.keeping``) is done before the last part's runs are read, by its
    child where it has one: beside the work this process does meanwhile."""
    bounds = inparts.bounds(len(experiments), inparts.count(len(experiments), SCAN_PART))
    parts = [(experiments[a:b], b == len(experiments))
             for a, b in itertools.pairwise(bounds)]

    def first(part: tuple[list[tuple[int, int]], bool]) -> tuple[list[_Scan], None]:
        runs, last = part
        if last:
            keep()
        return _scan(sweep, runs), None

    return inparts.Steps(parts, first, lambda scans, _: scans,
                         lambda scans: marshal.dumps(scans, inparts.MARSHAL), marshal.loads)


def _scan(sweep: SweepDir, experiments: list[tuple[int, int]]) -> list[_Scan]:
    """Each experiment's runs (``scan_run``) and what they say (``_from_runs``)."""
    out: list[_Scan] = []
    for exp_id, repetitions in experiments:
        statuses = [scan_run(exp_id, rep, RunDir(path))
                    for rep, path in enumerate(sweep.run_paths(exp_id, repetitions))]
        state, done, found, kinds = _from_runs(statuses, repetitions)
        out.append(([(s.rep, _names(s.done), _names(s.failed), s.pruned) for s in statuses],
                    state.value, done, found, kinds))
    return out


def _names(stages: frozenset[Stage]) -> tuple[str, ...]:
    return tuple(stage._value_ for stage in STAGES if stage in stages)


_STAGE_SETS: dict[tuple[str, ...], frozenset[Stage]] = {}


def _statuses(sweep: SweepDir, exp_id: int, repetitions: int,
              runs: list[tuple[int, tuple[str, ...], tuple[str, ...], bool]]
              ) -> list[RunStatus]:
    """The ``RunStatus`` of each run of a ``_Scan``, as ``scan_run`` gave it."""
    paths = sweep.run_paths(exp_id, repetitions)
    return [RunStatus(exp_id, rep, RunDir(paths[rep]), _stage_set(done), _stage_set(failed),
                      False, pruned) for rep, done, failed, pruned in runs]


def _stage_set(names: tuple[str, ...]) -> frozenset[Stage]:
    found = _STAGE_SETS.get(names)
    if found is None:
        found = _STAGE_SETS[names] = frozenset(STAGE_NAMED[name] for name in names)
    return found


def is_running(status: RunStatus) -> bool:
    """Whether a run that is not done is held by a lease now (a worker, or a driver beside
    workers, executes it)."""
    return status.state is not RunState.DONE and os.path.exists(status.run.lease)


def _from_runs(runs: Sequence[RunStatus], repetitions: int
               ) -> tuple[ExpState, int, dict[str, Stats], dict[str, set[str]]]:
    """An experiment results.jsonl does not list yet, from its runs' markers and post.json:
    its state, repetitions done, each metric's statistics over those (``stats``), and the
    metrics with values that are not numbers. Each run's state is worked out once (a
    property that walks its markers: thousands of runs are read this way)."""
    run_states = [status.state for status in runs]
    per_rep = []
    for status, run_state in zip(runs, run_states, strict=True):
        if run_state is RunState.DONE:
            scores = read_scores(status.run)
            if scores is not None:
                per_rep.append(scores)
    names = dict.fromkeys(itertools.chain.from_iterable(per_rep))
    found: dict[str, Stats] = {}
    kinds: dict[str, set[str]] = {}
    for name in names:
        values = [s.get(name) for s in per_rep]
        result = stats(values)
        if result is not None:
            found[name] = result
        odd = {value_kind(v) for v in values
               if v is not None and type(v) not in (int, float)}
        if odd:
            kinds[name] = odd
    if any(run_state is not RunState.DONE and os.path.exists(status.run.lease)
           for status, run_state in zip(runs, run_states, strict=True)):  # is_running
        state = ExpState.RUNNING
    elif RunState.FAILED in run_states:
        state = ExpState.FAILED
    elif RunState.PRUNED in run_states:
        state = ExpState.PRUNED
    elif len(per_rep) == repetitions:
        state = ExpState.DONE
    else:
        state = ExpState.INCOMPLETE
    return state, len(per_rep), found, kinds
