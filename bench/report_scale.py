"""How ``dagrun results`` and ``dagrun report`` scale: a synthetic sweep written straight to
disk (plan, run folders with markers and post.json, error records, results.jsonl), then timed.

    python bench/report_scale.py --experiments 100000 --reps 1 --no-runs   # results only
    python bench/report_scale.py --experiments 10000 --reps 3              # results and report

Two percent of the experiments fail in fit and one percent have a repetition still running
(no results line), so the readers take every path they take on a real sweep. ``dagrun
results`` is timed on its first read of the sweep (it decodes results.jsonl and keeps the
columns in OUT/.dagrun) and again with results.jsonl unchanged; the report is timed on a
first read, then opened from ``file://`` in headless Chromium (``--browser PATH``, default
the system ``/usr/bin/chromium``, driven by Playwright; ``--no-browser`` skips it): the
milliseconds from navigation until the page is interactive (overview, best configs and the
ranked table built, every listener attached) and until every plot is drawn, and the size of
its DOM.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

from dagrun.disk.layout import SweepDir
from dagrun.disk.planstore import write_plan
from dagrun.disk.runs import Experiment

SECONDS = {"pre": 0.02, "fit": 1.5, "post": 0.01}


def _config(i: int, rng: random.Random) -> dict[str, object]:
    return {"lr": 10 ** rng.uniform(-5, -1), "model": rng.choice(["small", "base", "large"]),
            "opt": {"momentum": rng.choice([0.0, 0.9]), "wd": 1e-4},
            "depth": None if i % 7 == 0 else 2 ** (1 + i % 5)}


def _write_run(path: str, scores: dict[str, float] | None, failed: bool) -> None:
    os.makedirs(path, exist_ok=True)
    for stage, sec in SECONDS.items():
        if failed and stage != "pre":
            break
        if scores is None and stage == "post":
            break
        with open(os.path.join(path, f"{stage}.done"), "w") as f:
            json.dump({"stage": stage, "started": "", "finished": "", "seconds": sec,
                       "host": "bench", "pid": 1, "attempt": 1}, f)
    if failed:
        with open(os.path.join(path, "fit.error"), "w") as f:
            json.dump({"stage": "fit", "kind": "exception", "message": "ValueError: diverged",
                       "traceback": "", "attempt": 1, "host": "bench", "time": ""}, f)
    elif scores is not None:
        with open(os.path.join(path, "post.json"), "w") as f:
            json.dump(scores, f)


def make_sweep(out: str, experiments: int, reps: int, runs: bool) -> None:
    """Write a sweep of ``experiments`` x ``reps`` runs under ``out``."""
    rng = random.Random(0)
    sweep = SweepDir.at(out)
    os.makedirs(sweep.state, exist_ok=True)
    plan, lines = [], []
    for i in range(experiments):
        cfg = _config(i, rng)
        plan.append(Experiment(i, reps, cfg, f"{i:032x}"))  # a digest's length
        failed, running = i % 50 == 7, i % 100 == 3
        per_rep = []
        for rep in range(reps):
            scores = {"acc": rng.random(), "loss": rng.random() * 3, "fit_time": 1.5}
            last_running = running and rep == reps - 1
            if runs:
                path = sweep.run_dir(i, rep, reps).path
                _write_run(path, None if last_running else scores, failed)
            per_rep.append(scores)
        if failed or running:
            continue
        if reps == 1:
            agg: dict[str, object] = dict(per_rep[0])
        else:
            agg = {}
            for name in per_rep[0]:
                vals = [s[name] for s in per_rep]
                mean = sum(vals) / reps
                agg.update({name: vals, f"mean_{name}": mean,
                            f"std_{name}": (sum((v - mean) ** 2 for v in vals) / reps) ** .5,
                            f"n_{name}": reps})
        lines.append(json.dumps({**cfg, "experiment_id": i,
                                 "out_path": sweep.experiment_path(i), "scores": agg}) + "\n")
    write_plan(sweep, plan, {"backend": "multiprocessing"})
    with open(sweep.results, "w") as f:
        f.writelines(lines)


def _timed(cmd: list[str]) -> tuple[str, str]:
    """Wall and CPU (user + system) seconds of a command, and its stdout. On a shared
    machine the CPU time is the steadier figure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return f"{wall:.2f} s wall, {cpu:.2f} s CPU", proc.stdout


PAGE_TIMEOUT_MS = 120_000


def open_in_browser(report: str, chromium: str) -> str:
    """Open the report in headless Chromium: when it was interactive and when every plot
    was drawn (ms since navigation, as the page records them), its DOM size, and what its
    console said."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--use-angle=swiftshader",
                                           "--enable-unsafe-swiftshader"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto("file://" + os.path.abspath(report))
            page.wait_for_selector("body[data-ready=true]", timeout=PAGE_TIMEOUT_MS)
            page.wait_for_selector("body[data-plots=drawn]", timeout=PAGE_TIMEOUT_MS)
            ready = page.evaluate("Number(document.body.dataset.readyAt)")
            drawn = page.evaluate("Number(document.body.dataset.drawnAt)")
            nodes = page.evaluate("document.getElementsByTagName('*').length")
        finally:
            browser.close()
    said = f"; console: {console}" if console else "; console empty"
    return (f"interactive after {ready / 1000:.2f} s, every plot drawn after "
            f"{drawn / 1000:.2f} s, {nodes} DOM elements{said}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiments", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-runs", action="store_true",
                        help="no run folders (results then reads plan and results.jsonl only)")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--browser", default="/usr/bin/chromium",
                        help="Chromium to open the report in (Playwright drives it)")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        start = time.perf_counter()
        make_sweep(out, args.experiments, args.reps, not args.no_runs)
        print(f"sweep of {args.experiments} x {args.reps} written in "
              f"{time.perf_counter() - start:.1f} s")
        dagrun = [sys.executable, "-m", "dagrun"]
        sweep = SweepDir.at(out)
        took, text = _timed([*dagrun, "results", out, "--sort", "loss"])
        rows = len(text.splitlines()) - 1
        print(f"dagrun results (table, {rows} rows), first read: {took}")
        took, _ = _timed([*dagrun, "results", out, "--sort", "loss"])
        print(f"dagrun results (table), results.jsonl unchanged since: {took}")
        took, _ = _timed([*dagrun, "results", out, "--format", "csv"])
        print(f"dagrun results --format csv, unchanged since: {took}")
        took, _ = _timed([*dagrun, "results", out, "--sort", "loss", "--top", "20"])
        print(f"dagrun results --top 20, unchanged since: {took}")
        os.remove(sweep.results_cache)
        if not args.no_report:
            took, text = _timed([*dagrun, "report", out])
            report = text.strip()
            print(f"dagrun report: {took}, {os.path.getsize(report) / 1e6:.1f} MB")
            if not args.no_browser:
                print(f"the page in Chromium: {open_in_browser(report, args.browser)}")


if __name__ == "__main__":
    main()
