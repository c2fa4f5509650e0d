"""Fault injection: bad inputs and a damaged disk, each through the ``dagrun`` command.

Every case asserts the key phrase of its message, the exit code (0 / 1 / 2 per the contract)
and that nothing already done was lost or changed: runs that were done before keep every
file with the same size, mtime and content. Bad usage never writes; a failing run is data
and the sweep goes on.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    LOCAL_BACKENDS,
    Result,
    backend_flags,
    child_env,
    copy_finished,
    dagrun_command,
    read_jsonl,
    run_dagrun,
    snapshot,
)
from tests.services import require_service

pytestmark = pytest.mark.timeout(120)

# Stages count their calls in CALLS/<stage>-<id>-<rep>; post misbehaves on request (cfg "bad").
WORKFLOW = '''
import errno
import math
import os

import numpy as np

from dagrun.disk.fence import Attempt as _Attempt

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "OUT")
CALLS = os.path.join(HERE, "calls")


def _count(stage, cfg):
    os.makedirs(CALLS, exist_ok=True)
    name = "%s-%d-%d" % (stage, cfg["experiment_id"], cfg["run_id"])
    with open(os.path.join(CALLS, name), "a") as f:
        f.write("x\\n")


def pre(cfg):
    _count("pre", cfg)
    return cfg["x"]


def fit(cfg, p):
    _count("fit", cfg)
    if cfg.get("enospc"):  # the disk fills up while dagrun writes fit.pkl (once)
        real = _Attempt.write_bytes  # every write of a run goes through its attempt

        def full(self, path, data):
            _Attempt.write_bytes = real
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

        _Attempt.write_bytes = full
    return {"w": p * 10}


def post(cfg, model):
    _count("post", cfg)
    bad = cfg.get("bad")
    if bad == "list":
        return [model["w"]]
    if bad == "none":
        return None
    if bad == "int-keys":
        return {1: model["w"]}
    if bad == "nan":
        return {"m": math.nan, "i": math.inf, "n": -math.inf, "ok": 1.0}
    return {"acc": model["w"] + 0.5}


basecfg = {"out_path": OUT, "verbose": True}
cfgs = CFGS
'''

BASE_CFGS = [{"x": 1}, {"x": 2}, {"x": 3}]


def write_wf(folder: Path, cfgs: Any = None, tail: str = "", name: str = "workflow.py",
             source: str = WORKFLOW) -> Path:
    path = folder / name
    path.write_text(source.replace("CFGS", repr(cfgs or BASE_CFGS)) + tail, encoding="utf-8")
    return path


def dagrun_env(*args: str | os.PathLike[str], cwd: Path, extra: dict[str, str],
               timeout: float = 60) -> Result:
    """Like ``run_dagrun`` with extra environment variables."""
    proc = subprocess.run(dagrun_command(*args), cwd=cwd, env=child_env(extra),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def calls(folder: Path, stage: str, exp_id: int, rep: int = 0) -> int:
    path = folder / "calls" / f"{stage}-{exp_id}-{rep}"
    return len(path.read_text().splitlines()) if path.exists() else 0


def run_files(out: Path, exp_ids: list[int]) -> dict[str, tuple[int, int, bytes]]:
    """Every file of the given experiments' folders (size, mtime, content)."""
    snap: dict[str, tuple[int, int, bytes]] = {}
    for exp_id in exp_ids:
        for name, value in snapshot(out / str(exp_id)).items():
            snap[f"{exp_id}/{name}"] = value
    return snap


def user_visible(out: Path) -> dict[str, tuple[int, int, bytes]]:
    """Everything under OUT except the lock files a refused driver may touch."""
    return {k: v for k, v in snapshot(out).items()
            if k not in (".dagrun/lock", ".dagrun/driver.json")}


def one_error_line(result: Result, *phrases: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.error_lines if not line.startswith("usage:")
             and not line.startswith("[") and not line.startswith("WORKFLOW")]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1, result.stderr
    for phrase in phrases:
        assert phrase in errors[0], f"{phrase!r} not in {errors[0]!r}"
    return errors[0]


@pytest.fixture(scope="module")
def done_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished three-experiment sweep (built once; tests work on copies)."""
    folder = tmp_path_factory.mktemp("base") / "sweep"
    folder.mkdir()
    write_wf(folder)
    result = run_dagrun("execute", folder / "workflow.py", cwd=folder)
    assert result.rc == 0, result.stderr
    return folder


@pytest.fixture
def sweep(done_sweep: Path, awkward_dir: Path) -> Path:
    """A private copy of the finished sweep, in a folder whose name breaks shells."""
    return copy_finished(done_sweep, awkward_dir)


# --------------------------------------------------------------------------------------------
# Bad usage: exit 2, one line naming the problem, nothing written.

Setup = Callable[[Path], list[str]]


def _wf(source: str) -> Setup:
    def setup(folder: Path) -> list[str]:
        (folder / "bad wf.py").write_text(source, encoding="utf-8")
        return ["execute", str(folder / "bad wf.py")]
    return setup


_HEAD = ("import os\nOUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'OUT')\n"
         "def pre(cfg):\n    return 1\ndef fit(cfg, p):\n    return p\n"
         "def post(cfg, f):\n    return {'f': f}\n")


def _plan(text: str, command: str) -> Setup:
    def setup(folder: Path) -> list[str]:
        (folder / "OUT" / ".dagrun" / "plan.json").write_text(text)
        if command == "execute":
            return ["execute", str(folder / "workflow.py")]
        return [command, str(folder / "OUT")]
    return setup


def _afile(sub: str) -> Setup:
    def setup(folder: Path) -> list[str]:
        (folder / "afile").write_text("keep me")
        return ["execute", str(folder / "workflow.py"), "--out", str(folder / "afile") + sub]
    return setup


def _args(*args: str) -> Setup:
    def setup(folder: Path) -> list[str]:
        return [a.replace("WF", str(folder / "workflow.py")).replace("OUT", str(folder / "OUT"))
                for a in args]
    return setup


USAGE: list[tuple[str, Setup, tuple[str, ...]]] = [
    ("workflow-missing", _args("execute", "nope.py"), ("workflow file not found", "nope.py")),
    ("syntax-error", _wf("def pre(cfg:\n"), ("syntax error in", "bad wf.py", "line 1")),
    ("raises-at-import", _wf("import os\nraise RuntimeError('no GPU here')\n"),
     ("bad wf.py raised RuntimeError while loading (line 2): no GPU here",)),
    ("import-error", _wf("import no_such_module_for_faults\n"),
     ("ModuleNotFoundError", "no_such_module_for_faults")),
    ("no-basecfg", _wf(_HEAD + "cfgs = [{}]\n"), ("defines no 'basecfg'",)),
    ("basecfg-not-dict", _wf(_HEAD + "basecfg = [OUT]\ncfgs = [{}]\n"),
     ("basecfg must be a dict, got list",)),
    ("stage-missing", _wf(_HEAD.replace("def fit", "def fat") +
                          "basecfg = {'out_path': OUT}\ncfgs = [{}]\n"),
     ("defines no stage 'fit'", "basecfg['fit']")),
    ("stage-not-callable", _wf(_HEAD + "fit = 5\nbasecfg = {'out_path': OUT}\ncfgs = [{}]\n"),
     ("fit must be a function, got int",)),
    ("basecfg-stage-not-callable",
     _wf(_HEAD + "basecfg = {'out_path': OUT, 'post': 'post'}\ncfgs = [{}]\n"),
     ("basecfg['post'] must be a function",)),
    ("reserved-key", _wf(_HEAD + "basecfg = {'out_path': OUT}\ncfgs = [{'x': 1, 'run_id': 3}]\n"),
     ("cfgs[0] sets reserved key 'run_id'",)),
    ("cfgs-not-list", _wf(_HEAD + "basecfg = {'out_path': OUT}\ncfgs = 5\n"),
     ("cfgs must be a list of dicts, got int",)),
    ("unknown-flag", _args("execute", "WF", "--frobnicate"),
     ("unrecognized arguments: --frobnicate",)),
    ("unknown-command", _args("exekute", "WF"), ("invalid choice: 'exekute'",)),
    ("negative-timeout", _args("execute", "WF", "--timeout", "-1"),
     ("argument --timeout: must be a number >= 0, got -1",)),
    ("zero-workers", _args("execute", "WF", "-j", "0"),
     ("argument -j/--num-cpus: must be an integer >= 1, got 0",)),
    ("out-is-a-file", _afile(""), ("exists and is not a folder",)),
    ("out-below-a-file", _afile("/below"), ("cannot create out_path", "Not a directory")),
    ("out-in-proc", _args("execute", "WF", "--out", "/proc/dagrun-faults/out"),
     ("cannot create out_path /proc/dagrun-faults/out",)),
    ("plan-truncated", _plan('{"version": 1, "exp', "execute"),
     ("plan.json cannot be read", "the sweep state is damaged")),
    ("plan-wrong-shape-status", _plan('{"version": 1}\n', "status"),
     ("plan.json does not hold a dagrun plan", "the sweep state is damaged")),
    ("plan-wrong-shape-execute", _plan('[1, 2]\n', "execute"),
     ("plan.json does not hold a dagrun plan",)),
    ("plan-bad-entry-resume", _plan('{"version": 1, "experiments": [{"id": "x"}]}', "resume"),
     ("plan.json does not hold a dagrun plan",)),
    ("show-unknown-id", _args("show", "OUT", "9"), ("has no experiment 9",)),
    ("show-unknown-rep", _args("show", "OUT", "1/4"), ("experiment 1 has repetitions 0..0",)),
    ("show-junk-id", _args("show", "OUT", "one"), ("run id must look like ID or ID/REP",)),
    ("status-not-a-sweep", _args("status", "WF"), ("is not a dagrun sweep",)),
    ("status-missing-folder", _args("status", "OUT/nothing here"), ("does not exist",)),
    ("reduce-not-a-sweep", _args("reduce", "OUT/0"), ("is not a dagrun sweep",)),
    ("clean-ids-junk", _args("clean", "OUT", "--ids", "abc"),
     ("--ids takes ids and ranges like 3 5-7 9,10; got 'abc'",)),
    ("clean-ids-reversed", _args("clean", "OUT", "--ids", "5-2"),
     ("--ids takes ids and ranges like 3 5-7 9,10; got '5-2'",)),
    ("clean-ids-unknown", _args("clean", "OUT", "--ids", "99"), ("none of the ids [99] are in",)),
    ("clean-bad-stage", _args("clean", "OUT", "--stage", "fitt"),
     ("argument --stage: invalid choice: 'fitt'",)),
]


@pytest.mark.parametrize(("setup", "phrases"), [(s, p) for _, s, p in USAGE],
                         ids=[name for name, _, _ in USAGE])
def test_bad_usage_exits_2_and_writes_nothing(sweep: Path, setup: Setup,
                                              phrases: tuple[str, ...]) -> None:
    args = setup(sweep)
    before = user_visible(sweep)
    result = run_dagrun(*args, cwd=sweep)
    assert result.rc == 2, (result.rc, result.stdout, result.stderr)
    one_error_line(result, *phrases)
    assert user_visible(sweep) == before
    assert sum(calls(sweep, s, i) for s in ("pre", "fit", "post") for i in range(3)) == 9


def test_show_unknown_rep_names_the_range(sweep: Path) -> None:
    write_wf(sweep, [{"x": 1, "repetitions": 2}], name="reps.py")
    result = run_dagrun("execute", sweep / "reps.py", "--out", sweep / "REPS", cwd=sweep)
    assert result.rc == 0, result.stderr
    result = run_dagrun("show", sweep / "REPS", "0/5", cwd=sweep)
    assert result.rc == 2
    one_error_line(result, "experiment 0 has repetitions 0..1")


def test_group_writable_workflow_pickle_on_resume(sweep: Path) -> None:
    pkl = sweep / "OUT" / ".dagrun" / "workflow.pkl"
    pkl.chmod(0o664)
    before = user_visible(sweep / "OUT")
    result = run_dagrun("resume", sweep / "OUT", cwd=sweep)
    assert result.rc == 2, result.stderr
    one_error_line(result, f"refusing to load {pkl}", "writable by its group", "chmod g-w",
                   "DAGRUN_TRUST_GROUP=1")
    assert user_visible(sweep / "OUT") == before
    result = dagrun_env("resume", sweep / "OUT", cwd=sweep, extra={"DAGRUN_TRUST_GROUP": "1"})
    assert result.rc == 0, result.stderr
    assert "changed" not in result.stderr  # the stored code is the code that ran
    assert run_files(sweep / "OUT", [0, 1, 2]) == {
        k: v for k, v in before.items() if k[0].isdigit()}


# --------------------------------------------------------------------------------------------
# Runs that fail: recorded, the sweep goes on, exit 1.


def test_post_returning_wrong_types_fails_those_runs_only(awkward_dir: Path) -> None:
    cfgs = [{"x": 1}, {"x": 2, "bad": "list"}, {"x": 3, "bad": "none"},
            {"x": 4, "bad": "int-keys"}, {"x": 5}]
    wf = write_wf(awkward_dir, cfgs)
    result = run_dagrun("execute", wf, cwd=awkward_dir)
    assert result.rc == 1, result.stderr
    out = awkward_dir / "OUT"
    expected = {
        1: "post must return a dict of metrics, got list (return {} when there are none)",
        2: "post must return a dict of metrics, got NoneType",
        3: "post returned a dict with non-string keys [1]; metric names must be str",
    }
    for exp_id, message in expected.items():
        error = json.loads((out / str(exp_id) / "post.error").read_text())
        assert error["kind"] == "bad_output" and message in error["message"], error
        assert message in result.stderr
        assert {"pre.done", "fit.done"} <= {p.name for p in (out / str(exp_id)).iterdir()}
        assert not (out / str(exp_id) / "post.done").exists()
    assert [r["experiment_id"] for r in read_jsonl(out / "results.jsonl")] == [0, 4]
    status = run_dagrun("status", out)
    assert status.rc == 0 and "3 failed" in status.stdout, status.stdout
    assert "post bad_output" in status.stdout


def test_nan_and_inf_metrics_are_null_in_results(awkward_dir: Path) -> None:
    wf = write_wf(awkward_dir, [{"x": 1, "bad": "nan"}, {"x": 2, "bad": "nan", "repetitions": 2}])
    result = run_dagrun("execute", wf, cwd=awkward_dir)
    assert result.rc == 0, result.stderr
    rows = read_jsonl(awkward_dir / "OUT" / "results.jsonl")  # strict: no NaN/Infinity
    assert rows[0]["scores"]["m"] == [None] and rows[0]["scores"]["i"] == [None]
    assert rows[0]["scores"]["n"] == [None] and rows[0]["scores"]["ok"] == [1.0]
    assert (rows[0]["scores"]["mean_m"], rows[0]["scores"]["n_m"]) == (None, 0)
    assert rows[1]["scores"]["m"] == [None, None] and rows[1]["scores"]["mean_m"] is None
    assert rows[1]["scores"]["mean_ok"] == 1.0 and rows[1]["scores"]["n_m"] == 0


NON_JSON_TAIL = '''

class Opaque:
    pass


def helper(v):
    return v


_real_pre = pre


def pre(cfg):
    kinds = {k: type(v).__name__ for k, v in cfg.items()}
    with open(os.path.join(HERE, "kinds-%d.json" % cfg["experiment_id"]), "w") as f:
        import json
        json.dump(kinds, f)
    return _real_pre(cfg)


cfgs = [{"x": 1, "np": np.float32(1.5), "i": np.int64(7), "arr": np.arange(3), "t": (1, 2),
         "f": helper, "o": Opaque(), "s": {3}}]
'''


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_non_json_cfg_values(awkward_dir: Path, backend: str) -> None:
    wf = write_wf(awkward_dir, tail=NON_JSON_TAIL)
    result = run_dagrun("execute", wf, *backend_flags(backend), cwd=awkward_dir)
    assert result.rc == 0, result.stderr
    kinds = json.loads((awkward_dir / "kinds-0.json").read_text())
    assert kinds == {"x": "int", "np": "float32", "i": "int64", "arr": "ndarray",
                     "t": "tuple", "f": "function", "o": "Opaque", "s": "set",
                     "experiment_id": "int", "run_id": "int", "out_path": "str"}
    config = json.loads((awkward_dir / "OUT" / "0" / "config.json").read_text())
    assert config["np"] == 1.5 and config["i"] == 7 and config["arr"] == [0, 1, 2]
    assert config["t"] == [1, 2] and config["s"] == [3]
    assert config["f"] == "<function dagrun_workflow_workflow.helper>"
    assert config["o"] == "<dagrun_workflow_workflow.Opaque object>"  # no address
    row = read_jsonl(awkward_dir / "OUT" / "results.jsonl")[0]
    assert row["o"] == config["o"] and row["arr"] == [0, 1, 2]
    again = run_dagrun("execute", wf, *backend_flags(backend), cwd=awkward_dir)
    assert again.rc == 0, again.stderr  # the strings are stable: not a "changed config"
    assert calls(awkward_dir, "fit", 0) == 1


def test_huge_config(awkward_dir: Path) -> None:
    blob = "a" * 5_000_000
    tail = f"\ncfgs = [{{'x': 1, 'blob': 'a' * {len(blob)}}}, {{'x': 2}}]\n"
    wf = write_wf(awkward_dir, tail=tail)
    result = run_dagrun("execute", wf, cwd=awkward_dir)
    assert result.rc == 0, result.stderr
    config = json.loads((awkward_dir / "OUT" / "0" / "config.json").read_text())
    assert config["blob"] == blob
    rows = read_jsonl(awkward_dir / "OUT" / "results.jsonl")
    assert rows[0]["blob"] == blob and rows[1]["scores"]["mean_acc"] == 20.5
    before = run_files(awkward_dir / "OUT", [0, 1])
    again = run_dagrun("execute", wf, cwd=awkward_dir)
    assert again.rc == 0, again.stderr
    assert run_files(awkward_dir / "OUT", [0, 1]) == before


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_disk_full_while_writing_an_artifact(awkward_dir: Path, backend: str) -> None:
    """fit of experiment 1 makes the next atomic write fail with ENOSPC (in the process that
    runs the stage): the run is failed with the OS message, the others complete."""
    wf = write_wf(awkward_dir, [{"x": 1}, {"x": 2, "enospc": True}, {"x": 3}])
    result = run_dagrun("execute", wf, *backend_flags(backend), cwd=awkward_dir)
    assert result.rc == 1, result.stderr
    out = awkward_dir / "OUT"
    error = json.loads((out / "1" / "fit.error").read_text())
    assert error["kind"] == "engine" and "No space left on device" in error["message"]
    assert "No space left on device" in result.stderr
    assert not (out / "1" / "fit.done").exists() and not (out / "1" / "fit.pkl").exists()
    assert not [p for p in out.rglob("*.tmp")], "a temporary file was left behind"
    assert [r["experiment_id"] for r in read_jsonl(out / "results.jsonl")] == [0, 2]


BIG_FIT = '''
import os

OUT = os.environ["FAULTS_OUT"]


def pre(cfg):
    return cfg["size"]


def fit(cfg, size):
    return b"x" * size


def post(cfg, data):
    return {"n": len(data)}


basecfg = {"out_path": OUT}
cfgs = [{"size": 10}, {"size": 400000}, {"size": 20}]
'''


def test_disk_full_on_a_real_tiny_filesystem(awkward_dir: Path) -> None:
    tiny = awkward_dir / "tiny fs"
    tiny.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(tiny)],
                             capture_output=True, text=True, timeout=30, check=False)
    if mounted.returncode != 0:
        require_service(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        wf = awkward_dir / "big.py"
        wf.write_text(BIG_FIT)
        out = tiny / "OUT"
        result = dagrun_env("execute", wf, cwd=awkward_dir, extra={"FAULTS_OUT": str(out)})
        assert result.rc == 1, result.stderr
        assert "No space left on device" in result.stderr
        error = json.loads((out / "1" / "fit.error").read_text())
        assert "No space left on device" in error["message"]
        assert [r["scores"]["mean_n"] for r in read_jsonl(out / "results.jsonl")] == [10, 20]
        assert not [p for p in out.rglob("*.tmp")], "a temporary file was left behind"
        status = run_dagrun("status", out)
        assert status.rc == 0 and "No space left on device" in status.stdout
    finally:
        subprocess.run(["umount", str(tiny)], capture_output=True, timeout=30, check=False)


# --------------------------------------------------------------------------------------------
# A damaged disk: recomputed with a warning, or rebuilt.


def _clean(out: Path, exp_id: int, stage: str) -> None:
    result = run_dagrun("clean", out, "--ids", str(exp_id), "--stage", stage)
    assert result.rc == 0, result.stderr


@pytest.mark.parametrize(("damage", "phrase", "recomputed"), [
    ("fit.pkl", "fit.pkl cannot be loaded (FileNotFoundError", "fit"),
    ("fit.done", "fit.done is unreadable); recomputing fit", "fit"),
    ("post.json", "post.json cannot be read; recomputing post", "post"),
], ids=["marker-without-pickle", "garbage-marker", "marker-without-metrics"])
def test_marker_without_its_artifact_is_recomputed(sweep: Path, damage: str, phrase: str,
                                                   recomputed: str) -> None:
    out = sweep / "OUT"
    if recomputed == "fit":
        _clean(out, 1, "post")  # post needs fit.pkl
    if damage == "fit.done":
        (out / "1" / "fit.pkl").unlink()
        (out / "1" / "fit.done").write_text("{garbage")
    else:
        (out / "1" / damage).unlink()
    untouched = run_files(out, [0, 2])
    result = run_dagrun("execute", sweep / "workflow.py", cwd=sweep)
    assert result.rc == 0, result.stderr
    warnings = [line for line in result.error_lines if "warning" in line and phrase in line]
    assert warnings, result.stderr
    expected = {"pre": 1, "fit": 2 if recomputed == "fit" else 1, "post": 2}
    assert {s: calls(sweep, s, 1) for s in expected} == expected
    assert run_files(out, [0, 2]) == untouched
    assert [r["scores"]["mean_acc"] for r in read_jsonl(out / "results.jsonl")] == \
        [10.5, 20.5, 30.5]


def test_truncated_results_are_rebuilt(sweep: Path) -> None:
    out = sweep / "OUT"
    results = out / "results.jsonl"
    assert run_dagrun("reduce", out).rc == 0  # lines name this copy's out_path
    good = results.read_bytes()
    untouched = run_files(out, [0, 1, 2])
    results.write_bytes(good[: len(good) // 2])
    result = run_dagrun("reduce", out)
    assert result.rc == 0 and "3 experiments" in result.stdout, result.stderr
    assert results.read_bytes() == good
    results.write_bytes(good[:-7])
    result = run_dagrun("execute", sweep / "workflow.py", cwd=sweep)
    assert result.rc == 0, result.stderr
    assert results.read_bytes() == good
    assert run_files(out, [0, 1, 2]) == untouched


class _Trap:
    """Unpickling it creates ``path``: proof that a refused pickle was not loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.makedirs, (self.path,))


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


@needs_root
def test_foreign_owned_pickle_is_refused(sweep: Path) -> None:
    out = sweep / "OUT"
    _clean(out, 0, "fit")
    trap = sweep / "trap sprung"
    pkl = out / "0" / "pre.pkl"
    pkl.write_bytes(pickle.dumps(_Trap(str(trap))))
    os.chown(pkl, 12345, 12345)
    untouched = run_files(out, [1, 2])
    result = run_dagrun("execute", sweep / "workflow.py", cwd=sweep)
    assert result.rc == 1, result.stderr
    assert not trap.exists(), "the refused pickle was unpickled"
    phrase = f"refusing to load {pkl}: it is owned by uid 12345, not by you"
    assert phrase in result.stderr and "fix: cp " in result.stderr and \
        "DAGRUN_TRUST_GROUP=1" in result.stderr, result.stderr
    error = json.loads((out / "0" / "fit.error").read_text())  # the stage that needed it
    assert error["kind"] == "engine" and phrase in error["message"]
    assert os.stat(pkl).st_uid == 12345 and calls(sweep, "fit", 0) == 1
    assert run_files(out, [1, 2]) == untouched
    status = run_dagrun("status", out)
    assert status.rc == 0 and "1 failed" in status.stdout and phrase in status.stdout, \
        status.stdout
    assert [r["experiment_id"] for r in read_jsonl(out / "results.jsonl")] == [1, 2]


def test_group_writable_pickle_needs_trust_group(sweep: Path) -> None:
    out = sweep / "OUT"
    _clean(out, 2, "post")
    pkl = out / "2" / "fit.pkl"
    pkl.chmod(0o664)
    result = run_dagrun("execute", sweep / "workflow.py", cwd=sweep)
    assert result.rc == 1, result.stderr
    assert f"refusing to load {pkl}: it is writable by its group" in result.stderr
    assert calls(sweep, "post", 2) == 1
    result = dagrun_env("execute", sweep / "workflow.py", cwd=sweep,
                        extra={"DAGRUN_TRUST_GROUP": "1"})
    assert result.rc == 0, result.stderr
    assert (calls(sweep, "fit", 2), calls(sweep, "post", 2)) == (1, 2)  # fit.pkl was used
    assert [r["scores"]["mean_acc"] for r in read_jsonl(out / "results.jsonl")] == \
        [10.5, 20.5, 30.5]
