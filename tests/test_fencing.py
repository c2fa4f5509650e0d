"""Fencing: a holder that lost its run (its lease was taken over) never changes what anyone
reads. The fence itself (``dagrun.disk.fence``), the lease index, the keeper process and
re-plans beside holders; the freezes end to end are in ``test_freezes.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dagrun.disk import fence, leases
from dagrun.disk.fence import Attempt, Superseded
from dagrun.disk.layout import LOG_SPARE, RunDir, Stage, SweepDir
from tests.freezing import WAIT, Random
from tests.helpers import child_env, run_dagrun, wait_for

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


def test_a_claim_that_cannot_make_its_attempt_folder_leaves_no_lease(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = RunDir(str(tmp_path / "run"))
    os.makedirs(run.path)

    def full(run: RunDir, name: str) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fence, "create", full)
    with pytest.raises(OSError, match="No space"):
        leases.claim(run, leases.Holder.here(60))
    assert os.listdir(run.path) == []  # neither a lease nor a temporary file


def test_only_a_folder_the_driver_just_made_is_admitted_as_new(tmp_path: Path) -> None:
    """``new_folder`` (the runner then does not list the run's folder) is set only when the
    admitting driver created the folder itself; a folder that was there, and the retry of
    a run, are listed as always."""
    from dagrun.disk import leases
    from dagrun.disk.layout import SweepDir
    from dagrun.run.stages import RunTask

    sweep = SweepDir(str(tmp_path / "out"))
    (tmp_path / "out" / ".dagrun").mkdir(parents=True)
    (tmp_path / "out" / "1").mkdir()
    (tmp_path / "out" / "1" / "pre.pkl").write_bytes(b"")
    with leases.Gate(sweep, 60.0) as gate:
        fresh = gate.admit(RunTask(0, 0, str(tmp_path / "out" / "0")))
        there = gate.admit(RunTask(1, 0, str(tmp_path / "out" / "1")))
        assert fresh is not None and there is not None
        assert fresh.new_folder and not there.new_folder
        assert not fresh.retry().new_folder
        gate.release(fresh)
        gate.release(there)


def test_the_attempt_folder_of_a_run_that_ended_well_moves_to_the_next(tmp_path: Path) -> None:
    """Unleased, a run that ended well leaves its (empty) attempt folder for the next run
    admitted, which gets it by one rename, not a new folder; a spare fenced meanwhile (a
    claim of its run removed it) is passed over, a run that failed has its folder removed,
    the switch to leasing and the gate's end remove the spares: no run keeps one. While
    spares are kept, a mark in OUT/.dagrun/spares says so (for a driver killed meanwhile)."""
    from dagrun.run.stages import RunTask

    out = tmp_path / "out"
    sweep = SweepDir(str(out))
    (out / ".dagrun").mkdir(parents=True)
    mark = Path(sweep.spares, leases.SPARES_IN_RUNS)
    made: list[str] = []
    real_create = fence.create

    def counting_create(run: RunDir, name: str) -> str:
        made.append(run.path)
        return real_create(run, name)

    def task(i: int) -> RunTask:
        return RunTask(i, 0, str(out / str(i)))

    fence.create = counting_create
    try:
        with leases.Gate(sweep, 60.0) as gate:
            first = gate.admit(task(0))
            assert first is not None and first.folder is not None
            assert not mark.exists()
            gate.release(first, ended_well=True)
            assert (out / "0" / first.folder).is_dir()  # kept as a spare, in its run
            assert mark.is_dir()
            second = gate.admit(task(1))
            assert second is not None and second.folder == first.folder
            assert (out / "1" / first.folder).is_dir()
            assert not (out / "0" / first.folder).exists()  # moved, not copied
            assert made == [first.path]  # one folder made for the two runs
            Attempt(RunDir(second.path), second.folder).write_bytes(
                RunDir(second.path).marker(Stage.PRE), b"{}")  # commits through it
            gate.release(second, ended_well=True)
            fence.fence_others(RunDir(second.path), keep=None)  # a claim fences the spare
            third = gate.admit(task(2))
            assert third is not None and made == [first.path, third.path]
            gate.release(third, ended_well=False)  # failed: its folder is removed
            assert not (out / "2" / third.folder).exists()
            fourth = gate.admit(task(3))
            assert fourth is not None and made[-1] == fourth.path
            gate.release(fourth, ended_well=True)
        assert not (out / "3" / fourth.folder).exists()  # the gate's end removed it
        assert not os.path.exists(sweep.spares)  # and its mark
    finally:
        fence.create = real_create
    leftovers = [p for p in out.glob("*/.*") if p.name.startswith((fence.PREFIX, ".fenced-"))]
    assert leftovers == []


def test_a_killed_drivers_attempt_folders_are_removed_by_the_next(tmp_path: Path) -> None:
    """What a driver killed leaves (it holds no lease: its attempt folders have token 0)
    goes with the next driver, which holds the driver lock, so they are nobody's: its
    spares in finished runs when its mark is there (OUT is looked through, repetitions'
    folders included), a run's folder when the run is admitted again (fenced: the killed
    driver's pool processes may still be writing), the log spares of its workers. A
    worker's folder (token >= 1), the new driver's own and a user's files stay."""
    from dagrun.run.stages import RunTask

    out = tmp_path / "out"
    sweep = SweepDir(str(out))
    dead = fence.folder_name(0, "dead")
    for run in ("0", "1", "2/0", "2/1", "3"):
        (out / run).mkdir(parents=True)
    (out / "1" / "post.done").write_text("{}")
    (out / "1" / dead).mkdir()  # a spare in a finished run
    (out / "2" / "1" / dead).mkdir()  # one in a finished repetition
    (out / "3" / "7").mkdir()  # the user's folder in a run
    (out / "3" / "7" / "model.bin").write_bytes(b"weights")
    in_flight = out / "0" / dead
    in_flight.mkdir()
    (in_flight / "fit.pkl.tmp").write_bytes(b"late")  # a write the killed driver had begun
    worker = out / "2" / "0" / fence.folder_name(3, "worker")
    worker.mkdir()
    Path(sweep.spares, leases.SPARES_IN_RUNS).mkdir(parents=True)  # its mark
    Path(sweep.spares, f"{LOG_SPARE}123-ab").write_bytes(b"")  # a killed worker's
    with leases.Gate(sweep, 60.0) as gate:
        assert not os.path.exists(sweep.spares)
        assert os.listdir(out / "1") == ["post.done"]
        assert os.listdir(out / "2" / "1") == []
        assert os.listdir(out / "2" / "0") == [worker.name]
        assert os.listdir(out / "3" / "7") == ["model.bin"]
        assert not in_flight.exists()  # the look through OUT fenced it too
        in_flight.mkdir()  # (had there been no mark: fenced when admitted again)
        again = gate.admit(RunTask(0, 0, str(out / "0")))
        assert again is not None and again.folder is not None
        assert os.listdir(out / "0") == [again.folder]
        gate.release(again, ended_well=False)
    assert os.listdir(out / "0") == []


def test_spare_attempt_folders_are_bounded(tmp_path: Path) -> None:
    """Runs admitted ahead and ending together keep ``SPARES`` folders at most (what a
    driver killed then would leave behind); the others are removed at once."""
    from dagrun.run.stages import RunTask

    out = tmp_path / "out"
    (out / ".dagrun").mkdir(parents=True)
    count = leases.Gate.SPARES + 5
    with leases.Gate(SweepDir(str(out)), 60.0) as gate:
        tasks = [gate.admit(RunTask(i, 0, str(out / str(i)))) for i in range(count)]
        for task in tasks:
            assert task is not None
            gate.release(task, ended_well=True)
        kept = [p for p in out.glob(f"*/{fence.PREFIX}*")]
        assert len(kept) == leases.Gate.SPARES
    assert list(out.glob(f"*/{fence.PREFIX}*")) == []


def test_the_switch_to_leasing_removes_the_spare_attempt_folders(tmp_path: Path) -> None:
    from dagrun.run.stages import RunTask

    out = tmp_path / "out"
    (out / ".dagrun").mkdir(parents=True)
    with leases.Gate(SweepDir(str(out)), 60.0) as gate:
        done = gate.admit(RunTask(0, 0, str(out / "0")))
        assert done is not None and done.folder is not None
        gate.release(done, ended_well=True)
        assert (out / "0" / done.folder).is_dir()
        gate._start_leasing()  # a worker was seen: leases' folders are named by token
        assert gate.leasing and not (out / "0" / done.folder).exists()
        assert not (out / ".dagrun" / "spares").exists()  # nor the mark
        leased = gate.admit(RunTask(1, 0, str(out / "1")))
        assert leased is not None and leased.folder != done.folder
        gate.release(leased, ended_well=True)
