"""A sweep imports only what its own path uses; the stand-ins say what the modules would.

A sweep's fixed cost is mostly imports: cloudpickle (with ``inspect``, ``logging``,
``dataclasses``), ``platform``, ``uuid``, ``getpass``, ``shutil``, ``traceback`` cost a
short sweep ~20 ms together, and none is needed where cfgs and outputs are plain data and
nothing fails. dagrun imports each where it is used, or asks the same question itself.
Here: a whole ``run_experiments`` process imports none of them; each stand-in answers what
the module it replaces answers.
"""

from __future__ import annotations

import functools
import getpass
import inspect
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dagrun.code import sourcemap, staleness
from dagrun.disk import leases, provenance
from tests.helpers import child_env, write_workflow

NOT_IMPORTED = ("cloudpickle", "logging", "inspect", "dataclasses", "platform", "uuid",
                "getpass", "shutil", "traceback", "tokenize", "linecache", "tqdm",
                "concurrent.futures", "pebble")
# what ``multiprocessing.connection`` (the run pool's pipes) imports itself, via tempfile
MULTIPROCESSING_NEEDS = ("shutil",)

SCRIPT = """
import sys
from dagrun import run_experiments


def pre(cfg):
    return {"x": cfg["x"], "data": [1.5, {"nested": (None, b"raw")}]}


def fit(cfg, out):
    return [out["x"], 2.5, ("a", None)]


def post(cfg, out):
    return {"v": out[0]}


MODULES = @MODULES@

if __name__ == "__main__":
    run_experiments({"pre": pre, "fit": fit, "post": post, "out_path": "out",
                     "verbose": False, "backend": sys.argv[1], "num_cpus": 2},
                    [{"x": i} for i in range(3)])
    print(" ".join(sorted(m for m in MODULES if m in sys.modules)))
"""


@pytest.mark.parametrize("backend", ["single", "multiprocessing"])
def test_a_plain_sweep_imports_none_of_the_heavy_modules(tmp_path: Path, backend: str) -> None:
    """The script imports none of them itself; a sweep of three runs (stage outputs
    pickled, provenance recorded, results reduced) leaves them all unimported in the
    driver (``multiprocessing``'s pipes import ``shutil`` themselves)."""
    modules = NOT_IMPORTED if backend == "single" else tuple(
        m for m in NOT_IMPORTED if m not in MULTIPROCESSING_NEEDS)
    script = write_workflow(tmp_path, SCRIPT.replace("@MODULES@", repr(modules)),
                            name="script.py")
    proc = subprocess.run([sys.executable, str(script), backend],
                          cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
    assert (tmp_path / "out" / "results.jsonl").exists()
    assert (tmp_path / "out" / "0" / "fit.pkl").exists()


def test_a_failing_stage_still_records_its_traceback(tmp_path: Path) -> None:
    """``traceback`` is imported when a stage fails (not before): the record has it."""
    script = write_workflow(tmp_path, """
        from dagrun import run_experiments

        def pre(cfg):
            raise ValueError("bad cfg " + str(cfg["x"]))

        def fit(cfg, out):
            return out

        def post(cfg, out):
            return {}

        if __name__ == "__main__":
            run_experiments({"pre": pre, "fit": fit, "post": post, "out_path": "out",
                             "verbose": False, "retries": 0}, [{"x": 1}])
        """, name="script.py")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    failures = list((tmp_path / "out").rglob("pre.error"))
    assert failures, sorted(p.name for p in (tmp_path / "out").rglob("*"))
    text = failures[0].read_text()
    assert "Traceback (most recent call last)" in text and "bad cfg 1" in text


def _wrapped(depth: int) -> Any:
    def base() -> int:
        return 1

    fn: Any = base
    for _ in range(depth):
        fn = functools.wraps(fn)(lambda *a, _f=fn: _f(*a))
    return fn


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_unwrap_is_inspects(depth: int) -> None:
    fn = _wrapped(depth)
    assert staleness.unwrap(fn) is inspect.unwrap(fn)


def test_unwrap_refuses_a_loop_as_inspect_does() -> None:
    def a() -> None:
        pass

    def b() -> None:
        pass

    a.__wrapped__ = b  # type: ignore[attr-defined]
    b.__wrapped__ = a  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        inspect.unwrap(a)
    with pytest.raises(ValueError):
        staleness.unwrap(a)


def test_code_flags_are_inspects() -> None:
    assert (sourcemap.CO_VARARGS, sourcemap.CO_VARKEYWORDS) == (inspect.CO_VARARGS,
                                                               inspect.CO_VARKEYWORDS)


def test_python_version_and_libc_are_platforms() -> None:
    assert provenance.python_version() == platform.python_version()
    assert provenance._libc_ver() == platform.libc_ver()


@pytest.mark.parametrize("env", [{}, {"LOGNAME": "", "USER": "someone"},
                                 {"LOGNAME": "", "USER": "", "LNAME": "", "USERNAME": ""}])
def test_the_user_is_getpasss(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert provenance.user_name() == getpass.getuser()


def test_lease_names_are_random_hex_of_the_length_asked() -> None:
    names = {leases._random_hex(12) for _ in range(200)}
    assert len(names) == 200
    assert all(len(n) == 12 and int(n, 16) >= 0 for n in names)
    assert len(leases._random_hex(8)) == 8 and len(leases._random_hex(7)) == 7
    assert os.getpid() == int(leases._tag().split("-")[0])


def test_a_futures_timeout_is_a_timeout_without_importing_futures_first() -> None:
    """``concurrent.futures.TimeoutError`` (a class of its own before Python 3.11) still
    makes the run a timeout; the module is only looked up, never imported for it."""
    import concurrent.futures as cf

    from dagrun.backends.process.driver import lost_run_failure
    from dagrun.run.stages import RunTask

    task = RunTask(exp_id=0, rep=0, path="/nonexistent/0", attempt=1)
    for exc in (cf.TimeoutError(), TimeoutError()):
        assert lost_run_failure(task, exc, 5.0).kind == "timeout"
    assert lost_run_failure(task, OSError("gone"), 5.0).kind == "engine"
