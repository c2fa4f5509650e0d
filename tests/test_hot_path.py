"""What the per-run hot path builds by its own faster means is what the general tools build.

``config.json`` (indented), markers, ``post.json`` and results lines (compact) are made by
encoders made once, not by ``json.dumps`` per call; atomic stage outputs are pickled
without a ``Pickler``; the watchdog learns each stage's record once and a run's
announcement is short; a note is written without importing tqdm. Each must be byte for
byte (or, for the watchdog, value for value) what the slower way makes.
"""

from __future__ import annotations

import enum
import json
import math
import os
import random
import re
from typing import Any

import pytest

from dagrun.disk import jsontext
from dagrun.disk.layout import STAGES, RunDir, Stage, SweepDir
from dagrun.disk.records import Marker
from dagrun.disk.runs import Experiment
from dagrun.record import replace
from dagrun.results import reduce
from dagrun.results.columns import stats
from dagrun.run import failures, pending, proctree
from dagrun.run.stages import RunTask


class _Str(str):
    pass


class _Int(int):
    pass


class _Level(enum.IntEnum):
    LOW = 1


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    leaves = [None, True, False, 0, -7, 10**30, 0.5, -0.0, 1e300, 1e-300, math.nan, math.inf,
              -math.inf, "", "plain", "é ü \u2603 \U0001f600", 'quote " back \\ nl \n tab \t',
              "\x00\x1f"]
    if depth > 3 or rng.random() < 0.4:
        return rng.choice(leaves)
    if rng.random() < 0.5:
        return {rng.choice(["a", "b", "", "é", "k\n"]) + str(i): _random_value(rng, depth + 1)
                for i in range(rng.randrange(0, 4))}
    items = [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return tuple(items) if rng.random() < 0.3 else items


@pytest.mark.parametrize("indent", [2, 4, 0])
def test_indented_text_is_json_dumps_for_random_values(indent: int) -> None:
    rng = random.Random(indent)
    for _ in range(500):
        value = _random_value(rng)
        assert jsontext.dumps(value, indent) == json.dumps(value, indent=indent)


@pytest.mark.parametrize("value", [
    {1: "int key"}, {True: 1, None: 2}, [{"a": {2.5: 1}}],  # keys json converts
    {"a": _Str("sub")}, [_Int(3)], {_Str("k"): 1}, [_Level.LOW],  # subclasses
    {}, [], (), {"e": {}, "l": []},
])
def test_indented_text_hands_other_values_to_json(value: Any) -> None:
    assert jsontext.dumps(value) == json.dumps(value, indent=2)


def test_indented_text_refuses_a_cycle_as_json_does() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError, match="Circular"):
        jsontext.dumps(cyclic)
    with pytest.raises(TypeError):
        jsontext.dumps({"f": object()})


def test_compact_text_is_json_dumps() -> None:
    rng = random.Random(7)
    for _ in range(500):
        value = {"v": _random_value(rng)}
        assert jsontext.compact(value) == json.dumps(value)
        strict = json.loads(json.dumps(value).replace("NaN", "null").replace(
            "-Infinity", "null").replace("Infinity", "null"))
        assert jsontext.compact_strict(strict) == json.dumps(strict, allow_nan=False)
    with pytest.raises(ValueError):
        jsontext.compact_strict({"x": math.nan})
    assert jsontext.compact([1, "a"]) == json.dumps([1, "a"])


def test_marker_bytes_are_those_of_the_marker_object(tmp_path: Any) -> None:
    run = RunDir(str(tmp_path))
    started, finished = 1_700_000_000.1234, 1_700_000_001.9876
    for code, config, token, origin in [(None, None, None, None),
                                        ("c0de", "d1g", 3, "0r1g\u00e9")]:
        Marker.now(Stage.FIT, started, finished, 2, code, config, token, origin).write(run)
        expected = (tmp_path / "fit.done").read_bytes()
        assert Marker.content_now(Stage.FIT, started, finished, 2, code, config, token,
                                  origin) == expected


def test_marker_text_is_json_dumps_of_its_fields() -> None:
    """The marker's format string against ``json.dumps`` of the marker's dict, over
    random fields: text that JSON escapes (quotes, control and non-ASCII characters),
    ``None``s, big tokens, stamps across seconds and zones' edges, and fields of other
    types (a ``str`` or ``int`` subclass: the general encoder writes those)."""
    rng = random.Random(11)
    alphabet = ["a", "0", '"', "\\", "\n", "\t", "\x00", "\u00e9", "\u2028", "\U0001f600", "/"]

    def text() -> str | None:
        if rng.random() < 0.2:
            return None
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))

    for _ in range(2000):
        started = rng.choice([0.0, 0.9999999, 1.0, 1e9, 1_700_000_000.0]) + rng.random() * 5
        finished = started + rng.choice([0.0, 1e-7, 0.0005, 0.9995, 3.25, 86400.5])
        stage = rng.choice(list(Stage))
        attempt = rng.choice([1, 2, 99, _Int(3)])
        token = rng.choice([None, 0, 7, 2**70, _Int(4)])
        code, config = text(), rng.choice([text(), _Str("d1g")])
        origin = text()
        expected = (json.dumps(dict(vars(Marker.now(stage, started, finished, attempt, code,
                                                     config, token, origin)))) + "\n")
        assert Marker.content_now(stage, started, finished, attempt, code, config, token,
                                  origin) == expected.encode()
    whole = Marker.now(Stage.PRE, 1_700_000_000, 1_700_000_002, 1, None, None, 0, None)
    assert Marker.content_now(Stage.PRE, 1_700_000_000, 1_700_000_002, 1, None, None, 0,
                              None) == (json.dumps(dict(vars(whole))) + "\n").encode()


def _announcer(sent: list[bytes]) -> pending._ToWatchdog:
    announce = pending._ToWatchdog.__new__(pending._ToWatchdog)
    announce._sent, announce._uncleared, announce.pid = set(), False, -1
    announce.pipe = type("P", (), {"send": staticmethod(sent.append)})()
    return announce


def test_the_watchdog_rebuilds_the_records_the_driver_announced(tmp_path: Any) -> None:
    """What the watchdog would commit, from the driver's ``T`` and ``P`` lines, is per
    stage the marker, the record's path and the record ``failures.ended_driver`` makes
    (with the announcement's time), for paths with characters JSON escapes too."""
    assert tuple(stage.value for stage in STAGES) == proctree.STAGE_NAMES
    sent: list[bytes] = []
    announce = _announcer(sent)
    path = os.path.join(str(tmp_path), 'run "é"\\x')
    for folder in (None, ".attempt-4-host"):
        for attempt in (1, 3, 1):
            sent.clear()
            announce.begin(RunTask(7, 1, path, attempt, folder))
            (data,) = sent
            rest, found = proctree._lines(data, None)
            assert rest == b"" and found is not None
            run = RunDir(path)
            assert found["folder"] == (None if folder is None else run.entry(folder))
            records = proctree._records(found)
            assert records is not None
            for (marker, error, record), stage in zip(records, STAGES, strict=True):
                assert (marker, error) == (run.marker(stage), run.error(stage))
                stamp = json.loads(record)["time"]
                want = failures.ended_driver(stage, attempt)
                assert json.loads(record) == {**json.loads(want.content()), "time": stamp}
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}", stamp)
    assert data.count(proctree.TEMPLATE) == 0  # the halves of attempt 1: sent once


def test_a_settled_run_is_cleared_by_the_next_announcement(tmp_path: Any) -> None:
    sent: list[bytes] = []
    announce = _announcer(sent)
    announce.begin(RunTask(1, 0, str(tmp_path), 1))
    announce.end(settled=True)
    assert proctree._lines(b"".join(sent), None)[1] is not None  # still pending: harmless
    announce.begin(RunTask(2, 0, str(tmp_path), 1))
    announce.end()
    assert proctree._lines(b"".join(sent), None)[1] is None
    announce.begin(RunTask(3, 0, str(tmp_path), 1))
    announce.end(settled=True)
    announce.watchdog = None  # close: no watchdog to keep; the deferred clear is sent
    announce.close()
    assert sent[-1] == proctree.CLEAR + b"\n"


@pytest.mark.parametrize("value", [None, True, False, 0, -5, 2**70, 1.5, math.nan, "", "é",
                                   b"", b"\x00bytes"])
def test_atomic_outputs_pickle_as_the_pickler_writes_them(value: Any) -> None:
    import io

    from dagrun.code import mainref

    with io.BytesIO() as f:
        mainref.Pickler(f, protocol=5).dump(value)
        assert mainref.dumps(value) == f.getvalue()


def test_the_watchdog_keeps_only_the_last_line_of_a_chunk() -> None:
    one = proctree.PENDING + b'{"folder": null, "records": [1]}'
    two = proctree.PENDING + b'{"folder": null, "records": [2]}'
    clear = proctree.CLEAR
    assert proctree._lines(one + b"\n" + clear + b"\n" + two + b"\n", None) == (
        b"", {"folder": None, "records": [2]})
    assert proctree._lines(one + b"\n" + clear + b"\n", None) == (b"", None)
    rest, pending = proctree._lines(one + b"\n" + two[:9], None)  # the driver died writing
    assert (rest, pending) == (two[:9], {"folder": None, "records": [1]})
    assert proctree._lines(b"", {"kept": 1}) == (b"", {"kept": 1})
    assert proctree._lines(b"P{not json\n", {"kept": 1}) == (b"", None)


def test_a_note_reaches_stderr_with_or_without_a_bar(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    """``progress.note`` (the process backend's notes, written before any bar exists)
    prints its line on stderr, through tqdm once tqdm is loaded."""
    import sys

    from dagrun.progress import note

    note("dagrun: note: first")
    import tqdm  # noqa: F401  (loaded: the line goes through tqdm.write)

    assert "tqdm" in sys.modules
    note("dagrun: note: second")
    err = capsys.readouterr().err
    assert err.splitlines() == ["dagrun: note: first", "dagrun: note: second"]


def test_the_watchdog_process_imports_only_what_its_own_path_needs() -> None:
    """The watchdog is a fresh interpreter a short sweep waits for: json, subprocess,
    threading, typing and contextlib stay out of its start (json comes when a line needs
    it; the rest is the driver's side of ``proctree``)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-X", "importtime", "-I", "-S", proctree.__file__,
                           "", "prefix", str(os.getpid())],
                          input=b"", capture_output=True, timeout=60, check=True)
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "select" in imported  # (the listing is read right)
    assert imported.isdisjoint({"json", "subprocess", "threading", "typing", "contextlib"})


def _reference_aggregate(per_rep: list[dict[str, Any]]) -> dict[str, Any]:
    """``aggregate`` as written before its one-repetition path: the general definition."""
    names: dict[str, None] = {}
    for scores in per_rep:
        names.update(dict.fromkeys(scores))
    out: dict[str, Any] = {name: [scores.get(name) for scores in per_rep] for name in names}
    for name in names:
        found = stats(out[name])
        if found is not None:
            for key, value in zip((f"mean_{name}", f"std_{name}", f"n_{name}"), found,
                                  strict=True):
                if key not in names:
                    out[key] = value
    return out


def test_aggregate_is_the_general_definition_for_any_repetitions() -> None:
    """The one-repetition path (and the unrolled statistics) against the general loop,
    over random metrics: finite and non-finite floats, ints past a float's range, bools,
    None, text, lists, names that collide with a statistic's key, one to four
    repetitions with metrics missing from some."""
    rng = random.Random(5)
    values = [0.5, -0.0, 1e300, 3, -7, 10**400, True, None, math.nan, math.inf, -math.inf,
              "text", [1, 2], 2.5]
    names = ["acc", "loss", "mean_acc", "n_loss", "std_x", "x"]
    for _ in range(3000):
        per_rep = [{name: rng.choice(values) for name in rng.sample(names, rng.randrange(
            0, 5))} for _ in range(rng.randrange(1, 5))]
        got, expected = reduce.aggregate(per_rep), _reference_aggregate(per_rep)
        assert list(got) == list(expected)
        assert json.dumps(got) == json.dumps(expected)
    for value in [*values, 1e-300, -0.0, 2.0**60, float(2**53 + 1)]:
        # one value takes stats' shortcut; beside a null it takes the general way
        assert json.dumps(stats([value])) == json.dumps(stats([value, None]))


def test_a_results_entry_is_the_line_and_its_text(tmp_path: Any) -> None:
    """``experiment_entry`` (the line of runs that just reported their scores, encoded
    once) against ``experiment_line`` and the text written of it, non-finite values
    included (the encoder refuses them: the entry is then made strict first)."""
    sweep = SweepDir(str(tmp_path))
    all_scores: list[dict[str, Any]] = [{"a": 0.5}, {"a": math.nan, "b": [1.0, math.inf]},
                                        {"t": [1, -math.inf]}, {}, {"s": "x", "n": None}]
    configs: list[dict[str, object]] = [{"lr": 0.1}, {"lr": math.nan, "layers": [1, math.inf]}]
    for scores in all_scores:
        for config in configs:
            exp = Experiment(3, 2, config, "d" * 64)
            known = {0: scores, 1: dict(scores)}
            entry = reduce.experiment_entry(sweep, exp, known)
            assert entry is not None
            line, text = entry
            expected = reduce.experiment_line(sweep, exp, known)
            assert json.dumps(line) == json.dumps(expected)
            assert text == json.dumps(expected, allow_nan=False) + "\n"


def test_a_claimed_task_is_the_task_replaced() -> None:
    task = RunTask(4, 1, "/out/4/1", 3)
    assert task.claimed(".attempt-2-h", True) == replace(task, folder=".attempt-2-h",
                                                         new_folder=True)
    claimed = task.claimed(".attempt-2-h", True)
    assert (claimed.folder, claimed.new_folder, claimed.adds) == (".attempt-2-h", True, None)
