#!/usr/bin/env python3
"""Adaptive search against its peers: the same objective and budget, and a kill -9 midway.

Every tool minimises the same 2-D quadratic ``(x - 1.2)**2 + (y + 0.7)**2`` over
``[-5, 5]**2`` with TPE (seed 0), one trial at a time, ``TRIALS`` trials; each evaluation
sleeps ``SLEEP`` seconds (the objective's own time) and appends one line to a shared log
(its parameters, which phase ran it, its seconds), so what was evaluated is known whatever
the tool keeps. Tools, each a whole driver process (interpreter start-up included):

* ``dagrun search``: ``run_experiments`` with ``basecfg["search"]`` on the single backend;
  run again to resume (the study is rebuilt from the disk);
* ``Optuna in-memory``: ``study.optimize``; nothing survives the process;
* ``Optuna JournalFileStorage``: ``create_study(load_if_exists=True)`` on a journal file,
  then ``optimize`` for the trials still missing (finished ones counted from the journal);
* ``Ray Tune``: ``Tuner`` with ``OptunaSearch`` and ``ASHAScheduler``,
  ``max_concurrent_trials=1``; resumed with ``Tuner.restore(resume_unfinished=True,
  resume_errored=True)`` (the objective reports once, so ASHA never stops a trial);
* ``Hydra Optuna sweeper``: ``--multirun`` with ``hydra-optuna-sweeper`` (it pins an old
  Optuna, so it runs from its own venv, ``bench/.search-peers-venv``); it cannot resume, so
  a restart runs its ``n_trials`` again.

Two measurements per tool: an uninterrupted run (wall seconds; overhead per trial = wall /
trials minus the objective's mean seconds), and a run whose driver's process tree gets
SIGKILL once about half the trials are evaluated, then the same command again. From the
log and the tool's own count at the end: evaluations before the kill, how many of them the
resumed study kept (trials at the end minus evaluations after the restart), lost (evaluated
before the kill, not kept), duplicated (evaluations of parameters evaluated before) and the
trials the tool counts at the end.

Usage::

    python bench/search_peers.py            # every tool, printed as a Markdown table
    python bench/search_peers.py --trials 20 --only dagrun,optuna-memory
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import peers  # noqa: E402  (its venv builder: the Hydra sweeper's own venv)

TRIALS = 50
SLEEP = 0.02
TIMEOUT_S = 240.0
HYDRA_VENV = BENCH_DIR / ".search-peers-venv"
HYDRA_REQUIREMENTS = ("hydra-core~=1.3", "hydra-optuna-sweeper~=1.2")
HYDRA_DISTRIBUTIONS = ("hydra-core", "hydra-optuna-sweeper", "optuna")

OBJECTIVE = '''
import json, os, time


def evaluate(x, y):
    """The objective: a 2-D quadratic after a sleep; one line to the shared log."""
    start = time.perf_counter()
    time.sleep(float(os.environ["SEARCH_BENCH_SLEEP"]))
    value = (x - 1.2) ** 2 + (y + 0.7) ** 2
    line = json.dumps({"x": x, "y": y, "phase": os.environ.get("SEARCH_BENCH_PHASE", ""),
                       "seconds": time.perf_counter() - start}) + "\\n"
    fd = os.open(os.environ["SEARCH_BENCH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, line.encode())
    os.close(fd)
    return value


def pre(cfg):
    return None


def fit(cfg, data):
    return evaluate(cfg["x"], cfg["y"])


def post(cfg, value):
    return {"loss": value}
'''

DAGRUN = '''
import json, os, sys
import dagrun
import search_objective as so
out, n = sys.argv[1], int(sys.argv[2])
basecfg = {"out_path": os.path.join(out, "out-dagrun"), "pre": so.pre, "fit": so.fit,
           "post": so.post, "verbose": False, "report": False,
           "search": {"metric": "loss", "n_trials": n, "sampler": "tpe", "seed": 0}}
dagrun.run_experiments(basecfg, space={"x": dagrun.Float(-5.0, 5.0),
                                       "y": dagrun.Float(-5.0, 5.0)})
with open(os.path.join(out, "out-dagrun", "results.jsonl")) as f:
    print(json.dumps({"complete": sum(1 for _ in f), "version": dagrun.__version__}))
'''

OPTUNA = '''
import json, os, sys
import optuna
import search_objective as so
optuna.logging.set_verbosity(optuna.logging.WARNING)
out, n, journal = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "journal"
storage = None
if journal:
    try:
        from optuna.storages.journal import JournalFileBackend
    except ImportError:  # Optuna < 4
        from optuna.storages import JournalFileStorage as JournalFileBackend
    storage = optuna.storages.JournalStorage(JournalFileBackend(os.path.join(out, "journal.log")))
study = optuna.create_study(study_name="bench", storage=storage, load_if_exists=True,
                            sampler=optuna.samplers.TPESampler(seed=0))
S = optuna.trial.TrialState
finished = len(study.get_trials(states=(S.COMPLETE, S.PRUNED, S.FAIL)))
study.optimize(lambda t: so.evaluate(t.suggest_float("x", -5.0, 5.0),
                                     t.suggest_float("y", -5.0, 5.0)),
               n_trials=max(0, n - finished))
print(json.dumps({"complete": len(study.get_trials(states=(S.COMPLETE,))),
                  "version": optuna.__version__}))
'''

RAY = '''
import json, os, sys
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch
import search_objective as so
out, n = sys.argv[1], int(sys.argv[2])


def trainable(config):
    tune.report({"loss": so.evaluate(config["x"], config["y"])})


ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
path = os.path.join(out, "out-ray", "bench")
if tune.Tuner.can_restore(path):
    tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True,
                               resume_errored=True)
else:
    tuner = tune.Tuner(
        trainable, param_space={"x": tune.uniform(-5.0, 5.0), "y": tune.uniform(-5.0, 5.0)},
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(metric="loss", mode="min", seed=0),
            scheduler=ASHAScheduler(metric="loss", mode="min"), num_samples=n,
            max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=os.path.join(out, "out-ray"), name="bench",
                                  verbose=0))
grid = tuner.fit()
done = sum(1 for r in grid if r.error is None and "loss" in (r.metrics or {}))
print(json.dumps({"complete": done, "version": ray.__version__}))
'''

HYDRA_APP = '''
import hydra
import search_objective as so


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    return so.evaluate(float(cfg.x), float(cfg.y))


if __name__ == "__main__":
    main()
'''

HYDRA_CONFIG = '''
defaults:
  - override hydra/sweeper: optuna
  - override hydra/sweeper/sampler: tpe
  - override hydra/job_logging: disabled
  - override hydra/hydra_logging: disabled
  - _self_
x: 0.0
y: 0.0
hydra:
  sweeper:
    sampler:
      seed: 0
    direction: minimize
    study_name: bench
    n_jobs: 1
    params:
      x: interval(-5.0, 5.0)
      y: interval(-5.0, 5.0)
'''


@dataclass
class Tool:
    """A peer: its name, and the command of its driver in a work folder (None: not here,
    with the reason in ``missing``)."""

    name: str
    command: Callable[[Path, int], list[str]] | None
    env: dict[str, str]
    missing: str = ""


def _python_tool(name: str, source: str, *extra: str) -> Tool:
    def command(work: Path, n: int) -> list[str]:
        script = work / "driver.py"
        script.write_text(source)
        return [sys.executable, str(script), str(work), str(n), *extra]
    return Tool(name, command, dict(os.environ))


def _hydra_tool() -> Tool:
    try:
        info = peers.ensure_venv(HYDRA_VENV, requirements=HYDRA_REQUIREMENTS,
                                 distributions=HYDRA_DISTRIBUTIONS, verbose=False)
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        return Tool("Hydra Optuna sweeper", None, {}, f"not installed here: {exc}")

    def command(work: Path, n: int) -> list[str]:
        (work / "conf").mkdir(exist_ok=True)
        (work / "conf" / "config.yaml").write_text(HYDRA_CONFIG)
        (work / "hydra_app.py").write_text(HYDRA_APP)
        sweep = work / "multirun" / str(time.monotonic_ns())  # a restart: a new sweep
        return [str(info.python), str(work / "hydra_app.py"), "--multirun",
                f"hydra.sweeper.n_trials={n}", f"hydra.sweep.dir={sweep}"]
    name = f"Hydra Optuna sweeper {info.versions.get('hydra-optuna-sweeper', '')} " \
           f"(Optuna {info.versions.get('optuna', '?')})"
    return Tool(name, command, peers.clean_env(info.path))


def tools(only: set[str] | None = None) -> list[Tool]:
    found = {"dagrun": lambda: _python_tool("dagrun search (single)", DAGRUN),
             "optuna-memory": lambda: _python_tool("Optuna in-memory", OPTUNA, "memory"),
             "optuna-journal": lambda: _python_tool("Optuna JournalFileStorage", OPTUNA,
                                                    "journal"),
             "ray": lambda: _python_tool("Ray Tune (OptunaSearch + ASHA)", RAY),
             "hydra": _hydra_tool}
    return [make() for key, make in found.items() if only is None or key in only]


# --------------------------------------------------------------------------------------------
# Running a driver, and killing it.

def _read_log(log: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _kill_tree(pid: int) -> None:
    """SIGKILL the driver and every process it started (by id), as a crash would leave
    none of them running either."""
    import psutil

    try:
        parent = psutil.Process(pid)
        victims = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims[1:], timeout=5)  # (the driver itself: reaped by its Popen)


def _drive(tool: Tool, work: Path, n: int, phase: str, kill_after: int | None = None
           ) -> tuple[float, dict[str, Any], bool]:
    """Run the tool's driver once (``phase`` tags its evaluations in the log); with
    ``kill_after``, SIGKILL its process tree once the log holds that many evaluations of
    this phase. Returns wall seconds, the JSON line it printed last, whether it was killed."""
    assert tool.command is not None
    log = work / "evaluations.jsonl"
    env = {**tool.env, "SEARCH_BENCH_LOG": str(log), "SEARCH_BENCH_SLEEP": str(SLEEP),
           "SEARCH_BENCH_PHASE": phase, "RAY_AIR_NEW_OUTPUT": "0",
           "PYTHONPATH": os.pathsep.join([str(work), *filter(None, [
               tool.env.get("PYTHONPATH")])])}
    start = time.perf_counter()
    with open(work / f"{phase}.out", "wb") as out:
        proc = subprocess.Popen(tool.command(work, n), cwd=work, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        killed = False
        while proc.poll() is None:
            if time.perf_counter() - start > TIMEOUT_S:
                _kill_tree(proc.pid)
                raise TimeoutError(f"{tool.name} ran past {TIMEOUT_S:.0f} s")
            if kill_after is not None and sum(
                    e["phase"] == phase for e in _read_log(log)) >= kill_after:
                _kill_tree(proc.pid)
                killed = True
                break
            time.sleep(0.005)
        proc.wait()
    seconds = time.perf_counter() - start
    text = (work / f"{phase}.out").read_text(errors="replace")
    if not killed and proc.returncode != 0:
        raise RuntimeError(f"{tool.name} failed ({proc.returncode}):\n{text[-1500:]}")
    lines = [ln for ln in text.splitlines() if ln.startswith("{\"complete\"")]
    return seconds, json.loads(lines[-1]) if lines else {}, killed


def measure(tool: Tool, root: Path, n: int) -> dict[str, Any]:
    """The uninterrupted run and the killed-then-restarted one of ``tool``."""
    if tool.command is None:
        return {"tool": tool.name, "missing": tool.missing}
    work = root / f"{len(list(root.iterdir()))}-clean"
    work.mkdir()
    (work / "search_objective.py").write_text(OBJECTIVE)
    wall, final, _ = _drive(tool, work, n, "clean")
    evals = _read_log(work / "evaluations.jsonl")
    objective = sum(e["seconds"] for e in evals) / max(len(evals), 1)
    row: dict[str, Any] = {"tool": tool.name, "version": final.get("version", ""),
                           "wall": wall, "trials": final.get("complete", len(evals)),
                           "overhead_ms": (wall / n - objective) * 1000}
    work = root / f"{len(list(root.iterdir()))}-killed"
    work.mkdir()
    (work / "search_objective.py").write_text(OBJECTIVE)
    _, _, killed = _drive(tool, work, n, "first", kill_after=n // 2)
    _, final, _ = _drive(tool, work, n, "restart")
    evals = _read_log(work / "evaluations.jsonl")
    before = sum(e["phase"] == "first" for e in evals)
    after = len(evals) - before
    end = int(final.get("complete", after))
    seen: set[tuple[float, float]] = set()
    duplicated = 0
    for e in evals:
        key = (e["x"], e["y"])
        duplicated += key in seen
        seen.add(key)
    kept = max(0, min(before, end - after))
    row.update(killed=killed, before=before, kept=kept, lost=before - kept,
               duplicated=duplicated, end=end, evaluations=len(evals))
    return row


HEADER = ["tool", "wall s", "overhead ms/trial", "evaluated before kill -9",
          "kept on restart", "lost", "evaluated twice", "trials at the end (evaluations)"]


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        if "missing" in r:
            out.append([r["tool"], r["missing"], *[""] * (len(HEADER) - 2)])
            continue
        out.append([r["tool"], f"{r['wall']:.2f}", f"{r['overhead_ms']:.1f}",
                    str(r["before"]) + ("" if r["killed"] else " (ended before the kill)"),
                    str(r["kept"]), str(r["lost"]), str(r["duplicated"]),
                    f"{r['end']} ({r['evaluations']})"])
    return out


def measure_all(n: int = TRIALS, only: set[str] | None = None) -> list[list[str]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="dagrun-search-bench-") as d:
        for tool in tools(only):
            try:
                rows.append(measure(tool, Path(d), n))
            except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
                rows.append({"tool": tool.name, "missing": f"failed: {exc}"[:300]})
    return table_rows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--only", help="comma list of: dagrun, optuna-memory, "
                                       "optuna-journal, ray, hydra")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    rows = measure_all(args.trials, only)
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "|".join("---" for _ in HEADER) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
