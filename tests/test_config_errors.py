"""Every way a basecfg, cfgs, Variation, generate_configs call or workflow file can be wrong.

Through the API each is a ``dagrun.ConfigError`` (a ``ValueError``) naming the key, raised
before anything is written; through the CLI it is exit code 2 and one line on stderr.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dagrun
from dagrun import ConfigError, Variation, generate_configs, run_experiments
from tests.helpers import read_jsonl, run_dagrun, write_workflow

pytestmark = pytest.mark.timeout(60)


def pre(cfg: dict[str, Any]) -> Any:
    return cfg.get("x", 0)


def fit(cfg: dict[str, Any], value: Any) -> Any:
    return value


def post(cfg: dict[str, Any], value: Any) -> dict[str, Any]:
    return {"value": value}


def base(out: Path, **changes: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"out_path": str(out), "pre": pre, "fit": fit, "post": post,
                           "verbose": False}
    cfg.update(changes)
    return cfg


def without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda cfg: {k: v for k, v in cfg.items() if k != key}


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    assert dagrun.ConfigError is ConfigError


# (basecfg changes, words the message must contain). The out_path is always the test's.
BAD_BASECFG: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    ({"repetitons": 3}, ("repetitons", "repetitions")),  # unknown key, with a suggestion
    ({"malocher_user": "a", "ssh_user": "b"}, ("malocher_user", "ssh_user")),
    ({"ssh_user": "b", "malocher_user": "a"}, ("malocher_user", "ssh_user")),
    ({"pre": None}, ("pre",)),
    ({"fit": 3}, ("fit",)),
    ({"post": "post"}, ("post",)),
    ({"backend": 5}, ("backend",)),
    ({"num_cpus": 0}, ("num_cpus",)),
    ({"num_cpus": "2"}, ("num_cpus",)),
    ({"num_cpus": True}, ("num_cpus",)),
    ({"num_gpus": -1}, ("num_gpus",)),
    ({"num_gpus": math.nan}, ("num_gpus",)),
    ({"max_memory": 0}, ("max_memory",)),
    ({"max_memory": 1.5e9}, ("max_memory",)),
    ({"address": ""}, ("address",)),
    ({"redis_password": 5}, ("redis_password",)),
    ({"verbose": "yes"}, ("verbose",)),
    ({"repetitions": 0}, ("repetitions",)),
    ({"repetitions": 2.0}, ("repetitions",)),
    ({"timeout": -1}, ("timeout",)),
    ({"timeout": math.inf}, ("timeout",)),
    ({"timeout": "10"}, ("timeout",)),
    ({"retries": -1}, ("retries",)),
    ({"ssh_user": ""}, ("ssh_user",)),
    ({"ssh_port": 0}, ("ssh_port",)),
    ({"ssh_port": 70000}, ("ssh_port",)),
    ({"ssh_key": 5}, ("ssh_key",)),
    ({"ssh_config": 5}, ("ssh_config",)),
    ({"ssh_dir": 5}, ("ssh_dir",)),
    ({"python": ""}, ("python",)),
    ({"hosts": 5}, ("hosts",)),
    ({"hosts": ["a", " "]}, ("hosts",)),
    ({"hosts": ["a:0"]}, ("hosts", "a:0")),
    ({"hosts": ["a:x"]}, ("hosts", "a:x")),
    ({"hosts": [":3"]}, ("hosts",)),
]


@pytest.mark.parametrize(("changes", "words"), BAD_BASECFG,
                         ids=[f"{next(iter(c))}={next(iter(c.values()))!r}"
                              for c, _ in BAD_BASECFG])
def test_bad_basecfg_value(tmp_path: Path, changes: dict[str, Any],
                           words: tuple[str, ...]) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as info:
        run_experiments(base(out, **changes), [{"x": 1}])
    for word in words:
        assert word in str(info.value)
    assert not out.exists()


@pytest.mark.parametrize("key", ["out_path", "pre", "fit", "post"])
def test_required_basecfg_key_missing(tmp_path: Path, key: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=key):
        run_experiments(without(key)(base(out)), [{"x": 1}])
    assert not out.exists()


@pytest.mark.parametrize("value", [None, "", 5])
def test_bad_out_path(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigError, match="out_path"):
        run_experiments(base(tmp_path, out_path=value), [{"x": 1}])
    assert list(tmp_path.iterdir()) == []


def test_out_path_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    with pytest.raises(ConfigError, match="out_path"):
        run_experiments(base(afile), [{"x": 1}])
    with pytest.raises(ConfigError, match="out_path"):
        run_experiments(base(afile / "below"), [{"x": 1}])
    assert afile.read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


def test_basecfg_not_a_dict(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="basecfg"):
        run_experiments([("out_path", str(tmp_path / "out"))], [{"x": 1}])  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def _cycle() -> list[Any]:
    """A list that holds itself."""
    value: list[Any] = [1]
    value.append(value)
    return value


BAD_CFGS: list[tuple[Any, tuple[str, ...]]] = [
    ({"x": 1}, ("cfgs",)),
    ("x", ("cfgs",)),
    (None, ("cfgs",)),
    ([], ("cfgs", "empty")),
    ([{"x": 1}, 5], ("cfgs[1]",)),
    ([{"x": 1}, {"experiment_id": 3}], ("cfgs[1]", "experiment_id")),
    ([{"run_id": 0}], ("cfgs[0]", "run_id")),
    ([{"out_path": "/tmp/elsewhere"}], ("cfgs[0]", "out_path")),
    ([{"x": 1, "repetitions": 0}], ("cfgs[0]", "repetitions")),
    ([{"x": 1, "repetitions": "3"}], ("cfgs[0]", "repetitions")),
    ([{"x": 1}, {"a": _cycle()}], ("cfgs[1]", "['a'][1]", "cycle")),
]


@pytest.mark.parametrize(("cfgs", "words"), BAD_CFGS, ids=[str(i) for i in range(len(BAD_CFGS))])
def test_bad_cfgs(tmp_path: Path, cfgs: Any, words: tuple[str, ...]) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as info:
        run_experiments(base(out), cfgs)
    for word in words:
        assert word in str(info.value)
    assert not out.exists()


def test_unpicklable_workflow_is_refused_for_worker_backends(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="pickle"):
        run_experiments(base(out, backend="multiprocessing"), [{"lock": threading.Lock()}])
    assert not out.exists()


def test_config_values_json_cannot_hold(tmp_path: Path) -> None:
    """numpy values and tuples are converted for config.json; objects become readable
    strings; the stage functions still get the originals. An unpicklable cfg value works on
    the in-process backend, with a warning that resume will need the workflow again."""
    out = tmp_path / "out"
    seen: dict[str, Any] = {}

    def pre_keep(cfg: dict[str, Any]) -> int:
        seen.update(cfg)
        return 1

    lock = threading.Lock()
    cfg = {"a": np.float64(1.5), "arr": np.arange(3), "t": (1, 2), "f": pre, "lock": lock}
    with pytest.warns(UserWarning, match="pickle"):
        summary = run_experiments(base(out, pre=pre_keep), [cfg])
    assert summary.done == 1 and summary.failed == 0
    assert isinstance(seen["arr"], np.ndarray) and seen["f"] is pre and seen["lock"] is lock
    config = json.loads((out / "0" / "config.json").read_text())
    assert config["a"] == 1.5 and config["arr"] == [0, 1, 2] and config["t"] == [1, 2]
    assert isinstance(config["f"], str) and "pre" in config["f"]
    assert isinstance(config["lock"], str) and "lock" in config["lock"].lower()


def test_unknown_backend_warns_and_runs_single(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.warns(UserWarning) as record:
        summary = run_experiments(base(out, backend="gpu-cluster"), [{"x": 1}, {"x": 2}])
    message = " ".join(str(w.message) for w in record)
    for name in ("gpu-cluster", "single", "multiprocessing", "ray", "ssh"):
        assert name in message
    assert (summary.done, summary.skipped, summary.failed) == (2, 0, 0)
    assert summary.out_path == str(out)
    assert [r["scores"]["value"] for r in read_jsonl(out / "results.jsonl")] == [[1], [2]]
    again = run_experiments(base(out), [{"x": 1}, {"x": 2}])
    assert (again.done, again.skipped, again.failed) == (0, 2, 0)


# --------------------------------------------------------------------------------------------
# Variation and generate_configs


@pytest.mark.parametrize("choices", [5, "abc", {"a": 1}, [], None, {1, 2}, range(0)])
def test_bad_variation(choices: Any) -> None:
    with pytest.raises(ConfigError, match="Variation"):
        Variation(choices)


@pytest.mark.parametrize(("args", "word"), [
    (([1, 2], 3), "dict"),
    (({"a": Variation([1, 2])}, -1), "n_configs"),
    (({"a": Variation([1, 2])}, True), "n_configs"),
    (({"a": Variation([1, 2])}, 1.5), "n_configs"),
    (({"a": Variation([1, 2])}, "2"), "n_configs"),
    (({"a": Variation([1, 2])}, 2, "seed"), "seed"),
    (({"a": Variation([1, 2])}, 2, 1.0), "seed"),
])
def test_bad_generate_configs(args: tuple[Any, ...], word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        generate_configs(*args)


# --------------------------------------------------------------------------------------------
# Through the command line: exit 2, one line, no traceback, nothing written


def check_usage_error(result: Any, *words: str) -> str:
    assert result.rc == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return str(lines[0])


WORKFLOW_HEAD = """
def pre(cfg):
    return 1
def fit(cfg, p):
    return p
def post(cfg, f):
    return {"f": f}
"""


@pytest.mark.parametrize(("tail", "words"), [
    ("basecfg = {'out_path': OUT, 'repetitons': 2}\ncfgs = [{}]\n", ("repetitons",)),
    ("basecfg = {'out_path': OUT, 'num_cpus': 'many'}\ncfgs = [{}]\n", ("num_cpus",)),
    ("basecfg = {'out_path': OUT}\ncfgs = [{'a': 1}, {'run_id': 1}]\n", ("cfgs[1]", "run_id")),
    ("basecfg = {'out_path': OUT}\ncfgs = []\n", ("cfgs",)),
    ("basecfg = {'out_path': OUT}\ncfgs = {'a': 1}\n", ("cfgs",)),
    ("basecfg = {'out_path': OUT}\n", ("cfgs",)),
    ("cfgs = [{}]\n", ("basecfg",)),
    ("basecfg = [('out_path', OUT)]\ncfgs = [{}]\n", ("basecfg",)),
    ("basecfg = {'out_path': OUT, 'post': 7}\ncfgs = [{}]\n", ("post",)),
], ids=["unknown-key", "bad-value", "reserved-key", "empty-cfgs", "cfgs-dict", "no-cfgs",
        "no-basecfg", "basecfg-list", "post-not-callable"])
def test_cli_bad_config(awkward_dir: Path, tail: str, words: tuple[str, ...]) -> None:
    out = awkward_dir / "OUT"
    wf = write_workflow(awkward_dir, f"OUT = {str(out)!r}\n{WORKFLOW_HEAD}{tail}")
    check_usage_error(run_dagrun("execute", wf, cwd=awkward_dir), *words)
    assert not out.exists()


@pytest.mark.parametrize(("source", "words"), [
    ("def pre(cfg):\n    return (\n", ("syntax error", "line")),
    ("import math\nX = 1 / 0\n", ("ZeroDivisionError", "line 2")),
    ("import no_such_module_for_dagrun_tests\n", ("ModuleNotFoundError",)),
], ids=["syntax-error", "raises", "import-error"])
def test_cli_broken_workflow_file(awkward_dir: Path, source: str, words: tuple[str, ...]) -> None:
    wf = write_workflow(awkward_dir, source)
    check_usage_error(run_dagrun("execute", wf, cwd=awkward_dir), *words)
    assert sorted(p.name for p in awkward_dir.iterdir()) == ["workflow.py"]


def test_cli_missing_workflow_file(awkward_dir: Path) -> None:
    check_usage_error(run_dagrun("execute", awkward_dir / "nope.py", cwd=awkward_dir), "nope.py")


def test_cli_bad_flag_value(awkward_dir: Path) -> None:
    out = awkward_dir / "OUT"
    wf = write_workflow(awkward_dir, f"OUT = {str(out)!r}\n{WORKFLOW_HEAD}"
                        "basecfg = {'out_path': OUT}\ncfgs = [{}]\n")
    result = run_dagrun("execute", wf, "-j", "0", cwd=awkward_dir)
    assert result.rc == 2 and "Traceback" not in result.stderr and "-j" in result.stderr
    assert not out.exists()


def test_main_block_is_not_run_and_stage_functions_come_from_the_module(
        awkward_dir: Path) -> None:
    out, flag = awkward_dir / "OUT", awkward_dir / "main ran"
    wf = write_workflow(awkward_dir, f"""
        OUT = {str(out)!r}
        FLAG = {str(flag)!r}
        {WORKFLOW_HEAD.strip().replace(chr(10), chr(10) + ' ' * 8)}
        basecfg = {{"out_path": OUT, "verbose": False}}
        cfgs = [{{"x": 1}}]
        if __name__ == "__main__":
            open(FLAG, "w").close()
            raise SystemExit(5)
        """)
    result = run_dagrun("execute", wf, cwd=awkward_dir)
    assert result.rc == 0, result.stderr
    assert not flag.exists()
    assert read_jsonl(out / "results.jsonl")[0]["scores"]["f"] == [1]
