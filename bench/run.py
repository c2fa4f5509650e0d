#!/usr/bin/env python3
"""dagrun's benchmarks: every row measured in this one run, with ratios to a floor.

Tables:
1. per-run engine overhead of ``single`` and ``multiprocessing`` on no-op runs, against a
   floor that makes the same calls and writes the same files without dagrun (a plain loop,
   and a ``multiprocessing.Pool`` with the same number of workers), the median of 5
   rounds that each measure the four side by side;
2. parallel efficiency on runs of ~0.25 s and ~0.05 s CPU work in C (``floor.cpu_work``)
   with 2 workers, dagrun and the Pool in alternating rounds (medians);
3. no-op re-execute (everything done) and ``dagrun status`` at 10,000 and 100,000 runs, and
   the driver's peak RSS;
4. peers (Hydra multirun, Snakemake) on the same no-op sweep, from their own venv;
5. the cached-runner peers (labtech, exca) beside dagrun, whole processes, 200 and 2,000
   configs: first execution with 1 and 2 workers, re-execution, import cost;
6. code fingerprints of a workflow importing 50 user modules (first call, every file parsed;
   again, parsed files cached) and config digests of 100,000 plain cfgs;
7. planning 100,000 plain cfgs (``dagrun plan``, first and again), this tree beside the
   previous commit (``HEAD~1``, checked out in a temporary worktree) in the same run;
8. data in configs: big cfg values stored once (64 MB and 8 MB arrays shared by cfgs, a
   1 GB array, the leaf-refinement shape against the original tool's loop);
9. ``dagrun results`` on 100,000 experiments (3 repetitions and 1), first read and again,
   this tree beside the previous commit (``bench/results_read.py``);
10. adaptive search against its peers (Optuna in memory and on its journal file, Ray Tune
   with OptunaSearch and ASHA, Hydra's Optuna sweeper from its own venv): 50 trials of one
   objective, overhead per trial, and what a kill -9 of the driver midway leaves
   (``bench/search_peers.py``, about 2 minutes);
11. the fixed cost per sweep (a 16-run no-op sweep as a whole process, less 16 runs at the
   per-run cost of 2,000, less ``import dagrun``) with its parts, this tree beside the
   previous commit (``bench/fixed_cost.py``).

``--quick`` (about 5 minutes on an idle 2-core machine): smaller sizes, no 100,000 rows, no Ray
table, Hydra and Snakemake at 200 runs only, labtech's 3-task form, exca's TaskInfra and dagrun
multiprocessing -j 1 at 200 runs only.
Benchmarks assert nothing; they print.
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

WORKERS = 2


def _child(code: str, *args: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON line of figures."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=3600, cwd=BENCH)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


DAGRUN_NOOP = """
import json, resource, sys, time
import floor
from dagrun import run_experiments
out, n, backend, loops = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
fit = floor.cpu_fit if loops else floor.noop_fit
base = {"out_path": out, "pre": floor.noop_pre, "fit": fit, "post": floor.noop_post,
        "backend": backend, "num_cpus": @WORKERS@, "verbose": False,
        "report": False}  # the engine's cost, as the floor measures it (no HTML page)
cfgs = [{"i": i, "loops": loops} for i in range(n)]
t = time.perf_counter()
s = run_experiments(base, cfgs)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "done": s.done, "skipped": s.skipped,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "work": floor.fit_seconds(out) if loops else 0.0}))
""".replace("@WORKERS@", str(WORKERS))

STATUS = """
import json, sys, time, io, contextlib
from dagrun.cli import main
t = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    main(["status", sys.argv[1]])
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

PLAIN_DIGESTS = """
import json, sys, time
from dagrun.code.digest import config_digest
cfgs = [{"i": i, "lr": 0.001 * i, "name": "run%d" % i, "layers": [64, 32], "flag": i % 2 == 0}
        for i in range(int(sys.argv[1]))]
t = time.perf_counter()
for cfg in cfgs:
    config_digest(cfg)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

FLOOR_SERIAL = """
import json, sys, time
import floor
out, n = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
floor.serial_sweep(out, n)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""



def _fresh(tmp: Path, name: str) -> str:
    path = tmp / name
    shutil.rmtree(path, ignore_errors=True)
    return str(path)


def _row(table: list[list[str]], *cells: Any) -> None:
    table.append([str(c) for c in cells])


def _print(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n## {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    sys.stdout.flush()


def overhead(tmp: Path, sizes: list[int], repeat: int) -> None:
    """Per size, the median of ``repeat`` rounds, each measuring the four side by side
    (a machine shared with other jobs drifts by 10 % between minutes: one round of each
    would compare different moments)."""
    rows: list[list[str]] = []
    for n in sizes:
        rounds: dict[str, list[float]] = {"serial": [], "pool": [], "single": [], "mp": []}
        for _ in range(repeat):  # each side right after its floor
            rounds["serial"].append(
                _child(FLOOR_SERIAL, _fresh(tmp, "floor"), str(n))["seconds"])
            rounds["single"].append(_child(DAGRUN_NOOP, _fresh(tmp, "single"), str(n),
                                           "single", "0")["seconds"])
            rounds["pool"].append(
                _child(FLOOR_POOL_CODE, _fresh(tmp, "pool"), str(n), "0")["seconds"])
            rounds["mp"].append(_child(DAGRUN_NOOP, _fresh(tmp, "mp"), str(n),
                                       "multiprocessing", "0")["seconds"])
        serial, pool, single, mp = (statistics.median(rounds[k])
                                    for k in ("serial", "pool", "single", "mp"))
        # each ratio is the median of the rounds' own ratios: a round measures dagrun
        # seconds after its floor, so a machine whose speed drifts between rounds (a shared
        # one does, by 10-40 %) moves both sides of a round's ratio alike
        single_x = statistics.median(d / f for d, f in zip(rounds["single"], rounds["serial"],
                                                           strict=True))
        mp_x = statistics.median(d / f for d, f in zip(rounds["mp"], rounds["pool"],
                                                       strict=True))
        ms = 1000 / n
        _row(rows, n, "plain loop (floor)", f"{serial * ms:.3f}", "1.00")
        _row(rows, n, "dagrun single", f"{single * ms:.3f}", f"{single_x:.2f}")
        _row(rows, n, f"multiprocessing.Pool({WORKERS}) (floor)", f"{pool * ms:.3f}", "1.00")
        _row(rows, n, f"dagrun multiprocessing -j {WORKERS}", f"{mp * ms:.3f}", f"{mp_x:.2f}")
    _print(f"Per-run overhead, no-op runs (wall ms per run, median of {repeat} rounds; "
           "ratio to its floor: the median of the rounds' ratios)",
           ["runs", "what", "ms/run", "x floor"], rows)


def _calibrate(seconds: float) -> int:
    return int(floor.calibrate_loops(seconds))


def efficiency(tmp: Path, runs: int, repeat: int) -> None:
    """Parallel efficiency on CPU-bound runs of ~0.25 s (``runs`` of them) and ~0.05 s
    (five times as many): dagrun against a Pool writing the same files, each the median of
    ``repeat`` alternating rounds.

    Beside it, what each spent outside the work: wall time less the fit calls' own
    durations (summed, over the workers), per run. The speed of this machine's CPU drifts
    by a few percent between rounds seconds apart, which moves the efficiency of either
    side by as much; the time outside the work is what the runner itself adds."""
    rows: list[list[str]] = []
    for seconds, count in ((0.25, runs), (0.05, runs * 5)):
        loops = _calibrate(seconds)
        t = time.perf_counter()
        for _ in range(count):
            floor.cpu_work({"loops": loops})
        serial = time.perf_counter() - t
        rounds: dict[str, list[dict[str, Any]]] = {"pool": [], "mp": []}
        for _ in range(repeat):
            rounds["pool"].append(_child(FLOOR_POOL_CODE, _fresh(tmp, "pool"), str(count),
                                         str(loops)))
            rounds["mp"].append(_child(DAGRUN_NOOP, _fresh(tmp, "mp"), str(count),
                                       "multiprocessing", str(loops)))
        for name, key in ((f"multiprocessing.Pool({WORKERS})", "pool"),
                          (f"dagrun multiprocessing -j {WORKERS}", "mp")):
            wall = statistics.median(r["seconds"] for r in rounds[key])
            outside = statistics.median(floor.outside_ms(r["seconds"], r["work"], WORKERS, count)
                                        for r in rounds[key])
            _row(rows, f"{count} x {seconds:g} s", name, f"{wall:.2f}",
                 f"{serial / (WORKERS * wall):.3f}",
                 f"{(wall - serial / WORKERS) / count * 1000:.1f}", f"{outside:.2f}")
    _print(f"Parallel efficiency on CPU-bound runs (serial work measured first; wall s the "
           f"median of {repeat} alternating rounds)",
           ["runs", "what", "wall s", "efficiency", "ms/run over ideal",
            "ms/run outside the work"], rows)


def rerun_and_status(tmp: Path, sizes: list[int]) -> None:
    rows: list[list[str]] = []
    for n in sizes:
        out = _fresh(tmp, f"done{n}")
        first = _child(DAGRUN_NOOP, out, str(n), "multiprocessing", "0")
        again = _child(DAGRUN_NOOP, out, str(n), "single", "0")
        status = _child(STATUS, out)
        _row(rows, n, f"{first['seconds']:.1f}", f"{first['rss_mb']:.0f}",
             f"{again['seconds']:.2f}", f"{again['rss_mb']:.0f}", f"{status['seconds']:.2f}")
        shutil.rmtree(out, ignore_errors=True)
    _print("Whole sweeps of no-op runs: first execution (multiprocessing -j 2), no-op "
           "re-execute (everything done), dagrun status",
           ["runs", "first execution s", "its driver peak RSS MB", "re-execute s",
            "its peak RSS MB", "status s"], rows)


def peers(tmp: Path, sizes: list[int], quick: bool) -> None:
    try:
        import peers as peer_bench
    except ImportError as exc:
        print(f"\n(peers skipped: {exc})")
        return
    rows: list[list[str]] = []
    measured = peer_bench.measure_peers(sizes, peer_bench.DEFAULT_VENV, not quick)
    ours = {n: _child(DAGRUN_NOOP, _fresh(tmp, "peer-single"), str(n), "single", "0")
            for n in sizes}
    ours_mp = {n: _child(DAGRUN_NOOP, _fresh(tmp, "peer-mp"), str(n), "multiprocessing", "0")
               for n in sizes}
    largest = max(sizes)  # measured last above, so peer-single holds its finished sweep
    again = _child(DAGRUN_NOOP, str(tmp / "peer-single"), str(largest), "single", "0")
    for n in sizes:
        _row(rows, n, "dagrun single (API)", f"{ours[n]['seconds']:.2f}",
             f"{ours[n]['seconds'] * 1000 / n:.2f}", "1.0")
        _row(rows, n, "dagrun multiprocessing -j 2 (API)", f"{ours_mp[n]['seconds']:.2f}",
             f"{ours_mp[n]['seconds'] * 1000 / n:.2f}", "")
    _row(rows, largest, "dagrun re-run (no-op, API)", f"{again['seconds']:.2f}",
         f"{again['seconds'] * 1000 / largest:.2f}", "1.0")
    for row in measured:
        n = row["runs"]
        base = again if "re-run" in row["tool"] else ours.get(n)
        speedup = f"{row['seconds'] / base['seconds']:.1f}" if base and row.get("seconds") else ""
        secs = f"{row['seconds']:.2f}" if row.get("seconds") else str(row.get("error", "failed"))
        per = f"{row['ms_per_run']:.2f}" if row.get("ms_per_run") else ""
        _row(rows, n, row["tool"], secs, per, speedup)
    _print("Peers on the same no-op sweep (dagrun single's speed-up over each; a re-run is "
           "compared with dagrun's re-run; peers' times include their start-up, dagrun's "
           "are of run_experiments)",
           ["runs", "tool", "seconds", "ms/run", "dagrun single faster by"], rows)


def fingerprints(tmp: Path) -> None:
    """Code fingerprints of 50 generated user modules, and plain config digests."""
    import fingerprint_bench

    folder = tmp / "fingerprints"
    fingerprint_bench.make_repo(folder, 50)
    times = _child(fingerprint_bench.CHILD, str(folder))
    digests = _child(PLAIN_DIGESTS, "100000")["seconds"]
    rows: list[list[str]] = []
    _row(rows, "fingerprint, 50 user modules (pre, fit, post; files parsed)",
         f"{times['cold'] * 1000:.1f}")
    _row(rows, "fingerprint, 50 user modules, again (parsed files cached)",
         f"{times['warm'] * 1000:.1f}")
    _row(rows, "config digests, 100,000 plain cfgs", f"{digests * 1000:.0f}")
    _print("Code fingerprints and config digests (ms)", ["what", "ms"], rows)


def planning_table(tmp: Path, quick: bool) -> None:
    """``dagrun plan`` of many plain cfgs, this tree beside the previous commit."""
    import planning

    n = 20_000 if quick else 100_000
    rows = planning.planning_rows(tmp, n, "HEAD~1", repeat=1 if quick else 3)
    _print("Planning plain cfgs ({\"x\": i}): first plan, and again against the stored plan "
           "(seconds, median of alternating runs; x this tree)",
           ["cfgs", "code", "first s", "again s", "first x", "again x"], rows)


def fixed_cost_table(quick: bool) -> None:
    """The fixed cost per sweep and the per-run cost as whole processes, this tree beside
    the previous commit (bench/fixed_cost.py)."""
    import fixed_cost

    fixed_cost.main(["--baseline", "HEAD~1", "--repeat", "3" if quick else "5"])


def data_table(tmp: Path, quick: bool) -> None:
    """Big values in cfgs, stored once (bench/data_in_cfgs.py)."""
    import data_in_cfgs

    _print("Data in configs (OUT without stage outputs; peak PSS of the process tree)",
           data_in_cfgs.HEADER, data_in_cfgs.rows(tmp, quick))


def results_table(tmp: Path, quick: bool) -> None:
    """``dagrun results`` on 100,000 experiments, this tree beside the previous commit."""
    import results_read

    rows = results_read.rows(tmp, [(100_000, 3), (100_000, 1)], "HEAD~1",
                             repeat=3 if quick else 5)
    _print("dagrun results on a large sweep, whole process (seconds, median of alternating "
           "runs; first read: no kept columns; x this tree)", results_read.HEADER, rows)


def search_table() -> None:
    """Adaptive search against its peers: same objective and budget, and a kill -9 midway
    (``bench/search_peers.py``)."""
    import search_peers

    _print(f"Adaptive search against its peers: {search_peers.TRIALS} trials of a 2-D "
           f"quadratic (TPE, seed 0, one at a time, {search_peers.SLEEP * 1000:.0f} ms each), "
           "whole driver processes; then SIGKILL of the driver's process tree after half the "
           "trials and the same command again", search_peers.HEADER,
           search_peers.measure_all())


def cached_peers_table(quick: bool) -> None:
    """labtech and exca beside dagrun: whole processes at 200 and 2,000 no-op configs."""
    try:
        import cached_peers
        rows, imports = cached_peers.measure_cached_peers(
            [200, 2000], quick=quick, process_per_task=not quick)
    except (ImportError, OSError, subprocess.SubprocessError) as exc:
        print(f"\n(cached-runner peers skipped: {type(exc).__name__}: {exc})")
        return
    print("\n## Cached-runner peers (labtech, exca) and dagrun, whole processes on the same "
          "no-op sweep\n\n(x dagrun: seconds over dagrun's in the same size and kind of run: "
          "single for 1 worker, multiprocessing -j 2 for 2)\n")
    print(cached_peers.format_markdown(rows, imports))
    sys.stdout.flush()


def ray_table(runs: int) -> None:
    try:
        import ray_bench
        rows_in = ray_bench.measure_ray(n_runs=runs, seconds=0.25)
    except Exception as exc:  # the bench reports what it could not measure
        print(f"\n(ray table skipped: {type(exc).__name__}: {exc})")
        return
    rows: list[list[str]] = []
    for row in rows_in:
        _row(rows, row["runs"], row["what"], f"{row['seconds']:.2f}", f"{row['ideal']:.2f}",
             f"{row['ratio']:.2f}")
    _print(f"Ray: {runs} runs of 0.25 s on a local 2-CPU cluster (ratio to plain Ray tasks)",
           ["runs", "what", "seconds", "ideal s", "x plain Ray"], rows)


FLOOR_POOL_CODE = """
import json, sys, time
import floor
if __name__ == "__main__":
    out, n, loops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    t = time.perf_counter()
    work = floor.pool_sweep(out, n, loops, @WORKERS@)
    print(json.dumps({"seconds": time.perf_counter() - t, "work": work}))
""".replace("@WORKERS@", str(WORKERS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, no Ray, slow peers at 200 runs (~5 minutes)")
    parser.add_argument("--only", choices=["overhead", "efficiency", "sweeps", "ray", "peers",
                                           "cached-peers", "fingerprints", "planning",
                                           "data", "results", "search", "fixed"],
                        action="append", help="run only these tables")
    parser.add_argument("--ram", default="/dev/shm", metavar="DIR",
                        help="RAM-backed folder for the per-run overhead table "
                             "(default /dev/shm; '' for the temp folder)")
    args = parser.parse_args()
    only = set(args.only or ["overhead", "efficiency", "sweeps", "ray", "peers",
                             "cached-peers", "fingerprints", "planning", "data",
                             "results", "search", "fixed"])
    print(f"dagrun benchmarks on {os.cpu_count()} cores, Python {sys.version.split()[0]}"
          f"{' (quick)' if args.quick else ''}")
    ram = floor.ram_folder(args.ram)
    with tempfile.TemporaryDirectory(prefix="dagrun-bench-", dir=ram) as d:
        tmp = Path(d)
        if "overhead" in only:
            print(f"\n(per-run overhead measured in {'RAM, ' + ram if ram else 'the temp folder'}"
                  ": the disk's own variance would swamp the engine's cost)")
            overhead(tmp, [500, 2000] if args.quick else [2000, 20000], 5)  # goal: median of 5
    with tempfile.TemporaryDirectory(prefix="dagrun-bench-") as d:
        tmp = Path(d)
        if "efficiency" in only:
            efficiency(tmp, 16 if args.quick else 40, 5)  # the goal is a median of 5
        if "sweeps" in only:
            rerun_and_status(tmp, [2_000] if args.quick else [10_000, 100_000])
        if "ray" in only and not args.quick:  # a cluster start alone takes ~10 s
            ray_table(200)
        if "peers" in only:
            peers(tmp, [200] if args.quick else [200, 2000], args.quick)
        if "cached-peers" in only:
            cached_peers_table(args.quick)
        if "fingerprints" in only:
            fingerprints(tmp)
        if "planning" in only:
            planning_table(tmp, args.quick)
        if "fixed" in only:
            fixed_cost_table(args.quick)
        if "data" in only:
            data_table(tmp, args.quick)
        if "results" in only:
            results_table(tmp, args.quick)
        if "search" in only:
            search_table()


if __name__ == "__main__":
    multiprocessing.freeze_support()
    main()
