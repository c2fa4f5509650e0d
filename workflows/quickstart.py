"""Quickstart: ridge regression on synthetic data, a random search over alpha and noise.

Run it with ``dagrun execute workflows/quickstart.py`` (or ``python workflows/quickstart.py``).
Each config is run 3 times with different seeds; ``results.jsonl`` gets mean and std.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from dagrun import Variation, generate_configs, read_results, run_experiments


def pre(cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    """Make a regression problem; the seed depends on the repetition (run_id)."""
    rng = np.random.default_rng(1000 * cfg["experiment_id"] + cfg["run_id"])
    n, d = cfg["n_samples"], cfg["n_features"]
    w = rng.normal(size=d)
    x = rng.normal(size=(n, d))
    y = x @ w + cfg["noise"] * rng.normal(size=n)
    split = int(0.8 * n)
    return {"x_train": x[:split], "y_train": y[:split], "x_test": x[split:], "y_test": y[split:]}


def fit(cfg: dict[str, Any], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Closed-form ridge regression: w = (X'X + alpha I)^-1 X'y."""
    x, y = data["x_train"], data["y_train"]
    w = np.linalg.solve(x.T @ x + cfg["alpha"] * np.eye(x.shape[1]), x.T @ y)
    return {**data, "w": w}


def post(cfg: dict[str, Any], model: dict[str, np.ndarray]) -> dict[str, float]:
    """Test error of the fitted model."""
    pred = model["x_test"] @ model["w"]
    mse = float(np.mean((pred - model["y_test"]) ** 2))
    return {"test_mse": mse, "weight_norm": float(np.linalg.norm(model["w"]))}


basecfg = {
    "out_path": os.environ.get("DAGRUN_DEMO_OUT", "results/quickstart"),
    "pre": pre,
    "fit": fit,
    "post": post,
    "backend": "single",
    "repetitions": 3,
    "verbose": True,
}

cfgs = generate_configs(
    {
        "n_samples": 400,
        "n_features": 20,
        "alpha": Variation([0.01, 0.1, 1.0, 10.0, 100.0]),
        "noise": Variation([0.1, 0.5, 1.0]),
    },
    n_configs=8,
    seed=0,
)


def show_table(out_path: str) -> None:
    """Print the results, best mean test error first."""
    df = read_results(out_path)
    cols = ["experiment_id", "alpha", "noise", "scores.mean_test_mse", "scores.std_test_mse",
            "scores.mean_fit_time"]
    print(df[cols].sort_values("scores.mean_test_mse").round(4).to_string(index=False))


if __name__ == "__main__":
    start = time.time()
    run_experiments(basecfg, cfgs)
    show_table(basecfg["out_path"])
    print(f"done in {time.time() - start:.1f} s")
