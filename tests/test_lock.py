"""The one-driver lock: deleting its file cannot let a second driver in, and readers
(``dagrun status``) never block or mislead a driver."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import child_env, run_dagrun, wait_for, write_workflow

SLOW = """
import os
import time

def pre(cfg):
    return None

def fit(cfg, _):
    deadline = time.time() + 60
    while not os.path.exists({release!r}) and time.time() < deadline:
        time.sleep(0.05)
    return cfg["x"]

def post(cfg, v):
    return {{"v": v}}

basecfg = {{"out_path": "out"}}
cfgs = [{{"x": i}} for i in range(2)]
"""


@pytest.mark.parametrize("deleted", ["lock", "state"])
def test_deleting_the_lock_does_not_let_a_second_driver_in(tmp_path: Path, deleted: str) -> None:
    release = tmp_path / "release"
    wf = write_workflow(tmp_path, SLOW.format(release=str(release)))
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "dagrun", "execute", str(wf), "-q"],
                             cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (out / "0" / "pre.done").exists(), 60, "the first driver to start")
        status = run_dagrun("status", out, cwd=tmp_path)
        assert f"being executed now by pid {first.pid}" in status.stdout
        if deleted == "lock":
            (out / ".dagrun" / "lock").unlink()
        else:
            shutil.rmtree(out / ".dagrun")
        second = run_dagrun("execute", wf, "-q", cwd=tmp_path)
        assert second.rc == 2
        assert "is already being executed by another dagrun driver" in second.stderr
        assert not (out / "0" / "fit.done").exists()  # the second driver ran nothing
        release.touch()
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    if deleted == "state":  # the first driver noticed, said so, and wrote its state again
        assert "was deleted while this driver runs" in err
        assert (out / ".dagrun" / "plan.json").exists()
        status = run_dagrun("status", out, cwd=tmp_path)
        assert status.rc == 0 and "runs: 2 done" in status.stdout, status.stdout


def test_status_polled_in_a_loop_never_refuses_a_driver(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, SLOW.format(release=str(tmp_path)))  # released at once
    out = tmp_path / "out"
    assert run_dagrun("execute", wf, "-q", cwd=tmp_path).rc == 0
    stop = threading.Event()
    lines: list[str] = []

    def poll_status() -> None:
        while not stop.is_set():
            polled = run_dagrun("status", out, cwd=tmp_path)
            lines.append(polled.stdout.splitlines()[0] if polled.rc == 0 and polled.stdout
                         else f"rc {polled.rc}: {polled.stdout}{polled.stderr}")

    poller = threading.Thread(target=poll_status)
    poller.start()
    try:
        results = [run_dagrun("execute", wf, "-q", cwd=tmp_path) for _ in range(15)]
        reduces = [run_dagrun("reduce", out, cwd=tmp_path) for _ in range(15)]
    finally:
        stop.set()
        poller.join(timeout=60)
    assert [r.rc for r in results] == [0] * 15, [r.stderr for r in results if r.rc]
    assert [r.rc for r in reduces] == [0] * 15, [r.stderr for r in reduces if r.rc]
    assert lines and not [line for line in lines if "pid ?" in line or line.startswith("rc ")]


DRIVERS_IN_A_LOOP = """
import sys
import time
from dagrun.disk.layout import SweepDir
from dagrun.disk.lock import driver_lock

sweep = SweepDir(sys.argv[1])
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    with driver_lock(sweep, wait=10.0):
        pass
"""


def test_a_reader_never_sees_a_holder_without_its_pid(tmp_path: Path) -> None:
    """Drivers take and drop the lock in a tight loop while a reader asks who holds it
    (``dagrun status``) and a third driver is refused (its message names the holder), as
    fast as they can: every answer names a pid (before the fix, a reader between the record
    lock and driver.json printed ``pid ? on ?, since ?``)."""
    from dagrun.disk.layout import SweepDir
    from dagrun.disk.lock import driver_lock, running_driver
    from dagrun.errors import SweepBusyError

    out = tmp_path / "out"
    (out / ".dagrun").mkdir(parents=True)
    sweep = SweepDir(str(out))
    loops = [subprocess.Popen([sys.executable, "-c", DRIVERS_IN_A_LOOP, str(out), "4"],
                              env=child_env(), stdin=subprocess.DEVNULL) for _ in range(2)]
    seen: list[str] = []
    try:
        while any(p.poll() is None for p in loops):
            found = running_driver(sweep)
            if found is not None:
                seen.append(found)
            try:
                with driver_lock(sweep):
                    pass
            except SweepBusyError as exc:
                seen.append(str(exc).split("(", 1)[1])
    finally:
        for p in loops:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
    assert [p.returncode for p in loops] == [0, 0]
    assert seen, "the reader never saw a driver holding the lock"
    assert not [s for s in seen if not s.startswith("pid ") or "?" in s], \
        sorted({s for s in seen if not s.startswith("pid ") or "?" in s})[:5]
