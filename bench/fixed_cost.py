"""Fixed cost per sweep and per-run cost, as whole processes, this tree beside a baseline.

The fixed cost of a sweep is what a user pays however few runs it has:

    fixed = (wall time of a whole process running a 16-run no-op sweep)
            - 16 x (the per-run cost of a 2,000-run no-op sweep)
            - (wall time of ``python -c "import dagrun"``)

each the median of ``--repeat`` alternating runs (bytecode cached, as a user's Python has
it; a first warm-up run writes it), on ``single`` (stages in the driver's own
process). The parts printed beside it are timed inside the 16-run process by wrapping
dagrun's own functions (planning, the copy of the code, the watchdog's start and stop, the
runs, the final reduce, the wait for the provenance record); a part missing from a tree
shows ``-``. The baseline (``--baseline REV``, default ``HEAD``: the last commit, so an
uncommitted change is measured against it) is checked out in a temporary git worktree.

Benchmarks assert nothing; they print.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import floor  # noqa: E402
from planning import checkout  # noqa: E402

SWEEP = """
import json, sys, time
t0 = time.perf_counter()
import floor
from dagrun import run_experiments
out, n, backend, parts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
spent = {}

def wrap(module, name, label):
    fn = getattr(module, name, None)
    if fn is None:
        return
    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - t
    setattr(module, name, timed)

if parts:
    from dagrun import scheduler
    from dagrun.run import proctree
    from dagrun.disk import provenance
    wrap(scheduler, "prepare", "plan: prepare (cfgs, digests, fingerprints, code copy read)")
    wrap(scheduler, "_snapshot", "  of which: copy of the code (read, digest)")
    wrap(scheduler, "_write_state", "plan: write the state (plan, code copy, workflow)")
    wrap(scheduler, "make_plan", "plan: markers read against the plan")
    wrap(proctree, "start_watchdog", "watchdog: start")
    wrap(proctree, "stop_watchdog", "watchdog: stop")
    wrap(provenance, "write", "provenance: the record written (with git's answers)")
    wrap(scheduler, "_provenance_written", "provenance: git's answers read, record written")
    wrap(scheduler, "_run_all", "the runs (backend start and stop included)")
    wrap(scheduler, "_final_reduce", "final reduce (results.jsonl)")
base = {"out_path": out, "pre": floor.noop_pre, "fit": floor.noop_fit, "post": floor.noop_post,
        "backend": backend, "num_cpus": 2, "verbose": False, "report": False}
cfgs = [{"i": i, "loops": 0} for i in range(n)]
t = time.perf_counter()
run_experiments(base, cfgs)
inside = time.perf_counter() - t
print(json.dumps({"inside": inside, "parts": spent}))
"""


def _python(code_root: Path, *args: str) -> tuple[float, dict[str, Any]]:
    """Wall time of a whole ``python`` process (and the JSON it printed last, if any)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = f"{code_root}{os.pathsep}{BENCH}"  # bytecode cached, as users have it
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=600, cwd=BENCH, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    lines = proc.stdout.strip().splitlines()
    return wall, (json.loads(lines[-1]) if lines else {})


def measure(code_root: Path, tmp: Path, backend: str, small: int, large: int
            ) -> dict[str, Any]:
    """One sample of every figure for the code at ``code_root``."""
    out = tmp / "sweep"
    shutil.rmtree(out, ignore_errors=True)
    imported, _ = _python(code_root, "-c", "import dagrun")
    engine, _ = _python(code_root, "-c", "import dagrun.api, dagrun.scheduler")
    _, big = _python(code_root, "-c", SWEEP, str(out), str(large), backend, "0")
    shutil.rmtree(out, ignore_errors=True)
    whole, few = _python(code_root, "-c", SWEEP, str(out), str(small), backend, "1")
    shutil.rmtree(out, ignore_errors=True)
    per_run = big["inside"] / large
    return {"import": imported, "per_run": per_run, "whole": whole,
            "fixed": whole - small * per_run - imported, "engine": engine - imported,
            "parts": few["parts"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="HEAD", help="a git revision ('' for none)")
    parser.add_argument("--backend", default="single")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--small", type=int, default=16)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--ram", default="/dev/shm", help="folder for OUT ('' for temp)")
    args = parser.parse_args(argv)
    ram = floor.ram_folder(args.ram)
    with contextlib.ExitStack() as stack:
        roots: dict[str, Path] = {"this tree": REPO}
        if args.baseline:
            roots[f"{args.baseline} (baseline)"] = stack.enter_context(checkout(args.baseline))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dagrun-fixed-",
                                                                   dir=ram)))
        for root in roots.values():  # writes each tree's bytecode: no sample compiles
            measure(root, tmp, args.backend, args.small, args.small)
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in roots}
        for _ in range(args.repeat):  # alternating: drift hits both alike
            for name, root in roots.items():
                samples[name].append(measure(root, tmp, args.backend, args.small, args.large))
    print(f"\n## Fixed cost per sweep, {args.backend}, {args.small} no-op runs "
          f"(median of {args.repeat}; ms)\n")
    names = list(samples)
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for key, label in (("whole", f"whole process, {args.small} runs"),
                       ("import", "python -c 'import dagrun'"),
                       ("per_run", f"per run (at {args.large:,} runs)"),
                       ("fixed", "fixed cost = whole - runs x per run - import"),
                       ("engine", "  of which: importing the engine (dagrun.scheduler)")):
        cells = [f"{statistics.median(s[key] for s in samples[n]) * 1000:.3f}"
                 if key == "per_run" else
                 f"{statistics.median(s[key] for s in samples[n]) * 1000:.1f}" for n in names]
        print(f"| {label} | " + " | ".join(cells) + " |")
    labels = sorted({label for runs in samples.values() for s in runs for label in s["parts"]})
    for label in labels:
        cells = []
        for n in names:
            values = [s["parts"].get(label) for s in samples[n]]
            found = [v for v in values if v is not None]
            cells.append(f"{statistics.median(found) * 1000:.1f}" if found else "-")
        print(f"| part: {label} | " + " | ".join(cells) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
