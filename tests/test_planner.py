"""The one planner: what ``--dry-run`` and ``status`` say is what ``execute`` does; cfgs are
matched to the sweep's experiments by their config's content digest (never by position) and
runs are checked against it; the plan is the current cfgs.

Every check goes through the ``dagrun`` command, as a user would see it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Sweep, read_jsonl, run_dagrun, write_workflow

# --------------------------------------------------------------------------------------------
# 1. One planner: --dry-run refuses exactly when execute does, and sees unreadable results.


def test_an_edited_cfg_is_a_new_experiment_and_dry_run_says_so_like_execute(
        sweep: Sweep) -> None:
    sweep.write([{"x": 0}, {"x": 1}])
    assert sweep.execute().rc == 0
    sweep.write([{"x": 0}, {"x": 5}])
    dry = sweep.execute("--dry-run")
    assert dry.rc == 0, dry.stderr
    assert "1 edited (each a new experiment, the old one kept; e.g. 1 -> 2: x: 1 -> 5)" \
        in dry.stdout
    assert "run 2/0: missing" in dry.stdout and "run 1/0" not in dry.stdout
    real = sweep.execute()
    assert real.rc == 0, real.stderr
    assert "1 edited" in real.stderr
    assert [(r["experiment_id"], r["x"]) for r in sweep.results()] == [(0, 0), (2, 5)]
    assert [sweep.count("pre", i) for i in range(3)] == [1, 1, 1]
    sweep.write([{"x": 0}, {"x": 1}])  # the edit undone: experiment 1 is back, as it was
    back = sweep.execute()
    assert back.rc == 0 and "1 back from earlier cfgs" in back.stderr, back.stderr
    assert [(r["experiment_id"], r["x"]) for r in sweep.results()] == [(0, 0), (1, 1)]
    assert [sweep.count("pre", i) for i in range(3)] == [1, 1, 1]


def test_dry_run_lists_a_done_run_with_unreadable_post_json(sweep: Sweep) -> None:
    sweep.write([{"x": 0}, {"x": 1}])
    assert sweep.execute().rc == 0
    (sweep.out / "1" / "post.json").write_text("{garbage", encoding="utf-8")
    dry = sweep.execute("--dry-run")
    assert dry.rc == 0
    assert "run 1/0: unreadable result" in dry.stdout
    assert sweep.execute().rc == 0
    assert sweep.count("post", 1) == 2


# --------------------------------------------------------------------------------------------
# 3. Runs are checked against the plan.


def test_reordered_shuffled_and_grown_cfgs_keep_every_finished_experiment(
        sweep: Sweep) -> None:
    sweep.write([{"x": 0}, {"x": 1}, {"x": 2}])
    assert sweep.execute().rc == 0
    sweep.write([{"x": 2}, {"x": 9}, {"x": 0}, {"x": 1}, {"x": 7}])
    result = sweep.execute()
    assert result.rc == 0, result.stderr
    assert "experiments since the last plan: 1 reordered, 2 new" in result.stderr
    assert [(r["experiment_id"], r["x"]) for r in sweep.results()] == \
        [(0, 0), (1, 1), (2, 2), (3, 9), (4, 7)]
    assert [sweep.count("pre", i) for i in range(5)] == [1, 1, 1, 1, 1]
    again = sweep.execute()  # the same order again: nothing moved, nothing to say
    assert again.rc == 0 and "since the last plan" not in again.stderr, again.stderr


def test_two_equal_cfgs_are_two_experiments(sweep: Sweep) -> None:
    sweep.write([{"x": 1}, {"x": 1}], repetitions=2)
    assert sweep.execute().rc == 0
    sweep.write([{"x": 1}, {"x": 3}, {"x": 1}, {"x": 1}], repetitions=2)
    assert sweep.execute().rc == 0
    assert [(r["experiment_id"], r["x"]) for r in sweep.results()] == \
        [(0, 1), (1, 1), (2, 3), (3, 1)]
    assert [sweep.count("pre", i) for i in range(4)] == [1, 1, 1, 1]


def test_a_lost_plan_is_found_again_in_the_run_folders(sweep: Sweep) -> None:
    """Without OUT/.dagrun the markers' config digests say which folder holds which
    experiment: reversed cfgs recompute nothing."""
    sweep.write([{"x": 0}, {"x": 1}, {"x": 2}])
    assert sweep.execute().rc == 0
    shutil.rmtree(sweep.out / ".dagrun")
    sweep.write([{"x": 2}, {"x": 1}, {"x": 0}, {"x": 4}])
    result = sweep.execute()
    assert result.rc == 0, result.stderr
    assert "3 found in their folders (no plan was stored), 1 new" in result.stderr
    lines = sweep.results()
    assert [(r["experiment_id"], r["x"]) for r in lines] == [(0, 0), (1, 1), (2, 2), (3, 4)]
    assert [sweep.count("pre", i) for i in range(4)] == [1, 1, 1, 1]


def test_a_folder_copied_to_a_new_id_is_not_its_result(sweep: Sweep) -> None:
    sweep.write([{"x": 3}])
    assert sweep.execute().rc == 0
    shutil.copytree(sweep.out / "0", sweep.out / "1")
    sweep.write([{"x": 3}, {"x": 4}])
    assert sweep.execute().rc == 0
    assert sweep.count("pre", 2) == 1  # a new experiment never takes a folder in use
    assert [(r["experiment_id"], r["scores"]["mean_acc"]) for r in sweep.results()] == \
        [(0, 30.5), (2, 40.5)]


def test_a_run_holding_another_configs_results_is_recomputed(sweep: Sweep) -> None:
    sweep.write([{"x": 3}, {"x": 4}])
    assert sweep.execute().rc == 0
    for name in ("pre.done", "fit.done", "post.done", "post.json", "pre.pkl", "fit.pkl"):
        shutil.copy2(sweep.out / "0" / name, sweep.out / "1" / name)  # copied by hand
    (sweep.out / ".dagrun" / "results-index.json").unlink()
    dry = sweep.execute("--dry-run")
    assert "run 1/0: holds results of another config" in dry.stdout
    assert sweep.execute().rc == 0
    assert [r["scores"]["mean_acc"] for r in sweep.results()] == [30.5, 40.5]


def test_an_edited_post_is_noticed_after_code_json_is_lost(sweep: Sweep) -> None:
    workflow = sweep.write([{"x": 0}, {"x": 1}])
    assert sweep.execute().rc == 0
    (sweep.out / ".dagrun" / "code.json").unlink()
    source = workflow.read_text(encoding="utf-8")
    workflow.write_text(source.replace('model["w"] + 0.5', 'model["w"] + 0.25'),
                        encoding="utf-8")
    result = sweep.execute("--rerun-changed")
    assert result.rc == 0, result.stderr
    assert "the code of post changed" in result.stderr
    assert [sweep.count("post", i) for i in range(2)] == [2, 2]
    assert [r["scores"]["mean_acc"] for r in sweep.results()] == [0.25, 10.25]


# --------------------------------------------------------------------------------------------
# 4. The plan is the current cfgs.


def test_lowering_repetitions_updates_results_at_once(sweep: Sweep) -> None:
    sweep.write([{"x": 0}], repetitions=3)
    assert sweep.execute().rc == 0
    sweep.write([{"x": 0}], repetitions=2)
    result = sweep.execute()
    assert result.rc == 0, result.stderr
    (line,) = sweep.results()
    assert line["scores"]["rep_seen"] == [0, 1]
    assert line["scores"]["mean_acc"] == 0.5 + 0.5
    assert sweep.count("pre", 0, 2) == 1  # nothing recomputed


def test_removed_cfgs_leave_the_plan_status_and_results_until_clean_orphans(
        sweep: Sweep) -> None:
    sweep.write([{"x": 0}, {"x": 1}, {"x": 2}])
    assert sweep.execute().rc == 0
    sweep.write([{"x": 0}, {"x": 2}])
    result = sweep.execute()
    assert result.rc == 0, result.stderr
    assert "1 no longer in cfgs (kept on disk; `dagrun clean --orphans` removes them)" \
        in result.stderr
    assert [r["experiment_id"] for r in sweep.results()] == [0, 2]
    status = run_dagrun("status", sweep.out)
    assert "2 experiments, 2 runs" in status.stdout
    assert "experiments complete: 2 of 2" in status.stdout
    assert "1 orphan" in status.stdout
    assert (sweep.out / "1" / "post.json").exists()  # the folder is kept
    cleaned = run_dagrun("clean", sweep.out, "--orphans")
    assert cleaned.rc == 0, cleaned.stderr
    assert "removed 1 orphan experiment(s) (ids 1)" in cleaned.stdout
    assert not (sweep.out / "1").exists() and (sweep.out / "2" / "post.json").exists()
    sweep.write([{"x": 0}, {"x": 2}, {"x": 1}])  # back after its folder was removed: new
    assert sweep.execute().rc == 0
    assert [(r["experiment_id"], r["x"]) for r in sweep.results()] == [(0, 0), (2, 2), (3, 1)]


# --------------------------------------------------------------------------------------------
# 5. Rough edges: status and a garbage post.json; the plan's version.


def test_status_counts_a_garbage_post_json_as_not_done(sweep: Sweep) -> None:
    sweep.write([{"x": 0}, {"x": 1}])
    assert sweep.execute().rc == 0
    (sweep.out / "0" / "post.json").write_bytes(b"\x00not json")
    status = run_dagrun("status", sweep.out)
    assert status.rc == 0
    assert "runs: 1 done, 0 pending, 1 incomplete, 0 failed" in status.stdout
    assert "1 run(s) have post.done but a post.json that cannot be read" in status.stdout
    assert "experiments complete: 1 of 2" in status.stdout


def test_a_plan_written_by_a_newer_dagrun_is_refused(sweep: Sweep) -> None:
    sweep.write([{"x": 0}])
    assert sweep.execute().rc == 0
    plan = sweep.out / ".dagrun" / "plan.json"
    data = json.loads(plan.read_text(encoding="utf-8"))
    text = plan.read_text(encoding="utf-8").replace(f'"version": {data["version"]}',
                                                    '"version": 99', 1)
    plan.write_text(text, encoding="utf-8")
    for result in (run_dagrun("status", sweep.out), sweep.execute()):
        assert result.rc == 2
        assert len(result.error_lines) == 1, result.stderr
        assert "written by a newer dagrun (plan version 99" in result.error_lines[0]


# --------------------------------------------------------------------------------------------
# 6. Configs compared by content, not by their readable view.

OBJECT_WORKFLOW = '''
import pandas as pd


class DataSpec:
    def __init__(self, values):
        self.values = values


def pre(cfg):
    return sum(cfg["spec"].values) + float(cfg["frame"]["v"].sum())


def fit(cfg, total):
    return total


def post(cfg, total):
    return {{"total": total}}


SPEC = [1.0] * 200
SPEC[{spec_index}] = {spec_value}
FRAME = pd.DataFrame({{"v": [0.0] * 100}})
FRAME.loc[{frame_row}, "v"] = 1.0

basecfg = {{"out_path": {out!r}}}
cfgs = [{{"spec": DataSpec(SPEC), "frame": FRAME}}]
'''


def _object_workflow(folder: Path, out: Path, spec: tuple[int, float], row: int) -> Path:
    source = OBJECT_WORKFLOW.format(spec_index=spec[0], spec_value=spec[1], frame_row=row,
                                    out=str(out))
    return write_workflow(folder, source)


def test_an_object_or_dataframe_edited_inside_is_a_new_experiment(awkward_dir: Path) -> None:
    out = awkward_dir / "out"
    wf = _object_workflow(awkward_dir, out, (0, 1.0), 0)
    assert run_dagrun("execute", wf, cwd=awkward_dir).rc == 0
    again = run_dagrun("execute", wf, cwd=awkward_dir)
    assert again.rc == 0 and "since the last plan" not in again.stderr, again.stderr
    for n, (spec, row) in enumerate((((100, 2.0), 0), ((0, 1.0), 50)), start=1):
        _object_workflow(awkward_dir, out, spec, row)
        dry = run_dagrun("execute", wf, "--dry-run", cwd=awkward_dir)
        assert dry.rc == 0 and "1 edited" in dry.stdout, dry.stdout + dry.stderr
        assert n == 2 or "the same readable view" in dry.stdout  # DataSpec has no repr
        result = run_dagrun("execute", wf, cwd=awkward_dir)
        assert result.rc == 0, result.stderr
        (line,) = read_jsonl(out / "results.jsonl")
        assert line["experiment_id"] == n
        assert line["scores"]["mean_total"] == (202.0 if n == 1 else 201.0)


# --------------------------------------------------------------------------------------------
# 2. The content digest itself.

DIGEST_SCRIPT = '''
import sys
from dagrun.code.digest import config_digest

class DataSpec:
    def __init__(self, values):
        self.values = values
        self.tags = {"a", "b", "c"}

print(config_digest({"spec": DataSpec([1.0, 2.0]), "s": {"x", "y"}, "out_path": sys.argv[1]}))
'''


def _digest_in_process(folder: Path, module_name: str, seed: str, out_path: str) -> str:
    """The digest of the same cfg computed by a fresh process, with the class defined in a
    module of ``module_name`` (``__main__``: run as a script)."""
    script = write_workflow(folder, DIGEST_SCRIPT, "digest_script.py")
    if module_name == "__main__":
        code = f"import runpy, sys; sys.argv = ['x', {out_path!r}]; " \
               f"runpy.run_path({str(script)!r}, run_name='__main__')"
    else:
        code = ("import importlib.util, sys; "
                f"sys.argv = ['x', {out_path!r}]; "
                f"spec = importlib.util.spec_from_file_location({module_name!r}, "
                f"{str(script)!r}); m = importlib.util.module_from_spec(spec); "
                f"sys.modules[{module_name!r}] = m; spec.loader.exec_module(m)")
    env = {**os.environ, "PYTHONHASHSEED": seed}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return proc.stdout.strip()


def test_digest_is_stable_across_processes_seeds_module_names_and_out_path(
        tmp_path: Path) -> None:
    digests = {_digest_in_process(tmp_path, "__main__", "1", "/a"),
               _digest_in_process(tmp_path, "dagrun_workflow_x", "2", "/b"),
               _digest_in_process(tmp_path, "__main__", "3", "/c")}
    assert len(digests) == 1


def test_digest_tells_values_apart_by_type_and_content() -> None:
    import numpy as np
    import pandas as pd

    from dagrun.code.digest import config_digest, digest

    assert len({digest(1), digest(1.0), digest(True), digest("1"), digest(b"1")}) == 5
    assert digest([1, 2]) != digest((1, 2))
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
    assert digest(np.arange(3)) != digest(np.arange(3).astype(float))
    assert digest(np.arange(6).reshape(2, 3)) != digest(np.arange(6).reshape(3, 2))
    assert digest(np.float32(1)) != digest(np.float64(1))
    frame = pd.DataFrame({"a": range(10)})
    edited = frame.copy()
    edited.loc[5, "a"] = -1
    assert digest(frame) != digest(edited)
    assert digest(frame) != digest(frame.set_axis(list("abcdefghij")))
    cycle: list[object] = [1]
    cycle.append(cycle)
    assert digest(cycle) == digest(cycle)
    assert config_digest({"x": 1, "run_id": 3, "experiment_id": 2, "out_path": "/p"}) == \
        config_digest({"x": 1})

    def scale(c: int) -> int:
        return c

    first = digest(scale)

    def scale(c: int) -> int:  # type: ignore[no-redef]  # the same name, other code
        return c + 1

    assert digest(scale) != first


def test_structured_arrays_digest_by_their_fields_not_their_padding() -> None:
    """A C-struct-like record array (scikit-learn's tree nodes) has alignment padding whose
    bytes are whatever the memory held; an array holding objects has pointers. Neither may
    change a digest; the fields' values must."""
    import numpy as np

    from dagrun.code.digest import digest

    node = np.dtype({"names": ["left", "threshold", "leaf"], "formats": ["<i8", "<f8", "u1"],
                     "offsets": [0, 8, 16], "itemsize": 24})
    clean = np.zeros(5, dtype=node)
    clean["left"], clean["threshold"], clean["leaf"] = range(5), 0.5, 1
    dirty = clean.copy()
    dirty.view(np.uint8).reshape(5, 24)[:, 17:] = np.arange(35, dtype=np.uint8).reshape(5, 7)
    assert digest(clean) == digest(dirty) and digest(clean[2]) == digest(dirty[2])
    edited = clean.copy()
    edited["threshold"][3] = 0.25
    assert digest(edited) != digest(clean)
    renamed = clean.astype({"names": ["right", "threshold", "leaf"], "formats": ["<i8", "<f8",
                            "u1"], "offsets": [0, 8, 16], "itemsize": 24})
    assert digest(renamed) != digest(clean)
    held = np.array([(1, [1, 2])], dtype=[("x", "i8"), ("o", "O")])
    assert digest(held) == digest(np.array([(1, [1, 2])], dtype=[("x", "i8"), ("o", "O")]))
    assert digest(held) != digest(np.array([(1, [1, 3])], dtype=[("x", "i8"), ("o", "O")]))


PADDED_STUDY = """
import os
import sys

import numpy as np
from dagrun import run_experiments

NODE = np.dtype({"names": ["feature", "threshold", "leaf"], "formats": ["<i8", "<f8", "u1"],
                 "offsets": [0, 8, 16], "itemsize": 24})


def fitted_tree(seed):
    nodes = np.zeros(50, dtype=NODE)
    nodes["feature"], nodes["threshold"] = seed, np.linspace(0, 1, 50)
    # the padding holds what the memory held, different in every process
    nodes.view(np.uint8).reshape(50, 24)[:, 17:] = np.frombuffer(os.urandom(350), np.uint8
                                                                 ).reshape(50, 7)
    return nodes


def pre(cfg):
    return len(cfg["trees"])


def fit(cfg, n):
    return n * cfg["X"].sum()


def post(cfg, y):
    return {"y": float(y)}


if __name__ == "__main__":
    X = np.ones((100, 10))
    cfgs = [{"X": X, "trees": [fitted_tree(s) for s in range(k)]} for k in (1, 2, 3)]
    summary = run_experiments({"pre": pre, "fit": fit, "post": post, "out_path": "out",
                               "backend": sys.argv[1], "verbose": False}, cfgs)
    print("done now", summary.done)
"""


@pytest.mark.parametrize("backend", ["single", "multiprocessing"])
def test_a_study_with_fitted_trees_in_its_cfgs_runs_again_as_a_no_op(tmp_path: Path,
                                                                       backend: str) -> None:
    """cfgs holding a data set and lists of fitted trees (record arrays with padding), built
    anew by each run of the script: the second ``python study.py`` does nothing."""
    script = write_workflow(tmp_path, PADDED_STUDY, "study.py")
    for expected in ("done now 3", "done now 0"):
        proc = subprocess.run([sys.executable, str(script), backend], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        assert expected in proc.stdout, proc.stdout + proc.stderr


def test_an_edited_function_in_a_cfg_is_a_new_experiment_also_on_the_cached_path(
        tmp_path: Path) -> None:
    """Digests are cached between executions under a key of the cfgs' pickle; a function
    pickles by name, so cfgs holding the user's functions are never taken from the cache:
    the edited function makes its cfg a new experiment."""
    wf = write_workflow(tmp_path, """
        def scale(x):
            return x * 2

        def pre(cfg):
            return cfg["f"](cfg["x"]) if "f" in cfg else cfg["x"]

        def fit(cfg, v):
            return v

        def post(cfg, v):
            return {"v": v}

        basecfg = {"out_path": "out", "verbose": False}
        cfgs = [{"x": 1, "f": scale}, {"x": 2}]
        """, name="wf.py")
    assert run_dagrun("execute", wf, cwd=tmp_path).rc == 0
    assert run_dagrun("execute", wf, cwd=tmp_path).rc == 0  # unchanged: nothing to say
    wf.write_text(wf.read_text().replace("x * 2", "x * 3"))
    result = run_dagrun("execute", wf, cwd=tmp_path)
    assert result.rc == 0, result.stderr
    assert "1 edited" in result.stderr
    assert [(r["experiment_id"], r["scores"]["mean_v"]) for r in
            read_jsonl(tmp_path / "out" / "results.jsonl")] == [(1, 2), (2, 3)]


def test_objects_shared_by_cfgs_digest_the_same_when_encoded_once() -> None:
    """``shared_objects`` (digests of many cfgs at plan time) replays an object's encoding;
    the digests are exactly those computed one cfg at a time, also for an object that refers
    back to a container around it and one that changes between two blocks."""
    from dagrun.code.digest import config_digest
    from dagrun.code.encoding import shared_objects

    class Box:
        def __init__(self, value: object) -> None:
            self.value = value

    shared = Box([1.0, 2.0])
    loop: dict[str, object] = {}
    loop["box"] = Box(loop)  # refers back to the cfg that holds it
    cfgs = [{"a": shared, "k": k} for k in range(3)] + [{"a": shared, "loop": loop}]
    alone = [config_digest(cfg) for cfg in cfgs]
    with shared_objects():
        together = [config_digest(cfg) for cfg in cfgs]
    assert together == alone
    shared.value = [3.0]
    with shared_objects():
        assert config_digest(cfgs[0]) != alone[0]


def test_a_big_array_shared_by_cfgs_is_hashed_once_and_digests_the_same() -> None:
    """Under ``shared_objects`` an array met again after the same stream takes the hash's
    state from the first time: the digests are those computed one cfg at a time (the array
    after other keys, under another key, beside another array, a changed copy), and the
    array is read once where the stream before it is the same."""
    import numpy as np

    from dagrun.code import encoding
    from dagrun.code.digest import config_digest
    from dagrun.code.encoding import shared_objects

    X = np.arange(100_000, dtype=np.float64)
    other = X.copy()
    other[-1] = -1.0
    cfgs = [{"X": X, "k": 0}, {"X": X, "k": 1}, {"X": other, "k": 2}, {"A": 1, "X": X},
            {"Y": X}, {"X": X, "Z": X}, {"X": X.reshape(1000, 100)}, {"X": X[::2]}]
    alone = [config_digest(cfg) for cfg in cfgs]
    assert len(set(alone)) == len(alone)
    hashed: list[object] = []  # the arrays hashed (each time a state is kept)

    class Kept(dict):  # type: ignore[type-arg]
        def __setitem__(self, key: object, value: tuple[object, object]) -> None:
            hashed.append(value[0])
            super().__setitem__(key, value)

    assert encoding._STATES is None
    encoding._STATES = Kept()  # the block below uses it (as an outer block's)
    try:
        with shared_objects():
            together = [config_digest(cfg) for cfg in cfgs]
    finally:
        encoding._STATES = None
    assert together == alone
    # X is met 6 times: in cfgs 0, 1, 3, 4 and twice in 5. In cfg 1 and first in cfg 5 it
    # follows the same bytes as in cfg 0: not hashed again
    assert sum(1 for owner in hashed if owner is X) == 4
    with shared_objects():
        pass
    assert encoding._STATES is None  # nothing kept after the block


def test_the_digest_cache_key_covers_array_bytes_without_copying_them() -> None:
    """``cfgs_key`` hashes arrays out of band: an equal array (another object) gives the
    same key, one changed element, another shape or another order of the same bytes
    another."""
    import numpy as np

    from dagrun.code.digest import cfgs_key

    X = np.arange(200_000, dtype=np.float64)
    key = cfgs_key([{"X": X, "k": 0}, {"X": X, "k": 1}])
    assert key is not None
    same = X.copy()
    assert cfgs_key([{"X": same, "k": 0}, {"X": same, "k": 1}]) == key
    changed = X.copy()
    changed[123_456] += 1.0
    assert cfgs_key([{"X": changed, "k": 0}, {"X": X, "k": 1}]) != key
    assert cfgs_key([{"X": X.reshape(2, -1), "k": 0}, {"X": X, "k": 1}]) != key
    fortran = np.asfortranarray(X.reshape(400, 500))
    assert cfgs_key([{"X": fortran}]) != cfgs_key([{"X": X.reshape(400, 500)}])
    strided = cfgs_key([{"X": X[::2]}])  # not contiguous: in band
    assert strided is not None and cfgs_key([{"X": changed[::2]}]) != strided
