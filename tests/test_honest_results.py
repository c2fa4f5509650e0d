"""Honest numbers: one definition of an experiment's row, shared by every view of results.

Two real sweeps are executed once for the module. ``three`` (3 repetitions): a loss that is
NaN in one repetition, a metric that is inf in every repetition, a text metric, an
experiment with the best accuracy whose second repetition crashed, three identical
accuracies, and a config key named ``n``. ``one`` (1 repetition): config values that look
alike (0.1, 0.1 + 1e-12, "0.1"), inf and NaN, a newline, CJK text and a long value. Each test
names the item of the issue it checks.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import dagrun
from dagrun.cli import main
from tests.helpers import read_jsonl, run_dagrun, write_workflow

THREE = """
import math

def pre(cfg):
    return cfg["run_id"]

def fit(cfg, rep):
    if cfg["model"]["name"] == "rf" and cfg["model"]["C"] == 1 and rep == 1:
        raise ValueError("crashed")
    return rep

def post(cfg, rep):
    acc = cfg["accs"][rep]
    loss = math.nan if cfg["dataset"] == "iris" and cfg["n"] == 10 and rep == 0 \\
        and cfg["model"]["name"] == "svc" else [0.0, 0.21, 0.22][rep]
    return {{"acc": acc, "loss": loss, "allinf": math.inf, "note": "text"}}

basecfg = {{"out_path": {out!r}, "pre": pre, "fit": fit, "post": post, "repetitions": 3,
           "verbose": False, "report": False}}
cfgs = [
    {{"model": {{"name": "svc", "C": 1}}, "dataset": "iris", "n": 10,
      "label": "a|b <b>x</b> & c_d $x$", "accs": [0.90, 0.91, 0.92]}},
    {{"model": {{"name": "svc", "C": 10}}, "dataset": "digits", "n": 1000, "label": "plain",
      "accs": [0.93, 0.94, 0.95]}},
    {{"model": {{"name": "rf", "C": 1}}, "dataset": "wine", "n": 100, "label": "plain",
      "accs": [0.99, 0.99, 0.99]}},
    {{"model": {{"name": "rf", "C": 10}}, "dataset": "iris", "n": 10, "label": "plain",
      "accs": [0.959064327485] * 3}},
]
"""

ONE = """
import math

def pre(cfg):
    return 0

def fit(cfg, x):
    return x

def post(cfg, x):
    return {{"acc": cfg["acc"]}}

basecfg = {{"out_path": {out!r}, "pre": pre, "fit": fit, "post": post, "verbose": False,
           "report": False}}
cfgs = [
    {{"x": 0.1, "label": "plain", "acc": 0.5}},
    {{"x": 0.1 + 1e-12, "label": "line\\nbreak", "acc": 0.6}},
    {{"x": "0.1", "label": "多言語テキスト", "acc": 0.7}},
    {{"x": math.inf, "label": "y" * 100, "acc": 0.8}},
    {{"x": math.nan, "label": "ok", "acc": 0.9}},
]
"""


def _execute(folder: Path, source: str) -> Path:
    out = folder / "OUT"
    wf = write_workflow(folder, source.format(out=str(out)))
    result = run_dagrun("execute", wf, cwd=folder, timeout=120)
    assert result.rc in (0, 1), result.stderr
    return out


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _execute(tmp_path_factory.mktemp("three"), THREE)


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _execute(tmp_path_factory.mktemp("one"), ONE)


def _results(capsys: pytest.CaptureFixture[str], out: Path, *args: str,
             rc: int = 0) -> tuple[str, str]:
    """``dagrun results OUT ARGS`` in this process: stdout and stderr."""
    capsys.readouterr()
    assert main(["results", str(out), *args]) == rc
    captured = capsys.readouterr()
    return captured.out, captured.err


def _ids(text: str) -> list[int]:
    """The experiment ids of a terminal table, in order."""
    return [int(line.split()[0]) for line in text.splitlines()[1:]]


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def _lines(out: Path) -> dict[int, dict[str, Any]]:
    return {row["experiment_id"]: row for row in read_jsonl(out / "results.jsonl")}


# --------------------------------------------------------------------------------------------
# 1. Values that do not count are never dropped silently.

def test_1_a_nan_repetition_is_counted_out_and_says_so(three: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    scores = _lines(three)[0]["scores"]
    assert scores["loss"] == [None, 0.21, 0.22]
    assert scores["mean_loss"] == pytest.approx(0.215) and scores["n_loss"] == 2
    assert scores["std_loss"] == pytest.approx(0.005)
    assert _lines(three)[1]["scores"]["n_loss"] == 3
    text, _ = _results(capsys, three)
    row = next(line for line in text.splitlines() if line.split()[0] == "0")
    assert "0.2150 ± 0.0050 (2/3)" in row
    assert "(2/3)" not in next(line for line in text.splitlines() if line.split()[0] == "1")
    df = dagrun.results_table(three)
    assert df.loc[0, "mean_loss"] == pytest.approx(0.215) and df.loc[0, "n_loss"] == 2
    assert dagrun.read_results(three).set_index("experiment_id").loc[
        0, "scores.mean_loss"] == df.loc[0, "mean_loss"]


def test_1_a_metric_inf_everywhere_and_a_text_metric_do_not_vanish(
        three: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scores = _lines(three)[1]["scores"]
    assert scores["allinf"] == [None] * 3
    assert (scores["mean_allinf"], scores["std_allinf"], scores["n_allinf"]) == (None, None, 0)
    assert scores["note"] == ["text"] * 3 and "mean_note" not in scores
    text, err = _results(capsys, three)
    assert "allinf" in text.splitlines()[0] and "(0/3)" in text
    assert "metric 'note' holds no numbers (text)" in err
    assert dagrun.results_table(three).attrs["notes"]


# --------------------------------------------------------------------------------------------
# 2. A failed experiment is never "best".

def test_2_ranking_considers_complete_experiments_only(three: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    text, err = _results(capsys, three, "--sort", "acc", "--desc", "--top", "2")
    assert _ids(text) == [3, 1]  # experiment 2 (best accuracy, one repetition crashed): out
    assert "1 experiment(s) not complete (1 failed) were not ranked" in err
    text, _ = _results(capsys, three, "--sort", "acc", "--desc")
    assert _ids(text) == [3, 1, 0, 2]  # listed, after the ranked ones
    text, _ = _results(capsys, three, "--sort", "acc", "--desc", "--include-incomplete",
                       "--top", "1")
    assert _ids(text) == [2]
    text, _ = _results(capsys, three, "--sort", "acc", "--desc", "--group-by", "model.name")
    assert _ids(text) == [3, 1]


def test_2_the_state_stays_attached_with_columns(three: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    text, _ = _results(capsys, three, "--columns", "acc", "--sort", "acc", "--desc")
    assert _cells(text.splitlines()[0]) == ["experiment_id", "acc ± std", "state"]
    assert text.splitlines()[-1].split()[-1] == "failed"
    df = dagrun.results_table(three, columns="acc")
    assert list(df.columns) == ["experiment_id", "mean_acc", "std_acc", "state"]


def test_2_the_reports_best_is_a_complete_experiment(three: Path) -> None:
    from dagrun.results.read import collect

    collected = collect(three)
    assert collected.best("acc") == [3]
    assert collected.best("acc", include_incomplete=True) == [2]
    assert collected.best("loss") == [1, 3]  # smaller is better; tied


# --------------------------------------------------------------------------------------------
# 3. A config key named like dagrun's own columns is never shadowed.

def test_3_a_config_key_n_keeps_its_name(three: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    df = dagrun.results_table(three)
    assert df["n"].tolist() == [10, 1000, 100, 10]
    assert df["dagrun.n"].tolist() == [3, 3, 2, 3]
    assert df.attrs["state"] == "state"
    assert dagrun.results_table(three, where=["n=1000"])["experiment_id"].tolist() == [1]
    assert dagrun.results_table(three, where=["dagrun.n<3"])["experiment_id"].tolist() == [2]
    text, _ = _results(capsys, three)
    header = _cells(text.splitlines()[0])
    assert header[-2:] == ["state", "dagrun.n"] and "n" in header
    _, err = _results(capsys, three, "--sort", "nope", rc=2)
    names = err.split("columns: ")[1].strip().split(", ")
    assert len(names) == len(set(names)) and "n" in names and "dagrun.n" in names


# --------------------------------------------------------------------------------------------
# 4. --group-by keeps the best row of each group.

def test_4_group_by_keeps_the_best_by_the_metrics_direction(
        three: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, err = _results(capsys, three, "--sort", "acc", "--group-by", "model.name")
    assert sorted(_ids(text)) == [1, 3]  # the largest accuracy of svc and rf, not the worst
    assert _ids(text) == [1, 3]  # listed ascending, as --sort asks
    assert "the largest mean_acc of each group (larger is better" in err
    text, err = _results(capsys, three, "--sort", "loss", "--desc", "--group-by", "dataset")
    assert sorted(_ids(text)) == [0, 1]  # --desc: the largest loss of iris is experiment 0
    assert "the largest mean_loss of each group (as --desc asked)" in err
    text, _ = _results(capsys, three, "--sort", "loss", "--group-by", "dataset")
    assert _ids(text) == [1, 3]  # smaller loss is better: iris -> 3
    text, _ = _results(capsys, three, "--sort", "acc", "--asc", "--group-by", "model.name")
    assert _ids(text) == [0, 3]  # --asc: the smallest is asked for
    best = dagrun.results_table(three, sort="acc", group_by="model.name")
    assert best["experiment_id"].tolist() == [1, 3]


# --------------------------------------------------------------------------------------------
# 5. The original's format for every number of repetitions, and old lines brought up to date.

def test_5_one_repetition_writes_lists_and_statistics(one: Path) -> None:
    scores = _lines(one)[0]["scores"]
    assert scores["acc"] == [0.5]
    assert (scores["mean_acc"], scores["std_acc"], scores["n_acc"]) == (0.5, 0.0, 1)
    assert len(scores["fit_time"]) == 1 and scores["n_fit_time"] == 1
    df = dagrun.read_results(one)
    assert df["scores.mean_acc"].tolist() == [0.5, 0.6, 0.7, 0.8, 0.9]


SMALL = """
def pre(cfg):
    return 0

def fit(cfg, x):
    return x

def post(cfg, x):
    open({calls!r}, "a").write("post\\n")
    return {{"acc": cfg["acc"], "loss": cfg["loss"]}}

basecfg = {{"out_path": {out!r}, "pre": pre, "fit": fit, "post": post, "verbose": False,
           "report": False, "repetitions": {reps}}}
cfgs = [{{"acc": 0.5, "loss": 1.0}}, {{"acc": 0.7, "loss": float("nan")}}]
"""


def _as_older_dagrun_wrote_it(out: Path) -> None:
    """results.jsonl and its record as dagrun wrote them before lines had a format: one
    repetition's values alone, no n_M, a mean of null where a value was NaN."""
    lines = []
    for row in read_jsonl(out / "results.jsonl"):
        scores = row["scores"]
        metrics = {k: v for k, v in scores.items() if isinstance(v, list)}
        if len(scores["fit_time"]) == 1:
            row["scores"] = {k: v[0] for k, v in metrics.items()}
        else:
            row["scores"] = dict(metrics)
            for k, v in metrics.items():
                row["scores"][f"mean_{k}"] = None if None in v else sum(v) / len(v)
                row["scores"][f"std_{k}"] = None if None in v else 0.0
        lines.append(json.dumps(row) + "\n")
    (out / "results.jsonl").write_text("".join(lines))
    (out / ".dagrun" / "results-columns.marshal").unlink(missing_ok=True)
    index = out / ".dagrun" / "results-index.json"
    record = json.loads(index.read_text())
    record.pop("format", None)
    st = os.stat(out / "results.jsonl")
    record.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    index.write_text(json.dumps(record))


@pytest.mark.parametrize("reps", [1, 2])
def test_5_one_execute_brings_an_old_results_file_up_to_date(tmp_path: Path,
                                                             reps: int) -> None:
    calls = tmp_path / "calls.txt"
    out = tmp_path / "OUT"
    wf = write_workflow(tmp_path, SMALL.format(out=str(out), calls=str(calls), reps=reps))
    assert run_dagrun("execute", wf, cwd=tmp_path).rc == 0
    _as_older_dagrun_wrote_it(out)
    assert "n_acc" not in read_jsonl(out / "results.jsonl")[0]["scores"]
    df = dagrun.results_table(out)  # old lines read right meanwhile
    acc, loss = ("acc", "loss") if reps == 1 else ("mean_acc", "mean_loss")
    assert df[acc].tolist() == [0.5, 0.7] and df.loc[0, loss] == 1.0
    assert df["n_loss"].tolist() == [reps, 0]
    assert dagrun.read_results(out)["scores.mean_acc"].tolist() == [0.5, 0.7]
    ran = calls.read_text()
    assert run_dagrun("execute", wf, cwd=tmp_path).rc == 0
    assert calls.read_text() == ran  # nothing ran again
    rows = read_jsonl(out / "results.jsonl")
    assert [r["scores"]["acc"] for r in rows] == [[0.5] * reps, [0.7] * reps]
    assert [r["scores"]["n_loss"] for r in rows] == [reps, 0]
    record = json.loads((out / ".dagrun" / "results-index.json").read_text())
    assert record["format"] == 2


# --------------------------------------------------------------------------------------------
# 9. Precision and spread.

def test_9_spread_to_two_digits_and_the_mean_to_the_same_place(
        three: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, _ = _results(capsys, three)
    rows = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert "0.9100 ± 0.0082" in rows["0"]
    assert "0.9591 ± 0 " in rows["3"] and "0.959064327485 ±" not in rows["3"]
    assert len({line.index("±") for line in rows.values()}) == 1  # aligned on the ±


def test_9_one_repetition_shows_no_spread(one: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    text, _ = _results(capsys, one, "--columns", "acc")
    assert "±" not in text and "0.5000" in text


def test_9_a_single_value_among_several_shows_no_spread() -> None:
    """An experiment with one repetition done (or one value that counts) beside others with
    three: its std of 0 is no spread."""
    from dagrun.results.formats import format_results
    from dagrun.results.table import Table

    table = Table({"experiment_id": [0, 1], "mean_acc": [0.5, 0.6], "std_acc": [0.0, 0.01],
                   "state": ["incomplete", "done"]}, ["acc"], False,
                  counts={"acc": [1, 3]}, done=[1, 3])
    lines = format_results(table, "table").splitlines()
    assert "±" not in lines[1] and "0.5000" in lines[1] and "0.600 ± 0.010" in lines[2]


def test_9_sem_and_ci95(three: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = list(csv.DictReader(io.StringIO(_results(capsys, three, "--spread", "sem",
                                                    "--format", "csv")[0])))
    assert "sem_acc" in rows[0] and "std_acc" not in rows[0]
    assert float(rows[1]["sem_acc"]) == pytest.approx(0.01 / math.sqrt(3))
    text, _ = _results(capsys, three, "--spread", "ci95", "--columns", "acc")
    assert "acc ± ci95" in text.splitlines()[0]
    row = next(line for line in text.splitlines() if line.split()[0] == "1")
    assert "0.940 ± 0.025" in row  # 4.303 * 0.01 / sqrt(3) = 0.0248
    df = dagrun.results_table(three, spread="ci95")
    assert df.loc[1, "ci95_acc"] == pytest.approx(4.302652729911275 * 0.01 / math.sqrt(3))


def test_9_the_t_quantile_without_scipy() -> None:
    from dagrun.results.table import t_quantile

    known = {1: 12.706204736174698, 2: 4.302652729911275, 4: 2.7764451051977987,
             9: 2.2621571627409915, 29: 2.045229642132703, 1000: 1.9623390808264078}
    for df, value in known.items():
        assert t_quantile(0.975, df) == pytest.approx(value, rel=1e-9)


def test_9_numbers_for_people() -> None:
    from dagrun.results.formats import mean_text, pair_text

    assert pair_text(0.959064327485, 0.0) == ("0.9591", "0")
    assert pair_text(0.959064327485, 1e-17) == ("0.9591", "0")
    assert pair_text(0.912345, 0.0023456) == ("0.9123", "0.0023")
    assert pair_text(0.5, 0.0996) == ("0.50", "0.10")
    assert pair_text(123456.7, 1234.0) == ("123500", "1200")
    assert pair_text(1.23e-20, 5e-22) == ("1.230e-20", "0.050e-20")
    assert mean_text(12345.6) == "12346" and mean_text(1.5e-7) == "1.500e-07"


# --------------------------------------------------------------------------------------------
# 11. Guessable inputs.

@pytest.mark.parametrize(("where", "ids"), [
    (["model.C==1"], [0, 2]),
    (["model.name = svc"], [0, 1]),
    (["state=FAILED"], [2]),
    (["dataset in iris,digits"], [0, 1, 3]),
    (["dataset in [\"iris\", \"wine\"]"], [0, 2, 3]),
    (["model.name='svc'"], [0, 1]),
    (["model.C>1"], [1, 3]),
    (["model.C >= 1", "model.C<=1"], [0, 2]),
    (["model.name!=svc"], [2, 3]),
    (["acc>0.93"], [1, 2, 3]),
    (["acc=0.99"], [2]),
    (["label < c"], [0]),
])
def test_11_where_takes_comparisons_and_guessable_spellings(
        three: Path, capsys: pytest.CaptureFixture[str], where: list[str],
        ids: list[int]) -> None:
    args = [a for w in where for a in ("--where", w)]
    text, err = _results(capsys, three, *args)
    assert _ids(text) == ids and "matches no experiment" not in err


def test_11_a_filter_matching_nothing_says_so_with_the_values_there(
        three: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, err = _results(capsys, three, "--where", "model.name=SVC")
    assert _ids(text) == []
    assert ("dagrun: note: --where 'model.name=SVC' matches no experiment; "
            'model.name has: "rf", "svc"\n') in err
    _, err = _results(capsys, three, "--where", "dataset=iris,digits")
    assert "'dataset in iris,digits'" in err
    with pytest.warns(UserWarning, match="matches no experiment"):
        assert dagrun.results_table(three, where="model.name=SVC").empty


@pytest.mark.parametrize(("where", "message"), [
    ("model.name", "--where takes KEY OP VALUE"),
    ("=svc", "--where takes KEY OP VALUE"),
    ("model.name='svc", "the quote is not closed"),
    ("model.C < [1]", "compares numbers or text"),
    ("nope=1", "no config key or column 'nope'"),
])
def test_11_a_malformed_filter_is_one_line_exit_2(three: Path, where: str, message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _, err = _results(capsys, three, "--where", where, rc=2)
    assert err.count("\n") == 1 and err.startswith("dagrun: error: ") and message in err


def test_11_out_after_columns_and_a_missing_out(three: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["results", "--columns", "acc", "dataset", str(three)]) == 0
    text = capsys.readouterr().out
    assert _cells(text.splitlines()[0]) == ["experiment_id", "acc ± std", "dataset", "state"]
    result = run_dagrun("results", tmp_path / "nonexistent")
    assert result.rc == 2 and result.error_lines == [
        f"dagrun: error: {tmp_path / 'nonexistent'} does not exist"]


def test_11_report_into_a_folder(three: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("plotly")
    folder = tmp_path / "reports"
    folder.mkdir()
    capsys.readouterr()
    assert main(["report", str(three), "-o", str(folder)]) == 0
    assert (folder / "report.html").is_file()
    assert main(["report", str(three), "-o", str(tmp_path / "no" / "such" / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and ".tmp" not in err


# --------------------------------------------------------------------------------------------
# 12. Formats for papers, and the Python views.

def test_12_latex_escapes_every_special_character() -> None:
    from dagrun.results.formats import format_results
    from dagrun.results.table import Table

    table = Table({"experiment_id": [0], "label": ['| < > " _ & % # $ ~ ^ \\ {}'],
                   "acc": [0.5], "state": ["done"]}, ["acc"], True)
    body = format_results(table, "latex").splitlines()[5]
    assert body.startswith(r"0 & \textbar{} \textless{} \textgreater{} \texttt{\char34} \_ "
                           r"\& \% \# \$ \textasciitilde{} \textasciicircum{} "
                           r"\textbackslash{} \{\} & $0.5000$ & done")


def test_12_bold_best_and_markdown_without_raw_html(three: Path,
                                                    capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    text, _ = _results(capsys, three, "--format", "latex", "--bold-best", "--columns", "acc",
                       "loss", "label")
    rows = {line.split(" & ")[0]: line for line in text.splitlines()[5:-2]}
    assert r"$\mathbf{0.9591 \pm 0}$" in rows["3"]  # not experiment 2: it failed
    assert r"\mathbf" not in rows["2"] and r"$0.9400 \pm 0.0082$ &" in rows["1"]
    assert r"$\mathbf{0.14 \pm 0.10}$" in rows["1"]  # the smallest loss, tied
    assert r"$0.2150 \pm 0.0050$ (2/3)" in rows["0"]
    text, _ = _results(capsys, three, "--format", "markdown", "--bold-best")
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "<b>" not in text
    assert "**0.9591 ± 0**" in text


def test_12_read_runs_is_one_row_per_repetition(three: Path) -> None:
    runs = dagrun.read_runs(three)
    assert runs.shape[0] == 12
    assert runs[["experiment_id", "run_id"]].values.tolist()[:4] == [[0, 0], [0, 1], [0, 2],
                                                                     [1, 0]]
    assert {"model.name", "model.C", "dataset", "n", "state", "acc", "loss", "note",
            "fit_time"} <= set(runs.columns)
    failed = runs[(runs["experiment_id"] == 2) & (runs["run_id"] == 1)].iloc[0]
    assert failed["state"] == "failed" and math.isnan(failed["acc"])
    assert runs["state"].tolist().count("done") == 11
    assert math.isnan(runs.loc[0, "loss"]) and runs.loc[1, "loss"] == 0.21
    assert math.isinf(runs.loc[0, "allinf"])  # as the run returned it (post.json)
    assert runs.loc[0, "note"] == "text"
    means = runs[runs["state"] == "done"].groupby("experiment_id")["acc"].mean()
    assert means.tolist() == pytest.approx(dagrun.results_table(three)["mean_acc"].tolist())


def test_12_read_results_and_results_table_agree_on_every_value(three: Path) -> None:
    table = dagrun.results_table(three).set_index("experiment_id")
    lines = dagrun.read_results(three).set_index("experiment_id")
    assert sorted(lines.index) == [0, 1, 3]  # complete experiments: results.jsonl's lines
    assert {"n_loss", "n_allinf"} <= set(table.columns)  # n_M where it says something
    compared = 0
    for exp_id in lines.index:
        for m in ("acc", "loss", "allinf", "fit_time"):
            for stat in ("mean", "std", "n"):
                if f"{stat}_{m}" not in table.columns:
                    continue
                a, b = table.loc[exp_id, f"{stat}_{m}"], lines.loc[exp_id, f"scores.{stat}_{m}"]
                assert (pd.isna(a) and pd.isna(b)) or a == b, (exp_id, m, stat)
                compared += 1
    assert compared == 3 * 10


def test_12_a_plain_string_is_one_item(three: Path) -> None:
    df = dagrun.results_table(three, where="model.name=svc", columns="acc")
    assert df["experiment_id"].tolist() == [0, 1]
    assert list(df.columns) == ["experiment_id", "mean_acc", "std_acc", "state"]


# --------------------------------------------------------------------------------------------
# 13. The terminal shows what is there.

def test_13_values_that_differ_print_differently(one: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    text, _ = _results(capsys, one, "--columns", "x")
    cells = [_cells(line)[1] for line in text.splitlines()[1:]]
    assert cells == ["0.1", "0.10000000000100001", '"0.1"', "inf", "nan"]


def test_13_newlines_escaped_wide_characters_aligned_long_values_cut(
        one: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dagrun.results.formats import CELL_WIDTH, display_width

    text, _ = _results(capsys, one)
    lines = text.splitlines()
    assert len(lines) == 6  # the newline did not break a row
    assert "line\\nbreak" in lines[2]
    assert "多言語テキスト" in lines[3]
    assert "y" * (CELL_WIDTH - 1) + "…" in lines[4] and "y" * CELL_WIDTH not in lines[4]
    starts = {display_width(line[:line.index("done")]) for line in lines[1:]}
    assert len(starts) == 1  # every row's state column starts at the same terminal column


def test_statistics_of_few_values_are_numpys_to_the_last_bit() -> None:
    """Fewer than 8 values are averaged without loading numpy: the same floats as numpy's
    mean and std (ddof=0), also for values of very different sizes, ints and overflow."""
    import random

    import numpy as np

    from dagrun.results.columns import stats

    rng = random.Random(7)
    cases: list[list[Any]] = [[1, 2], [-0.0, -0.0], [1e308, 1e308], [3, 1e-300, -7.5],
                              [0.1] * 7, [10**30, 1, 2.5]]
    for n in range(2, 10):
        cases += [[rng.uniform(-1, 1) * 10 ** rng.randint(-12, 12) for _ in range(n)]
                  for _ in range(300)]
    for values in cases:
        arr = np.asarray(values, dtype=float)
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std = float(np.mean(arr)), float(np.std(arr))
        want = (mean if math.isfinite(mean) else None, std if math.isfinite(std) else None,
                len(values))
        got = stats(values)
        assert got == want and repr(got) == repr(want), values
