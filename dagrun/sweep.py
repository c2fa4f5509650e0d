"""Random search over configs: ``Variation`` and ``generate_configs``.

``generate_configs`` draws distinct combinations without replacement by walking a lazily
built random permutation of all combinations (a sparse Fisher-Yates shuffle). That makes it
O(n_configs) with no uniqueness check, and *prefix-stable*: with the same seed, asking for
more configs keeps the earlier ones first, so a random search can grow.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from dagrun.code.digest import digest
from dagrun.errors import ConfigError

_IMMUTABLE = (int, float, str, bool, bytes, type(None), complex)


class Variation:
    """A hyperparameter that ``generate_configs`` replaces by one of ``choices``.

    ``choices`` is any ordered collection, as the original tool took: a list, tuple,
    ``range``, NumPy array, pandas Series, generator. It is read once into a list whose
    NumPy values are plain Python ones (``np.float64(0.1)`` becomes ``0.1``, a row of a 2-D
    array a list), so generated cfgs, their JSON view and their digest are what a list of
    the same values gives. A set is refused: its order, and so what a seed draws, may
    change from one process to the next.
    """

    def __init__(self, choices: Iterable[Any]) -> None:
        self.choices: list[Any] = _distinct(_choice_list(choices))

    def __repr__(self) -> str:
        return f"Variation({self.choices!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Variation) and other.choices == self.choices

    __hash__ = None  # type: ignore[assignment]


def _choice_list(choices: Iterable[Any]) -> list[Any]:
    """``choices`` as a non-empty list of plain values, or ``ConfigError``."""
    if isinstance(choices, (str, bytes, Mapping, set, frozenset)):
        hint = " (a set has no fixed order; pass sorted(...))" if isinstance(
            choices, (set, frozenset)) else ""
        raise ConfigError(f"Variation expects a list of choices, got "
                          f"{type(choices).__name__}{hint}")
    try:
        items = list(choices)
    except TypeError as exc:  # not iterable (a number, a 0-d array)
        raise ConfigError(f"Variation expects a list of choices (list, tuple, range, NumPy "
                          f"array, ...), got {type(choices).__name__}") from exc
    if not items:
        raise ConfigError("Variation needs at least one choice, got an empty list")
    return [_plain(item) for item in items]


def _plain(value: Any) -> Any:
    """A NumPy scalar or array as the Python value(s) ``tolist`` gives; others as they are."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and type(value).__module__.split(".")[0] == "numpy":
        return tolist()
    return value


def _distinct(choices: Sequence[Any]) -> list[Any]:
    """Choices with duplicates removed, first occurrence kept. Duplicates are equal by
    content digest (what makes two cfgs the same experiment), not by JSON view: two
    ``functools.partial`` of different functions, instances of a class without a
    ``__repr__``, lambdas or long DataFrames may read the same and still differ."""
    seen: set[str] = set()
    out = []
    for c in choices:
        key = digest(c)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _variation_paths(cfg: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[
    tuple[tuple[str, ...], Variation]
]:
    for key, value in cfg.items():
        if isinstance(value, Variation):
            yield (*prefix, key), value
        elif isinstance(value, Mapping):
            yield from _variation_paths(value, (*prefix, key))


def _copy_leaf(value: Any) -> Any:
    return value if isinstance(value, _IMMUTABLE) else copy.deepcopy(value)


def _build(cfg: Mapping[str, Any], picks: dict[tuple[str, ...], Any],
           prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        path = (*prefix, key)
        if isinstance(value, Variation):
            out[key] = _copy_leaf(picks[path])
        elif isinstance(value, Mapping):
            out[key] = _build(value, picks, path)
        else:
            out[key] = _copy_leaf(value)
    return out


def _permutation_prefix(total: int, n: int, rng: random.Random) -> Iterator[int]:
    """The first ``n`` entries of a uniformly random permutation of ``range(total)``."""
    swapped: dict[int, int] = {}
    for i in range(n):
        j = rng.randrange(i, total)
        yield swapped.get(j, j)
        swapped[j] = swapped.get(i, i)


def count_configs(cfg: Mapping[str, Any]) -> int:
    """How many distinct configs ``cfg``'s variations can produce."""
    total = 1
    for _, variation in _variation_paths(cfg):
        total *= len(variation.choices)
    return total


def generate_configs(cfg: Mapping[str, Any], n_configs: int,
                     seed: int | None = None) -> list[dict[str, Any]]:
    """Return up to ``n_configs`` distinct copies of ``cfg`` with each ``Variation`` replaced.

    Nested dicts are searched recursively. ``n_configs`` is capped at the number of distinct
    combinations. With a ``seed`` the result is reproducible, and a larger ``n_configs`` with
    the same seed returns the smaller result as its prefix. Without a seed, the draw comes
    from Python's global ``random`` state (so ``random.seed`` makes it reproducible too).
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"generate_configs expects a dict, got {type(cfg).__name__}")
    if isinstance(n_configs, bool) or not isinstance(n_configs, int) or n_configs < 0:
        raise ConfigError(f"n_configs must be an integer >= 0, got {n_configs!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed must be an integer or None, got {seed!r}")
    paths = list(_variation_paths(cfg))
    total = count_configs(cfg)
    n = min(n_configs, total)
    rng = random.Random(seed if seed is not None else random.getrandbits(64))
    radices = [len(v.choices) for _, v in paths]
    configs = []
    for index in _permutation_prefix(total, n, rng):
        picks: dict[tuple[str, ...], Any] = {}
        for (path, variation), radix in zip(paths, radices, strict=True):
            index, digit = divmod(index, radix)
            picks[path] = variation.choices[digit]
        configs.append(_build(cfg, picks))
    return configs
