"""The copy of the cfg each stage call receives keeps the cfg's shape (issue: your code,
exactly as Python runs it).

Values shared between keys stay shared, cycles stay cycles, and an attribute dict (a
``dict`` subclass whose ``__dict__`` is itself, as many scripts use for options) stays one:
``opt.lr = 1`` then ``opt["lr"]`` reads 1, as it does without dagrun. The end-to-end test
runs ``run_experiments`` in a script of its own (a real Python process, like a user's), on
``single`` (whose stages get the script's own cfgs) and ``multiprocessing`` (where they
travel through ``workflow.pkl`` first); the others check ``dagrun.code.pickling`` and
``RunCfg`` directly (a cfg with a cycle is refused before any run: config.json is JSON).
"""

from __future__ import annotations

import collections
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dagrun.code import pickling
from dagrun.run.stages import CopyMemory, RunCfg
from tests.helpers import child_env, read_jsonl, write_workflow

pytestmark = pytest.mark.timeout(120)


class Opt(dict):  # type: ignore[type-arg]
    """An attribute dict, the way scripts write one."""

    lr: float  # items read as attributes (for the type checker)
    weights: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__dict__ = self


# Every stage checks the shape of the cfg it received, then changes it (as scripts do).
SHAPE_SCRIPT = """
import sys

from dagrun import run_experiments


class Opt(dict):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.__dict__ = self


def shape(cfg):
    opt = cfg["opt"]
    seen = {"lr_before": opt.lr, "attribute_dict": opt.__dict__ is opt,
            "shared": cfg["a"] is cfg["b"] and cfg["a"] == [1, 2]}
    opt.lr = 1
    seen["set_by_attribute"] = opt["lr"] == 1
    cfg["a"].append(3)
    return seen


def pre(cfg):
    return [shape(cfg)]


def fit(cfg, seen):
    return [*seen, shape(cfg)]


def post(cfg, seen):
    seen = [*seen, shape(cfg)]
    return {key: [s[key] for s in seen] for key in seen[0]}


def make_cfg(extra):
    shared = [1, 2]
    return {"opt": Opt(lr=0.1, **extra), "a": shared, "b": shared}


if __name__ == "__main__":
    basecfg = {"out_path": "out", "pre": pre, "fit": fit, "post": post,
               "backend": sys.argv[1], "repetitions": 2, "verbose": False}
    # experiment 1's opt holds a lambda: it does not pickle and is copied by deepcopy
    cfgs = [make_cfg({}), make_cfg({"act": lambda x: x})]
    summary = run_experiments(basecfg, cfgs)
    raise SystemExit(0 if summary.ok else 1)
"""


@pytest.mark.parametrize("backend", ["single", "multiprocessing"])
def test_stage_cfg_keeps_attribute_dicts_and_shared_values(tmp_path: Path,
                                                           backend: str) -> None:
    """On ``single`` the stages get copies of the script's own cfgs; on ``multiprocessing``
    the cfgs travel through ``workflow.pkl`` first, pickled with the same care."""
    script = write_workflow(tmp_path, SHAPE_SCRIPT, name="script.py")
    proc = subprocess.run([sys.executable, str(script), backend], cwd=tmp_path,
                          env=child_env(),
                          capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = read_jsonl(tmp_path / "out" / "results.jsonl")
    assert [line["experiment_id"] for line in lines] == [0, 1]
    for line in lines:
        scores = line["scores"]
        for key in ("attribute_dict", "shared", "set_by_attribute"):
            # per repetition, what pre, fit and post saw
            assert scores[key] == [[True] * 3] * 2, (line["experiment_id"], key, scores)
        assert scores["lr_before"] == [[0.1] * 3] * 2  # no stage or run saw another's edit


def test_pickling_round_trip_keeps_the_shape() -> None:
    opt = Opt(lr=0.1, weights=np.arange(4.0))
    opt["itself"] = opt
    shared: list[Any] = [opt]
    value = {"opt": opt, "again": opt, "x": shared, "y": shared}
    buffers: list[pickle.PickleBuffer] = []
    data = pickling.dumps(value, buffer_callback=buffers.append)
    assert len(buffers) == 1  # the array stays out of band
    copy = pickling.loads(data, [bytearray(b.raw()) for b in buffers])
    got = copy["opt"]
    assert type(got) is Opt and got.__dict__ is got and got["itself"] is got
    assert copy["again"] is got and copy["x"] is copy["y"] and copy["x"][0] is got
    got.lr = 2
    assert got["lr"] == 2 and opt.lr == 0.1
    assert np.array_equal(got.weights, np.arange(4.0)) and got.weights is not opt.weights


def test_pickling_deepcopy_keeps_attribute_dicts() -> None:
    opt = Opt(lr=0.1, act=lambda x: x)
    copy = pickling.deepcopy({"opt": opt, "again": opt})
    assert copy["opt"].__dict__ is copy["opt"] and copy["again"] is copy["opt"]
    assert copy["opt"].lr == 0.1 and copy["opt"] is not opt


def test_ordinary_objects_keep_their_own_reduction() -> None:
    class Custom(dict):  # type: ignore[type-arg]
        def __reduce__(self) -> Any:
            return dict, (dict(self),)

    assert pickling.reduce_shared_dict(Custom(a=1)) is NotImplemented
    assert pickling.reduce_shared_dict(np.arange(3)) is NotImplemented
    assert pickling.reduce_shared_dict(Opt(a=1)) is not NotImplemented
    plain = {"a": [1.5, "s", None], "b": np.float64(2.0)}
    assert pickling.dumps(plain) == pickle.dumps(plain, protocol=5)


def test_run_cfg_copies_keep_the_shape() -> None:
    shared = [1]
    loop: list[Any] = []
    loop.append(loop)
    cfg: dict[str, Any] = {"opt": Opt(lr=0.1), "a": shared, "b": shared, "loop": loop}
    cfgs = RunCfg(cfg, CopyMemory(), [])
    for _ in range(3):
        copy = cfgs.fresh()
        assert copy["opt"].__dict__ is copy["opt"] and copy["a"] is copy["b"]
        assert copy["loop"][0] is copy["loop"] and copy["a"] is not shared
        copy["opt"].lr = 1
        assert copy["opt"]["lr"] == 1 and cfg["opt"]["lr"] == 0.1


def test_plain_cfgs_are_copied_by_a_walk_and_stay_independent() -> None:
    """A small JSON-like cfg takes the walk instead of the pickle; a list shared between
    keys, a subclass of a plain type or a large cfg go through the pickle (keeping shape)."""
    cfg: dict[str, Any] = {"lr": 0.1, "layers": [64, [32, 16]], "opt": {"name": "adam"},
                           "pair": (1, "a"), "flag": True, "none": None}
    cfgs = RunCfg(cfg, CopyMemory(), [])
    assert cfgs._plain
    for _ in range(3):
        copy = cfgs.fresh()
        assert copy == cfg and copy is not cfg
        assert copy["layers"] is not cfg["layers"] and copy["layers"][1] is not cfg["layers"][1]
        assert copy["opt"] is not cfg["opt"]
        copy["layers"][1].append(8)
        copy["opt"]["name"] = "sgd"
    assert cfg["layers"] == [64, [32, 16]] and cfg["opt"] == {"name": "adam"}
    shared = [1, 2]
    assert not RunCfg({"a": shared, "b": shared}, CopyMemory(), [])._plain
    copy = RunCfg({"a": shared, "b": shared}, CopyMemory(), []).fresh()
    assert copy["a"] is copy["b"] and copy["a"] is not shared
    assert not RunCfg({"x": collections.OrderedDict(a=1)}, CopyMemory(), [])._plain
    assert not RunCfg({"x": list(range(1000))}, CopyMemory(), [])._plain
    assert not RunCfg({"x": np.float64(1.0)}, CopyMemory(), [])._plain
