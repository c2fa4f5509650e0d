"""Honest code fingerprints: what a stage depends on is part of its fingerprint, and nothing
that changes between processes (memory addresses, hash seeds) is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import child_env, run_dagrun, write_workflow

WORKFLOW = """
import functools

import helper_mod
from helper_mod import value as imported_value

SCALE = 2


class Scorer:
    def __init__(self, weight):
        self.weight = weight

    def __call__(self, cfg, x):
        return {"s": x * self.weight}


def pre(cfg):
    return cfg["x"] * SCALE


def _fit(cfg, x, extra=0):
    return helper_mod.value(x) + imported_value(extra)


fit = functools.partial(_fit, extra=1)
post = Scorer(3)

basecfg = {"out_path": "out"}
cfgs = [{"x": 1}, {"x": 2}]
"""

PRINT = """
import sys
sys.path.insert(0, sys.argv[1])
from dagrun.code.workflow import import_workflow_file
from dagrun.code.fingerprint import fingerprint
wf = import_workflow_file(sys.argv[1] + "/wf.py")
print(fingerprint(wf.pre), fingerprint(wf.fit), fingerprint(wf.post))
"""


def _setup(folder: Path) -> Path:
    (folder / "helper_mod.py").write_text("K = 1\n\ndef value(x):\n    return x + K\n")
    return write_workflow(folder, WORKFLOW, name="wf.py")


def _fingerprints(folder: Path, seed: str = "0") -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PRINT, str(folder)], cwd=folder,
                          env=child_env({"PYTHONHASHSEED": seed}), capture_output=True,
                          text=True, timeout=60, check=True)
    return proc.stdout.split()


def test_same_in_every_process(tmp_path: Path) -> None:
    """partial objects and callable instances are not fingerprinted by their repr (which
    holds a memory address): every process agrees."""
    _setup(tmp_path)
    assert _fingerprints(tmp_path, "1") == _fingerprints(tmp_path, "2")


def test_module_constants_and_user_modules_count(tmp_path: Path) -> None:
    wf = _setup(tmp_path)
    pre, fit, post = _fingerprints(tmp_path)
    wf.write_text(wf.read_text().replace("SCALE = 2", "SCALE = 3"))
    assert _fingerprints(tmp_path) == [_fingerprints(tmp_path)[0], fit, post]
    assert _fingerprints(tmp_path)[0] != pre
    helper = tmp_path / "helper_mod.py"
    helper.write_text(helper.read_text().replace("K = 1", "K = 5"))
    after = _fingerprints(tmp_path)
    assert after[1] != fit and after[2] == post  # fit calls helper_mod; post does not
    wf.write_text(wf.read_text().replace("extra=1", "extra=2"))
    assert _fingerprints(tmp_path)[1] != after[1]  # the partial's arguments count
    wf.write_text(wf.read_text().replace("Scorer(3)", "Scorer(4)"))
    assert _fingerprints(tmp_path)[2] != post  # the callable instance's state counts


def test_execute_notices_an_edited_constant_and_nothing_else(tmp_path: Path) -> None:
    wf = _setup(tmp_path)
    first = run_dagrun("execute", wf, "-q", cwd=tmp_path)
    assert first.rc == 0, first.stderr
    again = run_dagrun("execute", wf, cwd=tmp_path)
    assert again.rc == 0 and "code of" not in again.stderr  # no false change
    wf.write_text(wf.read_text().replace("SCALE = 2", "SCALE = 3"))
    edited = run_dagrun("execute", wf, cwd=tmp_path)
    assert edited.rc == 0
    assert "the code of pre changed since 2 run(s) computed it" in edited.stderr
    assert "the code of fit changed" not in edited.stderr


# --------------------------------------------------------------------------------------------
# Config digests and their cache.

def _scale(x: int) -> int:
    return x * 2


class _Net:
    def forward(self, x: int) -> int:
        return x * 2


def test_the_digest_cache_holds_no_code_of_the_users() -> None:
    """cfgs holding the user's code (a function, a class, an instance of one) get no cache
    key: their digest depends on code a pickle does not hold. A library's function and class
    pickle by name, as their digest names them, so they keep the cache."""
    import math
    from fractions import Fraction

    from dagrun.code.digest import cfgs_key

    assert cfgs_key([{"f": _scale}]) is None
    assert cfgs_key([{"model": _Net}]) is None
    assert cfgs_key([{"model": _Net()}]) is None
    assert cfgs_key([{"act": math.sqrt, "kind": Fraction, "x": Fraction(1, 3)}]) is not None


def test_a_value_compared_by_its_readable_form_is_named_once(
        capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    from dagrun.code.digest import config_digest

    first = config_digest({"lock_for_this_test": threading.Lock(), "x": 1})
    assert config_digest({"lock_for_this_test": threading.Lock(), "x": 1}) == first
    err = capsys.readouterr().err
    assert err.count("cfg key 'lock_for_this_test' holds a _thread.lock that cannot be "
                     "compared by content; compared by its readable form") == 1, err
