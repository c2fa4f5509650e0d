#!/usr/bin/env python3
"""Behaviour side by side: dagrun, labtech and exca under kills, edits, failures and races.

Each scenario runs the sweeps of :mod:`behaviour_tools` as whole processes (each in its own
session, so ``kill -9`` can take the driver alone or its whole process group) and reports what
it observes; nothing is asserted. Scenarios:

* ``kill``: ``kill -9`` of the whole process group half way (once half of the 3N stage calls
  are logged), then the same command again: are runs finished before the kill reused, and are
  the results those of an uninterrupted sweep? Then ``--kills`` random kill points (5-95 % of
  the stage calls) at ``--kill-runs`` configs: sweeps that do not recover with one
  re-execution, and those still wrong after a second one.
* ``driver``: ``kill -9`` of the driver alone while its workers run: do they outlive it?
* ``edit``: the metric in ``post`` edited after a finished sweep, same command again:
  noticed? what is recomputed? (dagrun also with ``--rerun-changed``)
* ``raise``: one run raises: does the sweep go on, where is the error kept; then the same
  command with the cause gone: is the failure cached?
* ``race``: two processes started on one folder at once: duplicate work?

Usage::

    python bench/behaviour.py                       # every scenario, every tool
    python bench/behaviour.py --only kill --tools dagrun,exca --kills 3
    python bench/behaviour.py --json out.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import peers  # noqa: E402
from behaviour_tools import TOOLS, Tool, by_name, expected  # noqa: E402

TIMEOUT_S = 900.0
SMALL_RUNS = 200
SMALL_SLEEP = 0.02
DRIVER_RUNS = 40
DRIVER_SLEEP = 0.5
FAIL_X = 7


@dataclass
class Env:
    """Where each tool's interpreter is."""

    ours: str
    peers: str
    peers_venv: Path

    def python(self, tool: Tool) -> str:
        return self.ours if tool.ours else self.peers

    def base(self, tool: Tool, work: Path) -> dict[str, str]:
        env = dict(os.environ) if tool.ours else peers.clean_env(self.peers_venv)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work),
                                                         env.get("PYTHONPATH", "")]))
        env["BEH_LOG"] = str(work / "calls.log")
        env["BEH_RESULTS"] = str(work / "results.json")
        return env


@dataclass
class Finished:
    """One whole execution: exit status, wall time, the end of what it printed."""

    rc: int | None
    seconds: float
    tail: str


@contextmanager
def workdir(tool: Tool) -> Iterator[Path]:
    """A fresh folder holding the tool's sources; removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=f"dagrun-behaviour-{tool.name}-"))
    try:
        tool.write(work)
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def start(tool: Tool, env: Env, work: Path, phase: str, n: int, *, sleep: float = 0.0,
          fail: int = -1, extra: tuple[str, ...] = (), log: str | None = None
          ) -> subprocess.Popen[bytes]:
    """Start one execution of the sweep in its own session; output to ``work/<log>.log``."""
    e = env.base(tool, work)
    e.update(BEH_RUNS=str(n), BEH_PHASE=phase, BEH_SLEEP=str(sleep), BEH_FAIL=str(fail))
    out = (work / f"{log or phase}.log").open("wb")
    try:
        return subprocess.Popen(tool.argv(env.python(tool), work, extra), cwd=work, env=e,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        out.close()


def finish(proc: subprocess.Popen[bytes], work: Path, log: str, t0: float) -> Finished:
    """Wait for ``proc`` (its group is killed past the timeout); read its output's end."""
    try:
        rc: int | None = proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _killpg(proc.pid)
        proc.wait()
        rc = None
    text = (work / f"{log}.log").read_text(errors="replace")
    return Finished(rc, time.perf_counter() - t0, text[-1500:])


def run(tool: Tool, env: Env, work: Path, phase: str, n: int, **kw: Any) -> Finished:
    """One execution to its end."""
    t0 = time.perf_counter()
    proc = start(tool, env, work, phase, n, **kw)
    return finish(proc, work, kw.get("log") or phase, t0)


def _killpg(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def calls(work: Path) -> list[tuple[str, str, int]]:
    """Every stage call logged so far: (phase, stage, x); a torn last line is dropped."""
    path = work / "calls.log"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2].isdigit():
            out.append((parts[0], parts[1], int(parts[2])))
    return out


def xs(work: Path, phase: str, stage: str) -> collections.Counter[int]:
    """How often each config's ``stage`` was called in ``phase``."""
    return collections.Counter(x for p, s, x in calls(work) if p == phase and s == stage)


def compare(got: dict[int, float], want: dict[int, float]) -> str:
    """'identical', or how the results differ from ``want``."""
    if got == want:
        return "identical"
    missing = len(set(want) - set(got))
    wrong = sum(1 for x, v in got.items() if want.get(x) != v)
    return f"{missing} missing, {wrong} different"


# --- kill -9 half way, and at random points -------------------------------------------------

def reference_seconds(tool: Tool, env: Env, n: int, sleep: float) -> float:
    """Wall time of one uninterrupted sweep, checked against the expected scores."""
    with workdir(tool) as work:
        done = run(tool, env, work, "ref", n, sleep=sleep)
        if done.rc != 0 or compare(tool.results(work), expected(n)) != "identical":
            raise RuntimeError(f"{tool.name}: uninterrupted sweep failed:\n{done.tail}")
        return done.seconds


def _wait_for_calls(proc: subprocess.Popen[bytes], work: Path, count: int) -> None:
    """Return once ``count`` stage calls are logged (or the process has ended)."""
    log = work / "calls.log"
    deadline = time.monotonic() + TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        if log.is_file() and log.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.02)


def kill_then_resume(tool: Tool, env: Env, n: int, sleep: float,
                     fraction: float) -> dict[str, Any]:
    """kill -9 the process group once ``fraction`` of the 3n stage calls are made; re-run."""
    with workdir(tool) as work:
        proc = start(tool, env, work, "first", n, sleep=sleep)
        _wait_for_calls(proc, work, int(fraction * 3 * n))
        _killpg(proc.pid)
        proc.wait()
        finished = set(xs(work, "first", "post"))
        before = len(calls(work))
        again = run(tool, env, work, "again", n, sleep=sleep)
        refit = set(xs(work, "again", "fit"))
        result = compare(tool.results(work), expected(n))
        out: dict[str, Any] = {
            "kill_point": round(fraction, 2), "stage_calls_before_kill": before,
            "runs_finished_before_kill": len(finished),
            "of_those_recomputed": len(finished & refit),
            "recomputed": _recomputed(work, "again"), "rc_again": again.rc, "result": result,
            "recovered": again.rc == 0 and result == "identical"}
        if not out["recovered"]:
            out["said"] = again.tail.strip().splitlines()[-1][:200] if again.tail.strip() else ""
            third = run(tool, env, work, "third", n, sleep=sleep)
            out["second_try"] = {"rc": third.rc,
                                 "result": compare(tool.results(work), expected(n))}
        return out


def scenario_kill(tool: Tool, env: Env, args: argparse.Namespace) -> dict[str, Any]:
    """Half-way kill at the small size, then random kill points at the large one."""
    ref = reference_seconds(tool, env, SMALL_RUNS, SMALL_SLEEP)
    half = kill_then_resume(tool, env, SMALL_RUNS, SMALL_SLEEP, 0.5)
    rng = random.Random(args.seed)
    points = [rng.uniform(0.05, 0.95) for _ in range(args.kills)]
    trials = [kill_then_resume(tool, env, args.kill_runs, 0.0, f) for f in points]
    return {"half_way": {"runs": SMALL_RUNS, "uninterrupted_s": round(ref, 2), **half},
            "random": {"runs": args.kill_runs, "kills": len(trials),
                       "unrecovered": sum(1 for t in trials if not t["recovered"]),
                       "stuck_after_two_tries": sum(
                           1 for t in trials
                           if "second_try" in t and t["second_try"]["result"] != "identical"),
                       "trials": trials}}


# --- the driver killed alone -----------------------------------------------------------------

def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children[ppid].append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int]) -> int:
    """How many of ``pids`` still run (zombies count as gone)."""
    count = 0
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        count += state != "Z"
    return count


def scenario_driver(tool: Tool, env: Env, args: argparse.Namespace) -> dict[str, Any]:
    """kill -9 the driver alone once runs are under way; watch its workers."""
    with workdir(tool) as work:
        proc = start(tool, env, work, "first", DRIVER_RUNS, sleep=DRIVER_SLEEP)
        deadline = time.monotonic() + 120
        while not xs(work, "first", "post") and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = descendants(proc.pid)
        calls_at_kill = len(calls(work))
        proc.kill()
        proc.wait()
        seen: dict[int, int] = {}
        for wait_s in (1, 5, 15):
            time.sleep(wait_s - (max(seen) if seen else 0))
            seen[wait_s] = alive(workers)
        calls_after = len(calls(work)) - calls_at_kill
        _end_leftovers(workers, work)
        _killpg(proc.pid)
        again = run(tool, env, work, "again", DRIVER_RUNS, sleep=DRIVER_SLEEP)
        return {"workers_at_kill": len(workers),
                "alive_after_1s": seen[1], "alive_after_5s": seen[5],
                "alive_after_15s": seen[15], "stage_calls_after_kill": calls_after,
                "rc_again": again.rc,
                "result_again": compare(tool.results(work), expected(DRIVER_RUNS))}


def _end_leftovers(pids: set[int], work: Path) -> None:
    """SIGKILL those of ``pids`` that still run in ``work`` (a reused pid is left alone)."""
    for pid in pids:
        with suppress(OSError):
            if os.readlink(f"/proc/{pid}/cwd") == str(work):
                os.kill(pid, signal.SIGKILL)


# --- the metric edited -------------------------------------------------------------------------

def scenario_edit(tool: Tool, env: Env, args: argparse.Namespace) -> dict[str, Any]:
    """A finished sweep; the metric edited; the same command again (dagrun: and the flag)."""
    n = SMALL_RUNS
    with workdir(tool) as work:
        run(tool, env, work, "first", n)
        tool.edit_metric(work)
        again = run(tool, env, work, "again", n)
        out: dict[str, Any] = {"rc": again.rc, "said": _first_line(again.tail),
                               "result": _edit_result(tool.results(work), n),
                               "recomputed": _recomputed(work, "again")}
        if tool.ours:
            flag = run(tool, env, work, "flag", n, extra=("--rerun-changed",))
            out["with_rerun_changed"] = {"rc": flag.rc,
                                         "result": _edit_result(tool.results(work), n),
                                         "recomputed": _recomputed(work, "flag")}
        return out


def _edit_result(got: dict[int, float], n: int) -> str:
    if got == expected(n, edited=True):
        return "new metric everywhere"
    if got == expected(n):
        return "old metric everywhere (stale)"
    return compare(got, expected(n, edited=True))


def _recomputed(work: Path, phase: str) -> str:
    counts = {stage: len(xs(work, phase, stage)) for stage in ("pre", "fit", "post")}
    return ", ".join(f"{stage} {k}" for stage, k in counts.items())


def _first_line(text: str) -> str:
    lines = [s.strip() for s in text.splitlines() if s.strip()]
    for line in lines:
        if "chang" in line.lower() or "error" in line.lower() or "warn" in line.lower():
            return line[:160]
    return lines[0][:160] if lines else "(nothing)"


# --- a run that raises ---------------------------------------------------------------------------

def scenario_raise(tool: Tool, env: Env, args: argparse.Namespace) -> dict[str, Any]:
    """Config FAIL_X raises in fit; then the same command with the cause gone."""
    n = SMALL_RUNS
    with workdir(tool) as work:
        first = run(tool, env, work, "first", n, fail=FAIL_X)
        got = tool.results(work)
        kept = _files_holding(work / "state", f"run {FAIL_X} fails on purpose")
        again = run(tool, env, work, "again", n)
        return {"rc": first.rc, "results_written": len(got),
                "runs_finished": len(xs(work, "first", "post")),
                "error_in_output": "fails on purpose" in first.tail,
                "error_kept_in": kept or "(no file)",
                "rc_again": again.rc,
                "failed_run_recomputed": FAIL_X in xs(work, "again", "fit"),
                "others_recomputed": len(set(xs(work, "again", "fit")) - {FAIL_X}),
                "result_again": compare(tool.results(work), expected(n))}


def _files_holding(root: Path, needle: str, limit: int = 2) -> list[str]:
    found: list[str] = []
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        if (path.is_file() and path.stat().st_size < 1_000_000
                and needle.encode() in path.read_bytes()):
            found.append(str(path.relative_to(root)))
            if len(found) >= limit:
                break
    return found


# --- two processes on one folder -----------------------------------------------------------------

def scenario_race(tool: Tool, env: Env, args: argparse.Namespace) -> dict[str, Any]:
    """Two executions started together on one folder: duplicate work? complete results?"""
    n = SMALL_RUNS
    with workdir(tool) as work:
        t0 = time.perf_counter()
        a = start(tool, env, work, "a", n, sleep=SMALL_SLEEP)
        b = start(tool, env, work, "b", n, sleep=SMALL_SLEEP)
        fa, fb = finish(a, work, "a", t0), finish(b, work, "b", t0)
        fits = collections.Counter(x for p, s, x in calls(work) if s == "fit")
        refused = [f for f in (fa, fb) if f.rc]
        return {"rc_a": fa.rc, "rc_b": fb.rc,
                "refused_said": _first_line(refused[0].tail) if refused else "",
                "runs_computed_twice": sum(1 for k in fits.values() if k > 1),
                "fit_calls": sum(fits.values()),
                "result": compare(tool.results(work), expected(n))}


SCENARIOS = {"kill": scenario_kill, "driver": scenario_driver, "edit": scenario_edit,
             "raise": scenario_raise, "race": scenario_race}


def main(argv: list[str] | None = None) -> int:
    """Command line: run the chosen scenarios for the chosen tools; print JSON per result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--tools", default=",".join(t.name for t in TOOLS))
    parser.add_argument("--kills", type=int, default=10, help="random kill points (10)")
    parser.add_argument("--kill-runs", type=int, default=2000,
                        help="configs in the random-kill sweeps (2000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--labtech-form", choices=["stages", "whole"], default="stages",
                        help="labtech as 3 nested tasks per config (default) or 1 task")
    parser.add_argument("--json", type=Path, help="also write every observation here")
    args = parser.parse_args(argv)
    os.environ["BEH_LABTECH_FORM"] = args.labtech_form
    info = peers.ensure_venv()
    env = Env(sys.executable, str(info.python), info.path)
    report: dict[str, dict[str, Any]] = {}
    for name in args.only or list(SCENARIOS):
        for tool in (by_name(t) for t in args.tools.split(",")):
            t0 = time.perf_counter()
            try:
                seen = SCENARIOS[name](tool, env, args)
            except (RuntimeError, OSError) as exc:
                seen = {"error": str(exc)[-800:]}
            seen["bench_seconds"] = round(time.perf_counter() - t0, 1)
            report.setdefault(name, {})[tool.name] = seen
            print(f"## {name} / {tool.name}\n{json.dumps(seen, indent=1)}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
