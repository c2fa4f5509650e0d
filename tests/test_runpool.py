"""The multiprocessing backend's run pool (``dagrun.backends.process.runpool``): runs queued
in a worker ahead of time, outcomes reported without a round trip, and still every run's
death its own.

Quick runs make the pool queue several runs per worker (``runpool.DEEP``). A run in the
middle of them ends its worker (``os._exit(0)``, SIGKILL) or overstays its timeout: that run
alone fails, with the right kind; the runs queued behind it in the same worker go back to
the pool and run once each, never twice, never lost.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from dagrun.backends.process.runpool import (
    DEEP,
    QUEUED,
    RunPool,
    RunTimedOut,
    WorkerDied,
    take_permit,
)
from dagrun.backends.process.spawning import WORKER_CONTEXT
from dagrun.run.stages import RunOutcome, RunTask
from tests.helpers import read_jsonl, run_dagrun

pytestmark = pytest.mark.timeout(180)

RUNS = 80
BAD = 37  # the experiment that misbehaves, in the middle of a burst of quick runs

WORKFLOW = '''
import os
import signal
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CALLS = os.path.join(HERE, "calls")


def _count(stage, cfg):
    with open(os.path.join(CALLS, "%s-%d" % (stage, cfg["experiment_id"])), "a") as f:
        f.write("x\\n")


def pre(cfg):
    _count("pre", cfg)
    return None


def fit(cfg, x):
    _count("fit", cfg)
    endings = {"exit0": lambda: os._exit(0), "hang": lambda: time.sleep(60),
               "sigkill": lambda: os.kill(os.getpid(), signal.SIGKILL)}
    if cfg["i"] == @BAD@:
        endings[cfg["how"]]()
    return None


def post(cfg, x):
    _count("post", cfg)
    return {"i": cfg["i"]}


basecfg = {"out_path": os.path.join(HERE, "OUT"), "retries": 0, "verbose": False,
           "report": False, "timeout": float(os.environ.get("RUNPOOL_TIMEOUT", "0"))}
cfgs = [{"i": i, "how": os.environ["RUNPOOL_HOW"]} for i in range(@RUNS@)]
'''.replace("@BAD@", str(BAD)).replace("@RUNS@", str(RUNS))


def _sweep(tmp_path: Path, how: str, timeout: float = 0.0) -> tuple[int, str]:
    (tmp_path / "calls").mkdir()
    (tmp_path / "wf.py").write_text(WORKFLOW)
    env = {"RUNPOOL_HOW": how, "RUNPOOL_TIMEOUT": str(timeout)}
    result = run_dagrun("execute", tmp_path / "wf.py", "--backend", "multiprocessing",
                        "-j", "2", cwd=tmp_path, env=env, timeout=150)
    return result.rc, result.stderr


def _calls(tmp_path: Path, stage: str, exp: int) -> int:
    path = tmp_path / "calls" / f"{stage}-{exp}"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize(("how", "kind", "timeout"), [
    ("exit0", "crashed", 0.0),
    ("sigkill", "crashed", 0.0),
    ("hang", "timeout", 2.0),
])
def test_one_run_ends_its_worker_among_quick_runs_and_fails_alone(
        tmp_path: Path, how: str, kind: str, timeout: float) -> None:
    code, err = _sweep(tmp_path, how, timeout)
    assert code == 1, err
    out = tmp_path / "OUT"
    error = json.loads((out / str(BAD) / "fit.error").read_text())
    assert error["kind"] == kind, error
    if how == "exit0":  # exit code 0 is not a normal end for a worker that holds a run
        assert "exit" in error["message"] and "0" in error["message"], error
    assert _calls(tmp_path, "fit", BAD) == 1
    assert not (out / str(BAD) / "post.done").exists()
    for exp in range(RUNS):
        if exp == BAD:
            continue
        assert (out / str(exp) / "post.done").exists(), f"run {exp} not done: {err}"
        assert not (out / str(exp) / "fit.error").exists(), exp
        for stage in ("pre", "fit", "post"):  # each stage once: none lost, none twice
            assert _calls(tmp_path, stage, exp) == 1, (stage, exp)
    rows = read_jsonl(out / "results.jsonl")
    assert sorted(r["experiment_id"] for r in rows) == [e for e in range(RUNS) if e != BAD]
    assert "failed" in err


# -- the pool itself, with a run function of this module (imported by the workers) -------

def _nothing() -> None:
    pass


def _fake_run(task: RunTask) -> RunOutcome:
    """Counts itself in the run's file; run BAD misbehaves as its path's name says."""
    folder = os.path.dirname(task.path)
    with open(os.path.join(folder, f"ran-{task.exp_id}"), "a") as f:
        f.write("x\n")
    if task.exp_id == BAD:
        _ENDINGS[os.path.basename(task.path)]()
    return RunOutcome(task)


_ENDINGS: dict[str, Callable[[], object]] = {
    "exit0": lambda: os._exit(0),
    "sigkill": lambda: os.kill(os.getpid(), signal.SIGKILL),
    "hang": lambda: time.sleep(60),
}


@pytest.mark.parametrize(("how", "error"), [("exit0", WorkerDied), ("sigkill", WorkerDied),
                                             ("hang", RunTimedOut)])
def test_the_pool_queues_quick_runs_deep_and_a_death_is_its_runs_alone(
        tmp_path: Path, how: str, error: type[BaseException]) -> None:
    pool = RunPool(2, _nothing, (), WORKER_CONTEXT, 2.0 if how == "hang" else None, _fake_run)
    depths: list[int] = []
    results: dict[int, list[object]] = {}
    try:
        for exp in range(RUNS):
            pool.submit(RunTask(exp, 0, str(tmp_path / how), 1))
        deadline = time.monotonic() + 60
        while sum(map(len, results.values())) < RUNS and time.monotonic() < deadline:
            for task, outcome in pool.poll(0.5):
                results.setdefault(task.exp_id, []).append(outcome)
            depths.append(max((len(w.queue) for w in pool._workers), default=0))
        pool.close()
    finally:
        pool.join(10.0)
    assert max(depths) > 1, "quick runs should have been queued ahead in a worker"
    assert sorted(results) == list(range(RUNS))
    for exp, outcomes in results.items():
        assert len(outcomes) == 1, (exp, outcomes)
        if exp == BAD:
            assert isinstance(outcomes[0], error), outcomes
        else:
            assert isinstance(outcomes[0], RunOutcome) and outcomes[0].ok, outcomes
        ran = (tmp_path / f"ran-{exp}").read_text().splitlines()
        assert len(ran) == 1, f"run {exp} executed {len(ran)} times"
    assert DEEP > 1
    assert pool.take_ended(), "the worker that died (and the ones joined) are reported"


def test_slow_runs_are_queued_one_ahead(tmp_path: Path) -> None:
    """After a slow run, a worker holds the run it executes and the next one (it goes on
    without waiting for the driver), no more."""
    pool = RunPool(2, _nothing, (), WORKER_CONTEXT, None, _fake_run)
    pool._mean = 0.5  # measured: runs of half a second
    try:
        for exp in range(6):
            pool.submit(RunTask(exp, 0, str(tmp_path / "fine"), 1))
        assert [len(w.queue) for w in pool._workers] == [QUEUED, QUEUED]
        assert pool.pending() == 6
        pool.close()
    finally:
        pool.join(30.0)
    assert pool.pending() == 0


def _timed_run(task: RunTask) -> RunOutcome:
    """Sleeps as long as its folder's name says for its experiment (``"5-0.05"``: run 0
    5 s, the others 0.05 s); notes its pid when it starts, and its pid, start and end."""
    folder, name = os.path.split(os.path.dirname(task.path))
    first, rest = os.path.basename(task.path).split("-")
    started = time.time()
    with open(os.path.join(folder, name, f"started-{task.exp_id}"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(float(first) if task.exp_id == 0 else float(rest))
    with open(os.path.join(folder, name, f"ran-{task.exp_id}"), "a") as f:
        f.write(f"{os.getpid()} {started} {time.time()}\n")
    return RunOutcome(task)


def _ran(folder: Path, exp: int) -> list[tuple[int, float, float]]:
    lines = (folder / f"ran-{exp}").read_text().splitlines()
    return [(int(p), float(a), float(b)) for p, a, b in (line.split() for line in lines)]


def test_a_run_queued_behind_a_long_one_is_taken_back_for_an_idle_worker(
        tmp_path: Path) -> None:
    """Two workers, each given two runs ahead; run 0 takes 5 s, the others 0.05 s. The
    run queued behind run 0 is taken back once the other worker is idle and runs there,
    long before run 0 ends: no worker idles beside a queue, and no run runs twice."""
    folder = tmp_path / "runs"
    folder.mkdir()
    pool = RunPool(2, _nothing, (), WORKER_CONTEXT, None, _timed_run)
    pool._mean = 0.5  # not quick: one run queued behind the one a worker executes
    try:
        outcomes = _given(pool, folder / "5-0.05", range(4))
        pool.close()
    finally:
        pool.join(30.0)
    assert len(outcomes) == 4 and all(isinstance(o, RunOutcome) and o.ok for o in outcomes)
    runs = {exp: _ran(folder, exp) for exp in range(4)}
    assert all(len(r) == 1 for r in runs.values()), runs
    (long_pid, long_start, long_end), = runs[0]
    # (a worker slow to start under load may have its runs taken back before it starts:
    # the other then runs some of them before run 0, which is no waiting behind it)
    behind = [exp for exp in (1, 2, 3) if runs[exp][0][0] == long_pid
              and runs[exp][0][1] >= long_start]
    assert behind == [], f"a run waited behind run 0 in its worker: {runs}"
    assert all(runs[exp][0][2] < long_end for exp in (1, 2, 3)), runs
    assert pool.taken_back >= 1


def test_taking_back_never_runs_a_run_twice_or_loses_one(tmp_path: Path) -> None:
    """Quick runs of uneven length on 3 workers, queued deep: at the end the runs not
    started are taken back again and again while workers race to start them; every run
    runs exactly once, in one worker."""
    folder = tmp_path / "runs"
    folder.mkdir()
    pool = RunPool(3, _nothing, (), WORKER_CONTEXT, None, _timed_run)
    try:
        for burst in range(3):  # bursts: the pool runs dry, workers idle, take back
            outcomes = _given(pool, folder / "0.2-0.003", range(burst * 60, burst * 60 + 60))
            assert len(outcomes) == 60, outcomes
        pool.close()
    finally:
        pool.join(30.0)
    for exp in range(180):
        assert len(_ran(folder, exp)) == 1, exp
    assert pool.taken_back >= 1


def test_a_frozen_worker_that_wakes_late_does_not_run_what_was_taken_back(
        tmp_path: Path) -> None:
    """A worker is stopped (SIGSTOP: a suspended job, a debugger) inside run 0 (6 s) with
    run 2 queued behind it. While it is frozen, the other worker finishes runs 1 and 3
    (1.5 s each), is idle, gets run 2 taken back and runs it; when the frozen worker wakes
    up (SIGCONT) it ends run 0 and finds no permit for run 2: it drops it. Every run ran
    once."""
    folder = tmp_path / "runs"
    folder.mkdir()
    pool = RunPool(2, _nothing, (), WORKER_CONTEXT, None, _timed_run)
    pool._mean = 0.5  # not quick: one run queued behind the one executed
    frozen = None
    started = folder / "started-0"
    try:
        for exp in range(4):
            pool.submit(RunTask(exp, 0, str(folder / "6-1.5"), 1))
        holder = next(w for w in pool._workers if w.queue and w.queue[0][1].exp_id == 0)
        assert [t.exp_id for _, t in holder.queue] == [0, 2]
        outcomes: list[object] = []
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            outcomes += [o for _, o in pool.poll(0.05)]
        frozen = int(started.read_text())
        os.kill(frozen, signal.SIGSTOP)
        assert frozen == holder.process.pid and not outcomes, "run 0 started where given"
        taken = pool.taken_back
        while len(outcomes) < 3 and time.monotonic() < deadline:  # runs 1, 3 and 2
            outcomes += [o for _, o in pool.poll(0.5)]
        assert pool.taken_back > taken, "run 2 was taken back while its worker was frozen"
        assert not (folder / "ran-0").exists(), "run 0 is frozen"
        assert _ran(folder, 2)[0][0] != frozen, "run 2 ran in the other worker"
        os.kill(frozen, signal.SIGCONT)
        frozen = None
        while len(outcomes) < 4 and time.monotonic() < deadline:
            outcomes += [o for _, o in pool.poll(0.5)]
        pool.close()
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        pool.join(30.0)
    assert len(outcomes) == 4 and all(isinstance(o, RunOutcome) and o.ok for o in outcomes)
    assert [len(_ran(folder, exp)) for exp in range(4)] == [1, 1, 1, 1]
    assert _ran(folder, 0)[0][0] == holder.process.pid


def test_runs_queued_behind_a_run_that_times_out_go_to_another_worker_at_once(
        tmp_path: Path) -> None:
    """One worker, two runs given to it (the one it executes and the next); the first
    overstays its timeout: the next is taken back at that moment (not when the worker is
    gone) and runs in a replacement, once."""
    folder = tmp_path / "runs"
    folder.mkdir()
    pool = RunPool(1, _nothing, (), WORKER_CONTEXT, 1.0, _timed_run)
    pool._mean = 0.5  # not quick: one run queued behind the one executed
    try:
        outcomes = _given(pool, folder / "60-0.05", range(3))
        pool.close()
    finally:
        pool.join(30.0)
    assert sum(isinstance(o, RunTimedOut) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, RunOutcome) and o.ok for o in outcomes) == 2, outcomes
    assert pool.taken_back >= 1
    assert [len(_ran(folder, exp)) for exp in (1, 2)] == [1, 1]
    assert not (folder / "ran-0").exists()


def _read_permits(fd: int, done: Path, out: int) -> None:
    """A forked reader of the permit pipe ``fd``: reads until ``done`` exists and the pipe
    is empty, then writes what it got to ``out`` and ends."""
    mine = []
    while True:
        seq = take_permit(fd)
        if seq is not None:
            mine.append(seq)
        elif done.exists():
            seq = take_permit(fd)  # written before ``done``: nothing more comes
            if seq is None:
                break
            mine.append(seq)
    os.write(out, json.dumps(mine).encode())
    os._exit(0)


def test_a_permit_is_read_by_one_reader_only(tmp_path: Path) -> None:
    """What taking back rests on: two processes reading 8-byte permits from one pipe
    while they are written each get whole permits, and no permit twice."""
    permits, grants = os.pipe()
    os.set_blocking(permits, False)
    done = tmp_path / "done"
    readers = []
    for _ in range(2):
        got, out = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(got)
            _read_permits(permits, done, out)
        os.close(out)
        readers.append((pid, got))
    count = 50000  # more than the pipe holds: written while both read
    for seq in range(count):
        os.write(grants, seq.to_bytes(8, "little"))
    done.touch()
    seen: list[list[int]] = []
    for pid, got in readers:
        with os.fdopen(got, "rb") as f:
            seen.append(json.loads(f.read()))
        os.waitpid(pid, 0)
    os.close(permits)
    os.close(grants)
    assert sorted(seen[0] + seen[1]) == list(range(count))
    assert all(mine == sorted(mine) for mine in seen)
    assert all(seen), "both readers got permits: they raced"


def _given(pool: RunPool, folder: Path, exps: Iterable[int], attempt: int = 1
           ) -> list[object]:
    """Give ``pool`` a run of each of ``exps`` in ``folder``; their outcomes (at most 60 s
    of waiting)."""
    exps = list(exps)
    for exp in exps:
        pool.submit(RunTask(exp, 0, str(folder), attempt))
    outcomes: list[object] = []
    deadline = time.monotonic() + 60
    while len(outcomes) < len(exps) and time.monotonic() < deadline:
        outcomes += [outcome for _, outcome in pool.poll(0.5)]
    return outcomes


def _outcomes(initializer: Callable[[], None], timeout: float | None, tmp_path: Path,
              runs: int) -> list[object]:
    """A pool of 2 workers started with ``initializer`` given ``runs`` well-behaved runs:
    their outcomes (at most 60 s of waiting), the pool stopped after."""
    pool = RunPool(2, initializer, (), WORKER_CONTEXT, timeout, _fake_run)
    try:
        outcomes = _given(pool, tmp_path / "fine", range(runs))
        pool.stop()
    finally:
        pool.join(10.0)
    return outcomes


def _slow_start() -> None:
    time.sleep(2.5)  # a workflow whose import takes seconds (a big library)


def _dies_starting() -> None:
    os._exit(3)


def test_a_workers_start_is_not_its_first_runs_time(tmp_path: Path) -> None:
    """The timeout clock of a worker's first run starts when the worker is ready: a start
    longer than the timeout times out no run."""
    outcomes = _outcomes(_slow_start, 1.0, tmp_path, 6)
    assert len(outcomes) == 6
    assert all(isinstance(o, RunOutcome) and o.ok for o in outcomes), outcomes


def test_workers_that_die_starting_up_fail_runs_instead_of_looping(tmp_path: Path) -> None:
    """A worker that dies before it is ready started no run: its runs go to the others;
    when workers keep dying that way, runs fail (crashed) so that the sweep ends."""
    outcomes = _outcomes(_dies_starting, None, tmp_path, 3)
    assert len(outcomes) == 3
    assert all(isinstance(o, WorkerDied) and o.exitcode == 3 for o in outcomes), outcomes
    assert not list(tmp_path.glob("ran-*")), "no run began"


def test_a_run_given_after_every_worker_died_gets_a_new_worker(tmp_path: Path) -> None:
    """Both workers die on their runs while nothing else waits (a sweep's retries come
    back only after a delay): the runs given afterwards still start new workers and run
    (they waited for ever)."""
    pool = RunPool(2, _nothing, (), WORKER_CONTEXT, None, _fake_run)
    try:
        outcomes = _given(pool, tmp_path / "exit0", (BAD, BAD))
        assert len(outcomes) == 2 and all(isinstance(o, WorkerDied) for o in outcomes), \
            outcomes
        assert not pool._workers, "both workers are gone, none replaced while idle"
        later = _given(pool, tmp_path / "fine", range(3), attempt=2)  # the retries, later
        pool.stop()
    finally:
        pool.join(10.0)
    assert len(later) == 3 and all(isinstance(o, RunOutcome) and o.ok for o in later), later


# -- workers start side by side, and end without a slow teardown -------------------------

SLOW_START = """
import os, time
if os.environ.get("DAGRUN_TEST_SLOW_START"):
    time.sleep(float(os.environ["DAGRUN_TEST_SLOW_START"]))
"""


def _stamp_start(folder: str, payload: bytes) -> None:
    """Initializer: note when this worker began (its arguments came with the workflow)."""
    assert len(payload) == 4 << 20
    with open(os.path.join(folder, f"started-{os.getpid()}"), "w") as f:
        f.write(repr(time.time()))


def test_workers_start_side_by_side_not_one_after_the_others_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The initializer's arguments (MBs of pickled workflow) go to each worker once all
    are started: a worker whose interpreter takes long to start up does not hold back the
    start of the next one (each here sleeps 2 s in ``sitecustomize``)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_START)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("DAGRUN_TEST_SLOW_START", "2.0")
    pool = RunPool(2, _stamp_start, (str(tmp_path), b"x" * (4 << 20)), WORKER_CONTEXT,
                   None, _fake_run)
    try:
        _given(pool, tmp_path / "fine", range(2))
        pool.close()
    finally:
        pool.join(10.0)
    starts = sorted(float(p.read_text()) for p in tmp_path.glob("started-*"))
    assert len(starts) == 2, starts
    assert starts[1] - starts[0] < 1.5, f"the second worker waited for the first: {starts}"


def _leaves_garbage(task: RunTask) -> RunOutcome:
    """A run that leaves a reference cycle whose finalizer writes a file, and an atexit
    handler that notes whether the garbage collector was frozen when the worker ended."""
    import atexit
    import gc

    folder = os.path.dirname(task.path)

    class Cycle:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            with open(os.path.join(folder, f"finalized-{task.exp_id}"), "w") as f:
                f.write("x")

    Cycle()

    def at_exit() -> None:
        with open(os.path.join(folder, f"exit-{task.exp_id}"), "w") as f:
            f.write(str(gc.get_freeze_count()))

    atexit.register(at_exit)
    return RunOutcome(task)


def test_a_worker_ends_frozen_after_its_runs_garbage_was_finalized(tmp_path: Path) -> None:
    """When a worker leaves, the garbage of its runs is collected (finalizers run), atexit
    handlers run, and what is left is frozen, so that the interpreter's teardown does not
    walk it (0.2-0.3 s with scikit-learn loaded)."""
    folder = tmp_path / "runs"
    folder.mkdir()
    pool = RunPool(1, _nothing, (), WORKER_CONTEXT, None, _leaves_garbage)
    try:
        outcomes = _given(pool, folder / "run", range(3))
        pool.close()
    finally:
        pool.join(10.0)
    assert all(isinstance(o, RunOutcome) and o.ok for o in outcomes), outcomes
    assert sorted(p.name for p in folder.glob("finalized-*")) == \
        [f"finalized-{exp}" for exp in range(3)]
    exits = list(folder.glob("exit-*"))
    assert len(exits) == 3 and all(int(p.read_text()) > 0 for p in exits), exits
