"""What a search shows (issue 28): ``dagrun results`` with the best objective so far, the
report's optimisation history and parameter importances (or why they are missing), nothing
of it for a sweep that is not a search, and the one-line hint when Optuna is missing."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest

import dagrun
from dagrun.cli import main
from dagrun.results.html import available, write_report
from dagrun.results.html.data import report_data
from dagrun.results.search import BEST
from dagrun.results.table import query
from tests.helpers import write_workflow
from tests.searchstages import curve, post, pre, quadratic

pytest.importorskip("optuna")

SPACE = {"x": dagrun.Float(-5.0, 5.0), "y": dagrun.Float(-5.0, 5.0)}


def _search(out: Path, fit: Any, space: Any, **search: Any) -> None:
    basecfg = {"out_path": str(out), "pre": pre, "fit": fit, "post": post, "verbose": False,
               "report": False, "search": {"metric": "loss", "seed": 0, **search}}
    assert dagrun.run_experiments(basecfg, space=space).ok


@pytest.fixture(scope="module")
def quadratic_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("search") / "out"
    _search(out, quadratic, SPACE, n_trials=10)
    return out


@pytest.fixture(scope="module")
def plain_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "out"
    basecfg = {"out_path": str(out), "pre": pre, "fit": quadratic, "post": post,
               "verbose": False, "report": False}
    dagrun.run_experiments(basecfg, [{"x": x, "y": 0.5} for x in (0.0, 1.0, 2.0)])
    return out


def _running_min(values: list[float | None]) -> list[float | None]:
    best: float | None = None
    out = []
    for v in values:
        best = v if v is not None and (best is None or v < best) else best
        out.append(best)
    return out


def test_results_show_the_best_so_far(quadratic_study: Path) -> None:
    table = query(quadratic_study)
    cols = table.columns
    assert list(cols)[-3:] == [BEST, "state", "n"]
    assert cols[BEST] == _running_min(cols["loss"])
    assert cols[BEST][-1] == min(cols["loss"])
    assert cols[BEST][0] == cols["loss"][0] and cols[BEST] != cols["loss"]


def test_best_so_far_skips_pruned_trials_and_follows_the_direction(tmp_path: Path) -> None:
    out = tmp_path / "pruned"
    _search(out, curve, {"lr": dagrun.Float(0.0, 1.0)}, n_trials=12, pruner="median")
    cols = query(out).columns
    pruned = [i for i, s in enumerate(cols["state"]) if s == "pruned"]
    assert pruned, "nothing pruned: the test proves nothing"
    done = [v if s == "done" else None for v, s in zip(cols["loss"], cols["state"],
                                                       strict=True)]
    assert cols[BEST] == _running_min(done)
    history = report_data(out)["search"]["trials"]
    assert [t[1] for t in history].count("pruned") == len(pruned)
    assert [t[3] for t in history] == cols[BEST]

    out = tmp_path / "max"  # maximize: the best so far is the running maximum
    _search(out, quadratic, SPACE, n_trials=5, direction="maximize")
    cols = query(out).columns
    assert cols[BEST] == [max(cols["loss"][:i + 1]) for i in range(5)]


def test_a_sweep_that_is_no_search_is_unchanged(plain_sweep: Path) -> None:
    assert BEST not in query(plain_sweep).columns
    assert "search" not in report_data(plain_sweep)


def test_report_has_history_and_importances(quadratic_study: Path) -> None:
    search = report_data(quadratic_study)["search"]
    assert search["metric"] == "loss" and search["direction"] == "minimize"
    trials = search["trials"]
    assert [t[0] for t in trials] == list(range(10))
    assert all(t[1] == "complete" for t in trials)
    assert [t[3] for t in trials] == _running_min([t[2] for t in trials])
    names = [name for name, _ in search["importances"]]
    assert sorted(names) == ["x", "y"]
    values = [v for _, v in search["importances"]]
    assert values == sorted(values, reverse=True) and math.isclose(sum(values), 1.0)
    assert search["importances_note"] is None
    assert search == report_data(quadratic_study)["search"]  # seeded: the same each time


def test_report_page_shows_the_search_as_text_only(tmp_path: Path) -> None:
    if not available():
        pytest.skip("the report extra (plotly) is not installed")
    out = tmp_path / "out"
    odd = "<b>z</b></script>"  # a parameter's name is user text
    _search(out, quadratic, {**SPACE, odd: dagrun.Float(0.0, 1.0)}, n_trials=3)
    page = Path(write_report(out)).read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="dagrun-data">(.*?)</script>',
                      page, re.DOTALL)
    assert found is not None
    embedded = found.group(1)
    assert "<" not in embedded and '"search":' in embedded
    search = json.loads(embedded)["search"]
    assert search["trials"][2][0] == 2 and odd in [name for name, _ in search["importances"]]
    assert '<section id="search" hidden>' in page and 'id="history-plot"' in page


def test_report_says_why_importances_are_missing(quadratic_study: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` fails
    search = report_data(quadratic_study)["search"]
    assert search["importances"] is None
    assert "scikit-learn" in search["importances_note"]
    assert len(search["trials"]) == 10  # the history is there all the same


def test_too_few_complete_trials_say_so(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _search(out, quadratic, SPACE, n_trials=1)
    search = report_data(out)["search"]
    assert search["importances"] is None and "two complete trials" in search["importances_note"]


def test_missing_optuna_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    wf = write_workflow(tmp_path, f"""
        import dagrun
        def pre(cfg): return None
        def fit(cfg, data): return cfg["x"]
        def post(cfg, value): return {{"loss": value}}
        space = {{"x": dagrun.Float(0.0, 1.0)}}
        basecfg = {{"out_path": {str(tmp_path / "out")!r}, "verbose": False,
                   "search": {{"metric": "loss", "n_trials": 2}}}}
        """)
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` fails
    assert main(["execute", str(wf)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "pip install 'dagrun[search]'" in err[0] and "Optuna" in err[0]
