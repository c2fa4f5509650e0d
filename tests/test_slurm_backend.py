"""The ``slurm`` backend against a real one-node Slurm cluster (tests/services/slurm.py).

Every test drives ``dagrun`` through its command line, in a folder whose name breaks naive
shell quoting (the batch script must keep it data). One cluster serves the whole module;
where Slurm cannot start the tests skip, or fail under DAGRUN_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    Result,
    Sweep,
    child_env,
    dagrun_command,
    make_sweep,
    markers,
    read_jsonl,
    run_dagrun,
    wait_for,
    write_workflow,
)
from tests.services import require_service
from tests.services.slurm import SlurmCluster, slurm_unavailable_reason

pytestmark = pytest.mark.timeout(300)

RUN_TIMEOUT = 200.0  # one attached execute on the test cluster (a time limit takes ~90 s)


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    require_service(slurm_unavailable_reason())
    with SlurmCluster() as running:
        yield running


def _env(cluster: SlurmCluster) -> dict[str, str]:
    return cluster.client_env()


def _slurm(sweep: Sweep, cluster: SlurmCluster, *flags: str,
           timeout: float = RUN_TIMEOUT) -> Result:
    return sweep.execute("--backend", "slurm", *flags, env=_env(cluster), timeout=timeout)


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """results.jsonl rows without what differs between two OUT folders and two runs."""
    out = []
    for row in rows:
        row = {k: v for k, v in row.items() if k != "out_path"}
        row["scores"] = {k: v for k, v in row["scores"].items() if not k.endswith("_time")}
        out.append(row)
    return out


def _leases(out: Path) -> dict[str, dict[str, Any]]:
    """Run folder name -> the lease in it, for runs held now."""
    found = {}
    for path in out.rglob("lease.json"):
        try:
            found[str(path.parent.relative_to(out))] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


def _job_ids(out: Path) -> list[str]:
    data = json.loads((out / ".dagrun" / "slurm" / "job.json").read_text())
    return [str(j) for j in data["jobs"]]


CFGS = [{"x": 1}, {"x": 2}, {"x": 3}, {"x": 4}]

FAILING = '''
import os

COUNTS = {counts!r}

def _count(stage, cfg):
    os.makedirs(COUNTS, exist_ok=True)
    with open(os.path.join(COUNTS, "%s-%d-%d" % (stage, cfg["experiment_id"], cfg["run_id"])),
              "a") as f:
        f.write("x\\n")

def pre(cfg):
    _count("pre", cfg)
    return cfg["x"]

def fit(cfg, x):
    _count("fit", cfg)
    if x == 3:
        raise RuntimeError("boom in fit")
    return x * 10 + cfg["run_id"]

def post(cfg, w):
    _count("post", cfg)
    return {{"acc": w + 0.5, "tag": "t%d" % cfg["x"]}}

basecfg = {{"out_path": {out!r}, "repetitions": 2}}
cfgs = {cfgs!r}
'''


def test_two_workers_give_the_single_backends_results(awkward_dir: Path,
                                                      cluster: SlurmCluster) -> None:
    results = {}
    for backend, flags in (("single", []), ("slurm", ["-j", "2"])):
        sweep = make_sweep(awkward_dir, backend)
        write_workflow(sweep.folder, FAILING.format(counts=str(sweep.counts), out=str(sweep.out),
                                                    cfgs=CFGS), sweep.workflow.name)
        result = sweep.execute("--backend", backend, *flags, env=_env(cluster),
                               timeout=RUN_TIMEOUT)
        assert result.rc == 1, result.stderr
        assert "failed 2/" in result.stderr and "RuntimeError: boom in fit" in result.stderr
        results[backend] = (_comparable(sweep.results()), markers(sweep.out))
        for exp in (0, 1, 3):  # every stage of a run that succeeds ran exactly once
            for rep in range(2):
                assert [sweep.count(s, exp, rep) for s in ("pre", "fit", "post")] == [1, 1, 1]

    assert results["slurm"] == results["single"]
    assert len(list((sweep.out / ".dagrun" / "slurm").glob("worker-*_*.log"))) == 2


def test_detach_status_no_second_array_and_a_cancelled_worker(
        sweep: Sweep, cluster: SlurmCluster) -> None:
    release = sweep.folder / "release"
    sweep.write(CFGS[:3], wait_for=release)

    first = _slurm(sweep, cluster, "-j", "2", "--detach", timeout=60)

    assert first.rc == 0, first.stderr
    assert "submitted Slurm array" in first.stdout and "dagrun status" in first.stdout
    (job,) = _job_ids(sweep.out)
    wait_for(lambda: len(_leases(sweep.out)) == 2, 90, "both workers holding a run")
    wait_for(lambda: all(sweep.count("fit", i) for i in range(3)
                         if str(i) in _leases(sweep.out)), 30, "fits started")
    status = run_dagrun("status", sweep.out, env=_env(cluster))
    assert f"Slurm job {job}_" in status.stdout, status.stdout
    held = {name: lease["slurm"] for name, lease in _leases(sweep.out).items()}
    shown = run_dagrun("show", sweep.out, next(iter(held)), env=_env(cluster))
    assert f"worker-{next(iter(held.values()))}.log" in shown.stdout, shown.stdout

    again = _slurm(sweep, cluster, "-j", "2", "--detach", timeout=60)
    assert again.rc == 0 and "submitted nothing" in again.stdout, again.stdout
    assert _job_ids(sweep.out) == [job]

    # Slurm stops the worker of task 0 mid-fit: its run goes to the other worker
    victim = next(name for name, task in held.items() if task == f"{job}_0")
    subprocess.run(["scancel", f"{job}_0"], env=child_env(_env(cluster)), check=True,
                   timeout=30)
    wait_for(lambda: victim not in _leases(sweep.out), 60, "the lease released")
    release.touch()
    wait_for(lambda: (sweep.out / "results.jsonl").exists() and len(sweep.results()) == 3,
             120, "the array finishing the sweep")
    assert sweep.count("pre", int(victim)) == 1  # its finished stage was not redone
    assert sweep.count("fit", int(victim)) == 2
    wait_for(lambda: cluster.jobs() == [], 60, "the array ending")

    final = _slurm(sweep, cluster, "-j", "2")
    assert final.rc == 0, final.stderr
    assert _job_ids(sweep.out) == [job]  # nothing left: nothing submitted
    assert all(sweep.count("post", i) == 1 for i in range(3))


def test_ctrl_c_cancels_the_array(sweep: Sweep, cluster: SlurmCluster, tmp_path: Path) -> None:
    sweep.write(CFGS[:3], wait_for=sweep.folder / "never")
    log = tmp_path / "driver.log"
    with open(log, "wb") as out:
        driver = subprocess.Popen(
            dagrun_command("execute", sweep.workflow, "--backend", "slurm", "-j", "2"),
            cwd=sweep.folder, env=child_env(_env(cluster)), stdin=subprocess.DEVNULL,
            stdout=out, stderr=out)
    try:
        wait_for(lambda: len(_leases(sweep.out)) == 2, 90, "both workers holding a run")
        driver.send_signal(signal.SIGINT)
        rc = driver.wait(timeout=150)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    text = log.read_text()
    assert rc == 130, text
    assert "cancelling Slurm array" in text
    assert cluster.jobs() == []
    assert _leases(sweep.out) == {}


TIMEOUT_AND_CRASH = '''
import os
import signal
import time

def pre(cfg):
    return cfg["x"]

def fit(cfg, x):
    if x == 1:
        time.sleep(120)
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return x

def post(cfg, x):
    return {{"x": x}}

basecfg = {{"out_path": {out!r}, "timeout": 3}}
cfgs = [{{"x": 1}}, {{"x": 2}}, {{"x": 3}}]
'''


def test_timeout_and_crash_inside_a_worker(awkward_dir: Path, cluster: SlurmCluster) -> None:
    out = awkward_dir / "OUT"
    wf = write_workflow(awkward_dir, TIMEOUT_AND_CRASH.format(out=str(out)))

    result = run_dagrun("execute", wf, "--backend", "slurm", "-j", "2", cwd=awkward_dir,
                        env=_env(cluster), timeout=RUN_TIMEOUT)

    assert result.rc == 1, result.stderr
    kinds = {i: json.loads((out / str(i) / "fit.error").read_text())["kind"] for i in (0, 1)}
    assert kinds == {0: "timeout", 1: "crashed"}
    assert (out / "2" / "post.done").exists()


TIME_LIMIT = '''
import os
import time

FLAG = {flag!r}

def pre(cfg):
    with open(FLAG + ".pre", "a") as f:
        f.write("x")
    return 1

def fit(cfg, x):
    if not os.path.exists(FLAG):
        open(FLAG, "w").close()
        time.sleep(600)  # past the time limit: Slurm stops the worker
    return x

def post(cfg, x):
    return {{"x": x}}

basecfg = {{"out_path": {out!r}, "slurm": {{"time": 1}}}}
cfgs = [{{"x": 1}}]
'''


def test_a_time_limit_loses_no_stage_and_is_resubmitted(awkward_dir: Path,
                                                         cluster: SlurmCluster) -> None:
    out, flag = awkward_dir / "OUT", awkward_dir / "flag"
    wf = write_workflow(awkward_dir, TIME_LIMIT.format(out=str(out), flag=str(flag)))

    result = run_dagrun("execute", wf, "--backend", "slurm", cwd=awkward_dir,
                        env=_env(cluster), timeout=RUN_TIMEOUT)

    assert result.rc == 0, result.stderr
    assert (out / "0" / "post.done").exists()
    assert Path(str(flag) + ".pre").read_text() == "x"  # pre ran once
    assert "TIMEOUT" in result.stderr and "resubmitted" in result.stderr
    assert len(_job_ids(out)) == 2


@pytest.mark.parametrize(("slurm", "words"), [
    ({"partition": "no-such-partition"}, "invalid partition"),
    ({"partiton": "debug"}, "unknown key 'partiton'"),
    ({"cpus_per_task": "two"}, "['cpus_per_task'] must be a positive integer"),
])
def test_options_sbatch_refuses_are_one_line(sweep: Sweep, cluster: SlurmCluster,
                                             slurm: dict[str, Any], words: str) -> None:
    sweep.write(CFGS[:1], settings={"slurm": slurm})

    result = _slurm(sweep, cluster, timeout=60)

    assert result.rc == 2
    assert len(result.error_lines) == 1 and words in result.error_lines[0], result.stderr
    assert not sweep.out.exists()


def test_no_slurm_on_path_is_one_line_and_writes_nothing(sweep: Sweep) -> None:
    sweep.write(CFGS[:1])
    bare = sweep.folder / "bin"
    bare.mkdir()

    result = sweep.execute("--backend", "slurm", env={"PATH": str(bare)})

    assert result.rc == 2, result.stderr
    assert len(result.error_lines) == 1 and "sbatch" in result.error_lines[0]
    assert not sweep.out.exists()


STALLING_SQUEUE = """#!/bin/sh
# squeue while slurmctld stalls: fails as long as the flag file exists
if [ -e {flag} ]; then
    echo "squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation" >&2
    exit 1
fi
exec {real} "$@"
"""


def test_a_stalled_slurmctld_does_not_end_the_driver(sweep: Sweep, cluster: SlurmCluster,
                                                     tmp_path: Path) -> None:
    """Before: the first failing squeue (a slurmctld stall) ended the attached driver with
    exit 2 and "0 done now" although the array kept running. Now it asks again, following
    the runs on disk meanwhile, and finishes the sweep."""
    import os
    import shutil

    real = shutil.which("squeue")
    assert real is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    flag = tmp_path / "stalled"
    flag.touch()
    fake = bin_dir / "squeue"
    fake.write_text(STALLING_SQUEUE.format(flag=str(flag), real=real))
    fake.chmod(0o755)
    sweep.write([{"x": 1}, {"x": 2}], sleep=0.5, verbose=False)
    env = {**_env(cluster), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(dagrun_command("execute", sweep.workflow, "--backend", "slurm"),
                            cwd=sweep.folder, env=child_env(env), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (sweep.out / "1" / "post.done").exists(), RUN_TIMEOUT,
                 "the array to finish both runs while squeue fails")
        flag.unlink()
        _, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "squeue failed" in err and "asking again" in err
    assert [r["scores"]["mean_acc"] for r in sweep.results()] == [10.5, 20.5]


def test_a_failing_setup_line_is_one_clear_line(sweep: Sweep, cluster: SlurmCluster) -> None:
    """Before: exit 1, "0 failed" and nothing to say why. Now: exit 2 and one line naming the
    setup line, its exit status and what it printed last."""
    setup = ["echo preparing", "sh -c 'echo no such module: cuda/99 >&2; exit 3'",
             "echo never"]
    sweep.write([{"x": 1}], verbose=False, settings={"slurm": {"setup": setup}})
    result = _slurm(sweep, cluster)
    assert result.rc == 2, result.stderr
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    assert f"slurm setup line 2 ({setup[1]!r}) failed on the node (exit 3): no such module: " \
           "cuda/99; fix basecfg['slurm']['setup']" in line, line
    assert not markers(sweep.out)


SUSPENDED_WORKFLOW = '''
import os
import random
import time

OUT = {out!r}
RELEASE = {release!r}


def pre(cfg):
    return cfg["x"]


def fit(cfg, x):  # waits for RELEASE, or RELEASE-<x> for this run alone
    while not (os.path.exists(RELEASE) or os.path.exists("%s-%d" % (RELEASE, x))):
        time.sleep(0.05)
    return {{"x": x, "r": random.random()}}


def post(cfg, model):
    return {{"r": model["r"]}}


basecfg = {{"out_path": OUT, "verbose": False, "lease_timeout": 2}}
cfgs = [{{"x": i}} for i in range(3)]
'''


def test_a_suspended_array_task_loses_its_run_and_commits_nothing(
        tmp_path: Path, cluster: SlurmCluster) -> None:
    """``scontrol suspend`` of the array task holding a run, past the lease timeout: the
    other task (the last live worker, so it stays) takes the run over and finishes the
    sweep; ``scontrol resume``: the suspended worker's fit commits nothing (fenced)."""
    out, release = tmp_path / "OUT", tmp_path / "release"
    workflow = write_workflow(tmp_path, SUSPENDED_WORKFLOW.format(out=str(out),
                                                                  release=str(release)))
    env = child_env(_env(cluster))
    submitted = run_dagrun("execute", workflow, "--backend", "slurm", "-j", "2", "--detach",
                           cwd=tmp_path, env=_env(cluster), timeout=60)
    assert submitted.rc == 0, submitted.stderr
    wait_for(lambda: len(_leases(out)) == 2, 90, "both array tasks holding a run")
    victim_run, lease = sorted(_leases(out).items())[0]
    subprocess.run(["scontrol", "suspend", lease["slurm"]], env=env, check=True, timeout=30)
    try:
        for other in {"0", "1", "2"} - {victim_run}:  # the other task finishes the others
            Path(f"{release}-{other}").touch()
        wait_for(lambda: _leases(out).get(victim_run, lease)["slurm"] != lease["slurm"], 90,
                 "the other task taking the run over")
        release.touch()  # the suspended worker's fit would commit now, if it ran
        wait_for(lambda: (out / "results.jsonl").exists() and len(read_jsonl(
            out / "results.jsonl")) == 3, 120, "the other task finishing the sweep")
        finished = {p.name: p.read_bytes() for p in (out / victim_run).iterdir()
                    if p.is_file() and not p.name.endswith(".log")}
    finally:
        subprocess.run(["scontrol", "resume", lease["slurm"]], env=env, check=True,
                       timeout=30)
    wait_for(lambda: cluster.jobs() == [], 90, "the array ending")
    after = {p.name: p.read_bytes() for p in (out / victim_run).iterdir()
             if p.is_file() and not p.name.endswith(".log")}
    assert after == finished
    for i in range(3):
        with open(out / str(i) / "fit.pkl", "rb") as f:
            model = pickle.load(f)
        assert json.loads((out / str(i) / "post.json").read_text())["r"] == model["r"]
    assert not list(out.rglob("*.error"))
    assert not [p for p in out.rglob("lease.json") if ".dagrun" not in p.parts]


def test_a_task_with_nothing_left_to_claim_leaves_the_array(tmp_path: Path) -> None:
    """Before: every array task waited until the last run ended (idle GPUs for hours).
    Three tasks, one slow run and quick ones: of the two tasks left with nothing to claim,
    one at least leaves at once (the live worker with the least id stays while the slow
    run's lease could still go stale), so the array shrinks while the slow run runs."""
    require_service(slurm_unavailable_reason())
    out, release = tmp_path / "OUT", tmp_path / "release"
    source = SUSPENDED_WORKFLOW.format(out=str(out), release=str(release))
    workflow = write_workflow(tmp_path, source.replace("range(3)", "range(4)"))
    for quick in (1, 2, 3):
        Path(f"{release}-{quick}").touch()
    with SlurmCluster(cpus=3) as cluster:
        submitted = run_dagrun("execute", workflow, "--backend", "slurm", "-j", "3",
                               "--detach", cwd=tmp_path, env=_env(cluster), timeout=60)
        assert submitted.rc == 0, submitted.stderr
        try:
            wait_for(lambda: len(_leases(out)) == 1 and all(
                (out / str(i) / "post.done").exists() for i in (1, 2, 3)), 90,
                "the quick runs done, the slow one held")
            wait_for(lambda: len(cluster.jobs()) <= 2, 60, "an idle task leaving the array")
            logs = "".join(p.read_text() for p in (out / ".dagrun" / "slurm").glob("*.log"))
            assert "leaving: 1 run(s) still held by other workers" in logs, logs
        finally:
            release.touch()
        wait_for(lambda: cluster.jobs() == [], 90, "the array ending")
    assert len(read_jsonl(out / "results.jsonl")) == 4


SEARCH = '''
import dagrun

def pre(cfg):
    return None

def fit(cfg, data):
    return (cfg["x"] - 0.3) ** 2

def post(cfg, value):
    return {{"loss": value}}

space = {{"x": dagrun.Float(0.0, 1.0)}}
basecfg = {{"out_path": {out!r}, "report": False,
           "search": {{"metric": "loss", "n_trials": 6, "seed": 0, "sampler": "random"}}}}
'''


def _search_done(out: Path) -> None:
    from dagrun.disk.layout import SweepDir
    from dagrun.search import trials

    found = trials.read_records(SweepDir.at(out))
    assert [r.number for r in found] == list(range(6))
    assert len({r.digest for r in found}) == 6  # none asked twice
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 6
    for row in rows:
        assert row["scores"]["mean_loss"] == pytest.approx((row["x"] - 0.3) ** 2)


def test_a_search_on_slurm_workers_extend_the_study(awkward_dir: Path,
                                                    cluster: SlurmCluster) -> None:
    """An attached search on slurm runs in rounds: the driver asks every trial (it holds
    the search's lock), each round's array runs the trials planned for it, and its
    workers, finding the lock held by the driver, ask none (they waited on it for ever)."""
    sweep = make_sweep(awkward_dir, "search")
    write_workflow(sweep.folder, SEARCH.format(out=str(sweep.out)), sweep.workflow.name)
    result = _slurm(sweep, cluster, "-j", "2")
    assert result.rc == 0, result.stderr
    _search_done(sweep.out)
    logs = list((sweep.out / ".dagrun" / "slurm").glob("worker-*_*.log"))
    assert logs and not any("asked trial" in p.read_text() for p in logs)
    assert len(_job_ids(sweep.out)) == 3  # 6 trials, 2 at a time


def test_a_detached_search_on_slurm_is_finished_by_its_workers(awkward_dir: Path,
                                                               cluster: SlurmCluster) -> None:
    """``--detach``: the driver asks the first trials, submits the array and returns; the
    workers ask the rest and reduce."""
    sweep = make_sweep(awkward_dir, "detached")
    write_workflow(sweep.folder, SEARCH.format(out=str(sweep.out)), sweep.workflow.name)
    result = _slurm(sweep, cluster, "-j", "2", "--detach")
    assert result.rc == 0, result.stderr
    assert "submitted Slurm array" in result.stdout + result.stderr
    wait_for(lambda: (sweep.out / "results.jsonl").exists() and
             len(read_jsonl(sweep.out / "results.jsonl")) == 6, 150, "the workers' study")
    wait_for(lambda: cluster.jobs() == [], 60, "the array ending")
    _search_done(sweep.out)
    logs = list((sweep.out / ".dagrun" / "slurm").glob("worker-*_*.log"))
    assert sum(p.read_text().count("asked trial") for p in logs) == 4  # 2 by the driver
    assert len(_job_ids(sweep.out)) == 1
