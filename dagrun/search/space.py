"""The search space: ``Float``, ``Int``, ``Categorical``, and a space turned into a cfg.

A space is a dict (nested dicts allowed) whose leaves are ``Float``/``Int``/``Categorical``
or fixed values, or a function ``space(trial) -> cfg`` in Optuna's define-by-run style. A
leaf at ``{"model": {"lr": Float(...)}}`` is the parameter ``model.lr``. ``suggest`` asks
a trial for every parameter, in the dict's order, and returns the trial's cfg; ``replay``
builds the same cfg again from recorded parameters (on another start, in a worker) and
says when they no longer lie in the space.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagrun.errors import ConfigError, UsageError
from dagrun.record import record

ChoiceType = None | bool | int | float | str


@record(frozen=True)
class Float:
    """A float parameter in ``[low, high]`` (``log``: sampled on a log scale)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        _check_range(self.low, self.high, self.log, "Float")

    def suggest(self, trial: Any, name: str) -> float:
        value: float = trial.suggest_float(name, self.low, self.high, log=self.log)
        return value


@record(frozen=True)
class Int:
    """An integer parameter in ``[low, high]`` by ``step`` (``log``: on a log scale)."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def __post_init__(self) -> None:
        _check_range(self.low, self.high, self.log, "Int")
        if not isinstance(self.step, int) or self.step < 1:
            raise ConfigError(f"Int(step={self.step!r}): step must be an integer >= 1")
        if self.log and self.step != 1:
            raise ConfigError("Int(log=True) takes no step (Optuna samples it by 1)")

    def suggest(self, trial: Any, name: str) -> int:
        value: int = trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)
        return value


@record(frozen=True)
class Categorical:
    """One of ``choices`` (None, bool, int, float or str each)."""

    choices: tuple[ChoiceType, ...]

    def __init__(self, choices: Sequence[ChoiceType]) -> None:
        choices = tuple(choices)
        if not choices:
            raise ConfigError("Categorical([]) has no choice")
        for choice in choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise ConfigError(f"Categorical choice {choice!r} is not None, bool, int, "
                                  "float or str (put objects in the cfg by a name, and "
                                  "build them in pre)")
        object.__setattr__(self, "choices", choices)

    def suggest(self, trial: Any, name: str) -> ChoiceType:
        return trial.suggest_categorical(name, list(self.choices))  # type: ignore[no-any-return]


Param = Float | Int | Categorical
Space = Mapping[str, Any] | Callable[[Any], Mapping[str, Any]]


def _check_range(low: Any, high: Any, log: bool, kind: str) -> None:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{kind}({low!r}, {high!r}): low and high must be finite numbers, "
                          "low <= high")
    if log and low <= 0:
        raise ConfigError(f"{kind}({low!r}, {high!r}, log=True): low must be > 0")


def check_space(space: Any) -> Space:
    """``space`` if it is a dict or a function; raises ``ConfigError`` otherwise."""
    if callable(space) or isinstance(space, Mapping):
        return space  # type: ignore[no-any-return]
    raise ConfigError(f"space must be a dict of dagrun.Float/Int/Categorical and fixed "
                      f"values, or a function space(trial) -> cfg; got {type(space).__name__}")


def suggest(space: Space, trial: Any) -> dict[str, Any]:
    """The cfg of ``trial``: every parameter of ``space`` asked of it."""
    if isinstance(space, Mapping):
        return _fill(space, trial, "")
    try:
        cfg = space(trial)
    except (OutsideSpace, UsageError):
        raise
    except Exception as exc:
        raise UsageError(f"space(trial) raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(cfg, Mapping):
        raise UsageError(f"space(trial) must return a dict (the trial's cfg), got "
                         f"{type(cfg).__name__}")
    return dict(cfg)


def _fill(space: Mapping[str, Any], trial: Any, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in space.items():
        name = f"{prefix}{key}"
        if isinstance(value, (Float, Int, Categorical)):
            out[key] = value.suggest(trial, name)
        elif isinstance(value, Mapping):
            out[key] = _fill(value, trial, f"{name}.")
        else:
            out[key] = value
    return out


def flat_params(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, ChoiceType]:
    """The scalar values of a cfg by dotted name (``{"model": {"lr": 1}}`` ->
    ``{"model.lr": 1}``): the parameters a known-good cfg enqueues."""
    out: dict[str, ChoiceType] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{name}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
    return out


class OutsideSpace(Exception):
    """Recorded parameters that the space (as it is now) does not hold."""


class Replay:
    """A trial that answers with recorded parameters (``replay``); a parameter the record
    lacks, or one outside the distribution now asked, raises ``OutsideSpace``."""

    def __init__(self, params: Mapping[str, Any], number: int) -> None:
        self.params = dict(params)
        self.number = number
        self.asked: dict[str, Any] = {}  # name -> the Optuna distribution asked now

    def _answer(self, name: str, distribution: Any) -> Any:
        if name not in self.params:
            raise OutsideSpace(f"no parameter {name!r}")
        value = self.params[name]
        try:
            inside = distribution._contains(distribution.to_internal_repr(value))
        except (ValueError, TypeError):
            inside = False
        if not inside:
            raise OutsideSpace(f"{name}={value!r} is outside {distribution}")
        self.asked[name] = distribution
        return value

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        from optuna.distributions import FloatDistribution

        return float(self._answer(name, FloatDistribution(low, high, log=log, step=step)))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1,
                    log: bool = False) -> int:
        from optuna.distributions import IntDistribution

        return int(self._answer(name, IntDistribution(low, high, log=log, step=step)))

    def suggest_categorical(self, name: str, choices: Sequence[ChoiceType]) -> ChoiceType:
        from optuna.distributions import CategoricalDistribution

        return self._answer(name, CategoricalDistribution(list(choices)))  # type: ignore[no-any-return]


def replay(space: Space, params: Mapping[str, Any], number: int) -> tuple[dict[str, Any], Replay]:
    """The cfg ``params`` give in ``space`` now, and the trial that answered; raises
    ``OutsideSpace`` when they do not lie in it (or leave one of them unasked)."""
    trial = Replay(params, number)
    cfg = suggest(space, trial)
    unasked = set(params) - set(trial.asked)
    if unasked:
        raise OutsideSpace(f"parameters no longer asked: {sorted(unasked)}")
    return cfg, trial
