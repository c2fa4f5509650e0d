"""Each stage call gets its own copy of its run's cfg (CONTRACT.md sections 1 and 4).

Whatever a stage does to the dict it receives (edit a nested dict, pop a key) must reach
neither a later stage of the same run nor another run executed by the same process, and a
resumed run must give what an uninterrupted one gives. Each test runs ``run_experiments``
in a script of its own (a real Python process, like a user's), with a bounded timeout.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Result, child_env, read_jsonl

pytestmark = pytest.mark.timeout(120)

# pre and fit edit their cfg in place (as real scripts do); every stage reports what it saw.
# FAIL_FLAG: when set and the file does not exist yet, fit creates it and raises (once).
EDITING_SCRIPT = '''
import os
import threading

import dagrun

FAIL_FLAG = {fail_flag!r}
LOCK = threading.Lock()


def pre(cfg):
    cfg["model_params"]["n"] += 1
    cfg.pop("label")
    with open(os.path.join(cfg["out_path"], "pre-calls"), "a") as f:
        f.write("1\\n")
    return {{"seen_n": cfg["model_params"]["n"]}}


def fit(cfg, pre_out):
    if FAIL_FLAG and not os.path.exists(FAIL_FLAG):
        open(FAIL_FLAG, "w").close()
        raise RuntimeError("fit fails once")
    n = cfg["model_params"]["n"]
    cfg["model_params"]["n"] = 100
    cfg["label"] += "-edited by fit"
    return {{"n": n, "pre_saw": pre_out["seen_n"]}}


def post(cfg, fit_out):
    if {with_lock!r}:
        assert cfg["lock"] is LOCK, "an uncopyable value is passed as is"
        with cfg["lock"]:
            pass
    return {{"n": fit_out["n"], "pre_saw": fit_out["pre_saw"],
             "post_n": cfg["model_params"]["n"], "label": cfg["label"]}}


cfgs = [{{"model_params": {{"n": 1}}, "label": "a"}},
        {{"model_params": {{"n": 10}}, "label": "b"}}]
if {with_lock!r}:
    for cfg in cfgs:
        cfg["lock"] = LOCK
basecfg = {{"out_path": {out!r}, "pre": pre, "fit": fit, "post": post,
            "repetitions": 3, "verbose": False, **{settings!r}}}

if __name__ == "__main__":
    summary = dagrun.run_experiments(basecfg, cfgs)
    raise SystemExit(1 if summary.failed else 0)
'''

# Every run must score this, whatever ran before it in the same process.
EXPECTED = [
    {"n": [1, 1, 1], "pre_saw": [2, 2, 2], "post_n": [1, 1, 1], "label": ["a", "a", "a"]},
    {"n": [10, 10, 10], "pre_saw": [11, 11, 11], "post_n": [10, 10, 10],
     "label": ["b", "b", "b"]},
]


def run_script(folder: Path, out: Path, *, settings: dict[str, Any] | None = None,
               fail_flag: Path | None = None, with_lock: bool = False) -> Result:
    """Write the editing script into ``folder`` and run it to completion."""
    script = folder / "sweep.py"
    script.write_text(textwrap.dedent(EDITING_SCRIPT.format(
        out=str(out), settings=settings or {}, with_lock=with_lock,
        fail_flag=str(fail_flag) if fail_flag else "")).lstrip(), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], cwd=folder, env=child_env(),
                          capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def scores(out: Path) -> list[dict[str, Any]]:
    """Each experiment's per-repetition metrics from results.jsonl (fit_time left out)."""
    rows = read_jsonl(out / "results.jsonl")
    assert [row["experiment_id"] for row in rows] == [0, 1]
    return [{k: row["scores"][k] for k in ("n", "pre_saw", "post_n", "label")}
            for row in rows]


def pre_calls(out: Path) -> int:
    """How many times pre ran, over all runs of the sweep."""
    return sum(len(p.read_text().splitlines()) for p in out.rglob("pre-calls"))


@pytest.mark.parametrize("settings", [
    pytest.param({"backend": "single"}, id="single"),
    pytest.param({"backend": "single", "timeout": 60}, id="single-child"),
    pytest.param({"backend": "multiprocessing", "num_cpus": 2}, id="multiprocessing"),
])
def test_stage_edits_reach_no_other_stage_or_run(tmp_path: Path,
                                                 settings: dict[str, Any]) -> None:
    out = tmp_path / "out"
    rc, _out, err = run_script(tmp_path, out, settings=settings)
    assert rc == 0, err
    assert scores(out) == EXPECTED
    assert "cannot be copied" not in err


def test_resumed_run_scores_like_an_uninterrupted_one(tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    rc, _out, err = run_script(tmp_path, straight)
    assert rc == 0, err

    resumed, flag = tmp_path / "resumed", tmp_path / "fail-once"
    rc, _out, err = run_script(tmp_path, resumed, fail_flag=flag)
    assert rc == 1, err
    errors = list(resumed.rglob("fit.error"))
    assert len(errors) == 1 and "fit fails once" in errors[0].read_text(), err
    rc, _out, err = run_script(tmp_path, resumed, fail_flag=flag)
    assert rc == 0, err
    assert pre_calls(resumed) == 6, "the failed run resumed at fit, without rerunning pre"
    assert scores(resumed) == scores(straight) == EXPECTED


def test_uncopyable_value_is_shared_with_one_warning(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, _out, err = run_script(tmp_path, out, with_lock=True)
    assert rc == 0, err
    warned = [line for line in err.splitlines() if "cannot be copied" in line]
    assert len(warned) == 1, err
    assert "cfg key 'lock'" in warned[0] and "not isolated" in warned[0]
    assert scores(out) == EXPECTED, "the keys that can be copied still are"
