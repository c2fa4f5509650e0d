"""results.jsonl's kept columns (``dagrun.results.columnscache``) and the plan's entry offsets.

A kept copy is only ever a shortcut: every test here compares what is read through it with a
fresh decode of the same bytes, after the ways results.jsonl changes under a reader (lines
appended by a running sweep, a half-written last line, a rewrite of the same size, a line
replaced, a damaged or unwritable cache, another plan). The plan tests check that configs
read at the index's offsets are the stored ones, and that a wrong or missing offset falls
back to decoding plan.json.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest

from dagrun.disk.layout import SweepDir
from dagrun.disk.planstore import read_configs, read_index, read_plan, write_plan
from dagrun.disk.runs import Experiment
from dagrun.results.columns import MISSING
from dagrun.results.columnscache import Listed, decode_lines, read_listed
from tests.helpers import run_dagrun, write_workflow

PLAN_KEY = "plan-a"


def _line(exp_id: int, reps: int = 1, **config: Any) -> str:
    """A results line as the reducer writes it (one or three repetitions)."""
    acc = 0.5 + exp_id / 100
    if reps == 1:
        scores: dict[str, Any] = {"acc": acc, "fit_time": 1.0}
    else:
        values = [acc - 0.01, acc, acc + 0.01]
        scores = {"acc": values, "mean_acc": acc, "std_acc": 0.008164965809277268,
                  "fit_time": [1.0, 1.0, 1.0], "mean_fit_time": 1.0, "std_fit_time": 0.0}
    cfg = config or {"lr": exp_id / 10, "opt": {"m": exp_id % 2}}
    return json.dumps({**cfg, "experiment_id": exp_id, "out_path": f"/o/{exp_id}",
                       "scores": scores}) + "\n"


def _sweep(tmp_path: Path, lines: list[str]) -> SweepDir:
    sweep = SweepDir.at(tmp_path / "out")
    os.makedirs(sweep.state, exist_ok=True)
    Path(sweep.results).write_text("".join(lines))
    return sweep


def _fresh(sweep: SweepDir, reps_of: dict[int, int]) -> Listed:
    """What a reader that keeps nothing gets."""
    return read_listed(sweep, None, reps_of)


def _same(a: Listed, b: Listed) -> None:
    assert a.ids == b.ids
    assert a.config == b.config  # MISSING compares by identity: a copy would fail here
    assert a.means == b.means and a.stds == b.stds


REPS = {i: 1 for i in range(10)}


def test_kept_columns_are_written_and_give_the_same_rows(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, [_line(i) for i in range(6)])
    first = read_listed(sweep, PLAN_KEY, REPS)
    assert os.path.isfile(sweep.results_cache)
    again = read_listed(sweep, PLAN_KEY, REPS)
    _same(again, first)
    _same(again, _fresh(sweep, REPS))
    assert again.ids == [0, 1, 2, 3, 4, 5] and again.config["opt.m"] == [0, 1, 0, 1, 0, 1]


def test_missing_keys_survive_the_kept_copy(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, [_line(0, lr=0.1), _line(1, wd=0.5), _line(2, lr=0.3)])
    read_listed(sweep, PLAN_KEY, REPS)
    kept = read_listed(sweep, PLAN_KEY, REPS)
    assert kept.config["lr"][1] is MISSING and kept.config["wd"][0] is MISSING
    _same(kept, _fresh(sweep, REPS))


def test_appended_lines_are_read_also_when_half_written_first(tmp_path: Path) -> None:
    whole = _line(3)  # being appended by a running sweep: the first reader sees half of it
    sweep = _sweep(tmp_path, [*(_line(i) for i in range(3)), whole[:25]])
    half = read_listed(sweep, PLAN_KEY, REPS)
    assert half.ids == [0, 1, 2]
    with open(sweep.results, "a") as f:
        f.write(whole[25:] + _line(4))
    done = read_listed(sweep, PLAN_KEY, REPS)
    assert done.ids == [0, 1, 2, 3, 4]
    _same(done, _fresh(sweep, REPS))
    _same(read_listed(sweep, PLAN_KEY, REPS), done)


def test_a_rewrite_of_the_same_size_is_seen(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, [_line(i) for i in range(4)])
    read_listed(sweep, PLAN_KEY, REPS)
    text = Path(sweep.results).read_text()
    changed = text.replace('"acc": 0.51', '"acc": 0.91')
    assert changed != text and len(changed) == len(text)
    Path(sweep.results).write_text(changed)
    assert read_listed(sweep, PLAN_KEY, REPS).means["acc"][1] == pytest.approx(0.91)


def test_an_appended_line_replacing_an_earlier_one_wins(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, [_line(i) for i in range(3)])
    read_listed(sweep, PLAN_KEY, REPS)
    with open(sweep.results, "a") as f:
        f.write(_line(1, lr=9.0))
    listed = read_listed(sweep, PLAN_KEY, REPS)
    assert listed.ids == [0, 1, 2] and listed.config["lr"][1] == 9.0
    _same(listed, _fresh(sweep, REPS))


def test_another_plan_reads_the_lines_anew(tmp_path: Path) -> None:
    """The plan decides how a line reads (its repetitions) and which ids count."""
    sweep = _sweep(tmp_path, [_line(i) for i in range(4)])
    read_listed(sweep, PLAN_KEY, REPS)
    fewer = {0: 1, 2: 1}
    listed = read_listed(sweep, "plan-b", fewer)
    assert listed.ids == [0, 2]
    _same(listed, _fresh(sweep, fewer))


def test_several_repetitions_read_their_mean_and_std(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, [_line(i, reps=3) for i in range(3)])
    reps = {i: 3 for i in range(3)}
    read_listed(sweep, PLAN_KEY, reps)
    kept = read_listed(sweep, PLAN_KEY, reps)
    assert kept.means["acc"] == pytest.approx([0.5, 0.51, 0.52])
    assert kept.stds["fit_time"] == [0.0, 0.0, 0.0]
    assert "mean_acc" not in kept.means
    _same(kept, _fresh(sweep, reps))


@pytest.mark.parametrize("damage", [b"", b"\x00garbage", b"\xe3\x01\x00\x00\x00"])
def test_a_damaged_cache_costs_a_decode_not_a_wrong_row(tmp_path: Path, damage: bytes) -> None:
    sweep = _sweep(tmp_path, [_line(i) for i in range(3)])
    read_listed(sweep, PLAN_KEY, REPS)
    Path(sweep.results_cache).write_bytes(damage)
    _same(read_listed(sweep, PLAN_KEY, REPS), _fresh(sweep, REPS))


def test_a_cache_that_cannot_be_written_is_done_without(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, [_line(i) for i in range(3)])
    os.makedirs(sweep.results_cache)  # writing it fails (as in a read-only OUT)
    _same(read_listed(sweep, PLAN_KEY, REPS), _fresh(sweep, REPS))
    assert os.path.isdir(sweep.results_cache)


def test_decode_skips_lines_without_scores_and_damaged_lines() -> None:
    data = (_line(0) + '{"experiment_id": 1}\n' + "not json\n" + _line(2)).encode()
    assert sorted(decode_lines(data)) == [0, 2]


WORKFLOW = """
def pre(cfg):
    return cfg["x"]


def fit(cfg, x):
    if cfg["x"] == 2 and not __import__("os").path.exists({flag!r}):
        open({flag!r}, "w").close()
        raise ValueError("once")
    return x * 2


def post(cfg, y):
    return {{"acc": y + 0.5, "note": "text"}}


basecfg = {{"out_path": {out!r}, "pre": pre, "fit": fit, "post": post, "verbose": False,
           "report": False, "repetitions": 2}}
cfgs = [{{"x": 1, "opt": {{"m": 0.9}}}}, {{"x": 2}}, {{"x": 3, "opt": {{"m": 0.5}}}}]
"""


def test_a_later_line_for_an_id_wins() -> None:
    data = (_line(0, lr=0.1) + _line(1, lr=0.2) + _line(0, lr=0.3)).encode()
    lines = decode_lines(data)
    assert list(lines) == [0, 1] and lines[0]["lr"] == 0.3 and lines[1]["lr"] == 0.2


def test_the_writer_keeps_the_columns_of_what_it_wrote(tmp_path: Path) -> None:
    """An execute (here without the report, which reads the sweep too) leaves the columns
    of the results.jsonl it rewrote, also after a retry that copied most lines."""
    out = tmp_path / "OUT"
    wf = write_workflow(tmp_path, WORKFLOW.format(out=str(out), flag=str(tmp_path / "flag")))
    sweep = SweepDir.at(out)
    reps = {0: 2, 1: 2, 2: 2}
    for rc, ids in ((1, [0, 2]), (0, [0, 1, 2])):
        assert run_dagrun("execute", wf, cwd=tmp_path).rc == rc
        index = read_index(sweep)
        assert index is not None and os.path.isfile(sweep.results_cache)
        kept = read_listed(sweep, index.digest, reps)
        assert kept.ids == ids
        os.remove(sweep.results_cache)
        _same(kept, read_listed(sweep, index.digest, reps))


# --------------------------------------------------------------------------------------------
# The plan's offsets.

def _plan(tmp_path: Path) -> SweepDir:
    sweep = SweepDir.at(tmp_path / "plan")
    os.makedirs(sweep.state)
    experiments = [Experiment(i, 1, {"lr": i / 3, "name": f"é{i}", "x": [float("nan"), i],
                                     "nested": {"id": i, "repetitions": 2}}, f"{i:032x}")
                   for i in range(50)]
    write_plan(sweep, experiments, {"backend": "single"})
    return sweep


def _as_json(configs: dict[int, Any]) -> dict[int, str]:
    return {i: json.dumps(c, allow_nan=True) for i, c in configs.items()}


def test_configs_at_offsets_are_the_stored_ones(tmp_path: Path) -> None:
    sweep = _plan(tmp_path)
    index = read_index(sweep)
    assert index is not None and index.offsets is not None
    wanted = [3, 17, 49, 0]
    plan = read_plan(sweep)
    assert _as_json(read_configs(sweep, index, wanted)) == \
        _as_json({i: plan[i].config for i in wanted})


@pytest.mark.parametrize("damage", ["shifted", "missing"])
def test_wrong_or_missing_offsets_fall_back_to_the_whole_plan(tmp_path: Path,
                                                              damage: str) -> None:
    sweep = _plan(tmp_path)
    data = json.loads(Path(sweep.plan_index).read_text())
    if damage == "shifted":
        data["offsets"] = [o + 1 for o in data["offsets"]]
    else:
        del data["offsets"]
    Path(sweep.plan_index).write_text(json.dumps(data))
    index = read_index(sweep)
    assert index is not None and (index.offsets is None) == (damage == "missing")
    plan = read_plan(sweep)
    assert _as_json(read_configs(sweep, index, [5, 6])) == \
        _as_json({i: plan[i].config for i in (5, 6)})


def test_a_writer_that_cannot_keep_the_columns_warns_and_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagrun.results import columnscache, reduce

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    sweep = _sweep(tmp_path, [])
    monkeypatch.setattr(columnscache, "keep", broken)
    with pytest.warns(UserWarning, match=r"were not kept \(RuntimeError: boom\)"):
        assert reduce.rewrite(sweep, [Experiment(0, 1, {"x": 1})], {0: {
            "x": 1, "experiment_id": 0, "out_path": sweep.experiment_path(0),
            "scores": {"acc": 1.0}}}) == 1
    assert json.loads(Path(sweep.results).read_text())["scores"] == {"acc": 1.0}


def test_aggregating_infinite_values_warns_nothing() -> None:
    """A metric that is inf in every repetition has an undefined std; it is written as null
    (strict JSON), without numpy's RuntimeWarning reaching the user's terminal."""
    import warnings

    from dagrun.disk.atomic import strict_json
    from dagrun.results.reduce import aggregate

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = aggregate([{"x": math.inf}, {"x": math.inf}])
    assert strict_json(scores) == {"x": [None, None], "mean_x": None, "std_x": None, "n_x": 0}


# --------------------------------------------------------------------------------------------
# A large file decoded in parts by several processes (dagrun.results.inparts).

def _in_parts(monkeypatch: pytest.MonkeyPatch, parts: int) -> None:
    """Every file counts as large: ``parts`` parts of whole lines, each in its own process."""
    from dagrun.results import columnscache, inparts

    monkeypatch.setattr(inparts, "cpus", lambda: parts)
    monkeypatch.setattr(columnscache, "PART_SIZE", 1)
    started = inparts._start_steps

    def start(*args: Any) -> Any:
        FORKED.append(1)
        return started(*args)
    monkeypatch.setattr(inparts, "_start_steps", start)


FORKED: list[int] = []


@pytest.mark.parametrize("shape", ["sorted", "not sorted", "a line repeated in another part",
                                   "columns only in a later part", "older lines among new"])
def test_decoding_in_parts_gives_the_whole_files_columns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    lines = [_line(i, 3) for i in range(40)]
    if shape == "not sorted":  # (a later part's ids before an earlier one's)
        lines = lines[20:] + lines[:7] + lines[13:20] + lines[7:13]
    elif shape == "a line repeated in another part":
        lines.append(_line(3, 3, lr=99.0, opt={"m": 5}))  # a later line for 3 wins
    elif shape == "columns only in a later part":
        lines += [_line(i, 3, lr=0.5, extra={"x": i}, opt=7) for i in range(40, 50)]
    elif shape == "older lines among new":
        lines += [_line(i) for i in range(40, 50)] + [_line(i, 3) for i in range(50, 60)]
    reps_of = {i: 1 if 40 <= i < 50 and shape == "older lines among new" else 3
               for i in range(60)}
    sweep = _sweep(tmp_path, lines)
    whole = _fresh(sweep, reps_of)
    _in_parts(monkeypatch, 4)
    FORKED.clear()
    parts = _fresh(sweep, reps_of)
    assert len(FORKED) == 4  # every part in a child
    _same(parts, whole)
    assert list(parts.config) == list(whole.config) and list(parts.means) == list(whole.means)
    assert parts.counts == whole.counts and parts.others == whole.others


def test_a_large_file_is_decoded_while_the_plan_is_read(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``collect`` reads the plan index after results.jsonl: the children decoding its parts
    start first, and are given the plan's repetitions when it is read. With columns kept
    for these bytes nothing is started; with columns kept for another plan the file is
    decoded once that is known."""
    from dagrun.results.columnscache import Reading

    reps_of = {i: 3 for i in range(40)}
    sweep = _sweep(tmp_path, [_line(i, 3) for i in range(40)])
    whole = _fresh(sweep, reps_of)
    _in_parts(monkeypatch, 4)
    for plan, forked_first, forked in [(PLAN_KEY, 4, 4), (PLAN_KEY, 0, 0), ("plan-b", 0, 4)]:
        FORKED.clear()
        with Reading(sweep) as reading:
            assert len(FORKED) == forked_first
            listed = reading.listed(plan, reps_of)
        assert len(FORKED) == forked
        _same(listed, whole)
        assert listed.counts == whole.counts


@pytest.mark.parametrize("when", ["before its measure", "after its measure"])
@pytest.mark.parametrize("first_here", [True, False])
def test_a_part_whose_process_fails_is_done_here(monkeypatch: pytest.MonkeyPatch,
                                                 when: str, first_here: bool) -> None:
    from dagrun.results import inparts

    monkeypatch.setattr(inparts, "cpus", lambda: 3)
    here = os.getpid()
    pids: set[int] = set()

    def first(part: bytes) -> tuple[list[int], int]:
        if os.getpid() != here and part.startswith(b"2") and when == "before its measure":
            os._exit(3)  # a child dies before it answers
        numbers = [int(line) for line in part.split()]
        return numbers, max(numbers)

    def then(numbers: list[int], top: int) -> list[int]:
        if os.getpid() != here and numbers[0] >= 20 and when == "after its measure":
            os._exit(3)
        return [os.getpid(), *(top - n for n in numbers)]

    data = b"".join(b"%d\n" % i for i in range(30))
    parts = [data[a:b] for a, b in inparts.spans(data, inparts.count(len(data), 1))]
    assert len(parts) == 3 and parts[2].startswith(b"2") and b"".join(parts) == data
    with inparts.Steps(parts, first, then, lambda r: json.dumps(r).encode(), json.loads,
                       here=first_here) as steps:
        results = steps.results(max(steps.measures()))
    pids = {r[0] for r in results}
    assert [i for r in results for i in r[1:]] == [29 - i for i in range(30)]
    assert results[2][0] == here  # (the part whose child failed)
    assert (results[0][0] == here) == first_here and len(pids) == (2 if first_here else 3)


def test_parts_start_before_what_their_second_step_needs_is_known(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoding of results.jsonl starts before the plan it needs is read: the children
    go on while this process works; what the meeting gives may be larger than a pipe
    holds."""
    from dagrun.results import inparts

    monkeypatch.setattr(inparts, "cpus", lambda: 2)
    pids: list[int] = []

    def first(part: bytes) -> tuple[bytes, None]:
        return part, None

    def then(part: bytes, scales: dict[int, int]) -> list[int]:
        return [os.getpid(), *(int(line) * scales[int(line)] for line in part.split())]

    parts = [b"1\n2\n", b"3\n4\n"]
    with inparts.Steps(parts, first, then, lambda r: json.dumps(r).encode(),
                       json.loads) as steps:
        time.sleep(0.1)  # (what the caller does meanwhile)
        results = steps.results({i: 10 for i in range(200_000)})  # (1.4 MB)
    pids = [r[0] for r in results]
    assert [r[1:] for r in results] == [[10, 20], [30, 40]]
    assert pids[0] == os.getpid() != pids[1]


def test_parts_are_not_forked_beside_other_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from dagrun.results import inparts

    monkeypatch.setattr(inparts, "cpus", lambda: 4)
    pids: list[int] = []

    def first(part: bytes) -> tuple[bytes, None]:
        pids.append(os.getpid())
        return part, None

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, args=(30,))
    other.start()
    try:
        results = inparts.map_steps([b"1\n", b"2\n", b"3\n", b"4\n"], first, len,
                                    lambda part, _: 1, lambda r: b"1", lambda b: 1)
    finally:
        stop.set()
        other.join(timeout=30)
    assert results == [1] * 4 and pids == [os.getpid()] * 4
