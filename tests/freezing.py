"""Helpers of the tests that freeze holders: a workflow whose fit returns a random number,
a check that each run's files agree, and SIGSTOP/SIGCONT of process trees."""

from __future__ import annotations

import contextlib
import json
import pickle
import signal
import subprocess
from pathlib import Path

import psutil

from tests.helpers import (
    child_env,
    dagrun_command,
    read_jsonl,
    start_dagrun,
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


def lease_holders(out: Path) -> dict[int, dict[str, object]]:
    found = {}
    for path in out.glob("*/lease.json"):
        try:
            found[int(path.parent.name)] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


