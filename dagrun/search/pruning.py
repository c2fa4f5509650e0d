"""``dagrun.report(step, value)`` and ``dagrun.Pruned``: pruning inside a stage.

The stage runner opens a ``scope`` around each run. Outside a search the scope is a no-op
and ``report`` does nothing. In a search, the first ``report`` rebuilds the study from the
disk (every other trial's outcome and intermediate values, this trial running), and each
``report`` writes the run's values to ``RUN/reports.json`` and asks the pruner, exactly as
Optuna's ``trial.report`` + ``trial.should_prune`` do; when it says stop, ``report`` raises
``Pruned``, which the stage runner records as ``RUN/pruned.json``: the run is done.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from dagrun.code.workflow import Workflow
from dagrun.config import SEARCH_KEY
from dagrun.disk.fence import Attempt, Superseded
from dagrun.disk.layout import RunDir, SweepDir
from dagrun.disk.runs import scan_run

REFRESH = 2.0  # seconds after which the other trials are read again (parallel searches)


class Pruned(Exception):
    """Raised by ``dagrun.report`` when the search's pruner stops the trial; the run ends in
    state ``pruned`` (done, never retried). Let it propagate out of the stage."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"pruned at step {step} (value {value})")
        self.step = step
        self.value = value


_CURRENT: _Scope | None = None


def report(step: int, value: float) -> None:
    """Report ``value`` of the running trial at ``step`` (an int, increasing); raises
    ``Pruned`` when the pruner stops it. Outside a search: does nothing."""
    current = _CURRENT
    if current is not None:
        current.report(int(step), float(value))


class _NoScope:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SCOPE = _NoScope()


def scope(workflow: Workflow, exp_id: int, run: RunDir, via: Attempt,
          repetitions: Callable[[int], int]) -> Any:
    """The context ``report`` works in while one run of ``exp_id`` executes (a no-op
    outside a search)."""
    search = workflow.basecfg.get(SEARCH_KEY)
    if search is None:
        return _NO_SCOPE
    return _Scope(search, workflow.config_digest(exp_id), run, via, repetitions(exp_id))


class _Scope:
    """One run of a search trial: the study as the disk shows it, this trial running."""

    def __init__(self, search: Mapping[str, Any], digest: str | None, run: RunDir,
                 via: Attempt, repetitions: int) -> None:
        self.search = search
        self.digest = digest
        self.run = run
        self.via = via
        experiment = os.path.dirname(run.path) if repetitions > 1 else run.path
        self.sweep = SweepDir(os.path.dirname(experiment))
        self.values: dict[int, float] = {}
        self.trial: Any = None
        self.built = 0.0
        self.outside = False  # not a trial of the study (e.g. an orphan's run): no pruning
        self.previous: _Scope | None = None

    def __enter__(self) -> _Scope:
        global _CURRENT
        self.previous, _CURRENT = _CURRENT, self
        return self

    def __exit__(self, *exc: object) -> None:
        global _CURRENT
        _CURRENT = self.previous

    def report(self, step: int, value: float) -> None:
        if self.outside:
            return
        if self.trial is None or time.monotonic() - self.built > REFRESH:
            self._build()
            if self.trial is None:
                self.outside = True
                return
        self.values[step] = value
        self.trial.report(value, step)
        prune = bool(self.trial.should_prune())
        attrs = self.trial.study._storage.get_trial(self.trial._trial_id).system_attrs
        self.via.write_json(self.run.reports, {"values": {str(k): v for k, v in
                                                          self.values.items()},
                                               "system_attrs": attrs}, indent=None)
        if prune:
            raise Pruned(step, value)

    def _build(self) -> None:
        """The study from the disk, with this run's trial running (its values so far)."""
        from optuna.trial import Trial

        # the search's modules only here: every run's stage runner imports this module
        from dagrun.search import settings as search_settings
        from dagrun.search import study as studies
        from dagrun.search import trials
        from dagrun.search.trials import Outcome, TrialState

        settings = search_settings.parse(self.search)
        records = trials.read_records(self.sweep)
        mine = self.digest
        by_digest = trials.experiments_by_digest(self.sweep)
        optuna = search_settings.require_optuna()
        study = studies.new_study(settings, optuna.samplers.RandomSampler(),
                                  search_settings.make_pruner(settings, self.sweep.path))
        self.trial = None
        for record in records:
            if record.digest == mine and self.trial is None:
                running = Outcome(TrialState.RUNNING, None, dict(self.values))
                study.add_trial(studies.frozen(record, running))
                self.trial = Trial(study, study._storage.get_trial_id_from_study_id_trial_number(
                    study._study_id, len(study.trials) - 1))
                continue
            found = trials.outcome(self.sweep, by_digest.get(record.digest), settings.metric)
            study.add_trial(studies.frozen(record, found))
        self.built = time.monotonic()


def record_pruned(run: RunDir, via: Attempt, exc: Pruned) -> bool:
    """Write ``RUN/pruned.json``: the stage the pruner stopped, at which step, its value;
    ``False`` when another holder has the run now (nothing written)."""
    stage = scan_run(0, 0, run).next_stage
    try:
        via.write_json(run.pruned, {"stage": stage.value if stage is not None else None,
                                    "step": exc.step, "value": exc.value,
                                    "time": time.time()})
    except Superseded:
        return False
    except OSError:  # (a full disk) not recorded: the trial runs again on the next start
        pass
    return True
