#!/usr/bin/env python3
"""dagrun on Ray vs plain Ray tasks doing the same work, on one local 2-CPU cluster.

Both sides run ``n_runs`` runs of ``seconds`` of work (``time.sleep`` by default, or
calibrated CPU work, ``floor.cpu_work``) and write the same files per run (``floor.write_run``:
config.json, pre/fit pickles with markers, post.json with its marker, then results.jsonl).
Each side is a fresh driver process connecting to the same ``ray start --head`` cluster
(``tests/services/ray_cluster.RayCluster``, no auth); its time includes ``ray.init`` and
ends when results.jsonl is written. Plain Ray submits every task at once with
``num_cpus=1``, which is the floor: dagrun's ratio to it is its engine overhead on Ray.

``measure_ray()`` returns the rows; run this file to print them. Asserts nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CPUS = 2

# What both sides share: arguments, and the same fit (sleep or calibrated CPU work).
COMMON = """
import json, sys, time
import cloudpickle
import floor
cloudpickle.register_pickle_by_value(floor)
out, n, seconds, loops = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])

def fit(cfg, x):
    if loops:
        return floor.cpu_work({"loops": loops})
    time.sleep(seconds)
"""

PLAIN = COMMON + """
import ray

@ray.remote(num_cpus=1, max_retries=0)
def job(i):
    return floor.write_run(out, i, fit=fit)

t = time.perf_counter()
ray.init(address=sys.argv[5], logging_level="ERROR", log_to_driver=False)
floor.write_results(out, ray.get([job.remote(i) for i in range(n)], timeout=3600))
took = time.perf_counter() - t
ray.shutdown()
print(json.dumps({"seconds": took}))
"""

DAGRUN = COMMON + """
from dagrun import run_experiments

t = time.perf_counter()
s = run_experiments({"out_path": out, "pre": floor.noop_pre, "fit": fit,
                     "post": floor.noop_post, "backend": "ray", "address": sys.argv[5],
                     "num_cpus": 1, "verbose": False}, [{"i": i} for i in range(n)])
print(json.dumps({"seconds": time.perf_counter() - t, "done": s.done}))
"""


def _child(code: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=3600, cwd=BENCH, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _calibrate(seconds: float) -> int:
    sys.path.insert(0, str(BENCH))
    import floor

    return floor.calibrate_loops(seconds)


def measure_ray(n_runs: int = 200, seconds: float = 0.25, work: str = "sleep"
                ) -> list[dict[str, Any]]:
    """Rows ``{"what", "runs", "seconds", "ideal", "ratio"}``: plain Ray tasks (the floor,
    ratio 1.0) and dagrun's ``ray`` backend, ``n_runs`` runs of ``seconds`` of ``work``
    ("sleep" or "cpu") on a fresh local cluster of 2 CPUs. ``ideal`` is
    ``n_runs * seconds / 2``; ``ratio`` is seconds over the plain-Ray seconds."""
    sys.path.insert(0, str(ROOT))
    from tests.services.ray_cluster import RayCluster

    loops = _calibrate(seconds) if work == "cpu" else 0
    tmp = Path(tempfile.mkdtemp(prefix="dagrun-raybench-"))
    rows: list[dict[str, Any]] = []
    try:
        with RayCluster(auth=False, num_cpus=CPUS) as cluster:
            env = {**os.environ, **cluster.client_env(),
                   "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)])}
            args = [str(n_runs), str(seconds), str(loops), cluster.address]
            plain = _child(PLAIN, env, str(tmp / "plain"), *args)["seconds"]
            dagrun = _child(DAGRUN, env, str(tmp / "dagrun"), *args)["seconds"]
        ideal = n_runs * seconds / CPUS
        for what, took in (("plain Ray tasks (floor)", plain), ("dagrun backend=ray", dagrun)):
            rows.append({"what": what, "runs": n_runs, "work": f"{work} {seconds:g} s",
                         "seconds": round(took, 2), "ideal": round(ideal, 2),
                         "ratio": round(took / plain, 3)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main() -> None:
    rows = measure_ray()
    print("| what | runs | work | seconds | ideal (runs*s/2) | x plain Ray |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['runs']} | {r['work']} | {r['seconds']:.2f} | "
              f"{r['ideal']:.2f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
