"""An in-memory Optuna study rebuilt from the disk (no Optuna storage).

Each kept trial record becomes a ``FrozenTrial`` (its parameters, the distributions the
space asks for now, its outcome read from its runs) added with ``study.add_trial`` in
number order. With the sampler's state kept in the last record, the rebuilt study asks the
trial an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from dagrun.search.settings import STUDY_NAME, SearchSettings, require_optuna
from dagrun.search.trials import Outcome, TrialRecord, TrialState


def sampler_key(settings: SearchSettings) -> str:
    """What the sampler's kept state belongs to: a changed setting starts a new sampler."""
    sampler = settings.sampler
    name = sampler if isinstance(sampler, str) else type(sampler).__qualname__
    return f"{name}|{settings.seed}"


def new_study(settings: SearchSettings, sampler: Any, pruner: Any) -> Any:
    optuna = require_optuna()
    return optuna.create_study(study_name=STUDY_NAME, direction=settings.direction,
                               sampler=sampler, pruner=pruner)


def frozen(record: TrialRecord, outcome: Outcome, distributions: dict[str, Any] | None = None,
           state: TrialState | None = None) -> Any:
    """The ``FrozenTrial`` of a record and its outcome (``state``: instead of the
    outcome's)."""
    optuna = require_optuna()
    from optuna.distributions import json_to_distribution
    from optuna.trial import TrialState as OptunaState

    dists = distributions if distributions is not None else \
        {k: json_to_distribution(v) for k, v in record.distributions.items()}
    state = state or outcome.state
    value = outcome.value
    if state is TrialState.COMPLETE:
        kind = OptunaState.COMPLETE
    elif state is TrialState.PRUNED:
        kind = OptunaState.PRUNED
        if value is not None and not math.isfinite(value):
            value = None  # (Optuna keeps a pruned trial's last value only when finite)
    else:
        kind = OptunaState.FAIL if state is TrialState.FAILED else OptunaState.RUNNING
        value = None
    return optuna.trial.create_trial(
        state=kind, value=value, params=dict(record.params), distributions=dists,
        intermediate_values=dict(outcome.intermediate),
        system_attrs=dict(outcome.system_attrs))


def rebuild(settings: SearchSettings, sampler: Any, pruner: Any,
            trials: Sequence[tuple[TrialRecord, Outcome, dict[str, Any] | None]]) -> Any:
    """A study holding ``trials`` (record, outcome, distributions now) in this order."""
    study = new_study(settings, sampler, pruner)
    for record, found, dists in trials:
        study.add_trial(frozen(record, found, dists))
    return study


def tell(study: Any, number: int, found: Outcome) -> None:
    """Tell the study what happened to its running trial ``number``, as
    ``study.optimize`` does: the intermediate values reported first, then the state."""
    from optuna.trial import Trial
    from optuna.trial import TrialState as OptunaState

    trial = Trial(study, study._storage.get_trial_id_from_study_id_trial_number(
        study._study_id, number))
    for step, value in found.intermediate.items():
        trial.report(value, step)
    if found.state is TrialState.COMPLETE:
        study.tell(trial, found.value)
    elif found.state is TrialState.PRUNED:
        study.tell(trial, state=OptunaState.PRUNED)
    else:
        study.tell(trial, state=OptunaState.FAIL)
