"""scikit-learn grid: 4 datasets x 3 models, 64 configs, the kind of grid a report must read.

Run it with ``dagrun execute workflows/sklearn_grid.py --backend multiprocessing -j 2``
(about a minute), then ``dagrun report results/sklearn_grid``. The datasets ship with
scikit-learn (nothing is downloaded). ``model.C`` is a log grid (0.001 to 100) of the
logistic regression and the SVM, ``model.max_depth`` a grid of the decision tree with
``None`` (no limit) among its numbers; each model lacks the other's key.
"""

from __future__ import annotations

from typing import Any

from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

LOADERS = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
           "wine": datasets.load_wine, "iris": datasets.load_iris}


def pre(cfg: dict[str, Any]) -> dict[str, Any]:
    """Load and split the dataset (the split is seeded by the repetition), then scale."""
    x, y = LOADERS[cfg["dataset"]](return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=cfg["run_id"], stratify=y)
    scaler = StandardScaler().fit(x_train)
    return {"x_train": scaler.transform(x_train), "y_train": y_train,
            "x_test": scaler.transform(x_test), "y_test": y_test}


def make_model(spec: dict[str, Any], seed: int) -> Any:
    if spec["name"] == "logreg":
        return LogisticRegression(C=spec["C"], max_iter=5000)
    if spec["name"] == "svm":
        return SVC(C=spec["C"])
    return DecisionTreeClassifier(max_depth=spec["max_depth"], random_state=seed)


def fit(cfg: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    model = make_model(cfg["model"], cfg["run_id"])
    model.fit(data["x_train"], data["y_train"])
    return {**data, "model": model}


def post(cfg: dict[str, Any], out: dict[str, Any]) -> dict[str, float]:
    model = out["model"]
    return {"test_accuracy": float(model.score(out["x_test"], out["y_test"])),
            "train_accuracy": float(model.score(out["x_train"], out["y_train"]))}


basecfg = {
    "out_path": "results/sklearn_grid",
    "backend": "multiprocessing",
    "num_cpus": 2,
    "repetitions": 3,
    "timeout": 300,
    "report_metric": "test_accuracy",
}

cfgs = [
    {"dataset": name, "model": model}
    for name in LOADERS
    for model in [
        *({"name": "logreg", "C": c} for c in (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)),
        *({"name": "svm", "C": c} for c in (0.01, 0.1, 1.0, 10.0, 100.0)),
        *({"name": "tree", "max_depth": d} for d in (None, 2, 4, 8, 16)),
    ]
]
