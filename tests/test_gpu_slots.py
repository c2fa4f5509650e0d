"""GPU slots on the multiprocessing backend, tested without GPUs through ``gpu_ids``.

Each run writes the ``CUDA_VISIBLE_DEVICES`` it saw, its pid and its start/end times; runs
that overlap in time must have seen different slots, and a process must see one slot for its
whole life, also the process that replaces one killed by a timeout.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.helpers import Result, child_env, dagrun_command, run_dagrun, write_workflow

GPU_WORKFLOW = '''
import os
import time

TRACE = {trace!r}


def pre(cfg):
    start = time.time()
    line = "%s %d %f " % (os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid(), start)
    if cfg.get("hang"):
        with open(TRACE, "a") as f:
            f.write(line + "hang\\n")  # stopped by the timeout: its end is not known
        time.sleep(120)
    time.sleep(0.3)
    with open(TRACE, "a") as f:
        f.write(line + "%f\\n" % time.time())
    return 0


def fit(cfg, data):
    return data


def post(cfg, model):
    return {{}}


basecfg = {{"out_path": {out!r}, "verbose": True, "backend": "multiprocessing",
           "timeout": {timeout!r}, **{settings!r}}}
cfgs = {cfgs!r}
'''


def _execute(folder: Path, cfgs: Sequence[Mapping[str, object]], settings: dict[str, object],
             *flags: str, timeout: float = 0, env: dict[str, str] | None = None) -> Result:
    source = GPU_WORKFLOW.format(trace=str(folder / "trace"), out=str(folder / "OUT"),
                                 timeout=timeout, settings=settings, cfgs=cfgs)
    workflow = write_workflow(folder, source)
    return run_dagrun("execute", workflow, *flags, cwd=folder, env=env)


class Row(NamedTuple):
    """What one run saw; a hung run ends (is killed) at least ``timeout`` after it began."""

    cuda: str
    pid: str
    start: float
    end: float
    hung: bool


def _rows(folder: Path, timeout: float) -> list[Row]:
    rows = []
    for line in (folder / "trace").read_text().splitlines():
        cuda, pid, start, end = line.split()
        hung = end == "hang"
        begun = float(start)
        rows.append(Row(cuda, pid, begun, begun + timeout if hung else float(end), hung))
    return rows


def _assert_disjoint(rows: list[Row], allowed: set[str]) -> None:
    """Every run saw one of ``allowed``; a process one slot for life; overlapping runs
    different slots."""
    assert {r.cuda for r in rows} <= allowed, rows
    by_pid: dict[str, set[str]] = {}
    for row in rows:
        by_pid.setdefault(row.pid, set()).add(row.cuda)
    assert all(len(cudas) == 1 for cudas in by_pid.values()), by_pid
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            if a.start < b.end and b.start < a.end:
                assert a.cuda != b.cuda, (a, b)


def test_concurrent_runs_never_share_a_gpu_slot(awkward_dir: Path) -> None:
    result = _execute(awkward_dir, [{"x": i} for i in range(9)],
                      {"num_gpus": 1, "gpu_ids": [0, 1, 2]}, "-j", "3")
    assert result.rc == 0, result.stderr
    rows = _rows(awkward_dir, 0)
    assert len(rows) == 9
    _assert_disjoint(rows, {"0", "1", "2"})
    assert "each pinned to a GPU slot (CUDA_VISIBLE_DEVICES 0 | 1 | 2)" in result.stderr


def test_a_process_replaced_after_a_timeout_keeps_its_slot(awkward_dir: Path) -> None:
    cfgs = [{"x": 0, "hang": True}, {"x": 1, "hang": True}, *({"x": i} for i in range(2, 12))]
    result = _execute(awkward_dir, cfgs, {"num_gpus": 1, "gpu_ids": [0, 1]}, "-j", "2",
                      timeout=4)
    assert result.rc == 1, result.stderr
    assert "2 failed" in result.stderr, result.stderr
    rows = _rows(awkward_dir, 4)
    assert len(rows) == 12
    _assert_disjoint(rows, {"0", "1"})
    hung = [r for r in rows if r.hung]
    assert sorted(r.cuda for r in hung) == ["0", "1"]  # both slots had a process killed
    for h in hung:  # ... and the process that replaced it has the same slot
        assert any(r.cuda == h.cuda and r.pid != h.pid and r.start >= h.end - 1
                   for r in rows), rows


def test_fractions_put_several_runs_on_one_gpu(awkward_dir: Path) -> None:
    result = _execute(awkward_dir, [{"x": i} for i in range(4)],
                      {"num_gpus": 0.5}, "-j", "4", env={"CUDA_VISIBLE_DEVICES": "7"})
    assert result.rc == 0, result.stderr
    rows = _rows(awkward_dir, 0)
    assert {r.cuda for r in rows} == {"7"}
    assert "capped at 2" in result.stderr  # two slots on the one GPU given


def test_num_cpus_capped_by_slots_is_said(awkward_dir: Path) -> None:
    result = _execute(awkward_dir, [{"x": i} for i in range(4)],
                      {"num_gpus": 1, "gpu_ids": [3, 5]}, "-j", "4")
    assert result.rc == 0, result.stderr
    assert ("num_cpus (-j) 4 capped at 2: num_gpus 1 per run leaves 2 GPU slot(s) on GPUs "
            "3, 5") in result.stderr
    _assert_disjoint(_rows(awkward_dir, 0), {"3", "5"})


def test_num_gpus_without_known_gpus_is_a_config_error(awkward_dir: Path) -> None:
    result = _execute(awkward_dir, [{"x": 0}], {"num_gpus": 1}, "-j", "2",
                      env={"CUDA_VISIBLE_DEVICES": ""})
    assert result.rc == 2, result.stderr
    assert result.error_lines == [
        "dagrun: error: basecfg['num_gpus'] = 1 per run, but no GPUs are known here: set "
        "basecfg['gpu_ids'] (e.g. [0, 1]) or CUDA_VISIBLE_DEVICES"], result.stderr
    assert not (awkward_dir / "OUT").exists()


def test_the_gpus_slurm_gave_a_job_win_over_basecfg(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: basecfg gpu_ids [0, 1] put a Slurm task given GPU 3 on GPUs 0 and 1 (other
    jobs' GPUs). Inside a Slurm job with CUDA_VISIBLE_DEVICES, Slurm's devices count."""
    from dagrun.backends import validate_basecfg
    from dagrun.run.gpus import slots, visible_gpus

    base = validate_basecfg({"out_path": "o", "pre": print, "fit": print, "post": print,
                             "gpu_ids": [0, 1], "num_gpus": 1}).settings
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert visible_gpus(base) == ("0", "1")  # outside Slurm, basecfg names the GPUs
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    assert visible_gpus(base) == ("3",)
    assert slots(base, 2) == ["3"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus(base) == ("0", "1")  # a job given no GPUs: basecfg again


def test_two_workers_on_one_node_never_share_a_gpu(awkward_dir: Path, tmp_path: Path) -> None:
    """Before: two workers started on one node with gpu_ids [0, 1] and num_gpus 1 each cut
    both GPUs into slots, so two runs (one of each worker) ran on one GPU at once. Slots are
    per node now: a slot runs only while it holds its GPUs' node-local locks."""
    source = GPU_WORKFLOW.format(trace=str(awkward_dir / "trace"), out=str(awkward_dir / "OUT"),
                                 timeout=0, settings={"num_gpus": 1, "gpu_ids": [0, 1]},
                                 cfgs=[{"x": i} for i in range(12)])
    workflow = write_workflow(awkward_dir, source)
    assert run_dagrun("plan", workflow, cwd=awkward_dir).rc == 0
    env = child_env({"DAGRUN_GPU_LOCK_DIR": str(tmp_path / "locks")})
    workers = [subprocess.Popen(dagrun_command("worker", awkward_dir / "OUT", "-j", "2"),
                                cwd=awkward_dir, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE) for _ in range(2)]
    for worker in workers:
        _out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()
    rows = _rows(awkward_dir, 0)
    assert len(rows) == 12
    _assert_disjoint(rows, {"0", "1"})
