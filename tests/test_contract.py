"""The on-disk contract (CONTRACT.md sections 1 and 3): layout, markers, results.jsonl, and
each stage call getting its own copy of its run's cfg.

Each test runs a real ``dagrun execute`` in a folder with an awkward name, on every backend:
single, multiprocessing, ray (a Ray head on loopback), ssh (an sshd on loopback) and slurm (a
one-node Slurm cluster). A service
starts once for all the tests of its backend; where it cannot start the tests of that backend
skip, or fail under DAGRUN_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import pickle
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dagrun
from tests.helpers import Sweep, backend_flags, read_jsonl, run_dagrun, write_workflow
from tests.services import require_service
from tests.services.ray_cluster import RayCluster, ray_available
from tests.services.slurm import SlurmCluster, slurm_unavailable_reason
from tests.services.sshd import SshServer, sshd_unavailable_reason

pytestmark = pytest.mark.timeout(300)  # includes starting a Ray head on a busy machine

ALL_BACKENDS = ["single", "multiprocessing", "ray", "ssh", "slurm"]
RUN_TIMEOUT = 180.0  # one ``dagrun execute`` of a few runs (Ray and ssh are slow to start)


@dataclass(frozen=True)
class Target:
    """A backend as these tests drive it: its command-line flags, the environment the
    ``dagrun`` process needs (a Ray cluster's address) and basecfg settings (ssh_config)."""

    name: str
    flags: list[str]
    env: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def execute(self, sweep: Sweep) -> tuple[int, str]:
        """``dagrun execute`` the sweep's workflow on this backend: (exit code, stderr)."""
        result = sweep.execute(*self.flags, env=self.env, timeout=RUN_TIMEOUT)
        return result.rc, result.stderr

    def execute_template(self, folder: Path, template: str) -> list[dict[str, Any]]:
        """Write ``template`` (formatted with ``out`` and this backend's ``settings``) as a
        workflow in ``folder``, execute it here, expect success; the results lines."""
        out = folder / "out"
        wf = write_workflow(folder, template.format(out=str(out), settings=self.settings))
        result = run_dagrun("execute", wf, *self.flags, cwd=folder, env=self.env,
                            timeout=RUN_TIMEOUT)
        assert result.rc == 0, result.stderr
        return read_jsonl(out / "results.jsonl")


@pytest.fixture(scope="module", params=ALL_BACKENDS)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """Each backend in turn, with its service running (module scope: one Ray head and one
    sshd for all the tests, stopped before the next backend's tests start)."""
    name = str(request.param)
    if name == "ray":
        require_service(ray_available())
        with RayCluster(auth=False) as cluster:
            yield Target(name, backend_flags(name), env=cluster.client_env())
    elif name == "ssh":
        require_service(sshd_unavailable_reason())
        with SshServer() as server:
            yield Target(name, ["--backend", "ssh", "--hosts", f"{server.host_alias}:2"],
                         settings={"ssh_config": str(server.config_path)})
    elif name == "slurm":
        require_service(slurm_unavailable_reason())
        with SlurmCluster() as cluster:
            yield Target(name, backend_flags(name), env=cluster.client_env())
    else:
        yield Target(name, backend_flags(name))


CFGS = [{"x": 3, "opt": {"lr": 0.1, "name": "a b"}}, {"x": 1, "opt": {"lr": 0.01, "name": "c"}},
        {"x": 2, "opt": {"lr": 1.0, "name": "d'e"}}]
MARKER_FIELDS = {"stage", "started", "finished", "seconds", "host", "pid", "attempt"}
RUN_FILES = {"config.json", "pre.pkl", "pre.done", "fit.pkl", "fit.done", "post.json",
             "post.done"}


def expected_post(cfg: dict[str, Any], rep: int) -> dict[str, Any]:
    """What the counting workflow's post returns for one run."""
    x = cfg["x"]
    assert isinstance(x, int)
    return {"acc": x * 10 + rep + 0.5, "rep_seen": rep, "tag": f"t{x}"}


def check_marker(path: Path, stage: str) -> dict[str, Any]:
    """Check the fields of one ``.done`` marker (every backend runs on this machine)."""
    marker = json.loads(path.read_text())
    assert set(marker) >= MARKER_FIELDS, f"{path} lacks {MARKER_FIELDS - set(marker)}"
    assert marker["stage"] == stage
    assert marker["host"] == socket.gethostname()
    assert isinstance(marker["pid"], int) and marker["pid"] > 0
    assert marker["attempt"] == 1
    assert isinstance(marker["seconds"], (int, float)) and marker["seconds"] >= 0
    for key in ("started", "finished"):
        assert isinstance(marker[key], (str, int, float)) and str(marker[key])
    return dict(marker)


def check_run_folder(run: Path, cfg: dict[str, Any], exp_id: int, rep: int,
                     sweep: Sweep) -> float:
    """Check one run folder completely; returns the fit time its marker recorded."""
    names = {p.name for p in run.iterdir()}
    assert names >= RUN_FILES, f"{run} lacks {RUN_FILES - names}"
    extra = names - RUN_FILES
    # pre prints, so it leaves a log; silent stages may leave none. Nothing else (no temp files).
    assert "pre.log" in extra
    assert extra <= {"pre.log", "fit.log", "post.log"}, f"unexpected files in {run}: {extra}"
    assert "pre says hello" in (run / "pre.log").read_text()

    config = json.loads((run / "config.json").read_text())
    assert config == {**cfg, "experiment_id": exp_id, "run_id": rep, "out_path": str(run)}
    assert sweep.received_cfg(exp_id, rep) == config  # the stage functions got the same keys

    with open(run / "pre.pkl", "rb") as f:
        assert pickle.load(f) == {"x": cfg["x"], "rep": rep}
    with open(run / "fit.pkl", "rb") as f:
        assert pickle.load(f) == {"w": int(cfg["x"]) * 10 + rep, "rep": rep}
    post = json.loads((run / "post.json").read_text())
    assert isinstance(post, dict)
    assert expected_post(cfg, rep).items() <= post.items()

    for stage in ("pre", "fit", "post"):
        check_marker(run / f"{stage}.done", stage)
    fit_marker = json.loads((run / "fit.done").read_text())
    return float(fit_marker["seconds"])


def execute(sweep: Sweep, target: Target, repetitions: int) -> None:
    """Write the counting workflow with CFGS and execute it; it must succeed cleanly."""
    sweep.write(CFGS, repetitions=repetitions, settings=target.settings)
    rc, err = target.execute(sweep)
    assert rc == 0, err
    assert "Traceback" not in err


def check_top_level(sweep: Sweep) -> None:
    """OUT holds the results, the engine's folder and one folder per experiment, and
    report.html when the report extra is installed; nothing else."""
    names = {p.name for p in sweep.out.iterdir()} - {"report.html"}
    assert names == {"results.jsonl", ".dagrun", "0", "1", "2"}


def check_results_order(rows: list[dict[str, Any]]) -> None:
    """results.jsonl has one line per experiment, sorted by id."""
    ids = [row["experiment_id"] for row in rows]
    assert ids == [0, 1, 2]  # sorted, no duplicates, one line per experiment


def test_layout_and_results_one_repetition(sweep: Sweep, target: Target) -> None:
    execute(sweep, target, repetitions=1)
    check_top_level(sweep)
    fit_seconds = {}
    for exp_id, cfg in enumerate(CFGS):
        run = sweep.out / str(exp_id)
        fit_seconds[exp_id] = check_run_folder(run, cfg, exp_id, 0, sweep)
        assert not (run / "0").exists()  # no repetition folder when repetitions == 1

    rows = sweep.results()
    check_results_order(rows)
    for row, (exp_id, cfg) in zip(rows, enumerate(CFGS), strict=True):
        scores = row["scores"]
        assert isinstance(scores, dict)
        assert set(row) == {*cfg, "experiment_id", "out_path", "scores"}
        assert {k: row[k] for k in cfg} == cfg
        assert row["out_path"] == str(sweep.out / str(exp_id))
        # the original's format also with one repetition: lists plus mean_M/std_M (n_M)
        numeric = ("acc", "rep_seen", "fit_time")
        assert set(scores) == {"tag", *numeric, *(f"{p}_{m}" for p in ("mean", "std", "n")
                                                  for m in numeric)}
        assert {k: scores[k] for k in ("acc", "rep_seen", "tag")} == \
            {k: [v] for k, v in expected_post(cfg, 0).items()}
        assert isinstance(scores["mean_fit_time"], float) and scores["mean_fit_time"] >= 0
        # fit_time is the time spent in fit, the same span the fit marker recorded
        assert scores["fit_time"] == [pytest.approx(fit_seconds[exp_id], abs=1e-5)]
        for m in numeric:
            assert (scores[f"mean_{m}"], scores[f"std_{m}"], scores[f"n_{m}"]) == \
                (float(scores[m][0]), 0.0, 1)

    df = dagrun.read_results(sweep.out)
    assert list(df["experiment_id"]) == [0, 1, 2]
    assert list(df["scores.mean_acc"]) == [30.5, 10.5, 20.5]
    assert "scores.mean_fit_time" in df.columns
    assert list(df["opt.name"]) == ["a b", "c", "d'e"]

    # Executing a finished sweep again recomputes nothing and duplicates no line.
    before = (sweep.out / "results.jsonl").read_bytes()
    markers_before = {p: p.read_bytes() for p in sweep.out.rglob("*.done")}
    rc, err = target.execute(sweep)
    assert rc == 0, err
    assert (sweep.out / "results.jsonl").read_bytes() == before
    assert {p: p.read_bytes() for p in sweep.out.rglob("*.done")} == markers_before
    for exp_id in range(3):
        assert [sweep.count(s, exp_id) for s in ("pre", "fit", "post")] == [1, 1, 1]


def test_layout_and_results_three_repetitions(sweep: Sweep, target: Target) -> None:
    execute(sweep, target, repetitions=3)
    check_top_level(sweep)
    fit_seconds: dict[int, list[float]] = {}
    for exp_id, cfg in enumerate(CFGS):
        exp_dir = sweep.out / str(exp_id)
        assert {p.name for p in exp_dir.iterdir()} == {"0", "1", "2"}
        fit_seconds[exp_id] = [check_run_folder(exp_dir / str(rep), cfg, exp_id, rep, sweep)
                               for rep in range(3)]

    rows = sweep.results()
    check_results_order(rows)
    for row, (exp_id, cfg) in zip(rows, enumerate(CFGS), strict=True):
        assert set(row) == {*cfg, "experiment_id", "out_path", "scores"}
        assert {k: row[k] for k in cfg} == cfg
        assert row["out_path"] == str(sweep.out / str(exp_id))
        scores = row["scores"]
        assert isinstance(scores, dict)
        numeric = ("acc", "rep_seen", "fit_time")
        assert set(scores) == {"tag", *numeric, *(f"{p}_{m}" for p in ("mean", "std", "n")
                                                  for m in numeric)}
        per_rep = [expected_post(cfg, rep) for rep in range(3)]
        assert scores["acc"] == [p["acc"] for p in per_rep]
        assert scores["rep_seen"] == [0, 1, 2]
        assert scores["tag"] == [p["tag"] for p in per_rep]  # not numeric: no mean/std
        assert scores["fit_time"] == pytest.approx(fit_seconds[exp_id], abs=1e-5)
        for m in numeric:
            values = np.asarray(scores[m], dtype=float)
            assert scores[f"mean_{m}"] == pytest.approx(float(np.mean(values)))
            assert scores[f"std_{m}"] == pytest.approx(float(np.std(values)))  # ddof=0
            assert scores[f"n_{m}"] == 3
        assert scores["std_rep_seen"] == pytest.approx(np.sqrt(2 / 3))

    df = dagrun.read_results(sweep.out)
    assert list(df["experiment_id"]) == [0, 1, 2]
    assert "scores.mean_fit_time" in df.columns and "scores.std_fit_time" in df.columns
    assert list(df["scores.mean_acc"]) == pytest.approx([31.5, 11.5, 21.5])


def test_console_script_and_relative_out(awkward_dir: Path) -> None:
    """The installed ``dagrun`` script works too, with a relative out_path and --out."""
    (awkward_dir / "wf.py").write_text(
        "def pre(cfg):\n    return cfg['a']\n"
        "def fit(cfg, a):\n    return a + 1\n"
        "def post(cfg, b):\n    return {'b': b}\n"
        "basecfg = {'out_path': 'ignored', 'verbose': False}\n"
        "cfgs = [{'a': 1}, {'a': 5}]\n")
    result = run_dagrun("execute", "wf.py", "--out", "rel out", cwd=awkward_dir, script=True)
    assert result.rc == 0, result.stderr
    assert not (awkward_dir / "ignored").exists()
    rows = read_jsonl(awkward_dir / "rel out" / "results.jsonl")
    assert [r["scores"]["b"] for r in rows] == [[2], [6]]
    assert rows[1]["out_path"] == str(awkward_dir / "rel out" / "1")


# A stage that edits its cfg in place (as real scripts do) must not change what the next
# repetition, run by the same process, receives (CONTRACT.md section 1).
EDITING_WORKFLOW = """
def pre(cfg):
    cfg["model_params"]["n"] += 1
    return None


def fit(cfg, _):
    return cfg["model_params"]["n"]


def post(cfg, n):
    return {{"n": n}}


basecfg = {{"out_path": {out!r}, "repetitions": 3, "verbose": False, **{settings!r}}}
cfgs = [{{"model_params": {{"n": 1}}}}]
"""


def test_each_stage_gets_its_own_cfg(awkward_dir: Path, target: Target) -> None:
    rows = target.execute_template(awkward_dir, EDITING_WORKFLOW)
    assert len(rows) == 1
    assert rows[0]["model_params"] == {"n": 1}
    assert rows[0]["scores"]["n"] == [1, 1, 1]  # not [2, 3, 4]: no run saw another's edit


SEEDED_WORKFLOW = """
import logging

import numpy as np

np.random.seed(7)  # module-level setup runs wherever stages run (per process)
logging.basicConfig(level=logging.INFO)


def pre(cfg):
    rng = np.random.default_rng([cfg["experiment_id"], cfg["run_id"]])  # per-run seed
    return rng.normal(size=4)


def fit(cfg, data):
    return float(data.sum() * cfg["scale"])


def post(cfg, value):
    return {{"value": round(value, 12)}}


basecfg = {{"out_path": {out!r}, "repetitions": 2, "verbose": False, **{settings!r}}}
cfgs = [{{"scale": s}} for s in (1, 2, 3)]
"""


def expected_seeded() -> list[list[float]]:
    """The seeded workflow's values, computed here: every backend must give exactly these."""
    return [[round(float(np.random.default_rng([e, r]).normal(size=4).sum() * scale), 12)
             for r in range(2)] for e, scale in enumerate((1, 2, 3))]


def test_per_run_seeding_gives_the_same_results_everywhere(awkward_dir: Path,
                                                          target: Target) -> None:
    """With seeds taken from the run's own ids, results.jsonl is the same on every backend,
    whatever process ran which run in which order."""
    rows = target.execute_template(awkward_dir, SEEDED_WORKFLOW)
    assert [row["scores"]["value"] for row in rows] == expected_seeded()


STORED_VALUES_WORKFLOW = """
import numpy as np
import pandas as pd


def data():
    return np.arange(40_000, dtype=np.float64).reshape(400, 100)


def pre(cfg):
    X = cfg["X"]
    assert isinstance(X, np.ndarray) and np.array_equal(X, data())
    X[0, 0] = -1.0  # a stage writing into its cfg's array changes nothing for anyone else
    return float(X.sum()) + float(cfg["frame"]["v"].sum())


def fit(cfg, total):
    assert cfg["X"][0, 0] == 0.0 and np.array_equal(cfg["X"], data())
    return total


def post(cfg, total):
    return {{"total": total, "k": cfg["k"]}}


X = data()
FRAME = pd.DataFrame({{"v": np.ones(20_000)}})
basecfg = {{"out_path": {out!r}, "repetitions": 2, "verbose": False, **{settings!r}}}
cfgs = [{{"X": X, "frame": FRAME, "k": k}} for k in range(3)]
"""


def test_big_cfg_values_are_stored_once_and_every_stage_sees_them_whole(
        awkward_dir: Path, target: Target) -> None:
    """A data set and a DataFrame shared by every cfg: stored once in OUT/.dagrun/values,
    shown as summaries in config.json and results.jsonl, and every stage on every backend
    receives values equal to the originals (its own writes private to its call)."""
    rows = target.execute_template(awkward_dir, STORED_VALUES_WORKFLOW)
    total = float(np.arange(40_000).sum()) - 1.0 + 20_000.0  # X[0, 0] = -1 in pre's copy
    assert [row["scores"]["total"] for row in rows] == [[total] * 2 for _ in range(3)]
    out = awkward_dir / "out"
    stored = sorted(p.suffix for p in (out / ".dagrun" / "values").iterdir())
    assert stored == [".npy", ".pkl"]  # one file per distinct value
    view = json.loads((out / "0" / "0" / "config.json").read_text())
    assert view["X"]["ndarray"]["shape"] == [400, 100]
    assert view["X"]["ndarray"]["dtype"] == "float64"
    assert view["frame"]["DataFrame"]["shape"] == [20_000, 1]
    assert (out / "0" / "0" / "config.json").stat().st_size < 1_000
    assert (out / "results.jsonl").stat().st_size < 3_000
    again = dagrun.load_value(out, rows[0]["X"])
    assert np.array_equal(again, np.arange(40_000, dtype=np.float64).reshape(400, 100))
