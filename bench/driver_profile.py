#!/usr/bin/env python3
"""Where dagrun's driver spends its time per run on no-op sweeps (``multiprocessing -j 2``).

Three measurements, each in a fresh driver process on a fresh sweep of N no-op runs:

1. **real**: the sweep as users run it. Reported: wall time, the driver's own CPU time
   (``RUSAGE_SELF``: all its threads, less the bench's own sampling thread) split into its
   main thread and its other threads (pebble's pool-management threads, sampled from
   ``/proc/self/task`` every 50 ms, so a thread's last 50 ms may be missed), and the workers'
   CPU (``RUSAGE_CHILDREN``).
2. **no-op runner**: the same, but every worker's ``StageRunner.run`` returns a finished
   outcome at once, writing nothing (patched through a ``sitecustomize`` module that spawned
   workers import). What is left is the driver's own cost per dispatched run: planning,
   submitting, the pool's round trip, bookkeeping, reducing.
3. **profile**: the real sweep under ``cProfile`` (the driver's main thread only; pebble's
   threads are not seen by it); the top functions by own time and by cumulative time.

The sweeps live in ``/dev/shm`` when it exists (``--tmp`` to choose): on a disk, creating a
run's folder alone can cost the driver more CPU than everything else it does per run (0.6 to
1 ms per ``mkdir`` on some virtual disks), which hides the driver's own cost.

Usage::

    python bench/driver_profile.py                 # 2,000 runs
    python bench/driver_profile.py --runs 5000 --top 25
    python bench/driver_profile.py --tmp /tmp      # the sweeps on disk
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cached_peers import DAGRUN_WORKFLOW_SRC  # bench/ is on sys.path when run as a script

WORKFLOW_SRC = DAGRUN_WORKFLOW_SRC  # the same no-op sweep as the peers' table


# Imported at start-up by every interpreter that has this folder on PYTHONPATH: the driver
# and its spawned workers. Only active when DAGRUN_BENCH_NOOP_RUNNER is set.
SITECUSTOMIZE_SRC = '''
import os

if os.environ.get("DAGRUN_BENCH_NOOP_RUNNER"):
    from dagrun.run import stages

    def _noop_run(self, task):
        return stages.RunOutcome(task, None, ("pre", "fit", "post"), (), {})

    stages.StageRunner.run = _noop_run
'''

# The driver: dagrun's CLI in-process, then its CPU split by thread, as one JSON line.
DRIVER_SRC = '''
import json, os, resource, sys, threading, time

cpu_by_tid = {}
sampler_tid = []


def sample():
    tick = os.sysconf("SC_CLK_TCK")
    sampler_tid.append(threading.get_native_id())
    while True:
        for tid in os.listdir("/proc/self/task"):
            try:
                fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu_by_tid[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
        time.sleep(0.05)


threading.Thread(target=sample, daemon=True, name="bench-sampler").start()
from dagrun.cli import main

argv, profile_to = sys.argv[1:-1], sys.argv[-1]
t0 = time.perf_counter()
if profile_to != "-":
    import cProfile
    prof = cProfile.Profile()
    try:
        prof.runcall(main, argv)
    except SystemExit:
        pass
    prof.dump_stats(profile_to)
else:
    try:
        main(argv)
    except SystemExit:
        pass
wall = time.perf_counter() - t0
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
main_tid = os.getpid()
sampler = cpu_by_tid.get(sampler_tid[0], 0.0) if sampler_tid else 0.0
others = sum(v for tid, v in cpu_by_tid.items() if tid not in (main_tid, *sampler_tid))
print(json.dumps({"wall": wall, "driver_cpu": me.ru_utime + me.ru_stime - sampler,
                  "main_thread_cpu": cpu_by_tid.get(main_tid, 0.0),
                  "other_threads_cpu": others,
                  "workers_cpu": kids.ru_utime + kids.ru_stime}))
'''


def _setup(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "wf.py").write_text(WORKFLOW_SRC)
    (work / "site").mkdir(exist_ok=True)
    (work / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE_SRC)
    (work / "driver.py").write_text(DRIVER_SRC)


def measure(work: Path, n: int, workers: int, *, noop_runner: bool,
            profile_to: Path | None = None) -> dict[str, Any]:
    """One driver process on a fresh sweep; its figures as a dict."""
    out = work / "state"
    shutil.rmtree(out, ignore_errors=True)
    path = os.pathsep.join(filter(None, [str(work / "site"), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, BENCH_RUNS=str(n), PYTHONPATH=path)
    env.pop("DAGRUN_BENCH_NOOP_RUNNER", None)
    if noop_runner:
        env["DAGRUN_BENCH_NOOP_RUNNER"] = "1"
    argv = ["execute", str(work / "wf.py"), "--out", str(out), "-q",
            "--backend", "multiprocessing", "-j", str(workers)]
    proc = subprocess.run([sys.executable, str(work / "driver.py"), *argv,
                           str(profile_to) if profile_to else "-"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"driver failed:\n{proc.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["runs_done"] = sum(1 for _ in out.glob("*/post.done"))
    return figures


def top_functions(profile: Path, top: int) -> str:
    """The profile's top functions by own time and by cumulative time, as text."""
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(profile), stream=buf)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    stats.print_callees("_execute_locked|scheduler.py.*\\(run\\)")
    return buf.getvalue()


def per_run_row(name: str, f: dict[str, Any], n: int) -> str:
    """One markdown row of per-run figures in microseconds."""
    us = 1e6 / n
    return (f"| {name} | {f['wall']:.2f} | {f['wall'] * us:.0f} | {f['driver_cpu'] * us:.0f} | "
            f"{f['main_thread_cpu'] * us:.0f} | {f['other_threads_cpu'] * us:.0f} | "
            f"{f['workers_cpu'] * us:.0f} | {n / f['driver_cpu']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    """Command line: the three measurements, printed as a table and profile listings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("-j", "--workers", type=int, default=2)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--tmp", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                        help="folder for the sweeps (default: /dev/shm when it exists)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dagrun-driver-profile-", dir=args.tmp))
    try:
        _setup(work)
        real = measure(work, args.runs, args.workers, noop_runner=False)
        noop = measure(work, args.runs, args.workers, noop_runner=True)
        prof = measure(work, args.runs, args.workers, noop_runner=False,
                       profile_to=work / "driver.prof")
        print(f"## dagrun driver, {args.runs} no-op runs, multiprocessing -j {args.workers}, "
              f"in {work.parent}\n")
        print("| sweep | wall s | wall us/run | driver CPU us/run | main thread | other "
              "threads | workers CPU us/run | runs/s the driver's CPU allows |")
        print("|---|---|---|---|---|---|---|---|")
        print(per_run_row("real", real, args.runs))
        print(per_run_row("no-op stage runner", noop, args.runs))
        print(per_run_row("real, under cProfile", prof, args.runs))
        print(f"\n(runs with post.done: real {real['runs_done']}, no-op runner "
              f"{noop['runs_done']})\n")
        print(top_functions(work / "driver.prof", args.top))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
