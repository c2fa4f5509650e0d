"""``Variation`` and ``generate_configs`` as the README and the contract describe them."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest

from dagrun import Variation, generate_configs

pytestmark = pytest.mark.timeout(60)


def key(cfg: dict[str, Any]) -> str:
    return json.dumps(cfg, sort_keys=True)


NESTED = {
    "model": "ridge",
    "alpha": Variation([0.1, 1.0, 10.0]),
    "data": {
        "noise": Variation([0.0, 0.5]),
        "name": "synthetic",
        "split": {"test": Variation([0.2, 0.3]), "shuffle": True},
    },
    "tags": ["a", "b"],
}


def all_nested_combinations() -> set[str]:
    out = set()
    for alpha, noise, test in itertools.product([0.1, 1.0, 10.0], [0.0, 0.5], [0.2, 0.3]):
        out.add(key({"model": "ridge", "alpha": alpha,
                     "data": {"noise": noise, "name": "synthetic",
                              "split": {"test": test, "shuffle": True}},
                     "tags": ["a", "b"]}))
    return out


def test_recursive_through_nested_dicts_and_capped() -> None:
    template = copy.deepcopy(NESTED)
    configs = generate_configs(NESTED, 100, seed=1)
    assert len(configs) == 12  # capped at 3 * 2 * 2 combinations
    assert {key(c) for c in configs} == all_nested_combinations()
    for c in configs:
        assert not any(isinstance(v, Variation) for v in _leaves(c))
    assert repr(NESTED) == repr(template)  # the template is not modified


def _leaves(cfg: dict[str, Any]) -> list[Any]:
    out = []
    for v in cfg.values():
        out.extend(_leaves(v) if isinstance(v, dict) else [v])
    return out


@pytest.mark.parametrize("n", [1, 5, 11, 12])
def test_unique_and_exact_count(n: int) -> None:
    configs = generate_configs(NESTED, n, seed=3)
    assert len(configs) == n
    assert len({key(c) for c in configs}) == n
    assert {key(c) for c in configs} <= all_nested_combinations()


def test_duplicate_choices_count_once() -> None:
    configs = generate_configs({"a": Variation([1, 1, 2]), "b": Variation(["x", "x"])}, 10,
                               seed=0)
    assert sorted(key(c) for c in configs) == [key({"a": 1, "b": "x"}), key({"a": 2, "b": "x"})]


def test_without_variations_and_zero() -> None:
    fixed = {"a": 1, "b": {"c": [1, 2]}}
    assert generate_configs(fixed, 5, seed=0) == [fixed]
    assert generate_configs(NESTED, 0, seed=0) == []


def test_configs_do_not_share_mutable_values() -> None:
    configs = generate_configs({"a": Variation([1, 2]), "lst": [1, 2]}, 2, seed=0)
    configs[0]["lst"].append(3)
    assert configs[1]["lst"] == [1, 2]


def test_variation_choices_may_be_dicts_and_lists() -> None:
    cfg = {"opt": Variation([{"name": "sgd", "lr": 0.1}, {"name": "adam"}]),
           "layers": Variation([[32], [64, 64]])}
    configs = generate_configs(cfg, 10, seed=2)
    assert len(configs) == 4
    assert {key(c) for c in configs} == {
        key({"opt": o, "layers": la}) for o in ({"name": "sgd", "lr": 0.1}, {"name": "adam"})
        for la in ([32], [64, 64])}


BIG = {f"p{i}": Variation(list(range(10))) for i in range(8)}  # 10**8 combinations


def test_seed_reproducible_and_seeds_differ() -> None:
    a = generate_configs(BIG, 50, seed=42)
    assert generate_configs(BIG, 50, seed=42) == a
    assert generate_configs(BIG, 50, seed=43) != a
    # not the first 50 combinations in order: it is a random search
    assert [key(c) for c in a] != sorted(key(c) for c in a)


@pytest.mark.parametrize("cfg", [BIG, NESTED], ids=["big", "nested"])
def test_prefix_stable_when_n_configs_grows(cfg: dict[str, Any]) -> None:
    runs = [generate_configs(cfg, n, seed=7) for n in (1, 3, 8, 12, 40)]
    for smaller, larger in itertools.pairwise(runs):
        assert larger[: len(smaller)] == smaller


def test_hundred_thousand_configs() -> None:
    configs = generate_configs(BIG, 100_000, seed=5)
    assert len(configs) == 100_000
    assert len({tuple(c.values()) for c in configs}) == 100_000
    assert all(set(c) == set(BIG) for c in configs[:100])


def test_hundred_thousand_is_the_whole_space() -> None:
    space = {f"p{i}": Variation(list(range(10))) for i in range(5)}  # exactly 10**5
    configs = generate_configs(space, 200_000, seed=9)
    assert len(configs) == 100_000
    assert len({tuple(c.values()) for c in configs}) == 100_000


@pytest.mark.parametrize("make", [
    pytest.param(lambda xs: __import__("numpy").array(xs), id="numpy"),
    pytest.param(tuple, id="tuple"),
    pytest.param(lambda xs: __import__("pandas").Series(xs), id="pandas"),
    pytest.param(lambda xs: (x for x in xs), id="generator"),
])
def test_variation_takes_any_ordered_collection_like_a_list(make: Any) -> None:
    from dagrun.code.digest import config_digest
    from dagrun.config import json_view

    values: dict[str, list[Any]] = {"lr": [1e-3, 1e-2, 1e-1], "depth": [2, 4, 8],
                                    "flag": [True, False], "name": ["a", "b"]}
    as_lists = generate_configs({k: Variation(v) for k, v in values.items()}, 7, seed=5)
    got = generate_configs({k: Variation(make(v)) for k, v in values.items()}, 7, seed=5)
    assert got == as_lists
    for cfg, expected in zip(got, as_lists, strict=True):
        assert {k: type(v) for k, v in cfg.items()} == {k: type(v) for k, v in expected.items()}
        assert json_view(cfg) == json_view(expected)
        assert config_digest(cfg) == config_digest(expected)


def test_variation_of_a_range_and_of_numpy_values() -> None:
    np = pytest.importorskip("numpy")
    assert Variation(range(3)).choices == [0, 1, 2]
    rows = Variation(np.array([[1, 2], [3, 4]])).choices
    assert rows == [[1, 2], [3, 4]] and all(type(x) is int for row in rows for x in row)
    scalars = Variation([np.float32(0.5), np.int64(3), np.bool_(True), np.str_("s")]).choices
    assert [type(x) for x in scalars] == [float, int, bool, str]


def _scaled(x: float, k: float) -> float:
    return x * k


def _shifted(x: float, k: float) -> float:
    return x + k


class _NoRepr:
    def __init__(self, value: int) -> None:
        self.value = value


def test_variation_keeps_choices_that_only_read_the_same() -> None:
    """Choices are distinct by content, not by their JSON text: partials of different
    functions, instances without a ``__repr__`` and long DataFrames that print alike."""
    import functools

    import pandas as pd

    frames = [pd.DataFrame({"a": range(100)}), pd.DataFrame({"a": range(100)})]
    frames[1].loc[50, "a"] = -1  # same head and tail: the same readable view
    choices = {"f": Variation([functools.partial(_scaled, k=2), functools.partial(_shifted, k=2)]),
               "o": Variation([_NoRepr(1), _NoRepr(2)]), "d": Variation(frames)}
    assert all(len(v.choices) == 2 for v in choices.values())
    assert len(generate_configs(choices, 100, seed=0)) == 8
    assert len(Variation([_NoRepr(1), _NoRepr(1), 1, 1.0]).choices) == 3  # equal ones go
