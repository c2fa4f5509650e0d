#!/usr/bin/env python3
"""Time the cached-runner peers (labtech, exca) and dagrun on one no-op sweep, whole processes.

Every row is one whole tool process (interpreter start-up and imports included) running N
no-op configs through pre -> fit -> post, timed from outside. The peers run from their own
virtual environment (``bench/.peers-venv``, see :mod:`peers`), dagrun from the project's.
Each tool is written the way its own documentation shows:

* **dagrun**: a workflow file with module-level ``pre``, ``fit``, ``post`` and
  ``cfgs``, run by ``dagrun execute`` (``--backend single``; ``multiprocessing -j 1/2``).
* **labtech (3 tasks)**: ``@labtech.task`` classes ``Pre``, ``Fit(pre: Pre)``,
  ``Post(fit: Fit)`` (nested tasks, so every stage is cached like dagrun's checkpoints),
  ``labtech.Lab(storage=..., max_workers=W).run_tasks(...)``. With one worker labtech runs
  tasks on a thread, with more on a fork pool (its defaults).
* **labtech (1 task)**: one ``@labtech.task`` per config doing the three stages.
* **exca MapInfra**: a pydantic model whose ``@infra.apply(item_uid=str)`` method maps the
  configs; ``cluster=None`` runs in the driver, ``cluster="processpool"`` with
  ``max_jobs=W`` on a process pool (exca caps the pool at ``os.cpu_count() - 1`` workers).
* **exca TaskInfra**: a pydantic model per config with an ``@infra.apply`` method, sent as
  ``infra.job_array()``; ``cluster=None`` computes in the driver; ``cluster="local"`` starts
  one submitit process per config, all at once (no pool whose size can be set).

Re-execution runs the same command again on the finished folder (everything cached).
``import`` cost is the wall time of ``python -c "import X"`` minus ``python -c pass``.

Usage::

    python bench/cached_peers.py                  # 200 and 2,000 configs
    python bench/cached_peers.py --sizes 200 --json rows.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import peers  # noqa: E402

DEFAULT_SIZES: tuple[int, ...] = (200, 2000)
PROCESS_PER_TASK_RUNS = 20
IMPORT_REPEATS = 3
TIMEOUT_S = 900.0

DAGRUN_WORKFLOW_SRC = '''
"""No-op sweep: N configs, stages that return nothing."""
import os

N = int(os.environ["BENCH_RUNS"])


def pre(cfg):
    return None


def fit(cfg, data):
    return None


def post(cfg, model):
    return {}


basecfg = {"out_path": "out", "verbose": False}
cfgs = [{"x": i} for i in range(N)]
'''

LABTECH_SRC = '''
"""labtech on the no-op sweep: nested Pre -> Fit -> Post tasks, or one task per config."""
import sys

import labtech


@labtech.task
class Pre:
    x: int

    def run(self):
        return None


@labtech.task
class Fit:
    pre: Pre

    def run(self):
        return None


@labtech.task
class Post:
    fit: Fit

    def run(self):
        return {}


@labtech.task
class Whole:
    x: int

    def run(self):
        return {}


def main():
    storage, n, workers, form = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if form == "stages":
        tasks = [Post(fit=Fit(pre=Pre(x=i))) for i in range(n)]
    else:
        tasks = [Whole(x=i) for i in range(n)]
    lab = labtech.Lab(storage=storage, max_workers=workers)
    results = lab.run_tasks(tasks, disable_progress=True, disable_top=True)
    if len(results) != n:
        sys.exit(f"{len(results)} of {n} results")


if __name__ == "__main__":
    main()
'''

# In a module of its own: exca's process pool pickles the model's class by reference.
EXCA_MODELS_SRC = '''
"""exca on the no-op sweep: a MapInfra over all configs, or a TaskInfra per config."""
import typing as tp

import exca
import pydantic


class Sweep(pydantic.BaseModel):
    infra: exca.MapInfra = exca.MapInfra()

    @infra.apply(item_uid=str)
    def process(self, items: tp.Iterable[int]) -> tp.Iterator[dict]:
        for _ in items:
            yield {}


class Run(pydantic.BaseModel):
    x: int = 0
    infra: exca.TaskInfra = exca.TaskInfra()

    @infra.apply
    def process(self) -> dict:
        return {}
'''

EXCA_MAIN_SRC = '''
import sys

from exca_models import Run, Sweep


def main():
    folder, n, cluster, workers, form = sys.argv[1:6]
    n, cluster = int(n), None if cluster == "none" else cluster
    if form == "map":
        sweep = Sweep(infra={"folder": folder, "cluster": cluster, "max_jobs": int(workers)})
        results = list(sweep.process(list(range(n))))
    else:
        base = Run(infra={"folder": folder, "cluster": cluster})
        with base.infra.job_array(max_workers=int(workers)) as array:
            array.extend(base.infra.clone_obj(x=i) for i in range(n))
        results = [task.process() for task in array]
    if len(results) != n:
        sys.exit(f"{len(results)} of {n} results")


if __name__ == "__main__":
    main()
'''

IMPORTS: tuple[tuple[str, str], ...] = (
    ("dagrun", "dagrun"),
    ("labtech", "labtech"),
    ("exca", "exca"),
    ("hydra", "hydra"),
    ("snakemake", "snakemake.api"),
)


@dataclass(frozen=True)
class Variant:
    """One way of running one tool: its name, the command for N configs, what it writes."""

    tool: str
    workers: str
    argv: tuple[str, ...]
    python: str  # "ours" or "peers"
    family: str  # the tool and form, without the way it runs
    writes: str
    slow: bool = False  # quick mode times it at the smallest size only


def variants() -> list[Variant]:
    """Every tool variant timed at every size.

    In an argument ``{n}`` stands for the size and ``{work}`` for the measurement's folder.
    """
    out = "{work}/state"
    dagrun_writes = ("per run: folder + 7 files (config, 3 stage outputs, 3 markers), each "
                     "temp+rename; + results.jsonl, plan")
    dagrun = ("-m", "dagrun", "execute", "{work}/wf.py", "--out", out, "-q")
    lt = ("{work}/labtech_sweep.py", out, "{n}")
    ex = ("{work}/exca_main.py", out, "{n}")
    lt3 = ("per config: 3 task folders, each metadata.json + data.pickle written in place "
           "(no temp+rename); a task is cached when its folder exists")
    lt1 = "per config: 1 task folder, metadata.json + data.pickle written in place"
    exmap = ("per config: one appended line in a per-process info .jsonl (small results "
             "inline), no per-item file; + inflight.db (sqlite) for claims")
    extask = ("per config: folder with job.pkl (result inside, temp+rename), config.yaml, "
              "uid.yaml, full-uid.yaml")
    return [
        Variant("dagrun single", "1", (*dagrun, "--backend", "single"), "ours", "dagrun",
                dagrun_writes),
        Variant("dagrun multiprocessing", "1",
                (*dagrun, "--backend", "multiprocessing", "-j", "1"), "ours", "dagrun",
                dagrun_writes, slow=True),
        Variant("dagrun multiprocessing", "2",
                (*dagrun, "--backend", "multiprocessing", "-j", "2"), "ours", "dagrun",
                dagrun_writes),
        Variant("labtech 3 tasks (thread)", "1", (*lt, "1", "stages"), "peers",
                "labtech, 3 tasks per config", lt3, slow=True),
        Variant("labtech 3 tasks (fork pool)", "2", (*lt, "2", "stages"), "peers",
                "labtech, 3 tasks per config", lt3, slow=True),
        Variant("labtech 1 task (thread)", "1", (*lt, "1", "whole"), "peers",
                "labtech, 1 task per config", lt1),
        Variant("labtech 1 task (fork pool)", "2", (*lt, "2", "whole"), "peers",
                "labtech, 1 task per config", lt1),
        Variant("exca MapInfra (in driver)", "1", (*ex, "none", "1", "map"), "peers",
                "exca MapInfra", exmap),
        Variant("exca MapInfra (processpool)", "2 (capped to cpus-1)",
                (*ex, "processpool", "2", "map"), "peers", "exca MapInfra", exmap),
        Variant("exca TaskInfra (in driver)", "1", (*ex, "none", "1", "task"), "peers",
                "exca TaskInfra", extask, slow=True),
    ]


def process_per_task_variant() -> Variant:
    """exca TaskInfra on submitit's local cluster: one process per config, all at once."""
    return Variant("exca TaskInfra (cluster=local)", "all at once",
                   ("{work}/exca_main.py", "{work}/state", "{n}", "local", "2", "task"),
                   "peers", "exca TaskInfra, cluster=local",
                   "per config: TaskInfra's files + a submitit job folder and logs")


def _write_sources(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "wf.py").write_text(DAGRUN_WORKFLOW_SRC)
    (work / "labtech_sweep.py").write_text(LABTECH_SRC)
    (work / "exca_models.py").write_text(EXCA_MODELS_SRC)
    (work / "exca_main.py").write_text(EXCA_MAIN_SRC)


def _ours_env(n: int) -> dict[str, str]:
    env = dict(os.environ)
    env["BENCH_RUNS"] = str(n)
    return env


def _time(variant: Variant, n: int, work: Path, info: peers.VenvInfo, log: Path,
          timeout: float) -> peers.ToolRun:
    argv = [a.replace("{n}", str(n)).replace("{work}", str(work)) for a in variant.argv]
    if variant.python == "ours":
        return peers.run_timed([sys.executable, *argv], work, _ours_env(n), log, timeout)
    env = peers.clean_env(info.path)
    env["PYTHONPATH"] = str(work)
    return peers.run_timed([str(info.python), *argv], work, env, log, timeout)


def _count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root)) if root.is_dir() else 0


def measure_variant(variant: Variant, n: int, info: peers.VenvInfo, *, rerun: bool,
                    timeout: float = TIMEOUT_S) -> list[dict[str, Any]]:
    """Time the first execution of ``variant`` on ``n`` fresh configs (and the re-run)."""
    work = Path(tempfile.mkdtemp(prefix="dagrun-cached-peers-"))
    try:
        _write_sources(work)
        first = _time(variant, n, work, info, work / "first.log", timeout)
        rows = [_row(variant, n, "first execution", first, _count_files(work / "state"))]
        if rerun and rows[0]["status"] == "ok":
            again = _time(variant, n, work, info, work / "again.log", timeout)
            rows.append(_row(variant, n, "re-execution (all cached)", again, None))
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _row(variant: Variant, n: int, what: str, result: peers.ToolRun,
         files: int | None) -> dict[str, Any]:
    if result.timed_out:
        status = "timeout"
    elif result.returncode != 0:
        status = f"error (exit {result.returncode})"
    else:
        status = "ok"
    row: dict[str, Any] = {
        "tool": variant.tool, "workers": variant.workers, "runs": n, "what": what,
        "seconds": round(result.seconds, 3),
        "ms_per_run": round(1000.0 * result.seconds / n, 3),
        "files_per_run": None if files is None else round(files / n, 2),
        "family": variant.family, "writes": variant.writes, "status": status,
    }
    if status != "ok":
        row["log_tail"] = result.log_tail
    return row


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - t0


def import_costs(info: peers.VenvInfo, repeats: int = IMPORT_REPEATS) -> list[dict[str, Any]]:
    """Median wall time of ``python -c "import X"`` minus that of ``python -c pass``."""
    rows: list[dict[str, Any]] = []
    peer_env = peers.clean_env(info.path)
    for name, module in IMPORTS:
        python, env = ((sys.executable, dict(os.environ)) if name == "dagrun"
                       else (str(info.python), peer_env))
        bare = statistics.median(_wall([python, "-c", "pass"], env) for _ in range(repeats))
        full = statistics.median(_wall([python, "-c", f"import {module}"], env)
                                 for _ in range(repeats))
        rows.append({"tool": name, "module": module, "import_ms": round(1000 * (full - bare), 1),
                     "bare_python_ms": round(1000 * bare, 1)})
    return rows


def measure_cached_peers(sizes: list[int], venv: Path = peers.DEFAULT_VENV, *,
                         quick: bool = False, process_per_task: bool = False,
                         timeout: float = TIMEOUT_S, verbose: bool = True
                         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Time every variant at every size (re-runs too), then the import costs.

    Returns ``(rows, imports)``. ``quick`` times the slow variants (labtech's 3 tasks per
    config, exca's TaskInfra, dagrun multiprocessing -j 1) at the smallest size only. With
    ``process_per_task`` exca's ``cluster="local"`` is also timed, at
    ``PROCESS_PER_TASK_RUNS`` configs only (a process per config).
    """
    info = peers.ensure_venv(venv, verbose=verbose)
    rows: list[dict[str, Any]] = []
    smallest = min(sizes)
    plan = [(v, n) for n in sizes for v in variants()
            if not (quick and v.slow and n > smallest)]
    if process_per_task:
        plan.append((process_per_task_variant(), PROCESS_PER_TASK_RUNS))
    for variant, n in plan:
        for row in measure_variant(variant, n, info, rerun=variant.workers == "1",
                                   timeout=timeout):
            rows.append(row)
            if verbose:
                print(f"  {row['tool']:<32} w={row['workers']:<4} N={n:<6} {row['what']:<26}"
                      f" {row['seconds']:>8.2f} s {row['status']}", file=sys.stderr, flush=True)
    return rows, import_costs(info)


def ratio_to_dagrun(rows: list[dict[str, Any]]) -> dict[int, str]:
    """Per row index: seconds / dagrun's seconds for the same size, workers and kind of run.

    dagrun's reference is ``single`` for one worker and ``multiprocessing -j 2`` for two.
    """
    ref: dict[tuple[int, str, str], float] = {}
    for r in rows:
        if r["tool"] == "dagrun single" or (r["tool"] == "dagrun multiprocessing"
                                            and r["workers"] == "2"):
            ref[(r["runs"], r["workers"][:1], r["what"])] = r["seconds"]
    out: dict[int, str] = {}
    for i, r in enumerate(rows):
        base = ref.get((r["runs"], r["workers"][:1], r["what"]))
        if base and r["status"] == "ok":
            out[i] = f"{r['seconds'] / base:.2f}"
    return out


def format_markdown(rows: list[dict[str, Any]], imports: list[dict[str, Any]]) -> str:
    """The rows, the import costs and what each tool writes, as markdown tables."""
    ratios = ratio_to_dagrun(rows)
    lines = ["| runs | tool | workers | what | seconds | ms/run | files/run | x dagrun |",
             "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows):
        files = "" if r["files_per_run"] is None else f"{r['files_per_run']:g}"
        secs = f"{r['seconds']:.2f}" if r["status"] == "ok" else r["status"]
        lines.append(f"| {r['runs']} | {r['tool']} | {r['workers']} | {r['what']} | {secs} | "
                     f"{r['ms_per_run']:.2f} | {files} | {ratios.get(i, '')} |")
    lines += ["", "| tool | import X | ms (over a bare python) |", "|---|---|---|"]
    lines += [f"| {r['tool']} | `{r['module']}` | {r['import_ms']:.0f} |" for r in imports]
    lines += ["", "| tool | what it writes |", "|---|---|"]
    seen: dict[str, str] = {}
    for r in rows:
        seen.setdefault(r["family"], r["writes"])
    lines += [f"| {family} | {writes} |" for family, writes in seen.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: time every variant, print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="comma-separated config counts (default 200,2000)")
    parser.add_argument("--quick", action="store_true",
                        help="slow variants at the smallest size only")
    parser.add_argument("--process-per-task", action="store_true",
                        help=f"also time exca cluster='local' at {PROCESS_PER_TASK_RUNS} configs")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows, imports = measure_cached_peers(sizes, quick=args.quick,
                                         process_per_task=args.process_per_task)
    print(format_markdown(rows, imports))
    for r in rows:
        if "log_tail" in r:
            print(f"\n--- {r['tool']} N={r['runs']}: last output ---\n{r['log_tail']}")
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "imports": imports}, indent=2))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
