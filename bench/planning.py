"""Planning cost: ``dagrun plan`` of many plain cfgs (``{"x": i}``), first on an empty OUT,
then again against the stored plan (every cfg matched to its experiment by content), beside
the same measurement of another commit (``--baseline REV``, checked out in a temporary git
worktree) in the same run: medians of alternating runs, and their ratio.

Benchmarks assert nothing; they print.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

PLAN = """
import json, sys, time
from dagrun.scheduler import Options, execute
out, n = sys.argv[1], int(sys.argv[2])
base = {"out_path": out, "pre": print, "fit": print, "post": print, "verbose": False,
        "report": False}
cfgs = [{"x": i} for i in range(n)]
times = []
for _ in range(2):  # the first plan, then the same cfgs against the stored plan
    t = time.perf_counter()
    execute(base, cfgs, Options(plan_only=True))
    times.append(time.perf_counter() - t)
print(json.dumps({"first": times[0], "again": times[1]}))
"""


def _measure(code_root: Path, out: Path, n: int) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    proc = subprocess.run([sys.executable, "-c", PLAN, str(out), str(n)], capture_output=True,
                          text=True, timeout=3600, cwd=code_root, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"planning child failed:\n{proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return result


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """A temporary git worktree of ``rev`` of this repository."""
    folder = Path(tempfile.mkdtemp(prefix="dagrun-baseline-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(folder),
                    rev], check=True, capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)],
                       check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def planning_rows(tmp: Path, n: int, baseline: str | None, repeat: int = 3
                  ) -> list[list[str]]:
    """Rows of the planning table: this tree, and ``baseline`` when given."""
    with contextlib.ExitStack() as stack:
        roots: dict[str, Path] = {"this tree": REPO}
        if baseline:
            roots[f"{baseline} (baseline)"] = stack.enter_context(checkout(baseline))
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in roots}
        for _ in range(repeat):  # alternating, so that drift hits both alike
            for name, root in roots.items():
                samples[name].append(_measure(root, tmp / "plan", n))
    medians = {name: {k: statistics.median(s[k] for s in runs) for k in ("first", "again")}
               for name, runs in samples.items()}
    ours = medians["this tree"]
    rows = []
    for name, m in medians.items():
        ratio = {k: f"{m[k] / ours[k]:.2f}" for k in m}
        rows.append([f"{n:,}", name, f"{m['first']:.2f}", f"{m['again']:.2f}",
                     ratio["first"], ratio["again"]])
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--baseline", default="HEAD~1", help="a git revision ('' for none)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dagrun-bench-") as d:
        rows = planning_rows(Path(d), args.n, args.baseline or None)
    for row in rows:
        print(" | ".join(row))
    return {"rows": rows}


if __name__ == "__main__":
    main()
