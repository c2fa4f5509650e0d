"""What copying a run's cfg costs: ``copy.deepcopy`` vs a pickle round trip vs dagrun's copy.

Every stage call receives its own deep copy of its run's cfg (three copies per run), so a
cfg that holds a data set or fitted models is copied three times per run. This prints, for a
few cfgs of several MB, the milliseconds per copy of

- ``deepcopy``: ``copy.deepcopy(cfg)``;
- ``pickle``: ``pickle.loads(pickle.dumps(cfg, HIGHEST_PROTOCOL))``;
- ``dagrun``: ``dagrun.run.stages.RunCfg`` (the cfg pickled once per run with NumPy buffers out
  of band, then one ``loads`` per stage call), i.e. a run's cost divided by three,

each the best of several repetitions. No assertions: figures only.

    python bench/cfg_copy.py [--repeat N]
"""

from __future__ import annotations

import argparse
import copy
import pickle
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from dagrun.run.stages import CopyMemory, RunCfg

STAGE_CALLS = 3


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` calls of ``fn``, in milliseconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best * 1000.0


def run_cfg(value: Any) -> dict[str, Any]:
    """A cfg as a stage receives it: the user's keys plus the three reserved ones."""
    return {"data": value, "model_params": {"alpha": 0.1, "n": 1}, "experiment_id": 0,
            "run_id": 0, "out_path": "/tmp/out/0"}


def small() -> dict[str, Any]:
    return run_cfg([1, 2, 3])


def array_5mb() -> dict[str, Any]:
    return run_cfg(np.random.default_rng(0).random(5 * 2**20 // 8))


def dicts_10k() -> dict[str, Any]:
    return run_cfg([{"id": i, "name": f"item{i}", "weight": float(i), "tags": ["a", "b"],
                     "params": {"x": i, "y": -i}} for i in range(10_000)])


def fitted_models() -> dict[str, Any] | None:
    """Five random forests and twenty ridge regressions (about 9 MB pickled)."""
    try:
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.linear_model import Ridge
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    x, y = rng.random((2000, 10)), rng.random(2000)
    models: list[Any] = [RandomForestRegressor(n_estimators=10, random_state=i).fit(x, y)
                         for i in range(5)]
    models += [Ridge(alpha=a).fit(x, y) for a in range(1, 21)]
    return run_cfg(models)


def dagrun_run(cfg: dict[str, Any]) -> None:
    """The copies of one run: settle the plan (first copy), then two more."""
    copies = RunCfg(cfg, CopyMemory(), [])
    for _ in range(STAGE_CALLS - 1):
        copies.fresh()


def measure(name: str, cfg: dict[str, Any], repeat: int) -> None:
    size = len(pickle.dumps(cfg, pickle.HIGHEST_PROTOCOL)) / 1e6
    deep = best_ms(lambda: copy.deepcopy(cfg), repeat)
    trip = best_ms(lambda: pickle.loads(pickle.dumps(cfg, pickle.HIGHEST_PROTOCOL)), repeat)
    ours = best_ms(lambda: dagrun_run(cfg), repeat) / STAGE_CALLS
    print(f"{name:<22} {size:8.2f} {deep:12.3f} {trip:12.3f} {ours:12.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="What copying a run's cfg costs.")
    parser.add_argument("--repeat", type=int, default=7, help="best of N (default 7)")
    args = parser.parse_args()
    cases: list[tuple[str, Callable[[], dict[str, Any] | None]]] = [
        ("small cfg", small), ("numpy array 5 MB", array_5mb),
        ("10,000 dicts", dicts_10k), ("25 fitted sklearn", fitted_models)]
    print(f"{'cfg':<22} {'MB':>8} {'deepcopy ms':>12} {'pickle ms':>12} {'dagrun ms':>12}")
    print("(milliseconds per copy; a run makes three)")
    for name, build in cases:
        cfg = build()
        if cfg is None:
            print(f"{name:<22} skipped (scikit-learn is not installed)")
            continue
        measure(name, cfg, args.repeat)


if __name__ == "__main__":
    main()
