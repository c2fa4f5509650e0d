"""Fencing: a holder that lost its run (its lease was taken over) never changes what anyone
reads, however long it was frozen and wherever it was when it froze.

The fence itself (``dagrun.disk.fence``) is tested directly; then each way a cluster user
freezes a holder: a worker's whole process tree stopped (``scontrol suspend``), the driver
stopped past the lease timeout beside a worker, Ctrl-Z of ``execute`` while a worker
starts, a stage holding the GIL in ``--backend single``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from dagrun.disk import fence, leases
from dagrun.disk.fence import Attempt, Superseded
from dagrun.disk.layout import RunDir, Stage, SweepDir
from tests.helpers import (
    child_env,
    dagrun_command,
    kill_tree,
    read_jsonl,
    run_dagrun,
    start_dagrun,
    wait_for,
    write_workflow,
)

WAIT = 120.0

# fit returns a random number (a rerun gives another one) that post reports: a run's files
# are consistent when post.json's "r" is the value in fit.pkl. fit waits for a release file
# when asked, and may hold the GIL for HOG seconds (no other thread of its process runs).
RANDOM_WORKFLOW = '''
import os
import random
import sys
import time

OUT = {out!r}
COUNTS = {counts!r}
RELEASE = {release!r}
SLEEP = {sleep!r}
HOG = {hog!r}


def _count(stage, cfg):
    os.makedirs(COUNTS, exist_ok=True)
    with open(os.path.join(COUNTS, "%s-%d" % (stage, cfg["experiment_id"])), "a") as f:
        f.write("%d\\n" % os.getpid())


def pre(cfg):
    _count("pre", cfg)
    return cfg["x"]


def fit(cfg, x):
    _count("fit", cfg)
    while RELEASE and not os.path.exists(RELEASE):
        time.sleep(0.02)
    if HOG:
        sys.setswitchinterval(1000)  # no other thread of this process gets the GIL
        end = time.perf_counter() + HOG
        while time.perf_counter() < end:
            pass
        sys.setswitchinterval(0.005)
    time.sleep(SLEEP)
    return {{"x": x, "r": random.random()}}


def post(cfg, model):
    _count("post", cfg)
    return {{"y": model["x"] * 2, "r": model["r"]}}


basecfg = {{"out_path": OUT, "verbose": False, **{settings!r}}}
cfgs = [{{"x": i}} for i in range({n})]
'''


class Random:
    """A sweep of ``RANDOM_WORKFLOW`` in ``folder``."""

    def __init__(self, folder: Path, n: int, *, release: bool = False, sleep: float = 0.0,
                 hog: float = 0.0, **settings: object) -> None:
        self.folder = folder
        self.out = folder / "OUT"
        self.counts = folder / "counts"
        self.release = folder / "release" if release else None
        self.n = n
        self.workflow = write_workflow(folder, RANDOM_WORKFLOW.format(
            out=str(self.out), counts=str(self.counts),
            release=str(self.release) if self.release else "", sleep=sleep, hog=hog,
            settings=settings, n=n))

    def count(self, stage: str, exp_id: int) -> int:
        path = self.counts / f"{stage}-{exp_id}"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def let_go(self) -> None:
        if self.release is not None:
            self.release.touch()

    def worker(self, *flags: str, log: str = "worker") -> subprocess.Popen[bytes]:
        return start_dagrun("worker", self.out, *flags, cwd=self.folder,
                            log=self.folder / f"{log}.log")

    def driver(self, *flags: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(dagrun_command("execute", self.workflow, *flags),
                                cwd=self.folder, env=child_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)

    def log(self, name: str = "worker") -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")


def consistent(out: Path, n: int) -> None:
    """Every run is done, post reported the fit output on disk, nothing failed, no lease."""
    for i in range(n):
        run = out / str(i)
        with open(run / "fit.pkl", "rb") as f:
            model = pickle.load(f)
        scores = json.loads((run / "post.json").read_text())
        assert scores["r"] == model["r"], f"run {i}: post.json does not match fit.pkl"
        assert (run / "fit.done").exists() and (run / "post.done").exists(), i
    assert not list(out.rglob("*.error")), [str(p) for p in out.rglob("*.error")]
    assert not [p for p in out.rglob("lease.json") if ".dagrun" not in p.parts]
    lines = read_jsonl(out / "results.jsonl")
    assert [line["experiment_id"] for line in lines] == list(range(n))
    for line in lines:
        run = out / str(line["experiment_id"])
        r = line["scores"]["r"]  # a list once one repetition writes lists too
        assert (r if isinstance(r, list) else [r]) == \
            [json.loads((run / "post.json").read_text())["r"]]


def freeze(proc: psutil.Process, tree: bool = True) -> list[psutil.Process]:
    """SIGSTOP ``proc`` (and, with ``tree``, every process below it, as ``scontrol
    suspend`` stops a whole job); returns what was stopped, for ``thaw``."""
    stopped = [proc, *(proc.children(recursive=True) if tree else [])]
    for p in stopped:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGSTOP)
    return stopped


def thaw(stopped: list[psutil.Process]) -> None:
    for p in stopped:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGCONT)


def _finish(proc: subprocess.Popen[bytes], timeout: float = WAIT) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        pytest.fail(f"pid {proc.pid} did not finish in {timeout} s")


def _lease_holders(out: Path) -> dict[int, dict[str, object]]:
    found = {}
    for path in out.glob("*/lease.json"):
        try:
            found[int(path.parent.name)] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


# -- the fence itself -------------------------------------------------------------------


def _claimed(tmp_path: Path) -> tuple[RunDir, leases.Lease]:
    run = RunDir(str(tmp_path / "run"))
    os.makedirs(run.path)
    lease = leases.claim(run, leases.Holder.here(60))
    assert lease is not None
    return run, lease


def test_a_commit_after_the_next_claim_is_refused(tmp_path: Path) -> None:
    run, old = _claimed(tmp_path)
    mine = Attempt(run, old.folder)
    mine.write_bytes(run.artifact(Stage.PRE), b"early")  # while it holds the run: lands
    seen = leases.Observer(0).look(run)
    assert seen is not None
    new = leases.take_over(run, seen, leases.Holder.here(60))
    assert new is not None and new.token == old.token + 1
    for late in (lambda: mine.write_bytes(run.artifact(Stage.FIT), b"late"),
                 lambda: mine.write_json(run.marker(Stage.PRE), {}),
                 lambda: mine.remove(run.artifact(Stage.PRE)),
                 mine.check):
        with pytest.raises(Superseded):
            late()
    assert Path(run.artifact(Stage.PRE)).read_bytes() == b"early"
    assert not os.path.exists(run.artifact(Stage.FIT))
    assert sorted(n for n in os.listdir(run.path) if n.startswith(".")) == [new.folder]
    Attempt(run, new.folder).write_bytes(run.artifact(Stage.FIT), b"new")
    assert Path(run.artifact(Stage.FIT)).read_bytes() == b"new"


def test_a_temporary_file_written_before_the_fence_cannot_be_renamed_after(
        tmp_path: Path) -> None:
    """The window between "output computed" and "output committed": the temporary file is
    complete in the old attempt folder, the fence comes, the rename fails."""
    run, old = _claimed(tmp_path)
    tmp = os.path.join(run.path, old.folder, "fit.pkl.x.tmp")
    Path(tmp).write_bytes(b"computed")
    seen = leases.Observer(0).look(run)
    assert seen is not None and leases.take_over(run, seen, leases.Holder.here(60))
    with pytest.raises(FileNotFoundError):
        os.rename(tmp, run.artifact(Stage.FIT))
    assert not os.path.exists(run.artifact(Stage.FIT))


def test_tokens_increase_at_every_claim(tmp_path: Path) -> None:
    run, first = _claimed(tmp_path)
    Attempt(run, first.folder).write_json(run.marker(Stage.PRE), {"token": first.token})
    first.release()
    assert not [n for n in os.listdir(run.path) if n.startswith(".")]  # nothing left
    second = leases.claim(run, leases.Holder.here(60))
    assert second is not None and second.token == first.token + 1
    info = json.loads(Path(run.lease).read_text())
    assert info["token"] == second.token and info["format"] == leases.LEASE_FORMAT
    seen = leases.Observer(0).look(run)
    assert seen is not None
    third = leases.take_over(run, seen, leases.Holder.here(60))
    assert third is not None and third.token == second.token + 1
    assert fence.next_token(run) == third.token + 1


# -- frozen holders, end to end ----------------------------------------------------------


@pytest.mark.parametrize("timeout", [None, 2.0])
def test_a_frozen_worker_writes_nothing_after_its_run_was_taken_over(
        tmp_path: Path, timeout: float | None) -> None:
    """Item 1 of the fencing issue: worker A's tree is stopped in fit past the lease
    timeout (with a run timeout that expires during the freeze, too), B takes the run over
    and finishes it, A resumes: A's late fit.pkl/fit.done/timeout record never land."""
    settings = {"timeout": timeout} if timeout else {}
    sweep = Random(tmp_path, 1, release=True, **settings)
    assert run_dagrun("plan", sweep.workflow, cwd=tmp_path).rc == 0
    a = sweep.worker("--lease-timeout", "1", log="a")
    wait_for(lambda: sweep.count("fit", 0) == 1, WAIT, "A in fit")
    stopped = freeze(psutil.Process(a.pid))
    sweep.let_go()  # A's fit would finish at once if it ran
    b = sweep.worker("--lease-timeout", "1", log="b")
    assert _finish(b) == 0, sweep.log("b")
    done = {p.name: p.read_bytes() for p in (tmp_path / "OUT" / "0").iterdir() if p.is_file()}
    time.sleep(max(timeout or 0, 1.0) + 0.5)  # the run timeout expires while frozen
    thaw(stopped)
    assert _finish(a) == 0, sweep.log("a")  # every run it saw is done: nothing failed
    # item 9: the runs the workers say they ran add up to the runs (A's was B's in the end)
    assert "ran 0 run(s)" in sweep.log("a") and "ran 1 run(s)" in sweep.log("b")
    after = {p.name: p.read_bytes() for p in (tmp_path / "OUT" / "0").iterdir()
             if p.is_file()}
    assert {k: after[k] for k in done if not k.endswith(".log")} == \
        {k: v for k, v in done.items() if not k.endswith(".log")}
    assert "fit.error" not in after
    consistent(tmp_path / "OUT", 1)


def test_a_driver_stopped_past_its_lease_waits_for_the_worker_that_took_its_run(
        tmp_path: Path) -> None:
    """Item 2: ``execute`` (leasing beside a worker) is stopped, with its run's process, in
    fit past the lease timeout; a worker takes the run over and finishes it; after SIGCONT
    the driver commits nothing of it (before: its fit and post ran on and replaced the
    worker's files), waits for the worker and counts the run: exit 0."""
    sweep = Random(tmp_path, 2, release=True, lease_timeout=1)
    assert run_dagrun("plan", sweep.workflow, cwd=tmp_path).rc == 0
    holder = sweep.worker("--lease-timeout", "1", "-j", "1", log="first")  # driver leases
    wait_for(lambda: sweep.count("fit", 0) + sweep.count("fit", 1) == 1, WAIT, "a fit")
    driver = sweep.driver("--backend", "multiprocessing", "-j", "1")
    wait_for(lambda: sweep.count("fit", 0) + sweep.count("fit", 1) == 2, WAIT,
             "the driver in the other fit")
    driver_run = next(i for i, info in _lease_holders(tmp_path / "OUT").items()
                      if info["pid"] == driver.pid)
    stopped = freeze(psutil.Process(driver.pid))  # the driver and its run's process
    taker = sweep.worker("--lease-timeout", "1", log="taker")
    wait_for(lambda: sweep.count("fit", driver_run) == 2, WAIT, "the taker in its fit")
    sweep.let_go()
    wait_for(lambda: sweep.count("post", driver_run) == 1, WAIT, "the taker to finish it")
    wait_for(lambda: not (tmp_path / "OUT" / str(driver_run) / "lease.json").exists(), WAIT,
             "the taker to release it")
    before = (tmp_path / "OUT" / str(driver_run) / "fit.pkl").read_bytes()
    thaw(stopped)
    _out, err = driver.communicate(timeout=WAIT)
    assert driver.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    assert _finish(holder) == 0 and _finish(taker) == 0
    assert sweep.count("post", driver_run) == 1
    assert (tmp_path / "OUT" / str(driver_run) / "fit.pkl").read_bytes() == before
    consistent(tmp_path / "OUT", 2)


@pytest.mark.parametrize("backend", ["single", "multiprocessing"])
def test_ctrl_z_of_execute_while_a_worker_starts_gives_no_exit_3(
        tmp_path: Path, backend: str) -> None:
    """Item 3: the driver (alone, so leasing nothing) is stopped in a fit; a worker starts,
    claims the driver's run (the driver cannot see it); on SIGCONT the driver's commit is
    refused, it waits for the worker and counts the run; no traceback, exit 0."""
    sweep = Random(tmp_path, 1, release=True, lease_timeout=60)
    driver = sweep.driver("--backend", backend, "-j", "1")
    wait_for(lambda: sweep.count("fit", 0) == 1, WAIT, "the driver in fit")
    stopped = freeze(psutil.Process(driver.pid), tree=False)  # Ctrl-Z stops the driver
    worker = sweep.worker(log="worker")
    wait_for(lambda: sweep.count("fit", 0) == 2, WAIT, "the worker in fit")
    sweep.let_go()
    assert _finish(worker) == 0, sweep.log()
    before = (tmp_path / "OUT" / "0" / "fit.pkl").read_bytes()
    thaw(stopped)
    _out, err = driver.communicate(timeout=WAIT)
    assert driver.returncode == 0, err.decode()
    assert "Traceback" not in err.decode() and "claimed by another holder" in err.decode()
    assert (tmp_path / "OUT" / "0" / "fit.pkl").read_bytes() == before
    assert sweep.count("post", 0) == 1
    consistent(tmp_path / "OUT", 1)


def test_a_stage_holding_the_gil_keeps_the_drivers_lease(tmp_path: Path) -> None:
    """``--backend single`` runs stages in the driver's own process: a fit that holds the
    GIL for 4 lease timeouts starves every thread of the driver, yet its lease stays live
    (the keeper process renews it), so the worker beside it takes nothing over."""
    sweep = Random(tmp_path, 1, hog=4.0, lease_timeout=1)
    assert run_dagrun("plan", sweep.workflow, cwd=tmp_path).rc == 0
    announced = leases.Presence.announce(SweepDir.at(tmp_path / "OUT"),
                                         leases.Holder.here())  # the driver leases
    try:
        driver = sweep.driver("--backend", "single")
        wait_for(lambda: sweep.count("fit", 0) == 1, WAIT, "the driver in fit")
        worker = sweep.worker("--lease-timeout", "1", log="worker")
        _out, err = driver.communicate(timeout=WAIT)
        assert driver.returncode == 0, err.decode()
        assert _finish(worker) == 0, sweep.log()
        assert "took over" not in sweep.log()
        assert sweep.count("fit", 0) == 1
        consistent(tmp_path / "OUT", 1)
    finally:
        announced.withdraw()


def test_the_keeper_stops_renewing_while_its_holder_is_stopped(tmp_path: Path) -> None:
    """A holder stopped by SIGSTOP must lose its lease like a dead one: its keeper sees the
    stopped state and renews nothing until SIGCONT."""
    script = tmp_path / "hold.py"
    script.write_text(
        "import os, sys, time\n"
        "from dagrun.disk import leases\n"
        "from dagrun.disk.layout import RunDir\n"
        "run = RunDir(sys.argv[1]); os.makedirs(run.path)\n"
        "hb = leases.Heartbeat(0.5); hb.start()\n"
        "hb.add(leases.claim(run, leases.Holder.here(0.5)))\n"
        "print('held', flush=True); time.sleep(60)\n")
    run = RunDir(str(tmp_path / "run"))
    proc = subprocess.Popen([sys.executable, str(script), run.path], env=child_env(),
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
        first = Path(run.lease).read_bytes()
        wait_for(lambda: Path(run.lease).read_bytes() != first, WAIT, "a renewal")
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.5)
        frozen = Path(run.lease).read_bytes()
        time.sleep(1.5)  # 15 heartbeat intervals
        assert Path(run.lease).read_bytes() == frozen
        proc.send_signal(signal.SIGCONT)
        wait_for(lambda: Path(run.lease).read_bytes() != frozen, WAIT, "renewals again")
    finally:
        proc.kill()
        proc.wait()


def test_replanning_finds_live_holders_from_their_leases(tmp_path: Path) -> None:
    """Item 4/6: announcements deleted, a live lease still holds a run: re-planning with
    edited code is refused naming the holder; a lease whose heartbeat is long past its
    timeout is fenced instead (its holder, should it wake, commits nothing)."""
    sweep = Random(tmp_path, 2)
    assert run_dagrun("plan", sweep.workflow, cwd=tmp_path).rc == 0
    live_run, stale_run = (RunDir(str(tmp_path / "OUT" / str(i))) for i in (0, 1))
    for run in (live_run, stale_run):
        os.makedirs(run.path, exist_ok=True)
    index = leases.LeaseIndex(SweepDir.at(tmp_path / "OUT"))  # as workers claim
    live = leases.claim(live_run, leases.Holder.here(60), index=index)
    stale = leases.claim(stale_run, leases.Holder.here(1), index=index)
    assert live is not None and stale is not None
    os.utime(stale_run.lease, (time.time() - 600, time.time() - 600))
    sweep.workflow.write_text(sweep.workflow.read_text().replace('"y": model["x"] * 2',
                                                                 '"y": model["x"] * 3'))
    refused = run_dagrun("plan", sweep.workflow, cwd=tmp_path)
    assert refused.rc == 2 and len(refused.error_lines) == 1, refused.stderr
    assert f"pid {os.getpid()}" in refused.stderr and live_run.path in refused.stderr
    assert stale_run.path not in refused.stderr
    assert not os.path.exists(stale_run.lease)
    with pytest.raises(Superseded):  # the stale holder was fenced
        Attempt(stale_run, stale.folder).check()
    assert Attempt(live_run, live.folder).standing()
    live.release()
    assert run_dagrun("plan", sweep.workflow, cwd=tmp_path).rc == 0


def test_a_worker_frozen_across_a_replan_computes_nothing_with_the_old_code(
        tmp_path: Path) -> None:
    """Item 4: worker W (old code) is stopped in fit; the announcements are deleted (as
    the docs allow after a kill -9) and the sweep is planned again with edited post: the
    plan fences W's stale lease. When W wakes, its fit commits nothing and it claims no more
    (the plan changed), exit 1; a new worker computes every run with the new code."""
    sweep = Random(tmp_path, 3, release=True)
    assert run_dagrun("plan", sweep.workflow, cwd=tmp_path).rc == 0
    w = sweep.worker("--lease-timeout", "1", "-j", "1", log="old")
    wait_for(lambda: sweep.count("fit", 0) == 1, WAIT, "W in run 0's fit")
    stopped = freeze(psutil.Process(w.pid))
    time.sleep(2.5)
    for path in (tmp_path / "OUT" / ".dagrun" / "workers").iterdir():
        path.unlink()
    sweep.workflow.write_text(sweep.workflow.read_text().replace('"y": model["x"] * 2',
                                                                 '"y": model["x"] * 3'))
    replanned = run_dagrun("plan", sweep.workflow, cwd=tmp_path)
    assert replanned.rc == 0, replanned.stderr
    sweep.let_go()
    thaw(stopped)
    assert _finish(w) == 1, sweep.log("old")
    assert "planned again" in sweep.log("old")
    new = sweep.worker(log="new")
    assert _finish(new) == 0, sweep.log("new")
    ys = [json.loads((tmp_path / "OUT" / str(i) / "post.json").read_text())["y"]
          for i in range(3)]
    assert ys == [0, 3, 6]
    consistent(tmp_path / "OUT", 3)
    dry = run_dagrun("execute", sweep.workflow, "--dry-run", cwd=tmp_path)
    assert dry.rc == 0 and "changed" not in dry.stdout, dry.stdout


def test_idle_exit_leaves_only_while_a_live_worker_stays(tmp_path: Path) -> None:
    """``--idle-exit 0``: a worker with nothing to claim leaves (exit 1: runs are not all
    done) when a live worker stays; the last live worker stays and takes over the lease of
    a dead holder (nothing stranded), exit 0."""
    sweep = Random(tmp_path, 1)
    assert run_dagrun("plan", sweep.workflow, cwd=tmp_path).rc == 0
    run = RunDir(str(tmp_path / "OUT" / "0"))
    os.makedirs(run.path)
    dead = leases.claim(run, leases.Holder.here(2))  # a holder that never renews
    assert dead is not None
    # a live worker with the least id (its announcement renewed): the one that stays
    other = leases.Holder("elsewhere", 1, "000000000000", None, 60.0)
    presence = leases.Presence.announce(SweepDir.at(tmp_path / "OUT"), other)
    renewing = threading.Event()

    def renew() -> None:
        while not renewing.wait(0.2):
            presence.renew()

    thread = threading.Thread(target=renew, daemon=True)
    thread.start()
    try:
        leaving = sweep.worker("--idle-exit", "0", "--lease-timeout", "60", log="leaving")
        assert _finish(leaving) == 1, sweep.log("leaving")
    finally:
        renewing.set()
        thread.join()
        presence.withdraw()
    assert "leaving: 1 run(s) still held" in sweep.log("leaving")
    last = sweep.worker("--idle-exit", "0", "--lease-timeout", "2", log="last")
    assert _finish(last) == 0, sweep.log("last")
    assert "took over run 0/0" in sweep.log("last")
    consistent(tmp_path / "OUT", 1)


def test_the_lease_index_lists_the_held_runs_and_forgets_ended_claims(tmp_path: Path) -> None:
    sweep = SweepDir.at(tmp_path / "OUT")
    index = leases.LeaseIndex(sweep)
    runs = [RunDir(str(tmp_path / "OUT" / "3" / str(r))) for r in range(3)]
    for run in runs:
        os.makedirs(run.path)
    held = [leases.claim(run, leases.Holder.here(60), index=index) for run in runs]
    assert all(held)
    assert sorted(r.path for r, _ in index.held()) == sorted(r.path for r in runs)
    held[0].release()  # type: ignore[union-attr]
    os.unlink(runs[1].lease)  # a holder killed with -9, its lease removed by hand
    assert [r.path for r, seen in index.held()] == [runs[2].path]
    assert len(os.listdir(sweep.lease_index)) == 1  # the ended claims' entries are gone
    seen = leases.Observer(0).look(runs[2])
    assert seen is not None
    taken = leases.take_over(runs[2], seen, leases.Holder.here(60), index)
    assert taken is not None
    (found,) = index.held()
    assert found[1].info["worker"] == taken.holder.worker
    assert len(os.listdir(sweep.lease_index)) == 1
