"""An adaptive search (``basecfg["search"]``) as the results show it.

A sweep is a search when it has a search folder (``OUT/.dagrun/search``) and its plan's
settings name the search's ``metric``. Then:

- ``dagrun results`` adds the column ``dagrun.best`` (``BEST``): the best objective among the
  experiments up to this one, in trial order (experiment ids are in asking order), by the
  search's direction. Only complete experiments count (every repetition done with a finite
  value), as only complete trials count for Optuna's ``best_value``; the state column already
  says ``pruned``.
- the report adds ``search_data``: every trial asked, in order, with its state, objective and
  the best so far (the optimisation history), and the parameter importances of Optuna's
  fANOVA evaluator on the study rebuilt from the disk (``dagrun.search``), or one line
  saying why they are missing (Optuna or scikit-learn not installed, too few complete
  trials).

A sweep without a search gets none of this: its table and report are unchanged.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dagrun.disk.atomic import read_json_or_none
from dagrun.disk.layout import SweepDir
from dagrun.record import record
from dagrun.results.read import OWN_PREFIX, ExpState

if TYPE_CHECKING:
    from dagrun.results.read import Collected
    from dagrun.search.trials import Outcome, TrialRecord

BEST = OWN_PREFIX + "best"  # dagrun.best: the column of the best objective so far
EVALUATOR = "fANOVA (Optuna's FanovaImportanceEvaluator, seed 0)"
_SETTINGS_RE = re.compile(r'"settings":\s*')


def plan_settings(sweep: SweepDir) -> dict[str, Any]:
    """basecfg's JSON view as the plan stores it, decoded alone: plan.json begins with it,
    before the experiments (a 100,000-experiment plan is not decoded for it)."""
    try:
        with open(sweep.plan, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return {}
    found = _SETTINGS_RE.search(text)
    if found is None or -1 < text.find('"experiments":') < found.start():
        data = read_json_or_none(sweep.plan)  # not a plan this dagrun wrote: decode it all
        settings = data.get("settings") if isinstance(data, dict) else None
        return settings if isinstance(settings, dict) else {}
    try:
        settings, _ = json.JSONDecoder().raw_decode(text, found.end())
    except ValueError:
        return {}
    return settings if isinstance(settings, dict) else {}


@record(frozen=True)
class Objective:
    """What a search optimises: the mean of ``metric``, smaller or larger is better."""

    metric: str
    direction: str

    @property
    def smaller(self) -> bool:
        return self.direction != "maximize"


def objective_of(sweep: SweepDir) -> Objective | None:
    """The search's objective, or ``None`` when the sweep is not a search."""
    if not os.path.isdir(sweep.search):
        return None
    search = plan_settings(sweep).get("search")
    if not isinstance(search, dict) or not isinstance(search.get("metric"), str):
        return None
    direction = search.get("direction", "minimize")
    return Objective(search["metric"], direction if direction == "maximize" else "minimize")


def running_best(values: Sequence[float | None], smaller: bool) -> list[float | None]:
    """Per position, the best of the values up to it (``None`` entries skipped)."""
    out: list[float | None] = []
    best: float | None = None
    for value in values:
        if value is not None and (best is None or (value < best if smaller else value > best)):
            best = value
        out.append(best)
    return out


def best_column(collected: Collected) -> list[float | None] | None:
    """``dagrun.best`` per row of ``collected`` (in id order), or ``None`` when the sweep is
    not a search."""
    objective = objective_of(collected.sweep)
    if objective is None:
        return None
    means = collected.means.get(objective.metric) or [None] * len(collected)
    counts = collected.counts.get(objective.metric) or [None] * len(collected)
    values = [mean if state is ExpState.DONE and count == reps else None
              for mean, count, state, reps in zip(means, counts, collected.states,
                                                  collected.repetitions, strict=True)]
    return running_best(values, objective.smaller)


# --------------------------------------------------------------------------------------------
# The report: the optimisation history and the parameter importances.

def search_data(sweep: SweepDir) -> dict[str, Any] | None:
    """The report's search section, or ``None`` when the sweep is not a search."""
    objective = objective_of(sweep)
    if objective is None:
        return None
    from dagrun.search import trials as records

    by_digest = records.experiments_by_digest(sweep)
    found: list[tuple[TrialRecord, Outcome]] = []
    for trial in records.read_records(sweep):
        exp = by_digest.get(trial.digest)
        if exp is not None:  # (a trial of an earlier space, or not planned yet: left out)
            found.append((trial, records.outcome(sweep, exp, objective.metric)))
    values = [o.value if o.state is records.TrialState.COMPLETE else None for _, o in found]
    best = running_best(values, objective.smaller)
    importances, note = param_importances(objective, found)
    return {"metric": objective.metric, "direction": objective.direction,
            "trials": [[r.number, o.state.value, o.value, b]
                       for (r, o), b in zip(found, best, strict=True)],
            "importances": importances, "importances_note": note, "evaluator": EVALUATOR}


def param_importances(objective: Objective, found: Sequence[tuple[TrialRecord, Outcome]]
                      ) -> tuple[list[list[Any]] | None, str | None]:
    """``[[parameter, importance], ...]`` (most important first) from Optuna's fANOVA
    evaluator on the study the trials make, or ``None`` and the reason it is missing."""
    try:
        import optuna
        import sklearn  # noqa: F401  (fANOVA fits scikit-learn's random forest)
    except ImportError as exc:
        return None, (f"Parameter importances need Optuna and scikit-learn ({exc.name or exc} "
                      "is not installed): pip install 'dagrun[search]' scikit-learn")
    from dagrun.search import study as studies
    from dagrun.search.settings import SearchSettings
    from dagrun.search.trials import TrialState

    complete = sum(o.state is TrialState.COMPLETE for _, o in found)
    if complete < 2:
        return None, (f"Parameter importances need two complete trials or more "
                      f"({complete} so far).")
    settings = SearchSettings(objective.metric, objective.direction)
    study = studies.rebuild(settings, optuna.samplers.RandomSampler(seed=0),
                            optuna.pruners.NopPruner(), [(r, o, None) for r, o in found])
    try:
        found_importances = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError) as exc:
        return None, f"Parameter importances could not be computed: {exc}"
    if not found_importances:
        return None, "Parameter importances: no parameter is in every complete trial."
    return [[name, value if math.isfinite(value) else None]
            for name, value in found_importances.items()], None
