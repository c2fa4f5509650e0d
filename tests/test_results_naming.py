"""Results that say what was measured (issue: isolated runs, item 4).

Metric names that collide with the statistics dagrun computes fail the run; ``scores`` is a
reserved cfg key; ``Decimal``/``Fraction`` metrics are numbers; cfg keys that JSON would
merge are refused; a stage's own warnings keep Python's format while dagrun's stay one line;
on ``single`` output written to file descriptors 1 and 2 directly reaches the stage log and
the terminal. Each test runs a real ``dagrun`` process with a bounded timeout.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import read_jsonl, run_dagrun, write_workflow

pytestmark = pytest.mark.timeout(240)


def _workflow(tmp_path: Path, post_body: str, cfgs: str = '[{"x": 0}]',
              basecfg: str = '{"out_path": "out"}') -> Path:
    return write_workflow(tmp_path, f"""
        from decimal import Decimal
        from fractions import Fraction

        def pre(cfg):
            return cfg.get("x", 0)

        def fit(cfg, v):
            return v

        def post(cfg, v):
            {post_body}

        basecfg = {basecfg}
        cfgs = {cfgs}
        """, name="wf.py")


@pytest.mark.parametrize("returned", ["mean_loss", "std_loss", "n_loss"])
def test_metric_named_like_a_statistic_of_another_fails_the_run(tmp_path: Path,
                                                                 returned: str) -> None:
    wf = _workflow(tmp_path, f'return {{"loss": 1.5, "{returned}": 10.0}} if v == 0 '
                             'else {"mean_iou": 0.5}',
                   cfgs='[{"x": 0}, {"x": 1}]',
                   basecfg='{"out_path": "out", "repetitions": 2}')
    result = run_dagrun("execute", wf, "-q", cwd=tmp_path)
    assert result.rc == 1, result.stderr
    error = json.loads((tmp_path / "out" / "0" / "0" / "post.error").read_text())
    assert error["kind"] == "bad_output"
    assert f"post returned both 'loss' and {returned!r}" in error["message"]
    (line,) = read_jsonl(tmp_path / "out" / "results.jsonl")  # a lone mean_iou is a metric
    assert line["scores"]["mean_iou"] == [0.5, 0.5]
    assert line["scores"]["mean_mean_iou"] == 0.5


def test_statistic_names_fail_also_with_one_repetition(tmp_path: Path) -> None:
    """results.jsonl has mean_M/std_M/n_M for one repetition too (the original's format)."""
    wf = _workflow(tmp_path, 'return {"loss": 1.5, "mean_loss": 10.0}')
    assert run_dagrun("execute", wf, "-q", cwd=tmp_path).rc == 1
    error = json.loads((tmp_path / "out" / "0" / "post.error").read_text())
    assert error["kind"] == "bad_output" and "'loss' and 'mean_loss'" in error["message"]


def test_decimal_and_fraction_metrics_are_numbers(tmp_path: Path) -> None:
    wf = _workflow(tmp_path, 'return {"d": Decimal("1.5"), "f": Fraction(1, 4)}',
                   basecfg='{"out_path": "out", "repetitions": 2}')
    result = run_dagrun("execute", wf, "-q", cwd=tmp_path)
    assert result.rc == 0, result.stderr
    scores = read_jsonl(tmp_path / "out" / "results.jsonl")[0]["scores"]
    assert (scores["d"], scores["mean_d"], scores["std_d"]) == ([1.5, 1.5], 1.5, 0.0)
    assert (scores["f"], scores["mean_f"]) == ([0.25, 0.25], 0.25)


@pytest.mark.parametrize(("cfgs", "message"), [
    ('[{"x": 0}, {"x": 1, "scores": 3}]',
     "dagrun: error: cfgs[1] sets reserved key 'scores', where results.jsonl puts the "
     "metrics; rename it"),
    ('[{"x": 0, 1: "a", "1": "b"}]',
     "dagrun: error: cfgs[0] has keys 1 and '1', which config.json writes as the same "
     "string; keep one"),
    ('[{"x": 0, "weights": [{0: 1.0, "0": 2.0}]}]',
     "dagrun: error: cfgs[0]['weights'][0] has keys 0 and '0', which config.json writes as "
     "the same string; keep one"),
])
def test_cfg_keys_results_could_not_tell_apart_are_refused(tmp_path: Path, cfgs: str,
                                                           message: str) -> None:
    wf = _workflow(tmp_path, 'return {"v": v}', cfgs=cfgs)
    result = run_dagrun("execute", wf, cwd=tmp_path)
    assert result.rc == 2
    assert result.error_lines == [message]
    assert not (tmp_path / "out").exists()


def test_int_keys_alone_stay_fine(tmp_path: Path) -> None:
    wf = _workflow(tmp_path, 'return {"w": cfg["class_weight"][1]}',
                   cfgs='[{"x": 0, "class_weight": {0: 1, 1: 5}}]')
    result = run_dagrun("execute", wf, "-q", cwd=tmp_path)
    assert result.rc == 0, result.stderr
    config = json.loads((tmp_path / "out" / "0" / "config.json").read_text())
    assert config["class_weight"] == {"0": 1, "1": 5}
    assert read_jsonl(tmp_path / "out" / "results.jsonl")[0]["scores"]["w"] == [5]


def test_a_stages_warning_keeps_its_category_and_location(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, """
        import warnings

        def pre(cfg):
            warnings.warn("watch out", RuntimeWarning)
            return 1

        def fit(cfg, v):
            return v

        def post(cfg, v):
            return {"v": v}

        basecfg = {"out_path": "out", "backend": "no-such-backend"}
        cfgs = [{"x": 0}]
        """, name="wf.py")
    result = run_dagrun("execute", wf, "-q", cwd=tmp_path)
    assert result.rc == 0, result.stderr
    log = (tmp_path / "out" / "0" / "pre.log").read_text()
    assert "wf.py:4: RuntimeWarning: watch out" in log
    assert "dagrun: warning: watch out" not in result.stderr + log
    assert result.error_lines[0].startswith(  # dagrun's own warnings stay one line
        "dagrun: warning: unknown backend 'no-such-backend'; valid backends are ")


def test_output_written_to_file_descriptors_reaches_the_log_on_single(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, """
        import os
        import subprocess
        import sys

        def pre(cfg):
            x = cfg["x"]
            print(f"print {x}")
            os.write(1, f"fd1 {x}\\n".encode())
            os.write(2, f"fd2 {x}\\n".encode())
            sys.stdout.buffer.write(f"buffer {x}\\n".encode())
            sys.stdout.flush()
            subprocess.run(["echo", f"child {x}"], check=True)
            return x

        def fit(cfg, v):
            return v

        def post(cfg, v):
            return {"v": v}

        basecfg = {"out_path": "out", "backend": "single"}
        cfgs = [{"x": 0}, {"x": 1}, {"x": 2}]
        """, name="wf.py")
    result = run_dagrun("execute", wf, "-q", cwd=tmp_path)
    assert result.rc == 0, result.stderr
    for x in range(3):
        lines = (tmp_path / "out" / str(x) / "pre.log").read_text().splitlines()
        assert sorted(lines) == sorted(f"{what} {x}" for what in
                                       ("print", "fd1", "fd2", "buffer", "child"))
        for what in ("print", "fd1", "buffer", "child"):  # the terminal still shows them
            assert f"{what} {x}" in result.stdout.splitlines()
        assert f"fd2 {x}" in result.stderr.splitlines()
        assert not (tmp_path / "out" / str(x) / "fit.log").exists()  # silent: no log
