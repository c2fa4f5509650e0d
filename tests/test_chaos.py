"""Chaos: SIGKILL the driver and the workers of one 200-run sweep, again and again.

Twenty rounds (seeded): each starts ``dagrun execute`` (multiprocessing, two workers), lets
it make some progress, then SIGKILLs it at a random moment: on even rounds the driver, on odd
rounds a random worker first (the driver carries on and records the run as crashed) and then
the driver. After each kill the test waits until no process of that round is left and notes
the markers on disk and how often each stage had run. A final execute must produce the same
results.jsonl as an uninterrupted run, and no stage may run again once its marker existed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers import (
    child_env,
    dagrun_command,
    markers,
    pool_workers,
    read_jsonl,
    run_dagrun,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)

RUNS = 200
ROUNDS = 20
SEED = 20240611
TAG = "DAGRUN_CHAOS_TAG"

WORKFLOW = '''
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CALLS = os.path.join(HERE, "calls")


def _count(stage, cfg):
    with open(os.path.join(CALLS, "%s-%d" % (stage, cfg["experiment_id"])), "a") as f:
        f.write("%d\\n" % os.getpid())


def pre(cfg):
    _count("pre", cfg)
    return {"x": cfg["x"], "sq": cfg["x"] ** 2}


def fit(cfg, data):
    _count("fit", cfg)
    time.sleep(0.005 + (cfg["x"] * 7 % 16) / 1000)  # 5-20 ms
    return data["sq"] + 3 * data["x"]


def post(cfg, value):
    _count("post", cfg)
    return {"value": value, "parity": value % 2, "label": "v%d" % value}


basecfg = {"out_path": os.path.join(HERE, "OUT"), "verbose": False}
cfgs = [{"x": i} for i in range(RUNS)]
'''.replace("RUNS", str(RUNS))


def make(folder: Path) -> Path:
    folder.mkdir()
    (folder / "calls").mkdir()
    wf = folder / "workflow.py"
    wf.write_text(WORKFLOW)
    return wf


def call_counts(folder: Path) -> dict[tuple[str, int], int]:
    counts = {}
    for entry in os.scandir(folder / "calls"):
        stage, exp_id = entry.name.split("-")
        with open(entry.path) as f:
            counts[(stage, int(exp_id))] = sum(1 for _ in f)
    return counts


def normalised(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        scores = {k: v for k, v in row["scores"].items() if "fit_time" not in k}
        out.append({**row, "out_path": Path(row["out_path"]).name, "scores": scores})
    return out


def tagged(tag: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(TAG) == tag:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def workers(driver: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The pool's worker processes (forked or spawned)."""
    return pool_workers(driver.pid)


def marker_count(out: Path) -> int:
    total = 0
    try:
        entries = list(os.scandir(out))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.is_dir() and entry.name.isdigit():
            total += sum(1 for e in os.scandir(entry.path) if e.name.endswith(".done"))
    return total


def test_sigkill_rounds_then_same_results(tmp_path: Path) -> None:
    reference = make(tmp_path / "reference")
    result = run_dagrun("execute", reference, "--backend", "single", cwd=tmp_path, timeout=120)
    assert result.rc == 0, result.stderr

    wf = make(tmp_path / "chaos")
    out, folder = wf.parent / "OUT", wf.parent
    rng = random.Random(SEED)
    first_seen: dict[tuple[str, int, int], int] = {}  # marker -> stage runs when first seen
    kills = {"driver": 0, "worker": 0}
    progress: list[int] = []  # markers after each round (shown when an assertion fails)
    for round_no in range(ROUNDS):
        tag = uuid.uuid4().hex
        log = open(tmp_path / f"round-{round_no}.log", "wb")  # noqa: SIM115
        driver = subprocess.Popen(dagrun_command("execute", wf, "--backend", "multiprocessing",
                                                 "-j", "2"),
                                  cwd=folder, env=child_env({TAG: tag}),
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        try:
            start = marker_count(out)
            wait_for(lambda: marker_count(out) > start or driver.poll() is not None,  # noqa: B023
                     timeout=60, what=f"progress in round {round_no}")
            time.sleep(rng.uniform(0.0, 0.06))
            if round_no % 2 == 1 and driver.poll() is None:
                pool = workers(driver)
                if pool:
                    rng.choice(pool).send_signal(signal.SIGKILL)
                    kills["worker"] += 1
                time.sleep(rng.uniform(0.0, 0.04))
            if driver.poll() is None:
                driver.send_signal(signal.SIGKILL)
                kills["driver"] += 1
            driver.wait(timeout=30)
            wait_for(lambda: not tagged(tag), timeout=30,  # noqa: B023
                     what=f"the processes of round {round_no} to exit")
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait(timeout=30)
            for proc in tagged(tag):
                proc.kill()
        counts = call_counts(folder)
        for key in markers(out):
            first_seen.setdefault(key, counts.get((key[0], key[1]), 0))
        progress.append(len(first_seen))

    print(f"markers after each round: {progress}; kills: {kills}")
    # the sweep outlived (nearly) every round: each round was really cut short
    assert kills["driver"] >= ROUNDS - 2 and kills["worker"] >= ROUNDS // 2 - 2, kills
    result = run_dagrun("execute", wf, "--backend", "multiprocessing", "-j", "2", cwd=folder,
                        timeout=120)
    assert result.rc == 0, result.stderr
    assert normalised(read_jsonl(out / "results.jsonl")) == \
        normalised(read_jsonl(reference.parent / "OUT" / "results.jsonl"))
    counts = call_counts(folder)
    for (stage, exp_id, rep), seen in first_seen.items():
        assert seen >= 1, f"{stage} of {exp_id} has a marker but never ran"
        assert counts[(stage, exp_id)] == seen, \
            f"{stage} of {exp_id}/{rep} ran again after its marker was written"
    once = sum(1 for (stage, exp_id, _), seen in first_seen.items() if seen == 1)
    assert once >= len(first_seen) // 2  # most marked stages ran exactly once
    assert markers(out) == {(s, e, 0) for s in ("pre", "fit", "post") for e in range(RUNS)}
