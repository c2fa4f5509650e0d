"""Workers forked from the driver (``dagrun.run.forking``): only where that is as safe as a
spawn, and then with nothing of the driver a spawned worker would not have.

Each sweep here is a script run as its own process (``python wf.py``), the way users run
one: this test process itself has threads and open files, so it never forks its workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from dagrun.run import forking
from tests.helpers import child_env, read_jsonl

PROBE = """
import atexit, json, os, signal, sys, threading, time
import numpy as np
from dagrun import run_experiments

SEEN = [0]


def _note(name):
    open(os.path.join(os.environ["PROBE_DIR"], f"{{name}}-{{os.getpid()}}"), "w").close()


def pre(cfg):
    print("probe-print")
    SEEN[0] += 1
    if SEEN[0] == 1:
        atexit.register(_note, "worker-atexit")
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds.append(os.readlink(f"/proc/self/fd/{{fd}}"))
        except OSError:
            pass
    return {{"pid": os.getpid(), "nth": SEEN[0], "draw": float(np.random.random()),
            "mark": globals().get("MARK"),
            "usr1_default": signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL,
            "own_session": os.getsid(0) == os.getpid(),
            # (its own log spare, .dagrun/spares/log-<its pid>-..., is the worker's)
            "state_fds": [t for t in fds if ".dagrun" in t
                          and f"log-{{os.getpid()}}-" not in t]}}


def fit(cfg, seen):
    return seen


def post(cfg, seen):
    path = os.path.join(os.environ["PROBE_DIR"], f"run-{{cfg['k']}}.json")
    with open(path, "w") as f:
        json.dump(seen, f)
    return {{"nth": seen["nth"]}}


if __name__ == "__main__":
    MARK = "driver"  # bound only here: a spawned worker does not have it
    signal.signal(signal.SIGUSR1, lambda *a: None)
    atexit.register(_note, "driver-atexit")
    sys.stdout = __import__("io").StringIO()  # a stream object in place of descriptor 1
{setup}
    run_experiments({{"out_path": "out", "pre": pre, "fit": fit, "post": post,
                     "backend": "multiprocessing", "num_cpus": 2, "verbose": True,
                     "report": False, "timeout": 120}}, [{{"k": k}} for k in range(8)])
"""


def _run_script(folder: Path, source: str, env: dict[str, str] | None = None) -> str:
    """Write ``source`` as ``folder/wf.py``, run it as the user would (``python wf.py``) and
    return what it wrote to stderr; it must exit 0."""
    (folder / "wf.py").write_text(source)
    proc = subprocess.run([sys.executable, "wf.py"], cwd=folder, capture_output=True,
                          text=True, timeout=240, stdin=subprocess.DEVNULL, check=False,
                          env=child_env(env))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def _sweep(tmp_path: Path, setup: str = "", env: dict[str, str] | None = None
           ) -> tuple[str, list[dict[str, object]]]:
    probe = tmp_path / "probe"
    probe.mkdir()
    source = PROBE.format(setup=textwrap.indent(textwrap.dedent(setup), "    ") or "    pass")
    err = _run_script(tmp_path, source, {"PROBE_DIR": str(probe), **(env or {})})
    runs = [json.loads((probe / f"run-{k}.json").read_text()) for k in range(8)]
    return err, runs


def _files(tmp_path: Path, prefix: str) -> list[str]:
    return sorted(p.name for p in (tmp_path / "probe").iterdir() if p.name.startswith(prefix))


def test_a_clean_driver_forks_its_workers_and_they_keep_nothing_of_its_process(
        tmp_path: Path) -> None:
    err, runs = _sweep(tmp_path)
    assert "2 worker process(es), timeout 120 s, forked" in err
    assert all(r["mark"] == "driver" for r in runs)  # the driver's own module state
    pids = {r["pid"] for r in runs}
    assert len(pids) == 2 and os.getpid() not in pids
    # numpy's global random state seeded afresh in each: the workers' first draws differ
    firsts = [r["draw"] for r in runs if r["nth"] == 1]
    assert len(firsts) == 2 and firsts[0] != firsts[1]
    assert all(r["usr1_default"] for r in runs)  # the driver's signal handler is not theirs
    assert all(r["own_session"] for r in runs)
    assert all(r["state_fds"] == [] for r in runs)  # the driver's lock is not theirs
    assert len(_files(tmp_path, "driver-atexit")) == 1  # the driver's handler ran once
    assert _files(tmp_path, "worker-atexit") == sorted(f"worker-atexit-{p}" for p in pids)
    assert len(read_jsonl(tmp_path / "out" / "results.jsonl")) == 8
    # what a stage printed reached its log, not the driver's stream object
    assert all("probe-print" in (tmp_path / "out" / str(k) / "pre.log").read_text()
               for k in range(8))


@pytest.mark.parametrize(("setup", "reason"), [
    ("threading.Thread(target=time.sleep, args=(60,), daemon=True).start()",
     "threads run in this process"),
    ("LOG = open('log.txt', 'a')", "log.txt"),
])
def test_what_a_fork_would_share_gets_spawned_workers(tmp_path: Path, setup: str,
                                                      reason: str) -> None:
    err, runs = _sweep(tmp_path, setup)
    assert ", spawned (" in err and reason in err
    assert all(r["mark"] is None for r in runs)  # a new interpreter: the copy's module
    # a spawned worker's end runs them (in each worker that ran a run: one that was ready
    # first may have run them all, taken back from the other while it started up)
    pids = {r["pid"] for r in runs}
    assert _files(tmp_path, "worker-atexit") == sorted(f"worker-atexit-{p}" for p in pids)


def test_spawn_can_be_asked_for(tmp_path: Path) -> None:
    err, runs = _sweep(tmp_path, env={forking.START_ENV: "spawn"})
    assert f"spawned ({forking.START_ENV}=spawn)" in err
    assert all(r["mark"] is None for r in runs)


OPENMP = """
import sys
import numpy as np
from dagrun import run_experiments
from sklearn.cluster import KMeans

X = np.random.default_rng(0).normal(size=(20_000, 10))


def pre(cfg):
    return float(KMeans(3, n_init=1, random_state=cfg["k"]).fit(X).inertia_)


def fit(cfg, inertia):
    return inertia


def post(cfg, inertia):
    return {"inertia": inertia}


if __name__ == "__main__":
    KMeans(3, n_init=1).fit(X)  # the driver's OpenMP pool: a forked child's would hang
    run_experiments({"out_path": "out", "pre": pre, "fit": fit, "post": post,
                     "backend": "multiprocessing", "num_cpus": 2, "timeout": 60,
                     "retries": 0, "report": False}, [{"k": k} for k in range(4)])
"""


def test_an_openmp_pool_in_the_driver_gets_spawned_workers(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    err = _run_script(tmp_path, OPENMP)
    assert "spawned (" in err and "OpenMP" in err, err[-2000:]
    assert len(read_jsonl(tmp_path / "out" / "results.jsonl")) == 4


FAULTS = """
import os, time
from dagrun import run_experiments


def pre(cfg):
    if cfg["k"] == 1:
        os._exit(7)
    if cfg["k"] == 2:
        time.sleep(60)
    return cfg["k"]


def fit(cfg, k):
    return k


def post(cfg, k):
    return {"k": k}


if __name__ == "__main__":
    run_experiments({"out_path": "out", "pre": pre, "fit": fit, "post": post,
                     "backend": "multiprocessing", "num_cpus": 2, "timeout": 3,
                     "retries": 0, "report": False, "verbose": True},
                    [{"k": k} for k in range(6)])
"""


def test_forked_workers_keep_the_pools_promises(tmp_path: Path) -> None:
    """A crash and a timeout in forked workers fail exactly their runs; the workers that
    replace them (spawned: the driver has threads by then) run the rest."""
    err = _run_script(tmp_path, FAULTS)
    assert "2 worker process(es), timeout 3 s, forked" in err
    errors = {p.parent.name: json.loads(p.read_text())["kind"]
              for p in (tmp_path / "out").glob("*/pre.error")}
    assert errors == {"1": "crashed", "2": "timeout"}
    assert sorted(line["experiment_id"] for line in
                  read_jsonl(tmp_path / "out" / "results.jsonl")) == [0, 3, 4, 5]


LAZY = """
import os
import mypkg
from dagrun import run_experiments


def pre(cfg):
    lazy = os.path.join(os.path.dirname(mypkg.__file__), "lazy.py")
    with open(lazy, "w") as f:  # edited while the sweep runs
        f.write("VALUE = 'edited'\\n")
    from mypkg import lazy as module
    return module.VALUE


def fit(cfg, value):
    return value


def post(cfg, value):
    return {"same": float(value == "planned")}


if __name__ == "__main__":
    run_experiments({"out_path": "out", "pre": pre, "fit": fit, "post": post,
                     "backend": "multiprocessing", "num_cpus": 2, "verbose": True,
                     "report": False}, [{"k": 0}, {"k": 1}])
"""


def test_a_forked_worker_imports_the_users_modules_from_the_copy(tmp_path: Path) -> None:
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "lazy.py").write_text("VALUE = 'planned'\n")
    err = _run_script(tmp_path, LAZY)
    assert ", forked" in err
    lines = read_jsonl(tmp_path / "out" / "results.jsonl")
    assert [line["scores"]["same"] for line in lines] == [[1.0], [1.0]]


def test_blocked_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forking, "_entry_fds", None)
    assert forking.blocked() == "not started by a sweep of this process"
    monkeypatch.setattr(forking, "_entry_fds", frozenset())
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="busy-thread", daemon=True)
    thread.start()
    try:
        assert "busy-thread" in (forking.blocked() or "")
    finally:
        stop.set()
        thread.join(5)
    monkeypatch.setenv(forking.START_ENV, "spawn")
    assert forking.blocked() == f"{forking.START_ENV}=spawn"


def test_the_programs_files_are_told_from_inherited_plumbing(tmp_path: Path) -> None:
    with open(tmp_path / "held", "w") as held:
        assert held.fileno() in forking._program_fds()
    read, write = os.pipe()  # made here: close-on-exec, the program's own
    try:
        assert read in forking._program_fds()
        os.set_inheritable(read, True)  # as a pipe a shell gave this process
        assert read not in forking._program_fds()
    finally:
        os.close(read)
        os.close(write)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        assert null not in forking._program_fds()
    finally:
        os.close(null)
