"""A worker's stage logs through its spare file (``dagrun.run.capture._LogSpare``).

A silent call makes and frees no inode: the process's spare file is the log while the call
runs, and only the name goes afterwards. What could go wrong, each tested here: output of
one call reaching another call's log (a process the stage started outlives the call and
writes later; a printing call's file reused), an earlier attempt's log overwritten, two
processes sharing one spare after a fork, a spare made where there is no sweep, a file
system where leases cannot be taken, and spares left behind by killed processes.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagrun.disk import leases
from dagrun.disk.layout import LOG_SPARE, SweepDir
from dagrun.run import capture
from dagrun.run.capture import CaptureMode
from tests.helpers import read_jsonl, run_dagrun, write_workflow

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sweep(tmp_path: Path) -> Iterator[SweepDir]:
    """A sweep's folders (OUT/.dagrun exists), this process's spares forgotten before and
    after (they are per process and folder)."""
    out = tmp_path / "out"
    (out / ".dagrun").mkdir(parents=True)
    (out / "0").mkdir()
    (out / "1").mkdir()
    capture._forget_spares()
    yield SweepDir(str(out))
    capture._forget_spares()


def _call(sweep: SweepDir, log: str, text: str = "", attempt: int = 1) -> None:
    with capture.capture(CaptureMode.FD, log, attempt, "host", sweep.spares):
        if text:
            os.write(1, text.encode())


def _spares(sweep: SweepDir) -> list[str]:
    return sorted(os.listdir(sweep.spares)) if os.path.isdir(sweep.spares) else []


def test_silent_calls_reuse_one_file_and_leave_no_log(sweep: SweepDir) -> None:
    log = os.path.join(sweep.path, "0", "fit.log")
    _call(sweep, log)
    (name,) = _spares(sweep)
    assert name.startswith(f"{LOG_SPARE}{os.getpid()}-")
    inode = os.stat(os.path.join(sweep.spares, name)).st_ino
    for _ in range(5):
        _call(sweep, log)
    assert not os.path.exists(log)
    assert _spares(sweep) == [name]
    assert os.stat(os.path.join(sweep.spares, name)).st_ino == inode  # no new file
    assert os.path.getsize(os.path.join(sweep.spares, name)) == 0


def test_a_printing_call_keeps_the_file_as_its_log_and_the_next_gets_a_new_one(
        sweep: SweepDir) -> None:
    first = os.path.join(sweep.path, "0", "fit.log")
    second = os.path.join(sweep.path, "1", "fit.log")
    _call(sweep, first)
    (spare,) = _spares(sweep)
    inode = os.stat(os.path.join(sweep.spares, spare)).st_ino
    _call(sweep, first, "run 0 printed\n")
    assert Path(first).read_text() == "run 0 printed\n"
    assert os.stat(first).st_ino == inode  # the spare's file became the log
    assert _spares(sweep) == []  # its name went with it
    _call(sweep, second, "run 1 printed\n")
    _call(sweep, second.replace("fit", "post"))
    assert Path(first).read_text() == "run 0 printed\n"
    assert Path(second).read_text() == "run 1 printed\n"
    (new,) = _spares(sweep)
    assert new != spare and os.path.getsize(os.path.join(sweep.spares, new)) == 0


def test_an_earlier_attempts_log_is_appended_to_under_a_separator(sweep: SweepDir) -> None:
    log = os.path.join(sweep.path, "0", "fit.log")
    _call(sweep, log)  # a spare exists
    _call(sweep, log, "attempt 1\n")
    _call(sweep, log, "attempt 2\n", attempt=2)
    text = Path(log).read_text()
    assert text.startswith("attempt 1\n----- dagrun: attempt 2 on host at ")
    assert text.endswith(" -----\nattempt 2\n")


def test_output_of_a_process_that_outlives_its_call_reaches_no_later_log(
        sweep: SweepDir) -> None:
    """The call starts a process that inherits the log as its output and writes after the
    call ended: the spare is not reused, so the next calls' logs do not get its line (it
    goes where it went when every call had its own log: into a file of no name)."""
    first = os.path.join(sweep.path, "0", "pre.log")
    later = os.path.join(sweep.path, "0", "fit.log")
    with capture.capture(CaptureMode.FD, first, 1, "host", sweep.spares):
        child = subprocess.Popen(["sh", "-c", "sleep 1; echo late line"])
    try:
        assert not os.path.exists(first)  # silent while it ran
        assert _spares(sweep) == []  # held by the child: not kept
        with capture.capture(CaptureMode.FD, later, 1, "host", sweep.spares):
            assert child.wait(timeout=30) == 0  # it writes during this call
        assert not os.path.exists(later)
        _call(sweep, later, "fit printed\n")
        assert Path(later).read_text() == "fit printed\n"
    finally:
        child.kill()
        child.wait()
    for spare in _spares(sweep):
        assert os.path.getsize(os.path.join(sweep.spares, spare)) == 0


def test_a_forked_child_makes_its_own_spare(sweep: SweepDir) -> None:
    log = os.path.join(sweep.path, "0", "fit.log")
    _call(sweep, log)
    (parent,) = _spares(sweep)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one silent call, one printing call
        try:
            os.close(read)
            _call(sweep, os.path.join(sweep.path, "1", "fit.log"))
            _call(sweep, os.path.join(sweep.path, "1", "post.log"), "child\n")
            os.write(write, b"ok")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 10) == b"ok"
    os.close(read)
    os.waitpid(pid, 0)
    assert parent in _spares(sweep)  # the child neither used nor removed the parent's
    assert os.path.getsize(os.path.join(sweep.spares, parent)) == 0
    assert Path(sweep.path, "1", "post.log").read_text() == "child\n"
    _call(sweep, log, "parent\n")
    assert Path(log).read_text() == "parent\n"


def test_no_spare_is_made_outside_a_sweep(tmp_path: Path) -> None:
    capture._forget_spares()
    run = tmp_path / "run"
    run.mkdir()
    spares = str(tmp_path / ".dagrun" / "spares")
    with capture.capture(CaptureMode.FD, str(run / "fit.log"), 1, "host", spares):
        os.write(1, b"printed\n")
    assert (run / "fit.log").read_text() == "printed\n"
    assert not (tmp_path / ".dagrun").exists()
    capture._forget_spares()


def test_where_leases_are_refused_every_call_makes_its_own_log(
        sweep: SweepDir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture._LogSpare, "unheld", lambda self: False)
    log = os.path.join(sweep.path, "0", "fit.log")
    _call(sweep, log)
    _call(sweep, log, "printed\n")
    _call(sweep, os.path.join(sweep.path, "0", "post.log"))
    assert Path(log).read_text() == "printed\n"
    assert not os.path.exists(os.path.join(sweep.path, "0", "post.log"))
    assert _spares(sweep) == []  # the one made to try leases went at once
    assert {sweep.spares: None} == capture._SPARES  # and none is made there again


def test_a_spare_removed_meanwhile_is_made_again(sweep: SweepDir) -> None:
    log = os.path.join(sweep.path, "0", "fit.log")
    _call(sweep, log)
    (spare,) = _spares(sweep)
    os.unlink(os.path.join(sweep.spares, spare))  # a driver starting emptied the folder
    _call(sweep, log, "printed\n")
    assert Path(log).read_text() == "printed\n"
    _call(sweep, os.path.join(sweep.path, "1", "fit.log"))
    (again,) = _spares(sweep)
    assert again != spare


def test_the_driver_removes_spares_left_by_killed_processes(sweep: SweepDir) -> None:
    os.makedirs(sweep.spares)
    for name in (f"{LOG_SPARE}123-ab", f"{LOG_SPARE}456-cd"):
        Path(sweep.spares, name).write_bytes(b"a killed worker's log, linked" if "4" in name
                                             else b"")
    with leases.Gate(sweep, 60.0):
        assert _spares(sweep) == []
    assert not os.path.exists(sweep.spares)


WORKFLOW = '''
import os
import subprocess
import sys
import time


def pre(cfg):
    if cfg["x"] == 1:
        print("pre of 1 printed")
    return cfg["x"]


def fit(cfg, x):
    if cfg["x"] == 2:
        print("about to crash", flush=True)
        os._exit(3)
    if cfg["x"] == 3:  # outlives the call, writes into its log later
        subprocess.Popen([sys.executable, "-c",
                          "import time; time.sleep(0.3); print('late from 3', flush=True)"])
    if cfg["x"] >= 4:  # the sweep goes on while that process writes
        time.sleep(0.2)
    return x


def post(cfg, x):
    return {"x": x}


out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "OUT")
basecfg = {"out_path": out_path, "pre": pre, "fit": fit, "post": post, "retries": 0}
cfgs = [{"x": i} for i in range(8)]
'''


def test_a_multiprocessing_sweep_logs_what_each_call_printed(tmp_path: Path) -> None:
    workflow = write_workflow(tmp_path, WORKFLOW)
    result = run_dagrun("execute", workflow, "--backend", "multiprocessing", "-j", "2",
                        cwd=tmp_path)
    assert result.rc == 1, result.stderr  # run 2 crashed
    out = tmp_path / "OUT"
    logs = {str(p.relative_to(out)): p.read_text() for p in out.glob("*/*.log")}
    assert logs.pop("1/pre.log") == "pre of 1 printed\n"
    assert "about to crash" in logs.pop("2/fit.log")
    logs.pop("3/fit.log", None)  # where the late line may go if it came before fit ended
    assert logs == {}, logs  # no other call printed: no other log, and no late line
    assert {line["experiment_id"] for line in read_jsonl(out / "results.jsonl")} >= \
        {0, 1, 3, 4, 5, 6, 7}
    assert not (out / ".dagrun" / "spares").exists()
