"""``basecfg["search"]``: checked up front, and the sampler and pruner it names.

``{"metric": "val_loss", "direction": "minimize", "n_trials": 100, "sampler": "tpe",
"seed": 0, "pruner": None}``; ``sampler`` is ``tpe``, ``random``, ``cmaes`` or an Optuna
sampler object, ``pruner`` is None, ``median``, ``asha``, ``hyperband`` or an Optuna pruner
object. The workflow's ``space`` travels in the same dict (key ``space``) so that workers
loading the pickled workflow find it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from dagrun.config import SEARCH_KEY
from dagrun.errors import ConfigError, UsageError
from dagrun.record import record
from dagrun.search.space import Space, check_space

SAMPLERS = ("tpe", "random", "cmaes")
PRUNERS = ("median", "asha", "hyperband")
KEYS = ("metric", "direction", "n_trials", "sampler", "seed", "pruner", "space", "cfgs")
STUDY_NAME = "dagrun"  # the in-memory study's name (Hyperband brackets hash it)


def require_optuna() -> ModuleType:
    """``optuna``, or the one-line hint (exit 2) saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise UsageError("basecfg['search'] needs Optuna: pip install 'dagrun[search]' "
                         "(or pip install optuna cmaes)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@record(frozen=True)
class SearchSettings:
    """A checked ``basecfg["search"]``."""

    metric: str
    direction: str = "minimize"
    n_trials: int = 100
    sampler: Any = "tpe"
    seed: int | None = None
    pruner: Any = None
    space: Space | None = None

    @property
    def sign(self) -> float:
        """+1 when smaller is better, -1 when larger is."""
        return 1.0 if self.direction == "minimize" else -1.0


def is_search(basecfg: Mapping[str, Any]) -> bool:
    return basecfg.get(SEARCH_KEY) is not None


def parse(value: Any, space: Any = None) -> SearchSettings:
    """Check ``basecfg["search"]`` (and the space, given or inside it)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"basecfg['search'] must be a dict such as {{'metric': 'loss', "
                          f"'n_trials': 50}}, got {type(value).__name__}")
    unknown = [k for k in value if k not in KEYS]
    if unknown:
        raise ConfigError(f"basecfg['search'] has unknown key {unknown[0]!r}; keys: "
                          f"{', '.join(KEYS[:-2])}")
    metric = value.get("metric")
    if not isinstance(metric, str) or not metric:
        raise ConfigError("basecfg['search']['metric'] must name a metric post returns "
                          f"(a string), got {metric!r}")
    direction = value.get("direction", "minimize")
    if direction not in ("minimize", "maximize"):
        raise ConfigError("basecfg['search']['direction'] must be 'minimize' or 'maximize', "
                          f"got {direction!r}")
    n_trials = value.get("n_trials", 100)
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 0:
        raise ConfigError(f"basecfg['search']['n_trials'] must be an integer >= 0, got "
                          f"{n_trials!r}")
    seed = value.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"basecfg['search']['seed'] must be an integer or None, got {seed!r}")
    sampler = value.get("sampler", "tpe")
    if isinstance(sampler, str) and sampler not in SAMPLERS:
        raise ConfigError(f"basecfg['search']['sampler'] must be one of {', '.join(SAMPLERS)} "
                          f"or an Optuna sampler, got {sampler!r}")
    pruner = value.get("pruner")
    if isinstance(pruner, str) and pruner not in PRUNERS:
        raise ConfigError(f"basecfg['search']['pruner'] must be None, one of "
                          f"{', '.join(PRUNERS)} or an Optuna pruner, got {pruner!r}")
    space = space if space is not None else value.get("space")
    if space is None:
        raise ConfigError("basecfg['search'] needs a space: define `space` in the workflow "
                          "file, or pass run_experiments(basecfg, space=...)")
    return SearchSettings(metric, direction, n_trials, sampler, seed, pruner,
                          check_space(space))


def make_sampler(settings: SearchSettings) -> Any:
    """The sampler ``settings`` names (a new one: the driver keeps its state on disk)."""
    optuna = require_optuna()
    sampler, seed = settings.sampler, settings.seed
    if not isinstance(sampler, str):
        return sampler
    if sampler == "tpe":  # constant liar: running trials count as bad ones (parallel)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.RandomSampler(seed=seed)


_PRUNERS: dict[str, Any] = {}  # name -> the pruner of this process (Hyperband keeps state)


def make_pruner(settings: SearchSettings, key: str = "") -> Any:
    """The pruner ``settings`` names; one per process and sweep (``key``) for names."""
    optuna = require_optuna()
    pruner = settings.pruner
    if pruner is None:
        return optuna.pruners.NopPruner()
    if not isinstance(pruner, str):
        return pruner
    found = _PRUNERS.get(f"{key}|{pruner}")
    if found is None:
        made = {"median": optuna.pruners.MedianPruner,
                "asha": optuna.pruners.SuccessiveHalvingPruner,
                "hyperband": optuna.pruners.HyperbandPruner}[pruner]
        found = _PRUNERS[f"{key}|{pruner}"] = made()
    return found
