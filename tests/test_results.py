"""``dagrun results`` / ``dagrun.results_table``, and the provenance an execute records.

One real sweep (2 repetitions) is executed once for the module: two models, a nested
learning rate, one experiment that fails, and one whose second repetition is then made
incomplete the way a running sweep looks (post marker gone, no results line, a half-written
last line in results.jsonl). Every output format is parsed back or checked line by line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dagrun import results_table
from dagrun.cli import main
from tests.helpers import run_dagrun, write_workflow

WORKFLOW = """
OUT = {out!r}


def pre(cfg):
    return cfg["run_id"]


def fit(cfg, rep):
    if cfg["model"] == "broken":
        raise ValueError("diverged at step 3")
    return rep


def post(cfg, rep):
    lr = cfg["opt"]["lr"]
    return {{"acc": 1 - lr + 0.01 * rep, "loss": lr * (1 + rep), "note": "not a number"}}


basecfg = {{"out_path": OUT, "pre": pre, "fit": fit, "post": post, "repetitions": {reps},
           "verbose": False, "report": False}}
cfgs = {cfgs!r}
"""

CFGS = [
    {"model": "small", "opt": {"lr": 0.1, "momentum": 0.9}, "label": "a|b & c_d $x$"},
    {"model": "small", "opt": {"lr": 0.01, "momentum": 0.9}, "label": "plain"},
    {"model": "big", "opt": {"lr": 0.1, "momentum": 0.9}, "label": "plain"},
    {"model": "big", "opt": {"lr": 0.001, "momentum": 0.9}, "label": "plain"},
    {"model": "broken", "opt": {"lr": 0.1, "momentum": 0.9}, "label": "plain"},
]
MEAN_LOSS = {0: 0.15, 1: 0.015, 2: 0.15, 3: 0.001}  # exp 3: only repetition 0 is done


def _execute(folder: Path, cfgs: list[dict[str, Any]], reps: int) -> Path:
    out = folder / "OUT dir"
    wf = write_workflow(folder, WORKFLOW.format(out=str(out), reps=reps, cfgs=cfgs))
    result = run_dagrun("execute", wf, cwd=folder, timeout=120)
    assert result.rc in (0, 1), result.stderr
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep, with experiment 3 made incomplete as if repetition 1 were still running."""
    out = _execute(tmp_path_factory.mktemp("results"), CFGS, reps=2)
    for name in ("post.done", "post.json"):
        (out / "3" / "1" / name).unlink()
    lines = (out / "results.jsonl").read_text().splitlines()
    kept = [ln for ln in lines if json.loads(ln)["experiment_id"] != 3]
    (out / "results.jsonl").write_text("\n".join(kept) + '\n{"experiment_id": 3, "sco')
    return out


def _cli(capsys: pytest.CaptureFixture[str], out: Path, *args: str) -> str:
    """``dagrun results OUT ARGS`` in this process (the engine runs in subprocesses)."""
    capsys.readouterr()
    assert main(["results", str(out), *args]) == 0
    return capsys.readouterr().out


def test_one_row_per_experiment_with_varied_keys_metrics_state_and_n(sweep: Path) -> None:
    df = results_table(sweep)
    assert list(df.columns) == [
        "experiment_id", "model", "opt.lr", "label", "mean_acc", "std_acc", "mean_loss",
        "std_loss", "mean_fit_time", "std_fit_time", "state", "n"]
    assert df["experiment_id"].tolist() == [0, 1, 2, 3, 4]
    assert df["state"].tolist() == ["done", "done", "done", "incomplete", "failed"]
    assert df["n"].tolist() == [2, 2, 2, 1, 0]
    for exp_id, loss in MEAN_LOSS.items():
        assert df.loc[exp_id, "mean_loss"] == pytest.approx(loss)
    # ddof=0 over the two repetitions (0.1 and 0.2), and one value: std 0
    assert df.loc[0, "std_loss"] == pytest.approx(0.05)
    assert df.loc[3, "std_loss"] == 0
    assert math.isnan(df.loc[4, "mean_acc"])


def test_the_disk_alone_gives_the_same_table(sweep: Path, tmp_path: Path) -> None:
    """Without results.jsonl (a sweep whose first experiment is still running) every
    experiment is read from its runs, with the same numbers."""
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    (copy / "results.jsonl").unlink()
    pd.testing.assert_frame_equal(results_table(copy), results_table(sweep))

def _counting_forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make ``inparts`` see 3 CPUs and count its forked steps (one item per start)."""
    from dagrun.results import inparts

    forked: list[int] = []
    started = inparts._start_steps

    def start(*args: Any) -> Any:
        forked.append(1)
        return started(*args)

    monkeypatch.setattr(inparts, "cpus", lambda: 3)
    monkeypatch.setattr(inparts, "_start_steps", start)
    return forked



def test_runs_read_in_parts_give_the_same_rows(sweep: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Experiments results.jsonl does not list are read from their runs in parts by several
    processes at once, the last part's child keeping the columns meanwhile: the same rows,
    runs and states as one process reads, and the columns kept when the read returns."""
    from dagrun.results import read

    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    (copy / "results.jsonl").unlink()
    kept = copy / ".dagrun" / "results-columns.marshal"
    kept.unlink(missing_ok=True)
    whole = read.collect(copy)
    assert kept.is_file() and len(whole.runs) == len(CFGS)
    kept.unlink()
    forked = _counting_forks(monkeypatch)
    monkeypatch.setattr(read, "SCAN_PART", 1)
    parts = read.collect(copy)
    assert len(forked) == 2 and kept.is_file()
    for field in ("ids", "states", "done", "config", "means", "stds", "counts", "others",
                  "runs", "varied", "constant", "metrics"):
        assert getattr(parts, field) == getattr(whole, field), field


def test_a_second_read_uses_the_kept_columns_and_gives_the_same_table(sweep: Path,
                                                                     tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    kept = copy / ".dagrun" / "results-columns.marshal"
    kept.unlink(missing_ok=True)
    first = results_table(copy)
    assert kept.is_file()
    pd.testing.assert_frame_equal(results_table(copy), first)


def test_the_command_needs_no_pandas_and_results_table_says_it_does(sweep: Path) -> None:
    code = ("import sys; sys.modules['pandas'] = None\n"  # as if pandas were not installed
            "from dagrun.cli import main\n"
            "rc = main(['results', sys.argv[1], '--format', 'csv'])\n"
            "import dagrun\n"
            "try:\n    dagrun.results_table(sys.argv[1])\n"
            "except ImportError as exc:\n    print('ERR', exc)\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(sweep)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("experiment_id,")
    assert [line.split(",")[0] for line in lines[1:6]] == ["0", "1", "2", "3", "4"]
    assert "ERR results_table needs pandas: pip install 'dagrun[pandas]'" in proc.stdout


def test_single_repetition_columns_are_the_metric_names(tmp_path: Path) -> None:
    out = _execute(tmp_path, CFGS[:2], reps=1)
    df = results_table(out)
    assert list(df.columns) == ["experiment_id", "opt.lr", "label", "acc", "loss", "fit_time",
                                "state", "n"]
    assert df["loss"].tolist() == pytest.approx([0.1, 0.01])
    assert results_table(out, sort="loss")["experiment_id"].tolist() == [1, 0]


def test_sort_by_bare_metric_rows_without_value_last(sweep: Path) -> None:
    """Complete experiments are ranked; the incomplete (3) and failed (4) follow them,
    unless include_incomplete ranks them too."""
    assert results_table(sweep, sort="loss")["experiment_id"].tolist() == [1, 0, 2, 3, 4]
    assert results_table(sweep, sort="loss", include_incomplete=True)[
        "experiment_id"].tolist() == [3, 1, 0, 2, 4]
    assert results_table(sweep, sort="mean_loss", desc=True)[
        "experiment_id"].tolist() == [0, 2, 1, 3, 4]
    assert results_table(sweep, sort="model", top=2)["model"].tolist() == ["big", "small"]
    assert results_table(sweep, sort="model", top=2, include_incomplete=True)[
        "model"].tolist() == ["big", "big"]


def test_metric_columns_are_floats_also_when_no_row_has_a_value(sweep: Path) -> None:
    failed = results_table(sweep, where=["state=failed"])
    assert failed["mean_acc"].dtype == "float64" and math.isnan(failed.loc[0, "mean_acc"])


def test_where_group_by_top_and_columns(sweep: Path) -> None:
    assert results_table(sweep, where=["model=small"])["experiment_id"].tolist() == [0, 1]
    assert results_table(sweep, where=["opt.lr=0.1", "state=done"])[
        "experiment_id"].tolist() == [0, 2]
    assert results_table(sweep, where={"opt.momentum": 0.9}).shape[0] == 5
    best = results_table(sweep, sort="acc", desc=True, group_by="model")
    assert best[["experiment_id", "model"]].values.tolist() == [[1, "small"], [2, "big"]]
    best = results_table(sweep, sort="acc", desc=True, group_by="model",
                         include_incomplete=True)
    assert best[["experiment_id", "model"]].values.tolist() == [
        [3, "big"], [1, "small"], [4, "broken"]]
    picked = results_table(sweep, columns=["model,opt.momentum", "acc"], top=1)
    assert list(picked.columns) == ["experiment_id", "model", "opt.momentum", "mean_acc",
                                    "std_acc", "state"]  # the state is always attached
    assert picked.shape == (1, 6)


def test_csv_and_json_parse_back_to_the_table(sweep: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    df = results_table(sweep)
    rows = list(csv.DictReader(io.StringIO(_cli(capsys, sweep, "--format", "csv"))))
    objects = json.loads(_cli(capsys, sweep, "--format", "json"))
    assert [list(r) for r in rows] == [list(df.columns)] * len(df)
    assert [list(o) for o in objects] == [list(df.columns)] * len(df)
    for i, (row, obj) in enumerate(zip(rows, objects, strict=True)):
        for col in df.columns:
            want = df.loc[i, col]
            if isinstance(want, float) and math.isnan(want):
                assert row[col] == "" and obj[col] is None
            elif isinstance(want, str):
                assert row[col] == want == obj[col]
            else:
                assert float(row[col]) == want == obj[col], (i, col)


def test_json_stays_strict_with_an_infinite_config_value() -> None:
    from dagrun.results.formats import format_results
    from dagrun.results.table import Table

    table = Table({"experiment_id": [0, 1], "clip": [math.inf, 1.0], "acc": [0.5, None],
                   "state": ["done", "failed"], "n": [1, 0]}, ["acc"], True)
    rows = json.loads(format_results(table, "json"))
    assert rows == [{"experiment_id": 0, "clip": None, "acc": 0.5, "state": "done", "n": 1},
                    {"experiment_id": 1, "clip": 1.0, "acc": None, "state": "failed", "n": 0}]
    assert format_results(table, "csv").splitlines()[1] == "0,inf,0.5,done,1"
    assert "inf" in format_results(table, "table").splitlines()[1]


@pytest.mark.parametrize("rows", [9, 0])
def test_the_terminal_table_made_in_parts_is_the_table_made_whole(
        monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    """A large table's rows are formatted by several processes at once, each part's cells
    measured before any line is made: the text is the same as one process makes, also
    where only one part has a wide character, a note, a spread, a long value or a number
    among texts (the widths, headers and alignment every part shares)."""
    from dagrun.results import formats
    from dagrun.results.table import Table

    every: dict[str, list[Any]] = {
        "experiment_id": list(range(9)),
        "model": ["a", "b", "c", "d", "多言語", "f", "g", "h", "i"],
        "label": ["x", "y", "z", "x", "y", "z", "x" * 50, 3, "z"],
        "mean_acc": [0.5, 0.25, None, 0.125, 0.5, 0.75, 1234.5, 0.5, 0.5],
        "std_acc": [None, None, None, 0.01, 0.0, 0.02, 0.5, None, 0.001],
        "mean_loss": [1.0] * 9, "std_loss": [None] * 8 + [0.25],
        "state": ["done"] * 8 + ["running"], "n": [1, 1, 0, 3, 3, 3, 3, 1, 2]}
    counts: dict[str, list[Any]] = {"acc": [1, 1, None, 3, 2, 3, 3, 1, 2],
                                    "loss": [1, 1, 0, 3, 3, 3, 3, 1, 2]}
    table = Table({name: column[:rows] for name, column in every.items()}, ["acc", "loss"],
                  False, counts={m: c[:rows] for m, c in counts.items()},
                  done=every["n"][:rows])
    whole = formats.format_results(table, "table")
    forked = _counting_forks(monkeypatch)
    monkeypatch.setattr(formats, "ROWS_PER_PART", 1)
    assert formats.format_results(table, "table") == whole
    assert len(forked) == (2 if rows else 0)
    if rows:
        lines = whole.splitlines()
        assert "(2/3)" in lines[5] and "多言語" in lines[5] and "…" in lines[7]
        assert "loss ± std" in lines[0]  # (the last part's spread: every part's header)


def _cells(line: str, sep: str) -> list[str]:
    """Cells of a table line, split on separators not escaped by a backslash."""
    return re.split(rf"(?<!\\){re.escape(sep)}", line)


def test_markdown_is_a_well_formed_table(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _cli(capsys, sweep, "--format", "markdown").splitlines()
    assert len(lines) == 2 + 5
    widths = {len(_cells(line, "|")) for line in lines}
    assert widths == {len(_cells(lines[0], "|"))}
    assert lines[0].split("|")[1:-1] == [f" {c} " for c in [
        "experiment\\_id", "model", "opt.lr", "label", "acc ± std", "loss ± std",
        "fit\\_time ± std", "state", "n"]]
    assert re.fullmatch(r"\|( ---:? \|)+", lines[1])
    assert "a\\|b &amp; c\\_d \\$x\\$" in lines[2] and "0.150 ± 0.050" in lines[2]


def test_latex_is_a_well_formed_tabular(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _cli(capsys, sweep, "--format", "latex").splitlines()
    spec = re.fullmatch(r"\\begin\{tabular\}\{([lr]+)\}", lines[1])
    assert spec is not None
    assert lines[2] == r"\toprule" and lines[4] == r"\midrule"
    assert lines[-2:] == [r"\bottomrule", r"\end{tabular}"]
    body = [lines[3], *lines[5:-2]]
    assert len(body) == 1 + 5
    for line in body:
        assert line.endswith(r" \\")
        assert len(_cells(line, "&")) == len(spec.group(1))
        assert len(_cells(line, "$")) % 2 == 1  # math mode opened and closed
    assert lines[3].startswith(r"experiment\_id & model & opt.lr & label & acc ($\pm$ std)")
    assert r"a\textbar{}b \& c\_d \$x\$" in lines[5] and r"$0.150 \pm 0.050$" in lines[5]


def test_terminal_table_lists_every_experiment(sweep: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    lines = _cli(capsys, sweep, "--sort", "loss").splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["experiment_id", "model", "opt.lr", "label",
                                             "acc ± std", "loss ± std", "fit_time ± std",
                                             "state", "n"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "0", "2", "3", "4"]
    assert lines[-1].split()[-2:] == ["failed", "0"]


@pytest.mark.parametrize(("args", "message"), [
    (["--sort", "nope"], "no column 'nope'"),
    (["--where", "model"], "--where takes KEY OP VALUE"),
    (["--where", "nope=1"], "no config key or column 'nope'"),
    (["--group-by", "model"], "--group-by needs --sort"),
])
def test_usage_errors_are_one_line_exit_2(sweep: Path, args: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", str(sweep), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dagrun: error: ") and message in err


def test_not_a_sweep_is_a_usage_error(tmp_path: Path) -> None:
    result = run_dagrun("results", tmp_path)
    assert result.rc == 2 and "is not a dagrun sweep" in result.stderr


# --------------------------------------------------------------------------------------------
# Provenance.

def _git(folder: Path, *args: str) -> str:
    cmd = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.org",
           *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def test_execute_records_git_commit_dirty_flag_host_and_command(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    notes = repo / "notes.txt"
    notes.write_text("v1\n")
    out = _execute(repo, CFGS[:1], reps=1)
    (repo / ".gitignore").write_text("OUT dir/\n__pycache__/\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "first")
    assert run_dagrun("execute", repo / "workflow.py", cwd=repo).rc == 0
    info = json.loads((out / ".dagrun" / "provenance.json").read_text())
    assert info["git"]["commit"] == _git(repo, "rev-parse", "HEAD")
    assert info["git"]["dirty"] is False
    assert "execute" in info["command"] and info["workflow"] == str(repo / "workflow.py")
    assert info["host"] and info["python"] and info["packages"]["dagrun"]
    notes.write_text("v2\n")  # a tracked file changes: the next execute says dirty
    assert run_dagrun("execute", repo / "workflow.py", cwd=repo).rc == 0
    info = json.loads((out / ".dagrun" / "provenance.json").read_text())
    assert info["git"]["dirty"] is True
    status = run_dagrun("status", out)
    assert f"git {info['git']['commit'][:10]}" in status.stdout and "dirty" in status.stdout


def test_report_setting_must_be_a_boolean(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, WORKFLOW.format(out=str(tmp_path / "o"), reps=1, cfgs=CFGS)
                        .replace('"report": False', '"report": "no"'))
    result = run_dagrun("execute", wf, cwd=tmp_path)
    assert result.rc == 2 and "basecfg['report'] must be True or False" in result.stderr
