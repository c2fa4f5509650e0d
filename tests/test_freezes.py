"""Frozen holders, end to end: each way a cluster user freezes a holder past the lease
timeout (a worker's whole process tree stopped, as ``scontrol suspend`` does; the driver
stopped with its run's process; Ctrl-Z of ``execute`` while a worker starts; a stage holding
the GIL in ``--backend single``; a re-plan while a worker is frozen; ``--idle-exit`` beside a
dead holder). Each stops processes on purpose: run with the chaos tests, not by
``make test-fast``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psutil
import pytest

from dagrun.disk import leases
from dagrun.disk.layout import RunDir, SweepDir
from tests.freezing import WAIT, Random, consistent, freeze, lease_holders, thaw
from tests.helpers import finish, run_dagrun, wait_for


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
    assert finish(b) == 0, sweep.log("b")
    done = {p.name: p.read_bytes() for p in (tmp_path / "OUT" / "0").iterdir() if p.is_file()}
    time.sleep(max(timeout or 0, 1.0) + 0.5)  # the run timeout expires while frozen
    thaw(stopped)
    assert finish(a) == 0, sweep.log("a")  # every run it saw is done: nothing failed
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
    driver_run = next(i for i, info in lease_holders(tmp_path / "OUT").items()
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
    assert finish(holder) == 0 and finish(taker) == 0
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
    # Ctrl-Z stops the driver's process group: the command, and on single the child that
    # executes the sweep (dagrun.run.supervisor); not a pool's workers (own sessions)
    stopped = freeze(psutil.Process(driver.pid), tree=backend == "single")
    worker = sweep.worker(log="worker")
    wait_for(lambda: sweep.count("fit", 0) == 2, WAIT, "the worker in fit")
    sweep.let_go()
    assert finish(worker) == 0, sweep.log()
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
        assert finish(worker) == 0, sweep.log()
        assert "took over" not in sweep.log()
        assert sweep.count("fit", 0) == 1
        consistent(tmp_path / "OUT", 1)
    finally:
        announced.withdraw()


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
    assert finish(w) == 1, sweep.log("old")
    assert "planned again" in sweep.log("old")
    new = sweep.worker(log="new")
    assert finish(new) == 0, sweep.log("new")
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
        assert finish(leaving) == 1, sweep.log("leaving")
    finally:
        renewing.set()
        thread.join()
        presence.withdraw()
    assert "leaving: 1 run(s) still held" in sweep.log("leaving")
    last = sweep.worker("--idle-exit", "0", "--lease-timeout", "2", log="last")
    assert finish(last) == 0, sweep.log("last")
    assert "took over run 0/0" in sweep.log("last")
    consistent(tmp_path / "OUT", 1)


