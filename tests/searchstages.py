"""Stage functions and spaces of tests/test_search.py (a module pytest does not rewrite,
so the copy of the code dagrun takes is the code that runs)."""

from __future__ import annotations

import math
from typing import Any

import dagrun

STEPS = 20


def pre(cfg: dict[str, Any]) -> None:
    return None


def curve(cfg: dict[str, Any], data: None) -> float:
    value = math.nan
    for step in range(STEPS):
        value = (cfg["lr"] - 0.3) ** 2 + 1 / (step + 1)
        dagrun.report(step, value)
    return value


def post(cfg: dict[str, Any], value: float) -> dict[str, float]:
    return {"loss": value}


def quadratic(cfg: dict[str, Any], data: None) -> float:
    return float((cfg["x"] - 1.2) ** 2 + (cfg["y"] + 0.7) ** 2)


def conditional(trial: Any) -> dict[str, Any]:
    kind = trial.suggest_categorical("kind", ["linear", "tree"])
    if kind == "linear":
        return {"kind": kind, "alpha": trial.suggest_float("alpha", 1e-3, 1.0, log=True)}
    return {"kind": kind, "depth": trial.suggest_int("depth", 1, 8)}


def conditional_fit(cfg: dict[str, Any], data: None) -> float:
    return float(cfg["alpha"]) if cfg["kind"] == "linear" else 1.0 / cfg["depth"]


def discrete_fit(cfg: dict[str, Any], data: None) -> float:
    return float(cfg["a"] * 10 + cfg["b"])


def best_of(out: str, sampler: str, seed: int) -> float:
    """The best loss of a 40-trial study of ``quadratic`` (run in a pool's process)."""
    import json

    basecfg = {"out_path": out, "pre": pre, "fit": quadratic, "post": post, "verbose": False,
               "report": False, "search": {"metric": "loss", "n_trials": 40,
                                           "sampler": sampler, "seed": seed}}
    dagrun.run_experiments(basecfg, space={"x": dagrun.Float(-5.0, 5.0),
                                           "y": dagrun.Float(-5.0, 5.0)})
    with open(f"{out}/results.jsonl", encoding="utf-8") as f:
        scores = [json.loads(line)["scores"]["mean_loss"] for line in f]
    assert len(scores) == 40
    return float(min(scores))
