"""The floor: the same stage calls and file writes as a dagrun run, without dagrun.

``write_run`` is what a hand-written loop that honours dagrun's on-disk layout does per run:
config.json, pre.pkl + pre.done, fit.pkl + fit.done, post.json + post.done, each written to a
temporary name and renamed. Benchmarks compare dagrun against loops of it (serial, and in a
``multiprocessing.Pool``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from collections.abc import Callable
from typing import Any


def _atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _marker(stage: str, started: float) -> bytes:
    now = time.time()
    return json.dumps({"stage": stage, "started": started, "finished": now,
                       "seconds": now - started, "host": "floor", "pid": os.getpid(),
                       "attempt": 1}).encode()


def noop_pre(cfg: dict[str, Any]) -> Any:
    return None


def noop_fit(cfg: dict[str, Any], x: Any) -> Any:
    return None


def noop_post(cfg: dict[str, Any], x: Any) -> dict[str, Any]:
    return {}


def cpu_work(cfg: dict[str, Any], x: Any = None) -> int:
    """About ``cfg['loops']`` rounds of SHA-256 over 256 KB: CPU work (calibrated by the
    caller) whose speed does not depend on the process that runs it.

    Why not a pure-Python loop (as before): its speed depends on the heap of the process
    it runs in. Side by side, the same loop took 3-9 % more CPU time in a dagrun worker than
    in a bare Pool worker, and the same as in a Pool worker that had imported numpy first
    (``bench/layout.py``): the efficiency tables measured where each worker's earlier
    allocations put the loop's objects, not the runner. Work done in C on a buffer of its
    own (256 KB, in a core's L2) runs at one speed in every process (dagrun / Pool 0.99-1.00
    there); it is also closer to a fit, whose time is spent in compiled kernels. The block
    is built per call (~10 us) so that a function pickled by value does not carry it."""
    block = bytes(range(256)) * 1024
    digest = 0
    for _ in range(cfg["loops"]):
        digest ^= hashlib.sha256(block).digest()[0]
    return digest


def calibrate_loops(seconds: float, work: Callable[[int], Any] | None = None) -> int:
    """How many loops of ``work`` (``work(loops)``; default ``cpu_work``) take about
    ``seconds`` on this machine."""
    loops = 16
    while True:
        t = time.perf_counter()
        if work is None:
            cpu_work({"loops": loops})
        else:
            work(loops)
        took = time.perf_counter() - t
        if took > 0.05:
            return max(1, round(loops * seconds / took))
        loops *= 2


def cpu_fit(cfg: dict[str, Any], x: Any) -> int:
    """dagrun's fit for the efficiency table: the CPU work, sized by the cfg."""
    return cpu_work(cfg)


def write_run(out: str, i: int, fit: Any = noop_fit) -> dict[str, Any]:
    """One run of the floor: the stage calls and every file dagrun writes for it."""
    run = os.path.join(out, str(i))
    os.makedirs(run, exist_ok=True)
    cfg: dict[str, Any] = {"i": i, "loops": 0}
    _atomic(os.path.join(run, "config.json"),
            json.dumps({**cfg, "experiment_id": i, "run_id": 0, "out_path": run}).encode())
    t = time.time()
    x = noop_pre(cfg)
    _atomic(os.path.join(run, "pre.pkl"), pickle.dumps(x))
    _atomic(os.path.join(run, "pre.done"), _marker("pre", t))
    t = time.time()
    x = fit(cfg, x)
    fit_time = time.time() - t  # as dagrun's results record it: the fit call's duration
    _atomic(os.path.join(run, "fit.pkl"), pickle.dumps(x))
    _atomic(os.path.join(run, "fit.done"), _marker("fit", t))
    t = time.time()
    scores = {**noop_post(cfg, x), "fit_time": fit_time}
    _atomic(os.path.join(run, "post.json"), json.dumps(scores).encode())
    _atomic(os.path.join(run, "post.done"), _marker("post", t))
    return {**cfg, "experiment_id": i, "out_path": run, "scores": scores}


def write_results(out: str, lines: list[dict[str, Any]]) -> None:
    lines.sort(key=lambda line: line["experiment_id"])
    _atomic(os.path.join(out, "results.jsonl"),
            "".join(json.dumps(line) + "\n" for line in lines).encode())


_POOL_OUT = ""
_POOL_LOOPS = 0


def _pool_init(out: str, loops: int) -> None:
    global _POOL_OUT, _POOL_LOOPS
    _POOL_OUT, _POOL_LOOPS = out, loops


def _cpu_fit(cfg: dict[str, Any], x: Any) -> Any:
    return cpu_work({"loops": _POOL_LOOPS})


def _pool_job(i: int) -> dict[str, Any]:
    return write_run(_POOL_OUT, i, fit=_cpu_fit if _POOL_LOOPS else noop_fit)


def pool_sweep(out: str, n: int, loops: int, workers: int) -> float:
    """The Pool floor: ``workers`` spawned processes doing ``write_run`` for every run;
    returns the seconds its fit calls took, summed."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(
            workers, initializer=_pool_init, initargs=(out, loops)) as pool:
        lines = list(pool.imap_unordered(_pool_job, range(n), chunksize=1))
    write_results(out, lines)
    return float(sum(line["scores"]["fit_time"] for line in lines))


def fit_seconds(out: str) -> float:
    """The seconds the fit calls of a dagrun sweep in ``out`` took, summed (each run's
    ``fit.done`` says; read after the sweep was timed)."""
    total = 0.0
    for name in os.listdir(out):
        marker = os.path.join(out, name, "fit.done")
        if os.path.isfile(marker):
            with open(marker) as f:
                total += json.load(f)["seconds"]
    return total


def outside_ms(wall: float, work: float, workers: int, runs: int) -> float:
    """Milliseconds a run spent outside the work: the sweep's wall time less its fit calls'
    own durations (``work``, summed) shared over the workers, per run. What the runner
    adds, whatever the speed the CPU ran the work at."""
    return (wall - work / workers) / runs * 1000


def ram_folder(asked: str) -> str | None:
    """The RAM-backed folder a benchmark's ``--ram`` names, when it is there to write in;
    ``None`` (the temp folder) for ``''`` or one this machine lacks."""
    return asked if asked and os.access(asked, os.W_OK) else None


def serial_sweep(out: str, n: int) -> None:
    """The plain-loop floor."""
    write_results(out, [write_run(out, i) for i in range(n)])
