"""``dagrun results OUT`` on a large sweep, whole processes: this tree beside another commit
(``--baseline REV``, checked out in a temporary git worktree) in the same run.

The sweep is written straight to disk in dagrun's format (``report_scale.make_sweep``: the
plan, results.jsonl; 2 % of the experiments failed and 1 % with a repetition still running,
whose run folders are written too, the only ones ``results`` reads). "First read": no kept
columns (``OUT/.dagrun/results-columns.marshal`` removed before each), as for a
results.jsonl written elsewhere; "again": right after, with the columns kept. Each figure is
the median wall time of ``python -m dagrun results OUT`` over alternating runs of the two
trees; both must print the same table.

    python bench/results_read.py                      # 100,000 x 3 and 100,000 x 1
    python bench/results_read.py -n 20000 --reps 3 --repeat 5

Benchmarks assert nothing; they print.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import planning  # noqa: E402
import report_scale  # noqa: E402

HEADER = ["experiments x reps", "code", "first read s", "its CPU s", "again s", "first x",
          "again x", "same output"]


def make_sweep(out: str, experiments: int, reps: int, shape: str = "rich") -> None:
    """``rich``: the sweep of ``report_scale`` (four config keys, one nested; three metrics)
    without the run folders of finished experiments (``results`` reads results.jsonl for
    those), with those of the unfinished ones. ``plain``: a finished sweep of cfgs
    ``{"x": i}`` whose post returns nothing (``fit_time`` alone), as a no-op sweep writes."""
    from dagrun.disk.layout import SweepDir

    if shape == "plain":
        _plain_sweep(out, experiments, reps)
        return
    report_scale.make_sweep(out, experiments, reps, runs=False)
    sweep, rng = SweepDir.at(out), random.Random(1)
    for i in range(experiments):
        failed, running = i % 50 == 7, i % 100 == 3
        if not (failed or running):
            continue
        for rep in range(reps):
            scores = {"acc": rng.random(), "loss": rng.random() * 3, "fit_time": 1.5}
            last_running = running and rep == reps - 1
            report_scale._write_run(sweep.run_dir(i, rep, reps).path,
                                    None if last_running else scores, failed)


def _plain_sweep(out: str, experiments: int, reps: int) -> None:
    from dagrun.disk.layout import SweepDir
    from dagrun.disk.planstore import write_plan
    from dagrun.disk.runs import Experiment

    sweep, rng = SweepDir.at(out), random.Random(0)
    os.makedirs(sweep.state, exist_ok=True)
    plan, lines = [], []
    for i in range(experiments):
        plan.append(Experiment(i, reps, {"x": i}, f"{i:032x}"))
        times = [rng.random() * 1e-4 for _ in range(reps)]
        mean = sum(times) / reps
        scores = {"fit_time": times, "mean_fit_time": mean,
                  "std_fit_time": (sum((t - mean) ** 2 for t in times) / reps) ** .5,
                  "n_fit_time": reps}
        lines.append(json.dumps({"x": i, "experiment_id": i,
                                 "out_path": sweep.experiment_path(i), "scores": scores}))
    write_plan(sweep, plan, {"backend": "multiprocessing"})
    with open(sweep.results, "w") as f:
        f.write("\n".join(lines) + "\n")


def _results(code_root: Path, out: str) -> tuple[float, float, str]:
    """Wall and CPU (user + system) seconds of one ``python -m dagrun results OUT`` with
    ``code_root``'s dagrun, and what it printed. On a shared machine the CPU time is the
    steadier figure."""
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dagrun", "results", out],
                          capture_output=True, text=True, timeout=600, cwd=code_root, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"dagrun results failed ({code_root}):\n{proc.stderr[-3000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, proc.stdout


def measure(roots: dict[str, Path], out: str, repeat: int
            ) -> dict[str, tuple[float, float, float, str]]:
    """Per tree: median first-read wall and CPU seconds and again seconds over ``repeat``
    alternating rounds, and its output."""
    cache = os.path.join(out, ".dagrun", "results-columns.marshal")
    samples: dict[str, list[tuple[float, float, float]]] = {n: [] for n in roots}
    printed: dict[str, str] = {}
    for _ in range(repeat):  # alternating, so that drift hits both alike
        for name, root in roots.items():
            with contextlib.suppress(FileNotFoundError):
                os.remove(cache)
            first, cpu, printed[name] = _results(root, out)
            again, _, _ = _results(root, out)
            samples[name].append((first, cpu, again))
    out = {}
    for name, s in samples.items():
        first, cpu, again = (statistics.median(column) for column in zip(*s, strict=True))
        out[name] = (first, cpu, again, printed[name])
    return out


def rows(tmp: Path, sizes: list[tuple[int, int]], baseline: str | None,
         repeat: int = 3) -> list[list[str]]:
    """The table's rows: for each (experiments, reps), this tree and ``baseline``."""
    out_rows: list[list[str]] = []
    with contextlib.ExitStack() as stack:
        roots: dict[str, Path] = {"this tree": REPO}
        if baseline:
            roots[f"{baseline} (baseline)"] = stack.enter_context(planning.checkout(baseline))
        for experiments, reps in sizes:
            out = str(tmp / f"results-{experiments}x{reps}")
            make_sweep(out, experiments, reps)
            found = measure(roots, out, repeat)
            our_first, _, our_again, our_output = found["this tree"]
            for name, (first, cpu, again, output) in found.items():
                out_rows.append([f"{experiments:,} x {reps}", name, f"{first:.2f}",
                                 f"{cpu:.2f}", f"{again:.2f}", f"{first / our_first:.2f}",
                                 f"{again / our_again:.2f}",
                                 "yes" if output == our_output else "NO"])
            shutil.rmtree(out, ignore_errors=True)
    return out_rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100_000, help="experiments")
    parser.add_argument("--reps", type=int, action="append",
                        help="repetitions per experiment (repeatable; default 3 and 1)")
    parser.add_argument("--repeat", type=int, default=3, help="alternating rounds")
    parser.add_argument("--baseline", default="HEAD", help="a git revision ('' for none)")
    args = parser.parse_args(argv)
    sizes = [(args.n, r) for r in (args.reps or [3, 1])]
    with tempfile.TemporaryDirectory(prefix="dagrun-bench-") as d:
        found = rows(Path(d), sizes, args.baseline or None, args.repeat)
    widths = [max(len(r[i]) for r in [HEADER, *found]) for i in range(len(HEADER))]
    for r in [HEADER, ["-" * w for w in widths], *found]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


if __name__ == "__main__":
    main()
