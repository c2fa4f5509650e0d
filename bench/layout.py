#!/usr/bin/env python3
"""Why the efficiency tables do their CPU work in C: a pure-Python loop's speed depends on
the process it runs in, by more than the 3 % those tables judge.

Side by side, at the same moment (so the machine's drift in speed reaches both alike): a
dagrun sweep with one worker and a ``multiprocessing.Pool`` with one worker run the same
runs, each timing its work alone with ``time.thread_time`` (CPU time: being preempted does
not count). The table prints dagrun's median CPU time per run over the Pool's, for the
pure-Python loop the tables used before and for ``floor.cpu_work`` (SHA-256 over a 256 KB
block), with a bare Pool worker and with one that imported numpy first (as a user's module
would). Nothing of the runner runs during the work; what differs is the worker's heap: where
its earlier allocations put the loop's objects. Asserts nothing; prints.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import floor  # noqa: E402


def python_loop(loops: int) -> int:
    """The pure-Python loop the efficiency tables used before."""
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


def _run(work: str, loops: int) -> None:
    if work == "python":
        python_loop(loops)
    else:
        floor.cpu_work({"loops": loops})


def timed(cfg: dict[str, Any], x: Any = None) -> None:
    """The work of one run; appends its CPU seconds to ``cfg['log']`` (a fit for dagrun, a
    job for the Pool)."""
    t = time.thread_time()
    _run(cfg["work"], cfg["loops"])
    took = time.thread_time() - t
    with open(cfg["log"], "a") as f:
        f.write(f"{took}\n")


def _init(module: str) -> None:
    if module:
        __import__(module)


POOL = """
import multiprocessing, sys, json
import layout
if __name__ == "__main__":
    cfgs = json.loads(sys.argv[1])
    with multiprocessing.get_context("spawn").Pool(
            1, initializer=layout._init, initargs=(sys.argv[2],)) as pool:
        pool.map(layout.timed, cfgs, chunksize=1)
"""

DAGRUN = """
import sys, json
import floor, layout
from dagrun import run_experiments
run_experiments({"out_path": sys.argv[2], "pre": floor.noop_pre, "fit": layout.timed,
                 "post": floor.noop_post, "backend": "multiprocessing", "num_cpus": 1,
                 "verbose": False, "report": False}, json.loads(sys.argv[1]))
"""


def _side_by_side(tmp: str, work: str, loops: int, runs: int, pool_import: str) -> float:
    """dagrun's median CPU seconds per run over the Pool's, both sweeping at once."""
    import json

    logs = {side: os.path.join(tmp, f"{side}.log") for side in ("pool", "dagrun")}
    for log in logs.values():
        if os.path.exists(log):
            os.remove(log)
    out = tempfile.mkdtemp(dir=tmp)
    procs = [subprocess.Popen([sys.executable, "-c", POOL, json.dumps(
                 [{"i": i, "work": work, "loops": loops, "log": logs["pool"]}
                  for i in range(runs)]), pool_import], cwd=BENCH),
             subprocess.Popen([sys.executable, "-c", DAGRUN, json.dumps(
                 [{"i": i, "work": work, "loops": loops, "log": logs["dagrun"]}
                  for i in range(runs)]), out], cwd=BENCH)]
    for proc in procs:
        if proc.wait(timeout=600) != 0:
            raise RuntimeError("a side failed")
    median = {}
    for side, log in logs.items():
        with open(log) as f:
            median[side] = statistics.median(float(line) for line in f)
    return median["dagrun"] / median["pool"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    shapes = [(work, module) for work in ("python", "c") for module in ("", "numpy")]
    ratios: dict[tuple[str, str], list[float]] = {shape: [] for shape in shapes}
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None
                                     ) as tmp:
        loops = {work: floor.calibrate_loops(0.05, functools.partial(_run, work))
                 for work in ("python", "c")}
        for _ in range(args.rounds):
            for work, module in shapes:
                ratios[(work, module)].append(
                    _side_by_side(tmp, work, loops[work], args.runs, module))
    header = ["work", "the Pool's worker first imported", "dagrun / Pool, CPU per run: median",
              "rounds' range"]
    print(f"\n## The same work, one dagrun worker and one Pool worker side by side "
          f"({args.rounds} rounds of {args.runs} runs of ~0.05 s)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for (work, module), found in ratios.items():
        print(f"| {'pure-Python loop' if work == 'python' else 'SHA-256 in C (floor)'} | "
              f"{module or 'nothing'} | {statistics.median(found):.3f} | "
              f"{min(found):.3f}-{max(found):.3f} |")


if __name__ == "__main__":
    main()
