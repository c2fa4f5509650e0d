"""Sound before precise: every way a stage reaches the user's code is in its fingerprint, and
nothing else is.

The corpus (``tests/shapes/code_edits.py``) is written once; one fresh process prints every
shape's fingerprints and config digests, a second one (another hash seed) must print the
same, then every shape's edit is applied and a third process prints them again. Each shape
then checks that exactly the stages (and cfgs) its edit reaches changed. A notebook session
and real sweeps on the local backends close the loop.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import child_env, read_jsonl, run_dagrun, write_workflow
from tests.shapes.code_edits import BY_NAME, PRINT, SHAPES

STAGES = ("pre", "fit", "post")


def _print(root: Path, seed: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", PRINT, str(root)], cwd=root,
                          env=child_env({"PYTHONHASHSEED": seed}), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    found: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The fingerprints and digests of every shape: before (seeds 1 and 2), after the edits."""
    root = tmp_path_factory.mktemp("code shapes")
    for shape in SHAPES:
        shape.write(root)
    before = _print(root, "1")
    again = _print(root, "2")
    for shape in SHAPES:
        shape.edit(root)
    after = _print(root, "3")
    return {"before": before, "again": again, "after": after}


def test_fingerprints_and_digests_do_not_depend_on_the_hash_seed(
        corpus: dict[str, dict[str, Any]]) -> None:
    """Two processes with different PYTHONHASHSEED agree on every shape: a stage made by
    ``exec`` and a lambda alone on a line of a multi-line cfg list (both with a set
    constant, whose order follows the seed) included."""
    differ = sorted(name for name in corpus["before"]
                    if corpus["before"][name] != corpus["again"][name])
    assert not differ, differ


@pytest.mark.parametrize("name", [shape.name for shape in SHAPES if shape.edits])
def test_an_edit_changes_exactly_what_reaches_it(corpus: dict[str, dict[str, Any]],
                                                 name: str) -> None:
    shape = BY_NAME[name]
    before, after = corpus["before"][name], corpus["after"][name]
    changed = {stage for stage in STAGES if before[stage] != after[stage]}
    common = min(len(before["cfg"]), len(after["cfg"]))
    if before["cfg"][:common] != after["cfg"][:common]:
        changed.add("cfg")
    assert changed == set(shape.changed), \
        f"{name}: the edit changed {sorted(changed)}, expected {sorted(shape.changed)}"


# --------------------------------------------------------------------------------------------
# A notebook: helpers in other cells.

NOTEBOOK = r'''
import json
from IPython.core.interactiveshell import InteractiveShell
from dagrun.code.fingerprint import fingerprint

shell = InteractiveShell.instance()


def cell(source):
    result = shell.run_cell(source, silent=True)
    assert result.error_in_exec is None and result.error_before_exec is None, result


HELPER = "def helper(x):\n    return x + 1\n"
SCALE = "SCALE = 2\n"
STAGE = "def fit(cfg, x):\n    # the stage\n    return helper(x) * SCALE\n"
seen = {}
for source in (HELPER, SCALE, STAGE):
    cell(source)
seen["first"] = fingerprint(shell.user_ns["fit"])
for source in (HELPER, SCALE, STAGE):
    cell(source)
seen["again"] = fingerprint(shell.user_ns["fit"])
cell("def helper(x):\n    return x + 2\n")
seen["helper"] = fingerprint(shell.user_ns["fit"])
cell("SCALE = 3\n")
seen["scale"] = fingerprint(shell.user_ns["fit"])
cell("unrelated = lambda: 0\n")
seen["unrelated"] = fingerprint(shell.user_ns["fit"])
print(json.dumps(seen))
'''


def test_a_notebook_stage_follows_helpers_defined_in_other_cells(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", NOTEBOOK], cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["again"] == seen["first"]  # the same cells run again: the same code
    assert seen["helper"] != seen["first"]  # the helper's cell redefined
    assert seen["scale"] != seen["helper"]  # a value of another cell
    assert seen["unrelated"] == seen["scale"]


# --------------------------------------------------------------------------------------------
# Real sweeps: a detected edit is recomputed, and an unchanged sweep runs nothing.

E2E = """
import os

from e2e_settings import SCALE

HERE = os.path.dirname(os.path.abspath(__file__))


def _count(stage):
    with open(os.path.join(HERE, "counts.txt"), "a") as f:
        f.write(stage + "\\n")


def pre(cfg):
    _count("pre")
    return cfg["x"]


def fit(cfg, x):
    _count("fit")
    return x * SCALE


def post(cfg, y):
    _count("post")
    return {"y": y}


basecfg = {"out_path": "out", "verbose": False}
cfgs = [{"x": 1}, {"x": 2}]
"""


def _counts(folder: Path) -> dict[str, int]:
    lines = (folder / "counts.txt").read_text().split()
    return {stage: lines.count(stage) for stage in STAGES}


@pytest.mark.parametrize("backend", ["single", "multiprocessing"])
def test_an_edited_constant_of_another_module_is_recomputed(tmp_path: Path,
                                                           backend: str) -> None:
    (tmp_path / "e2e_settings.py").write_text("SCALE = 2\n")
    wf = write_workflow(tmp_path, E2E, "wf.py")
    flags = ["--backend", backend, "-j", "2"]
    first = run_dagrun("execute", wf, *flags, cwd=tmp_path)
    assert first.rc == 0, first.stderr
    (tmp_path / "e2e_settings.py").write_text(textwrap.dedent("""
        # the scale, edited
        SCALE = 3
    """))
    edited = run_dagrun("execute", wf, "--rerun-changed", *flags, cwd=tmp_path)
    assert edited.rc == 0, edited.stderr
    assert "the code of fit changed" in edited.stderr, edited.stderr
    ys = {r["experiment_id"]: r["scores"]["mean_y"] for r in read_jsonl(tmp_path / "out" /
                                                                          "results.jsonl")}
    assert ys == {0: 3, 1: 6}
    assert _counts(tmp_path) == {"pre": 2, "fit": 4, "post": 4}
    again = run_dagrun("execute", wf, "--rerun-changed", *flags, cwd=tmp_path)
    assert again.rc == 0, again.stderr
    assert "code of" not in again.stderr
    assert _counts(tmp_path) == {"pre": 2, "fit": 4, "post": 4}  # nothing ran
