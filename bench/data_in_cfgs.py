"""Data in configs: big values stored once (``dagrun.code.values``), against plain loops.

Every case runs in fresh processes, as the user's script (``python wf.py`` calling
``run_experiments``, its data built under ``if __name__ == "__main__":``). Disk is OUT
without what stages return (their pickles are the user's data). Memory is the peak over the
whole process tree of the summed PSS (proportional set size: a page shared by N processes
counts 1/N in each), sampled every 20 ms; a plain ``resource`` RSS would count shared pages
in every worker.

Cases (``--quick`` leaves out the 1 GB one):
1. two cfgs sharing a 64 MB array built by the workflow file, no-op stages reading it, on
   ``single``: OUT size, peak memory, wall against a plain script that builds the same array,
   makes the same stage calls in a loop and writes the same small results; a no-op
   re-execute;
2. 16 cfgs sharing an 8 MB array on multiprocessing -j 2: OUT size, peak memory;
3. a 1 GB array in 2 cfgs, on single and on multiprocessing -j 2;
4. the leaf-refinement shape, synthetic: a 19,020 x 10 data set, int labels, 3 folds of
   index arrays and 16 fitted scikit-learn trees per fold in every cfg, 16 experiments x 3
   repetitions on multiprocessing -j 2, against the original tool's loop (a pool calling
   pre/fit/post and appending one JSON line per experiment with arrays replaced by their
   key).

``--repeat N`` measures each sweep and its plain counterpart N times, one after the other,
and shows the median wall time (the largest peak): on a small machine that other work
shares, one measurement of a sub-second case varies by a factor of two. The no-op
re-execute is measured once.

Benchmarks assert nothing; they print.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psutil

SHARED = """
import sys
import numpy as np
from dagrun import run_experiments


def pre(cfg):
    return float(cfg["X"][::4096].sum())


def fit(cfg, s):
    return s


def post(cfg, s):
    return {{"s": s}}


if __name__ == "__main__":
    X = np.ones({mb} * (1 << 20) // 8)
    cfgs = [{{"X": X, "k": k}} for k in range({count})]
    run_experiments({{"out_path": "out", "pre": pre, "fit": fit, "post": post,
                     "report": False, "verbose": False, "backend": sys.argv[1],
                     "num_cpus": 2}}, cfgs)
"""

PLAIN_SHARED = """
import json, os, sys
import numpy as np

sys.path.insert(0, os.getcwd())
from wf import pre, fit, post

X = np.ones({mb} * (1 << 20) // 8)
cfgs = [{{"X": X, "k": k}} for k in range({count})]
os.makedirs("plain", exist_ok=True)
with open("plain/results.jsonl", "w") as f:
    for cfg in cfgs:
        scores = post(cfg, fit(cfg, pre(cfg)))
        f.write(json.dumps({{"k": cfg["k"], "scores": scores}}) + "\\n")
"""

LEAF = """
import sys

import numpy as np
from dagrun import run_experiments
from sklearn.tree import DecisionTreeClassifier


def pre(cfg):
    return cfg["run_id"] % 3


def fit(cfg, fold):
    idx = cfg["folds"][fold]
    X, Y = cfg["X"][idx], cfg["Y"][idx]
    trees = cfg["trees"][fold][: cfg["n_trees"]]
    votes = np.mean([t.predict(X) for t in trees], axis=0)
    return float(np.mean((votes > 0.5) == Y))


def post(cfg, accuracy):
    return {"accuracy": accuracy}


def study():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(19_020, 10))
    Y = (X[:, 0] + rng.normal(scale=0.5, size=19_020) > 0).astype(np.int64)
    folds = [np.arange(f, 19_020, 3) for f in range(3)]
    trees = [[DecisionTreeClassifier(max_depth=8, random_state=s).fit(X[f], Y[f])
              for s in range(16)] for f in folds]
    return [{"X": X, "Y": Y, "folds": folds, "trees": trees, "n_trees": n, "l_reg": l}
            for n in (4, 8, 12, 16) for l in (0.0, 0.1, 0.5, 1.0)]


if __name__ == "__main__":
    run_experiments({"out_path": "out", "pre": pre, "fit": fit, "post": post,
                     "report": False, "verbose": False, "repetitions": 3,
                     "backend": "multiprocessing", "num_cpus": 2}, study())
"""

ORIGINAL_LOOP = """
import json, os, sys
from multiprocessing import Pool

import numpy as np

sys.path.insert(0, os.getcwd())
import wf


def one(job):
    cfg, i, rep = job
    cfg = {**cfg, "experiment_id": i, "run_id": rep}
    return i, wf.post(cfg, wf.fit(cfg, wf.pre(cfg)))


def key_view(cfg):
    return {k: (k if isinstance(v, (np.ndarray, list)) else v) for k, v in cfg.items()}


if __name__ == "__main__":
    cfgs = wf.study()
    jobs = [(cfg, i, r) for i, cfg in enumerate(cfgs) for r in range(3)]
    scores = {}
    with Pool(2) as pool:  # the original tool: a Pool, each cfg pickled with its task
        for i, s in pool.imap_unordered(one, jobs):
            scores.setdefault(i, []).append(s["accuracy"])
    os.makedirs("original", exist_ok=True)
    with open("original/results.jsonl", "w") as f:
        for i, cfg in enumerate(cfgs):
            f.write(json.dumps({**key_view(cfg), "accuracy": scores[i]}) + "\\n")
"""


def _pss_tree(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_full_info().pss
    return total


def measure(argv: list[str], cwd: Path) -> dict[str, float]:
    """Wall seconds and peak PSS (MB) of the process tree of ``argv``."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    root = psutil.Process(proc.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                peak = max(peak, _pss_tree(root))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _out, err = proc.communicate(timeout=3600)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{err.decode()[-3000:]}")
    return {"seconds": wall, "peak_mb": peak / (1 << 20)}


def out_mb(out: Path) -> float:
    """OUT's size without what stages return (pre.pkl, fit.pkl: the user's data)."""
    total = 0
    for path in out.rglob("*"):
        if path.is_file() and path.name not in ("pre.pkl", "fit.pkl"):
            total += path.stat().st_size
    return total / (1 << 20)


def _script(*args: str) -> list[str]:
    """The user's script: ``python wf.py``, calling ``run_experiments``."""
    return [sys.executable, "wf.py", *args]


def typical(measured: list[dict[str, float]]) -> dict[str, float]:
    """Several measurements as one: the median wall time, the largest peak."""
    return {"seconds": statistics.median(m["seconds"] for m in measured),
            "peak_mb": max(m["peak_mb"] for m in measured)}


def shared_case(tmp: Path, mb: int, count: int, backend: str, repeat: int = 1
                ) -> dict[str, Any]:
    folder = tmp / f"shared-{mb}-{count}-{backend}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "wf.py").write_text(textwrap.dedent(SHARED.format(mb=mb, count=count)))
    (folder / "plain.py").write_text(PLAIN_SHARED.format(mb=mb, count=count))
    firsts, plains = [], []
    for _ in range(repeat):
        shutil.rmtree(folder / "out", ignore_errors=True)
        shutil.rmtree(folder / "plain", ignore_errors=True)
        firsts.append(measure(_script(backend), folder))
        plains.append(measure([sys.executable, "plain.py"], folder))
    first, plain = typical(firsts), typical(plains)
    again = measure(_script(backend), folder)
    result = {"case": f"{count} cfgs x {mb} MB array, {backend}", "mb": mb,
              "out_mb": out_mb(folder / "out"), "first": first, "again": again,
              "plain": plain}
    shutil.rmtree(folder, ignore_errors=True)
    return result


def leaf_case(tmp: Path, repeat: int = 1) -> dict[str, Any]:
    folder = tmp / "leaf"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "wf.py").write_text(textwrap.dedent(LEAF))
    (folder / "original.py").write_text(ORIGINAL_LOOP)
    originals, firsts = [], []
    for _ in range(repeat):
        shutil.rmtree(folder / "out", ignore_errors=True)
        originals.append(measure([sys.executable, "original.py"], folder))
        firsts.append(measure(_script(), folder))
    original, first = typical(originals), typical(firsts)
    data_mb = (19_020 * 10 * 8 + 19_020 * 8 + 19_020 * 8) / (1 << 20)
    result = {"case": "leaf refinement, 16 x 3 runs, multiprocessing -j 2",
              "data_mb": data_mb, "out_mb": out_mb(folder / "out"), "first": first,
              "original": original}
    shutil.rmtree(folder, ignore_errors=True)
    return result


def _wall(measured: dict[str, float], base: dict[str, float], name: str) -> str:
    return f"{measured['seconds']:.2f} ({measured['seconds'] / base['seconds']:.2f}x {name})"


def _shared_row(case: dict[str, Any], out_goal: str, peak_goal: str) -> list[str]:
    return [case["case"], f"{case['out_mb']:.1f} ({out_goal})",
            f"{case['first']['peak_mb']:.0f} ({peak_goal}; plain {case['plain']['peak_mb']:.0f})",
            _wall(case["first"], case["plain"], "plain"), f"{case['again']['seconds']:.2f}"]


def rows(tmp: Path, quick: bool, repeat: int = 1) -> list[list[str]]:
    """The table's rows: case, OUT MB (goal), peak MB (goal), wall s (x plain), no-op s;
    the sub-10 s cases measured ``repeat`` times (see the module's docstring)."""
    table = [_shared_row(shared_case(tmp, 64, 2, "single", repeat), f"<= {1.2 * 64 + 5:.0f}",
                         f"<= {3 * 64 + 300}"),
             _shared_row(shared_case(tmp, 8, 16, "multiprocessing", repeat),
                         f"<= {2 * 8 + 5}", "one copy per worker")]
    if not quick:
        table += [_shared_row(shared_case(tmp, 1024, 2, backend), "~1024", "<= 3072")
                  for backend in ("single", "multiprocessing")]
    leaf = leaf_case(tmp, repeat)
    table.append([leaf["case"], f"{leaf['out_mb']:.1f} (<= {3 * leaf['data_mb'] + 5:.1f})",
                  f"{leaf['first']['peak_mb']:.0f} (original {leaf['original']['peak_mb']:.0f})",
                  _wall(leaf["first"], leaf["original"], "the original loop"), ""])
    return table


HEADER = ["case", "OUT MB (goal)", "peak PSS MB (goal)", "wall s (ratio)", "no-op again s"]


def main() -> None:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="leave out the 1 GB case")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="measure each case but the 1 GB ones N times: medians")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dagrun-bench-") as d:
        for row in rows(Path(d), args.quick, max(1, args.repeat)):
            print(" | ".join(row))
    sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
