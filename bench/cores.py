#!/usr/bin/env python3
"""The many-core table: dagrun's multiprocessing backend beside a ``multiprocessing.Pool``
writing the same files (``floor.pool_sweep``), at 1, 2, 4, 8 and 16 workers (those above
``os.cpu_count()`` are skipped, and the table says so), then a GPU check.

1. Parallel efficiency on CPU-bound runs of 0.05 s and 0.25 s (CPU work in C,
   ``floor.cpu_work``, calibrated on this machine): serial work / (workers x wall), each
   the median of 5 alternating runs (Pool, dagrun, Pool, ...); the number of runs grows
   with the workers so that each sweep holds the same work per worker.
2. No-op dispatch: runs per second of dagrun and of the Pool, same runs, median of
   alternating runs, and how many times dearer a dagrun run is.
3. GPU slots: when ``torch`` is importable and ``torch.cuda.is_available()``, a small sweep
   with ``num_gpus`` (one GPU per run, then half a GPU) whose fit records
   ``CUDA_VISIBLE_DEVICES``, ``torch.cuda.device_count()`` and the device's name, checked
   against the slots dagrun promises; else one line saying why it was skipped.

Each sweep is timed inside a fresh interpreter (``run_experiments`` or the Pool, including
their worker start-up). Everything is local; nothing is downloaded. ``make bench-cores``
runs it (under 8 minutes on 16 cores); ``--quick`` is a smoke run of under a minute.
Benchmarks assert nothing; they print (the GPU check prints FAILED lines when a run saw
another slot, and exits 1).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
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

WORKERS = (1, 2, 4, 8, 16)

SWEEP = """
import json, sys, time
import floor
if __name__ == "__main__":
    what, out, n, loops, workers = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    t = time.perf_counter()
    if what == "pool":
        work = floor.pool_sweep(out, n, loops, workers)
        seconds = time.perf_counter() - t
    else:
        from dagrun import run_experiments
        base = {"out_path": out, "pre": floor.noop_pre,
                "fit": floor.cpu_fit if loops else floor.noop_fit, "post": floor.noop_post,
                "backend": "multiprocessing", "num_cpus": workers, "verbose": False,
                "report": False}
        run_experiments(base, [{"i": i, "loops": loops} for i in range(n)])
        seconds = time.perf_counter() - t
        work = floor.fit_seconds(out)  # read after the sweep was timed
    print(json.dumps({"seconds": seconds, "work": work}))
"""


def _sweep(tmp: Path, what: str, n: int, loops: int, workers: int) -> tuple[float, float]:
    """Seconds of one sweep of ``n`` runs by ``what`` (``pool`` or ``dagrun``), in a fresh
    interpreter, on a fresh OUT, and the seconds its fit calls took (summed)."""
    out = tmp / what
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-c", SWEEP, what, str(out), str(n), str(loops),
                           str(workers)], capture_output=True, text=True, timeout=900,
                          cwd=BENCH)
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} sweep failed:\n{proc.stderr[-3000:]}")
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(found["seconds"]), float(found["work"])


def _alternating(tmp: Path, n: int, loops: int, workers: int, repeat: int
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds of ``pool`` and ``dagrun`` over ``repeat`` alternating sweeps, and
    the median ms per run each spent outside its fit calls (wall less the fits' own
    durations over the workers: what the runner adds, whatever the CPU's drift)."""
    times: dict[str, list[float]] = {"pool": [], "dagrun": []}
    outside: dict[str, list[float]] = {"pool": [], "dagrun": []}
    for _ in range(repeat):
        for what in times:
            wall, work = _sweep(tmp, what, n, loops, workers)
            times[what].append(wall)
            outside[what].append(floor.outside_ms(wall, work, workers, n))
    return ({what: statistics.median(t) for what, t in times.items()},
            {what: statistics.median(o) for what, o in outside.items()})


def _run_seconds(loops: int) -> float:
    """Seconds of one run's work on one core here (median of 5)."""
    took = []
    for _ in range(5):
        t = time.perf_counter()
        floor.cpu_work({"loops": loops})
        took.append(time.perf_counter() - t)
    return statistics.median(took)


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    sys.stdout.flush()


def efficiency(tmp: Path, workers: list[int], repeat: int, per_worker: dict[float, int]
               ) -> None:
    rows = []
    for seconds, k in per_worker.items():
        loops = floor.calibrate_loops(seconds)
        each = _run_seconds(loops)
        for w in workers:
            n = k * w
            found, outside = _alternating(tmp, n, loops, w, repeat)
            eff = {what: n * each / (w * wall) for what, wall in found.items()}
            rows.append([f"{seconds:g}", str(w), str(n), f"{found['pool']:.2f}",
                         f"{eff['pool']:.3f}", f"{found['dagrun']:.2f}",
                         f"{eff['dagrun']:.3f}", f"{eff['dagrun'] / eff['pool']:.3f}",
                         f"{outside['pool']:.2f} / {outside['dagrun']:.2f}"])
    _table(f"Parallel efficiency on CPU-bound runs (median of {repeat} alternating runs; "
           "serial work / (workers x wall))",
           ["run s", "workers", "runs", "Pool wall s", "Pool eff", "dagrun wall s",
            "dagrun eff", "dagrun / Pool", "ms/run outside the work, Pool / dagrun"], rows)


def dispatch(tmp: Path, workers: list[int], repeat: int, per_worker: int, most: int) -> None:
    rows = []
    for w in workers:
        n = min(per_worker * w, most)
        found, _ = _alternating(tmp, n, 0, w, repeat)
        rows.append([str(w), str(n), f"{n / found['pool']:.0f}", f"{n / found['dagrun']:.0f}",
                     f"{found['dagrun'] / found['pool']:.2f}"])
    _table(f"No-op dispatch (runs per second, median of {repeat} alternating runs)",
           ["workers", "runs", "Pool runs/s", "dagrun runs/s", "dagrun cost x Pool"], rows)


GPU_WORKFLOW = """
import os

basecfg = {"out_path": @OUT@, "backend": "multiprocessing", "num_cpus": @CPUS@,
           "num_gpus": @PER_RUN@, "gpu_ids": @IDS@, "verbose": False, "report": False}
cfgs = [{"i": i} for i in range(@RUNS@)]

def pre(cfg):
    return None

def fit(cfg, x):
    import torch
    count = torch.cuda.device_count()
    return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device_count": count, "pid": os.getpid(),
            "names": [torch.cuda.get_device_name(i) for i in range(count)],
            "tensor_on": str(torch.ones(1, device="cuda").device)}

def post(cfg, seen):
    return {"seen": seen}
"""


def gpu_check(tmp: Path, workers: int) -> bool:
    """Whether every run of a small GPU sweep saw exactly its slot (``True`` when skipped)."""
    try:
        import torch
    except ImportError:
        print("\nGPU check skipped: torch is not installed in this environment")
        return True
    if not torch.cuda.is_available():
        print(f"\nGPU check skipped: torch {torch.__version__} sees no CUDA device "
              f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        return True
    count = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")  # dagrun cuts these into slots, else gpu_ids
    ids = [g.strip() for g in env.split(",")][:count] if env else [str(i) for i in range(count)]
    names = {g: torch.cuda.get_device_name(k) for k, g in enumerate(ids)}
    print(f"\n## GPU slots ({count} GPU(s): "
          + ", ".join(f"{g}: {name}" for g, name in names.items()) + ")\n")
    ok = True
    for per_run in (1, 0.5):
        slots = _expected_slots(ids, per_run)
        out, runs = tmp / f"gpu-{per_run}", 2 * len(slots)
        workflow = tmp / f"gpu_{len(slots)}.py"
        workflow.write_text(
            GPU_WORKFLOW.replace("@OUT@", repr(str(out))).replace("@RUNS@", str(runs))
            .replace("@CPUS@", str(min(workers, len(slots)))).replace("@PER_RUN@", repr(per_run))
            .replace("@IDS@", "None" if env else repr([int(g) for g in ids])))
        proc = subprocess.run([sys.executable, "-m", "dagrun", "execute", str(workflow)],
                              capture_output=True, text=True, timeout=600, cwd=tmp)
        seen = _seen(out) if proc.returncode == 0 else []
        problems = _slot_problems(seen, slots, names)
        if proc.returncode != 0 or len(seen) != runs:
            problems.append(f"dagrun exited {proc.returncode}, {len(seen)} of {runs} runs "
                            f"recorded: {proc.stderr.strip()[-2000:]}")
        pids = {s["pid"] for s in seen}
        used = sorted({s["cuda_visible_devices"] for s in seen})
        print(f"- num_gpus={per_run:g}: {runs} runs in {len(pids)} process(es), slots "
              f"{used} (expected among {sorted(set(slots))}); each run's device count and "
              f"names those of its slot: {'ok' if not problems else 'FAILED'}")
        for problem in problems:
            print(f"  FAILED: {problem}")
        ok = ok and not problems
    return ok


def _expected_slots(ids: list[str], per_run: float) -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` of each slot, as docs/workers.md describes them."""
    if per_run < 1:
        return [g for _ in range(round(1 / per_run)) for g in ids]
    size = int(per_run)
    return [",".join(ids[i:i + size]) for i in range(0, len(ids) - size + 1, size)]


def _seen(out: Path) -> list[dict[str, Any]]:
    seen = []
    with open(out / "results.jsonl") as f:
        for line in f:
            seen.extend(json.loads(line)["scores"]["seen"])
    return seen


def _slot_problems(seen: list[dict[str, Any]], slots: list[str], names: dict[str, str]
                   ) -> list[str]:
    problems = []
    for s in seen:
        slot = s["cuda_visible_devices"]
        if slot not in slots:
            problems.append(f"a run saw CUDA_VISIBLE_DEVICES={slot!r}, not a slot")
            continue
        ids = slot.split(",")
        if s["device_count"] != len(ids) or s["names"] != [names[g] for g in ids]:
            problems.append(f"a run of slot {slot!r} saw {s['device_count']} device(s) "
                            f"{s['names']}")
        if s["tensor_on"] != "cuda:0":
            problems.append(f"a run of slot {slot!r} put its tensor on {s['tensor_on']}")
    pids: dict[int, set[str]] = {}
    for s in seen:
        pids.setdefault(s["pid"], set()).add(s["cuda_visible_devices"])
    problems += [f"process {pid} moved between slots {sorted(v)}"
                 for pid, v in pids.items() if len(v) > 1]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (under a minute): 1 and 2 workers, fewer runs, 2 repeats")
    parser.add_argument("--ram", default="/dev/shm",
                        help="RAM-backed folder for the sweeps ('' for the temp folder): a "
                             "disk's own variance would swamp the runners' cost")
    args = parser.parse_args(argv)
    ram = floor.ram_folder(args.ram)
    cores = os.cpu_count() or 1
    wanted = WORKERS[:2] if args.quick else WORKERS
    workers = [w for w in wanted if w <= cores]
    skipped = [w for w in wanted if w > cores]
    start = time.perf_counter()
    print(f"dagrun many-core table on {cores} cores, Python {sys.version.split()[0]}"
          f"{' (quick)' if args.quick else ''}; workers {workers}"
          + (f"; skipped {skipped} (more than the {cores} cores here)" if skipped else "")
          + f"; sweeps in {ram or 'the temp folder'}")
    repeat = 2 if args.quick else 5
    with tempfile.TemporaryDirectory(prefix="dagrun-cores-", dir=ram) as d:
        tmp = Path(d)
        efficiency(tmp, workers, repeat, {0.05: 16, 0.25: 4} if args.quick
                   else {0.05: 24, 0.25: 8})
        dispatch(tmp, workers, repeat if args.quick else 3, 200 if args.quick else 1000,
                 8000)
        ok = gpu_check(tmp, max(workers))
    print(f"\n(all of it in {time.perf_counter() - start:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
