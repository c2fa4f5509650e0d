"""Adaptive search with scikit-learn: TPE over a gradient-boosted classifier on the
breast-cancer data set scikit-learn ships, with trials pruned by the median rule.

Run it with ``dagrun execute workflows/search_sklearn.py`` (needs ``pip install
'dagrun[search,sklearn]'``); kill it at any point and run it again: the study goes on.
``fit`` grows the ensemble stage by stage and reports the validation loss after each
stage with ``dagrun.report``; the pruner stops trials that do worse than the median.
"""

from __future__ import annotations

from typing import Any

from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

import dagrun


def pre(cfg: dict[str, Any]) -> dict[str, Any]:
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.3, random_state=cfg["run_id"], stratify=y)
    return {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val}


def fit(cfg: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    model = GradientBoostingClassifier(
        n_estimators=cfg["model"]["n_estimators"], learning_rate=cfg["model"]["learning_rate"],
        max_depth=cfg["model"]["max_depth"], subsample=cfg["subsample"], random_state=0)
    model.fit(data["x_train"], data["y_train"])
    every = max(1, cfg["model"]["n_estimators"] // 10)
    for step, proba in enumerate(model.staged_predict_proba(data["x_val"])):
        if step % every == every - 1:  # the validation loss as the ensemble grows
            dagrun.report(step, log_loss(data["y_val"], proba))
    return {**data, "model": model}


def post(cfg: dict[str, Any], out: dict[str, Any]) -> dict[str, float]:
    model = out["model"]
    return {"val_loss": float(log_loss(out["y_val"], model.predict_proba(out["x_val"]))),
            "val_accuracy": float(model.score(out["x_val"], out["y_val"]))}


space = {
    "model": {
        "n_estimators": dagrun.Int(20, 200, step=20),
        "learning_rate": dagrun.Float(0.01, 0.5, log=True),
        "max_depth": dagrun.Int(1, 5),
    },
    "subsample": dagrun.Float(0.5, 1.0),
}

basecfg = {
    "out_path": "results/search_sklearn",
    "timeout": 300,
    "search": {"metric": "val_loss", "direction": "minimize", "n_trials": 30,
               "sampler": "tpe", "seed": 0, "pruner": "median"},
}

cfgs = [{"model": {"n_estimators": 100, "learning_rate": 0.1, "max_depth": 3},
         "subsample": 1.0}]  # a known good config: the first trial
