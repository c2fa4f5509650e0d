"""scikit-learn on the digits dataset it ships: a random search over an SVM's C and gamma.

Run it with ``dagrun execute workflows/digits_sklearn.py --backend multiprocessing -j 2``.
pre loads and splits the data (seeded by the repetition), fit trains, post scores.
"""

from __future__ import annotations

from typing import Any

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

from dagrun import Variation, generate_configs


def pre(cfg: dict[str, Any]) -> dict[str, Any]:
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x / 16.0, y, test_size=0.3, random_state=cfg["run_id"], stratify=y)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def fit(cfg: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    model = SVC(C=cfg["C"], gamma=cfg["gamma"], kernel=cfg["kernel"])
    model.fit(data["x_train"], data["y_train"])
    return {**data, "model": model}


def post(cfg: dict[str, Any], out: dict[str, Any]) -> dict[str, float]:
    model = out["model"]
    return {
        "train_accuracy": float(model.score(out["x_train"], out["y_train"])),
        "test_accuracy": float(model.score(out["x_test"], out["y_test"])),
        "n_support_vectors": int(model.n_support_.sum()),
    }


basecfg = {
    "out_path": "results/digits",
    "backend": "multiprocessing",
    "num_cpus": 2,
    "repetitions": 2,
    "timeout": 300,
}

cfgs = generate_configs(
    {"kernel": "rbf", "C": Variation([0.1, 1.0, 10.0]), "gamma": Variation([0.01, 0.1, 1.0])},
    n_configs=6, seed=1,
)
