"""dagrun's own reads and writes failing: read-only or full disks, a damaged state folder,
paths near the system's limits; retries that back off, and logs that stay bounded.

Each environment problem is one ``dagrun: error:`` line naming the file and what to do, exit
2, no traceback, and leaves the sweep as it was (or, for a run, recorded where ``status``
sees it). The tests run as root, which ignores mode bits: read-only places are read-only
bind mounts and full disks are tiny tmpfs mounts. Where mounting is impossible (not root, no
privileges) the test is skipped, or fails under ``DAGRUN_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagrun.run.capture import cap_log
from tests.helpers import (
    LOCAL_BACKENDS,
    Result,
    backend_flags,
    copy_finished,
    read_jsonl,
    run_dagrun,
    snapshot,
    write_workflow,
)
from tests.services import require_service

pytestmark = pytest.mark.timeout(180)

WORKFLOW = '''
import json
import os
import time

OUT = os.environ.get("ENV_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "OUT")
EVENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "events")


def pre(cfg):
    return cfg["x"]


def fit(cfg, p):
    with open(EVENTS, "a") as f:  # one line per call: experiment id and when
        f.write(json.dumps([cfg["experiment_id"], time.time()]) + "\\n")
    if cfg.get("noisy"):
        print("n" * 3000)
    if cfg.get("fail"):
        raise RuntimeError("fit failed on purpose")
    return p * 2


def post(cfg, m):
    if cfg.get("fill"):  # fill the disk, leaving room for this run's own small files only
        st = os.statvfs(OUT)
        with open(os.path.join(os.path.dirname(OUT), "filler"), "wb") as f:
            f.write(b"\\0" * max(st.f_bavail * st.f_frsize - 24 * 1024, 0))
    return {"y": m}


basecfg = {"out_path": OUT}
cfgs = CFGS
'''


def _workflow(folder: Path, cfgs: list[dict[str, object]], head: str = "") -> Path:
    return write_workflow(folder, head + WORKFLOW.replace("CFGS", repr(cfgs)))


def _one_error_line(result: Result, *phrases: str) -> str:
    """The single ``dagrun: error:`` line of ``result`` (exit 2, no traceback)."""
    assert result.rc == 2, (result.rc, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.error_lines if line.startswith("dagrun: error:")]
    assert len(errors) == 1, result.stderr
    for phrase in phrases:
        assert phrase in errors[0], f"{phrase!r} not in {errors[0]!r}"
    return errors[0]


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30,
                          check=False)
    if done.returncode != 0:
        require_service(f"cannot mount ({' '.join(args[:3])}): {done.stderr.strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True, timeout=30, check=False)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` made read-only (a read-only bind mount of itself) for the block."""
    if os.geteuid() != 0:
        require_service("read-only bind mounts need root")
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield path
    finally:
        _umount(path)


@contextlib.contextmanager
def tiny_disk(path: Path, size: str = "400k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (created) for the block."""
    if os.geteuid() != 0:
        require_service("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        _umount(path)


@pytest.fixture(scope="module")
def done_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished six-experiment sweep (built once; tests work on copies)."""
    folder = tmp_path_factory.mktemp("env") / "sweep"
    folder.mkdir()
    wf = _workflow(folder, [{"x": i} for i in range(6)])
    result = run_dagrun("execute", wf, "-q", cwd=folder)
    assert result.rc == 0, result.stderr
    return folder


@pytest.fixture
def sweep(done_sweep: Path, awkward_dir: Path) -> Path:
    return copy_finished(done_sweep, awkward_dir)


def _command(name: str, folder: Path) -> list[str | Path]:
    out = folder / "OUT"
    commands: dict[str, list[str | Path]] = {
        "execute": ["execute", folder / "workflow.py"], "resume": ["resume", out],
        "reduce": ["reduce", out], "clean": ["clean", out]}
    return commands[name]


# --------------------------------------------------------------------------------------------
# Read-only OUT, a damaged state folder.


@pytest.mark.parametrize("command", ["execute", "resume", "reduce", "clean"])
def test_read_only_out_is_one_line(sweep: Path, command: str) -> None:
    out = sweep / "OUT"
    before = snapshot(out)
    with read_only(out):
        result = run_dagrun(*_command(command, sweep), cwd=sweep)
    _one_error_line(result, str(out / ".dagrun"), "Read-only file system", "writable")
    assert snapshot(out) == before


@pytest.mark.parametrize("command", ["execute", "resume", "reduce", "clean"])
def test_lock_that_is_a_folder_is_one_line(sweep: Path, command: str) -> None:
    lock = sweep / "OUT" / ".dagrun" / "lock"
    lock.unlink()
    lock.mkdir()
    _one_error_line(run_dagrun(*_command(command, sweep), cwd=sweep),
                    f"{lock} is a folder", "rmdir")


@pytest.mark.parametrize("damage", [b"", b"garbage\n", None])
def test_damaged_workflow_pickle_on_resume_is_one_line(sweep: Path, damage: bytes | None) -> None:
    pkl = sweep / "OUT" / ".dagrun" / "workflow.pkl"
    pkl.write_bytes(pkl.read_bytes()[:100] if damage is None else damage)
    _one_error_line(run_dagrun("resume", sweep / "OUT"), f"{pkl} is damaged",
                    "dagrun execute WORKFLOW.py")


@pytest.mark.parametrize("shape", ["long path", "long name"])
def test_out_path_too_long_is_one_line_and_creates_nothing(awkward_dir: Path,
                                                           shape: str) -> None:
    wf = _workflow(awkward_dir, [{"x": 1}])
    base = awkward_dir / "base"
    limit = os.pathconf(awkward_dir, "PC_PATH_MAX")
    if shape == "long path":  # every name is fine, the whole path nearly reaches PATH_MAX
        parts, length = [], len(str(base))
        while length + 251 < limit - 20:
            parts.append("d" * 250)
            length += 251
        out = base.joinpath(*parts, "e" * (limit - 20 - length))
    else:
        out = base / "a" / ("n" * 300) / "OUT"
    result = run_dagrun("execute", wf, "--out", out, cwd=awkward_dir)
    _one_error_line(result, "is too long", "use a shorter out_path")
    assert not base.exists()


# --------------------------------------------------------------------------------------------
# clean: all or nothing.


def test_clean_with_a_read_only_run_folder_changes_nothing(sweep: Path) -> None:
    out = sweep / "OUT"
    before = snapshot(out)
    with read_only(out / "4"):
        result = run_dagrun("clean", out)
        _one_error_line(result, str(out / "4"), "Read-only file system",
                        "nothing was cleaned")
        after = snapshot(out)
    assert {k: v for k, v in after.items() if not k.startswith(".dagrun/")} == \
        {k: v for k, v in before.items() if not k.startswith(".dagrun/")}
    assert not list(out.rglob("*.tmp"))
    again = run_dagrun("clean", out)
    assert again.rc == 0, again.stderr
    assert not list(out.rglob("*.done")) and read_jsonl(out / "results.jsonl") == []


def test_clean_whose_results_rewrite_fails_puts_everything_back(awkward_dir: Path) -> None:
    with tiny_disk(awkward_dir / "disk", "1m") as disk:
        out = disk / "OUT"
        wf = _workflow(awkward_dir, [{"x": i, "pad": "p" * 20000} for i in range(3)])
        done = run_dagrun("execute", wf, "-q", cwd=awkward_dir, env={"ENV_OUT": str(out)})
        assert done.rc == 0, done.stderr
        st = os.statvfs(disk)
        (disk / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 4096))
        before = snapshot(out)
        result = run_dagrun("clean", out, "--ids", "1")
        _one_error_line(result, "results.jsonl", "No space left on device",
                        "nothing was cleaned")
        after = snapshot(out)
        assert {k: v for k, v in after.items() if not k.startswith(".dagrun/")} == \
            {k: v for k, v in before.items() if not k.startswith(".dagrun/")}
        assert not list(out.rglob("*.tmp"))


# --------------------------------------------------------------------------------------------
# A full disk at the end; failure records that cannot be written.


def test_disk_full_during_the_final_reduce(awkward_dir: Path) -> None:
    """The summary of what ran is printed, then one line, exit 2; the runs stay done."""
    with tiny_disk(awkward_dir / "disk", "600k") as disk:
        out = disk / "OUT"
        wf = _workflow(awkward_dir, [{"x": 0, "pad": "p" * 20000}, {"x": 1, "pad": "p" * 20000},
                                     {"x": 2, "pad": "p" * 20000, "fill": True}])
        result = run_dagrun("execute", wf, cwd=awkward_dir, env={"ENV_OUT": str(out)})
        line = _one_error_line(result, f"cannot rewrite {out / 'results.jsonl'}",
                               "No space left on device", "dagrun reduce")
        summary = result.stderr.index("3 runs planned: 3 done now")
        assert summary < result.stderr.index(line)
        assert "was NOT rewritten (No space left on device)" in result.stderr
        status = run_dagrun("status", out)
        assert status.rc == 0 and "runs: 3 done" in status.stdout, status.stdout
        (disk / "filler").unlink()
        reduced = run_dagrun("reduce", out)
        assert reduced.rc == 0 and len(read_jsonl(out / "results.jsonl")) == 3


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_failure_record_that_cannot_be_written_counts_as_failed(awkward_dir: Path,
                                                                backend: str) -> None:
    """A run folder that is read-only: the driver and status both count the run failed,
    and the summary says where its record is instead of naming a file that is not there."""
    wf = _workflow(awkward_dir, [{"x": i} for i in range(4)])
    out = awkward_dir / "OUT"
    (out / "1").mkdir(parents=True)
    with read_only(out / "1"):
        result = run_dagrun("execute", wf, *backend_flags(backend), cwd=awkward_dir)
        assert result.rc == 1, result.stderr
        assert "4 runs planned: 3 done now, 0 already done, 1 failed" in result.stderr
        assert (f"-> no record in {out / '1' / 'pre.error'} (Read-only file system; kept in "
                f"{out / '.dagrun' / 'unrecorded.jsonl'})") in result.stderr
        status = run_dagrun("status", out)
    assert status.rc == 0, status.stderr
    assert "runs: 3 done, 0 pending, 0 incomplete, 1 failed" in status.stdout, status.stdout
    assert "no record in the run folder: Read-only file system" in status.stdout
    again = run_dagrun("execute", wf, "-q", cwd=awkward_dir)
    assert again.rc == 0, again.stderr
    assert "runs: 4 done, 0 pending, 0 incomplete, 0 failed" in run_dagrun("status", out).stdout


# --------------------------------------------------------------------------------------------
# Retries and logs.


def _events(folder: Path) -> list[tuple[int, float]]:
    lines = (folder / "events").read_text().splitlines()
    return [(int(e), float(t)) for e, t in map(json.loads, lines)]


def test_retries_back_off_without_blocking_other_runs(awkward_dir: Path) -> None:
    wf = _workflow(awkward_dir, [{"x": 0, "fail": True}, {"x": 1}])
    result = run_dagrun("execute", wf, "--retries", "3", cwd=awkward_dir)
    assert result.rc == 1, result.stderr
    for n, delay in ((1, "0.5"), (2, "1"), (3, "2")):
        assert f"retrying in {delay} s ({n}/3)" in result.stderr, result.stderr
    events = _events(awkward_dir)
    attempts = [t for e, t in events if e == 0]
    assert len(attempts) == 4
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(gap >= want for gap, want in zip(gaps, (0.5, 1.0, 2.0), strict=True)), gaps
    other = [t for e, t in events if e == 1]
    assert other and other[0] < attempts[1], "the other run waited for the retry"


def test_quiet_prints_one_retry_line_per_run(awkward_dir: Path) -> None:
    wf = _workflow(awkward_dir, [{"x": 0, "fail": True}, {"x": 1, "fail": True}])
    result = run_dagrun("execute", wf, "--retries", "2", "-q", cwd=awkward_dir)
    assert result.rc == 1, result.stderr
    retrying = [line for line in result.error_lines if "retrying" in line]
    assert len(retrying) == 2, result.stderr
    assert sorted(line.split()[2] for line in retrying) == ["0/0", "1/0"]


def test_stage_log_of_a_noisy_retried_run_is_capped(awkward_dir: Path) -> None:
    head = "import dagrun.run.capture\ndagrun.run.capture.LOG_CAP = 4000\n"
    wf = _workflow(awkward_dir, [{"x": 0, "fail": True, "noisy": True}], head=head)
    result = run_dagrun("execute", wf, "--retries", "2", "-q", cwd=awkward_dir)
    assert result.rc == 1, result.stderr
    log = (awkward_dir / "OUT" / "0" / "fit.log").read_bytes()
    assert len(log) <= 4000 + 200
    assert b"bytes cut from the middle of this log" in log
    assert log.count(b"----- dagrun: attempt") >= 1 and log.endswith(b"n\n")


def test_cap_log_keeps_head_and_tail_and_counts_every_cut(tmp_path: Path) -> None:
    path = tmp_path / "fit.log"
    line = b"%05d " + b"x" * 30 + b"\n"
    path.write_bytes(b"".join(line % i for i in range(1000)))
    assert cap_log(str(path), 2000) and len(path.read_bytes()) <= 2000 + 120
    with path.open("ab") as f:
        f.write(b"".join(line % i for i in range(1000, 2000)))
    assert cap_log(str(path), 2000)
    text = path.read_bytes()
    kept = [row for row in text.splitlines() if row[:5].isdigit()]
    cut = int(text.split(b"----- dagrun: ")[1].split(b" ")[0])
    assert kept[0].startswith(b"00000") and kept[-1].startswith(b"01999")
    assert cut == 2000 * len(line % 0) - len(kept) * len(line % 0)
    assert text.count(b"----- dagrun:") == 1
    assert not cap_log(str(path), 10**6)
