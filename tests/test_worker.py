"""``dagrun plan`` + ``dagrun worker``: runs claimed through leases on disk.

Every test runs real ``dagrun`` processes on an OUT folder with an awkward name, kills them
the way machines die (SIGKILL, SIGSTOP, SIGTERM) and checks what each stage's counter file
says: no stage of any run executed twice, nothing lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from dagrun.disk import leases
from dagrun.disk.fence import Attempt, Superseded
from dagrun.disk.layout import RunDir, Stage, SweepDir
from dagrun.record import replace
from dagrun.run.stages import RunTask
from tests.helpers import (
    Result,
    Sweep,
    child_env,
    dagrun_command,
    finish,
    kill_tree,
    read_jsonl,
    run_dagrun,
    start_dagrun,
    wait_for,
    write_workflow,
)

WAIT = 120.0  # generous: the test machine is shared


def _plan(sweep: Sweep, *flags: str) -> Result:
    result = run_dagrun("plan", sweep.workflow, *flags, cwd=sweep.folder)
    assert result.rc == 0, result.stderr
    return result


def _worker(sweep: Sweep, *flags: str, log: str = "worker") -> subprocess.Popen[bytes]:
    return start_dagrun("worker", sweep.out, *flags, cwd=sweep.folder,
                        log=sweep.folder / f"{log}.log")


def _log(sweep: Sweep, name: str = "worker") -> str:
    return (sweep.folder / f"{name}.log").read_text(errors="replace")


def _leases(out: Path) -> list[Path]:
    return [p for p in out.rglob("lease.json") if ".dagrun" not in p.parts]


def _start_driver(sweep: Sweep, jobs: int) -> subprocess.Popen[bytes]:
    """``dagrun execute`` of the sweep on multiprocessing with ``jobs`` workers."""
    return subprocess.Popen(
        dagrun_command("execute", sweep.workflow, "--backend", "multiprocessing", "-j",
                       str(jobs)),
        cwd=sweep.folder, env=child_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _worker_in_fit(sweep: Sweep, experiments: int,
                   *flags: str) -> tuple[Path, subprocess.Popen[bytes]]:
    """A planned sweep of ``experiments`` configs ``{"x": 1}``, ``{"x": 2}``, ... whose fits
    wait for the returned release file, and a worker (``flags``) in run 0's fit."""
    release = sweep.folder / "release"
    sweep.write([{"x": i + 1} for i in range(experiments)], wait_for=release, verbose=False)
    _plan(sweep)
    worker = _worker(sweep, *flags)
    try:
        wait_for(lambda: sweep.count("fit", 0) == 1, WAIT, "the worker to be in run 0's fit")
    except BaseException:
        release.touch()
        kill_tree(worker)
        raise
    return release, worker


def _each_stage_ran_once(sweep: Sweep, experiments: int) -> None:
    """Every stage of every experiment ran exactly once, and each has its results line."""
    for i in range(experiments):
        assert [sweep.count(s, i) for s in ("pre", "fit", "post")] == [1, 1, 1], i
    assert [r["experiment_id"] for r in sweep.results()] == list(range(experiments))


def test_four_workers_execute_each_stage_once(sweep: Sweep) -> None:
    sweep.write([{"x": i} for i in range(200)], verbose=False)
    _plan(sweep)
    workers = [_worker(sweep, "-j", "1", log=f"w{i}") for i in range(4)]
    codes = [finish(w) for w in workers]
    assert codes == [0, 0, 0, 0], [_log(sweep, f"w{i}") for i in range(4)]
    _each_stage_ran_once(sweep, 200)
    assert not _leases(sweep.out)


def test_a_worker_copies_the_lines_of_verified_experiments(sweep: Sweep) -> None:
    """The worker's final rewrite copies lines whose runs are verified against them instead
    of recomputing them: shown with a post.json damaged behind its back (mtime put back),
    whose experiment keeps its line while the redone one gets its line again."""
    sweep.write([{"x": i} for i in range(3)], verbose=False)
    _plan(sweep)
    assert finish(_worker(sweep)) == 0, _log(sweep)
    before = sweep.results()
    post = sweep.out / "0" / "post.json"
    st = post.stat()
    post.write_text("{damaged")
    os.utime(post, ns=(st.st_atime_ns, st.st_mtime_ns))
    (sweep.out / "2" / "post.done").unlink()
    assert finish(_worker(sweep, log="again")) == 0, _log(sweep, "again")
    assert sweep.results() == before
    assert sweep.count("post", 2) == 2 and sweep.count("post", 1) == 1


def test_killed_worker_is_taken_over_without_redoing_stages(sweep: Sweep) -> None:
    release = sweep.folder / "release"
    sweep.write([{"x": 1}], wait_for=release, verbose=False)
    _plan(sweep)
    first = _worker(sweep, "--lease-timeout", "2", log="first")
    wait_for(lambda: sweep.count("fit", 0) == 1, WAIT, "fit to start in the first worker")
    kill_tree(first)
    release.touch()
    second = _worker(sweep, "--lease-timeout", "2", log="second")
    assert finish(second) == 0, _log(sweep, "second")
    assert "took over run 0/0" in _log(sweep, "second")
    assert (sweep.count("pre", 0), sweep.count("fit", 0), sweep.count("post", 0)) == (1, 2, 1)
    assert [r["scores"]["mean_acc"] for r in sweep.results()] == [10.5]
    assert not _leases(sweep.out)


SLOW_FIRST_FIT = '''
import os
import time

COUNTS = {counts!r}


def pre(cfg):
    return 1


def fit(cfg, data):
    os.makedirs(COUNTS, exist_ok=True)
    try:
        os.close(os.open(os.path.join(COUNTS, "first"), os.O_CREAT | os.O_EXCL))
        time.sleep(30)  # the first worker's fit: stopped while its worker is frozen
    except FileExistsError:
        pass
    with open(os.path.join(COUNTS, "fit-end"), "a") as f:
        f.write("%d\\n" % os.getpid())
    return data


def post(cfg, model):
    return {{"v": model}}


basecfg = {{"out_path": {out!r}, "verbose": False}}
cfgs = [{{"x": 0}}]
'''


def test_worker_whose_lease_was_taken_over_writes_nothing_more(sweep: Sweep) -> None:
    write_workflow(sweep.folder, SLOW_FIRST_FIT.format(counts=str(sweep.counts),
                                                       out=str(sweep.out)),
                   sweep.workflow.name)
    _plan(sweep)
    first = _worker(sweep, "--lease-timeout", "2", log="first")
    wait_for(lambda: (sweep.counts / "first").exists(), WAIT, "the first fit to start")
    children = psutil.Process(first.pid).children(recursive=True)
    os.kill(first.pid, signal.SIGSTOP)  # its heartbeat stops; its run goes on
    try:
        second = _worker(sweep, "--lease-timeout", "1", log="second")
        assert finish(second) == 0, _log(sweep, "second")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert finish(first) == 0, _log(sweep, "first")
    psutil.wait_procs(children, timeout=30)
    ends = (sweep.counts / "fit-end").read_text().split()
    assert len(ends) == 1  # the first worker's fit never finished
    marker = json.loads((sweep.out / "0" / "fit.done").read_text())
    assert str(marker["pid"]) == ends[0]
    assert not list(sweep.out.rglob("*.error"))
    assert "taken over" in _log(sweep, "first")


def test_execute_beside_a_worker_duplicates_nothing(sweep: Sweep) -> None:
    release = sweep.folder / "release"
    sweep.write([{"x": i} for i in range(6)], wait_for=release, verbose=False)
    _plan(sweep)
    worker = _worker(sweep, "-j", "1")
    wait_for(lambda: len(_leases(sweep.out)) == 1 and any(sweep.count("fit", i)
                                                          for i in range(6)),
             WAIT, "the worker to hold a run")
    driver = _start_driver(sweep, 2)
    wait_for(lambda: sum(sweep.count("fit", i) for i in range(6)) >= 3, WAIT,
             "the driver to start runs")
    release.touch()
    _, err = driver.communicate(timeout=WAIT)
    assert driver.returncode == 0, err.decode()
    assert finish(worker) == 0, _log(sweep)
    _each_stage_ran_once(sweep, 6)


def test_worker_started_beside_a_running_execute_duplicates_nothing(sweep: Sweep) -> None:
    """The driver leases nothing while it is alone; a worker that joins makes it lease the
    runs it already has in flight before the worker's first claim."""
    release = sweep.folder / "release"
    sweep.write([{"x": i} for i in range(30)], wait_for=release, verbose=False)
    driver = _start_driver(sweep, 1)
    wait_for(lambda: sweep.count("fit", 0) == 1, WAIT, "the driver to start a run")
    assert not _leases(sweep.out)  # alone, the driver pays for no lease
    worker = _worker(sweep, "-j", "2")
    wait_for(lambda: sum(sweep.count("fit", i) for i in range(30)) >= 3, WAIT,
             "the worker to start runs")
    release.touch()
    _, err = driver.communicate(timeout=WAIT)
    assert driver.returncode == 0, err.decode()
    assert finish(worker) == 0, _log(sweep)
    _each_stage_ran_once(sweep, 30)
    assert not _leases(sweep.out)


def test_gate_leases_runs_in_flight_once_a_worker_appears(tmp_path: Path) -> None:
    sweep = SweepDir.at(tmp_path / "OUT")
    first, second = (RunTask(i, 0, str(tmp_path / "OUT" / str(i))) for i in (0, 1))
    with leases.Gate(sweep, lease_timeout=60) as gate:
        admitted = [gate.admit(first), gate.admit(second)]
        assert all(t is not None and t.folder for t in admitted)
        assert not _leases(tmp_path / "OUT") and not gate.leasing
        worker = leases.Holder.here()
        presence = leases.Presence.announce(sweep, worker)
        wait_for(lambda: gate.leasing, WAIT, "the driver to see the worker")
        assert len(_leases(tmp_path / "OUT")) == 2  # both in flight, leased by the driver
        assert leases.claim(RunDir(first.path), worker) is None
        # the driver goes on writing through the attempt folder it made before leasing
        assert all(Attempt(RunDir(t.path), t.folder).standing() for t in admitted if t)
        gate.release(first)
        assert len(_leases(tmp_path / "OUT")) == 1
    assert not _leases(tmp_path / "OUT")
    presence.withdraw()


def test_gate_hands_a_run_a_worker_claimed_first_to_the_worker(tmp_path: Path) -> None:
    """A driver stalled past the grace period (Ctrl-Z): the worker's claim fences the
    driver's attempt, whose writes are refused from then on; the driver goes on (no exit 3)
    and waits for the worker's lease to end."""
    sweep = SweepDir.at(tmp_path / "OUT")
    task = RunTask(0, 0, str(tmp_path / "OUT" / "0"))
    with leases.Gate(sweep, lease_timeout=60) as gate:
        mine = gate.admit(task)
        assert mine is not None and mine.folder
        worker = leases.Holder.here()
        lease = leases.claim(RunDir(task.path), worker)  # a worker that did not wait
        assert lease is not None
        presence = leases.Presence.announce(sweep, worker)
        wait_for(lambda: gate.leasing, WAIT, "the driver to see the worker")
        assert gate.taken == [task.path]
        via = Attempt(RunDir(task.path), mine.folder)
        with pytest.raises(Superseded):
            via.write_json(RunDir(task.path).marker(Stage.FIT), {"late": True})
        assert not os.path.exists(RunDir(task.path).marker(Stage.FIT))
        assert gate.ready(idle=False) == []
        gate.park(mine)
        assert gate.waiting == 1
        lease.release()
        wait_for(lambda: gate.ready(idle=True) == [replace(mine, folder=None)],
                 WAIT, "the parked run back once the worker released it")
    presence.withdraw()


def test_sigterm_stops_runs_and_releases_leases_at_once(sweep: Sweep) -> None:
    release = sweep.folder / "release"
    sweep.write([{"x": 1}, {"x": 2}], wait_for=release, verbose=False)
    _plan(sweep)
    worker = _worker(sweep, "-j", "2")
    wait_for(lambda: sweep.count("fit", 0) + sweep.count("fit", 1) == 2, WAIT, "both fits")
    assert len(_leases(sweep.out)) == 2
    children = psutil.Process(worker.pid).children(recursive=True)
    worker.send_signal(signal.SIGTERM)
    assert finish(worker, 60) == 143, _log(sweep)
    assert not _leases(sweep.out)
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive
    release.touch()
    again = _worker(sweep, log="again")
    assert finish(again) == 0, _log(sweep, "again")
    assert (sweep.count("pre", 0), sweep.count("pre", 1)) == (1, 1)  # not redone


def test_run_taken_over_three_times_is_recorded_crashed(sweep: Sweep) -> None:
    sweep.write([{"x": 1}], verbose=False)
    _plan(sweep)
    run = sweep.out / "0"
    run.mkdir(parents=True, exist_ok=True)
    (run / "lease.json").write_text(json.dumps(
        {"host": "gone", "pid": 1, "worker": "w", "slurm": None, "takeovers": 2,
         "beat": "0"}) + "\n")
    worker = _worker(sweep, "--lease-timeout", "0.5")
    assert finish(worker) == 1, _log(sweep)
    error = json.loads((run / "pre.error").read_text())
    assert error["kind"] == "crashed"
    assert "3 times" in error["message"]
    assert sweep.count("pre", 0) == 0
    assert not _leases(sweep.out)


def test_plan_matches_edited_configs_like_execute(sweep: Sweep) -> None:
    sweep.write([{"x": 1}, {"x": 2}], verbose=False)
    plan = _plan(sweep)
    assert "planned 2 runs" in plan.stdout
    assert not (sweep.out / "0").exists()  # nothing ran
    sweep.write([{"x": 1}, {"x": 3}], verbose=False)
    again = run_dagrun("plan", sweep.workflow, cwd=sweep.folder)
    assert again.rc == 0, again.stderr
    assert "1 edited" in again.stderr and "x: 2 -> 3" in again.stderr
    assert finish(_worker(sweep)) == 0
    assert [(r["experiment_id"], r["x"]) for r in sweep.results()] == [(0, 1), (2, 3)]


def test_worker_runs_the_planned_code(tmp_path: Path) -> None:
    folder = tmp_path / "code dir"
    folder.mkdir()
    helper = folder / "helper_mod.py"
    helper.write_text("VALUE = 1\n\n\ndef value():\n    return VALUE\n")
    out = folder / "OUT"
    workflow = write_workflow(folder, f'''
        import helper_mod

        def pre(cfg):
            return 0

        def fit(cfg, data):
            return data

        def post(cfg, model):
            return {{"v": helper_mod.value()}}

        basecfg = {{"out_path": {str(out)!r}, "verbose": False}}
        cfgs = [{{"x": 1}}]
        ''')
    assert run_dagrun("plan", workflow, cwd=folder).rc == 0
    helper.write_text("VALUE = 2\n\n\ndef value():\n    return VALUE\n")
    worker = run_dagrun("worker", out, cwd=tmp_path, timeout=WAIT)
    assert worker.rc == 0, worker.stderr
    assert [r["scores"]["mean_v"] for r in read_jsonl(out / "results.jsonl")] == [1]
    dry = run_dagrun("execute", workflow, "--dry-run", cwd=folder)
    assert dry.rc == 0, dry.stderr
    assert "code of post changed" in dry.stdout


GPU_WORKFLOW = '''
import os
import time

TRACE = {trace!r}


def pre(cfg):
    start = time.time()
    time.sleep(0.3)
    line = "%s %d %f %f\\n" % (os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid(), start,
                              time.time())
    with open(TRACE, "a") as f:
        f.write(line)
    return 0


def fit(cfg, data):
    return data


def post(cfg, model):
    return {{}}


basecfg = {{"out_path": {out!r}, "verbose": False, "num_gpus": 1, "gpu_ids": [0, 1, 2]}}
cfgs = [{{"x": i}} for i in range(9)]
'''


def test_gpu_slots_are_disjoint_under_concurrency(sweep: Sweep) -> None:
    trace = sweep.folder / "trace"
    write_workflow(sweep.folder, GPU_WORKFLOW.format(trace=str(trace), out=str(sweep.out)),
                   sweep.workflow.name)
    _plan(sweep)
    assert finish(_worker(sweep, "-j", "4")) == 0, _log(sweep)
    rows = [line.split() for line in trace.read_text().splitlines()]
    assert len(rows) == 9
    assert {r[0] for r in rows} <= {"0", "1", "2"}
    by_pid: dict[str, set[str]] = {}
    for gpu, pid, _, _ in rows:
        by_pid.setdefault(pid, set()).add(gpu)
    assert all(len(gpus) == 1 for gpus in by_pid.values())  # pinned for life
    for a in rows:
        for b in rows:
            overlap = float(a[2]) < float(b[3]) and float(b[2]) < float(a[3])
            if a is not b and overlap:
                assert a[0] != b[0], (a, b)


def test_worker_refuses_a_folder_that_is_not_planned(tmp_path: Path) -> None:
    result = run_dagrun("worker", tmp_path, cwd=tmp_path)
    assert result.rc == 2
    assert "not a dagrun sweep" in result.stderr
    assert textwrap.dedent(result.stderr).count("\n") == 1


ALWAYS_FAILS = """
import os

CALLS = {calls!r}

def pre(cfg):
    return None

def fit(cfg, _):
    with open(os.path.join(CALLS, "fit-%d" % cfg["experiment_id"]), "a") as f:
        f.write("x\\n")
    if cfg["x"] == 0:
        raise RuntimeError("always fails")
    return cfg["x"]

def post(cfg, value):
    return {{"value": value}}

basecfg = {{"out_path": "OUT", "retries": 1, "verbose": False}}
cfgs = [{{"x": i}} for i in range(2)]
"""


def test_a_failing_run_is_attempted_once_plus_retries_whatever_worker_starts_when(
        tmp_path: Path) -> None:
    """A failure recorded since the sweep was planned counts as an attempt, also for a
    worker that starts after another one recorded it (Slurm array tasks start apart)."""
    calls = tmp_path / "calls"
    calls.mkdir()
    wf = write_workflow(tmp_path, ALWAYS_FAILS.format(calls=str(calls)))
    assert run_dagrun("plan", wf, cwd=tmp_path).rc == 0
    first = start_dagrun("worker", tmp_path / "OUT", cwd=tmp_path, log=tmp_path / "w1.log")
    assert finish(first) == 1
    second = start_dagrun("worker", tmp_path / "OUT", cwd=tmp_path, log=tmp_path / "w2.log")
    assert finish(second) == 1
    assert len((calls / "fit-0").read_text().splitlines()) == 2  # 1 + retries, not per worker
    assert len((calls / "fit-1").read_text().splitlines()) == 1
    assert run_dagrun("plan", wf, cwd=tmp_path).rc == 0  # planning again starts afresh
    third = start_dagrun("worker", tmp_path / "OUT", cwd=tmp_path, log=tmp_path / "w3.log")
    assert finish(third) == 1
    assert len((calls / "fit-0").read_text().splitlines()) == 4


def test_clean_refuses_a_run_a_worker_executes(sweep: Sweep) -> None:
    """Before: ``clean --stage pre --ids 0`` beside a worker in run 0's fit said "invalidated
    1 stage(s)", and the worker then wrote fit.done and post.done: a run counted done with
    no pre. Now clean refuses in one line naming the holder, and works once the run ends."""
    release, worker = _worker_in_fit(sweep, 2, "-j", "1")
    try:
        refused = run_dagrun("clean", sweep.out, "--stage", "pre", "--ids", "0",
                             cwd=sweep.folder)
        assert refused.rc == 2, refused.stdout + refused.stderr
        assert len(refused.error_lines) == 1, refused.stderr
        assert "cannot clean runs that are being executed: run 0/0 by host" in refused.stderr
        assert f"pid {worker.pid}" in refused.stderr
        assert (sweep.out / "0" / "pre.done").exists()
    finally:
        release.touch()
    assert finish(worker) == 0, _log(sweep)
    assert [(sweep.count("pre", i), sweep.count("fit", i)) for i in (0, 1)] == [(1, 1)] * 2
    done = {p.name for p in (sweep.out / "0").glob("*.done")}
    assert done == {"pre.done", "fit.done", "post.done"}
    cleaned = run_dagrun("clean", sweep.out, "--stage", "pre", "--ids", "0", cwd=sweep.folder)
    assert cleaned.rc == 0 and "invalidated 3 stage(s) in 1 run(s)" in cleaned.stdout


def test_deleting_the_announcements_duplicates_no_run(sweep: Sweep) -> None:
    """Before: with ``OUT/.dagrun/workers/`` deleted while a worker runs run 0 (as the docs
    advised after a kill -9), an ``execute`` ignored the worker's live lease.json and ran run
    0 again. Now the driver leases as soon as it meets a lease, and the worker announces
    itself again (and waits its grace period before claiming)."""
    release, worker = _worker_in_fit(sweep, 3, "-j", "1")
    driver = None
    try:
        workers = SweepDir(str(sweep.out)).workers
        for name in os.listdir(workers):
            os.unlink(os.path.join(workers, name))
        driver = _start_driver(sweep, 1)
        wait_for(lambda: sweep.count("fit", 1) == 1, WAIT, "the driver to be in run 1's fit")
        assert sweep.count("pre", 0) == 1  # the driver left run 0 to the worker
    finally:
        release.touch()
        if driver is not None:
            _, err = driver.communicate(timeout=WAIT)
            assert driver.returncode == 0, err.decode(errors="replace")
    assert finish(worker) == 0, _log(sweep)
    _each_stage_ran_once(sweep, 3)


def test_a_short_lease_timeout_does_not_make_a_live_lease_stale(tmp_path: Path) -> None:
    """A lease says the timeout its holder renews it for; an observer with a shorter one of
    its own waits for the holder's."""
    sweep = SweepDir(str(tmp_path))
    run = RunDir(str(tmp_path / "0"))
    os.makedirs(run.path)
    holder = leases.Holder.here(timeout=60.0)
    lease = leases.claim(run, holder)
    assert lease is not None
    try:
        impatient = leases.Observer(lease_timeout=0.05)
        seen = impatient.look(run)
        assert seen is not None and seen.timeout == 60.0
        wait_for(lambda: time.monotonic() - seen.since > 0.2, 5, "time to pass")
        assert not impatient.stale(seen)
        quick = leases.Holder.here(timeout=0.1)
        other = RunDir(str(tmp_path / "1"))
        os.makedirs(other.path)
        short = leases.claim(other, quick)
        assert short is not None
        seen_short = impatient.look(other)
        assert seen_short is not None
        wait_for(lambda: impatient.stale(seen_short), 5, "a 0.1 s lease to go stale")
        short.release()
    finally:
        lease.release()
    assert sweep.path == str(tmp_path)


def test_a_worker_with_a_shorter_timeout_leaves_the_drivers_runs_alone(sweep: Sweep) -> None:
    """Before: a worker started with ``--lease-timeout 1`` beside an ``execute`` (60 s,
    renewing every 12 s) took the driver's live runs over after 1 s: fit ran twice. (The
    driver here renews for 10 s, every 2 s: the worker leaves once it saw the driver's
    announcement renewed.)"""
    release = sweep.folder / "release"
    sweep.write([{"x": 1}, {"x": 2}], wait_for=release, verbose=False,
                settings={"lease_timeout": 10})
    _plan(sweep)
    driver = _start_driver(sweep, 1)
    try:
        wait_for(lambda: sweep.count("fit", 0) == 1, WAIT, "the driver to be in run 0's fit")
        worker = _worker(sweep, "--lease-timeout", "1", "--idle-exit", "4")
        assert finish(worker) == 1, _log(sweep)  # it left runs undone (held by the driver)
        assert "took over" not in _log(sweep), _log(sweep)
        assert "leaving: 2 run(s) still held by other workers" in _log(sweep)
        # the execute rewrites results.jsonl when it ends: the worker did not wait for it
        assert "a dagrun execute holds OUT" in _log(sweep)
        assert sweep.count("fit", 0) == 1
    finally:
        release.touch()
        _, err = driver.communicate(timeout=WAIT)
    assert driver.returncode == 0, err.decode(errors="replace")
    _each_stage_ran_once(sweep, 2)


def test_status_marks_the_run_of_a_killed_worker_stale(sweep: Sweep) -> None:
    """Before: status listed a kill -9'd worker's run as running, as any other."""
    release, worker = _worker_in_fit(sweep, 1, "--lease-timeout", "1")
    try:
        running = run_dagrun("status", sweep.out, cwd=sweep.folder).stdout
        assert "running runs (1):" in running and "stale" not in running, running
        kill_tree(worker)

        def stale() -> bool:
            out = run_dagrun("status", sweep.out, cwd=sweep.folder).stdout
            return "0/0        stale (holder gone?), host" in out and f"pid {worker.pid}" in out

        wait_for(stale, WAIT, "status to show the lease as stale")
    finally:
        release.touch()
        if worker.poll() is None:
            kill_tree(worker)


def _held_by(out: Path, pid: int) -> int:
    count = 0
    for path in _leases(out):
        with contextlib.suppress(OSError, ValueError):
            count += json.loads(path.read_text()).get("pid") == pid
    return count


def test_execute_leases_only_what_it_is_about_to_run(sweep: Sweep) -> None:
    """Before: ``execute -j 2`` handed 20 runs to its backend (2 x capacity + 16) and leased
    all of them once a worker appeared: the worker found nothing to claim, and status listed
    20 runs as running. Now the driver holds at most its capacity plus a small prefetch."""
    from dagrun.scheduler import submit_window

    release = sweep.folder / "release"
    sweep.write([{"x": i} for i in range(30)], wait_for=release, verbose=False)
    _plan(sweep)
    driver = _start_driver(sweep, 2)
    worker = None
    try:
        wait_for(lambda: sweep.count("fit", 0) + sweep.count("fit", 1) == 2, WAIT,
                 "the driver to be in two fits")
        worker = _worker(sweep, "-j", "1")
        wait_for(lambda: _held_by(sweep.out, worker.pid) == 1, WAIT,
                 "the worker to claim a run")
        assert _held_by(sweep.out, driver.pid) <= submit_window(2) < 10
    finally:
        release.touch()
        _, err = driver.communicate(timeout=WAIT)
    assert driver.returncode == 0, err.decode(errors="replace")
    assert finish(worker) == 0, _log(sweep)
    _each_stage_ran_once(sweep, 30)


def test_replanning_new_code_beside_a_worker_is_refused(sweep: Sweep) -> None:
    """Before: ``dagrun plan`` again after editing post, while a worker ran: the worker
    computed every run with the old post, and ``--dry-run`` then said all was done. Now the
    re-plan is refused (exit 2, naming the worker) until the workers are gone; the same plan
    again is accepted."""
    release, worker = _worker_in_fit(sweep, 2, "-j", "1")
    try:
        assert run_dagrun("plan", sweep.workflow, cwd=sweep.folder).rc == 0  # unchanged
        source = sweep.workflow.read_text()
        sweep.workflow.write_text(source.replace('"acc": model["w"] + 0.5',
                                                 '"acc": model["w"] + 0.25'))
        refused = run_dagrun("plan", sweep.workflow, cwd=sweep.folder)
        assert refused.rc == 2, refused.stderr
        assert len(refused.error_lines) == 1, refused.stderr
        assert "the plan or the stage code changed while dagrun workers run" in refused.stderr
        assert f"pid {worker.pid}" in refused.stderr
        again = run_dagrun("execute", sweep.workflow, "--rerun-changed", cwd=sweep.folder)
        assert again.rc == 2 and "stop them first" in again.stderr, again.stderr
    finally:
        release.touch()
    assert finish(worker) == 0, _log(sweep)
    assert [r["scores"]["mean_acc"] for r in sweep.results()] == [10.5, 20.5]
    replanned = run_dagrun("plan", sweep.workflow, cwd=sweep.folder)  # the workers are gone
    assert replanned.rc == 0, replanned.stderr
    dry = run_dagrun("execute", sweep.workflow, "--dry-run", cwd=sweep.folder)
    assert "code of post changed" in dry.stdout, dry.stdout


def test_the_backend_queue_is_deep_only_while_runs_are_quick() -> None:
    from dagrun.scheduler import quick_runs, submit_window

    assert submit_window(2) == 6 and submit_window(64) == 74
    assert submit_window(2, quick=True) == 20  # runs of milliseconds keep a pool busy
    # a pool of 16 whose workers each hold their next run gets them all, not 8 of them
    assert submit_window(16, ahead=16) == 34 and submit_window(16) == 26
    assert not quick_runs(2, finished=1, seconds=0.01)  # not every slot finished one yet
    assert quick_runs(2, finished=10, seconds=1.0)  # 0.2 s per run and slot
    assert not quick_runs(2, finished=4, seconds=10.0)  # 5 s per run and slot
