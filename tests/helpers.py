"""Helpers of the engine tests: ``dagrun`` subprocesses, workflow files, on-disk checks.

Test modules import what they need from here (``from tests.helpers import ...``); the
fixtures built on these helpers live in ``conftest.py``. Every test that runs the engine does
so in a real ``dagrun`` process (``python -m dagrun`` or the ``.venv/bin/dagrun`` script) with
a bounded timeout, in a folder whose name breaks naive shell quoting.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

# --------------------------------------------------------------------------------------------
# Backends.

#: Backends that need no service: the ``backend`` fixture runs a test on each of them. The
#: contract suite (test_contract.py) adds ray and ssh through their service fixtures.
LOCAL_BACKENDS = ["single", "multiprocessing"]


def backend_flags(backend: str) -> list[str]:
    """Command-line flags selecting ``backend`` (two workers for a process pool)."""
    flags = ["--backend", backend]
    if backend != "single":
        flags += ["-j", "2"]
    return flags


# --------------------------------------------------------------------------------------------
# Awkward folders.

AWKWARD_NAME = "we ird 'q' \"dq\" $(touch x) `touch y` ;&|"


# --------------------------------------------------------------------------------------------
# Running dagrun.

DAGRUN_SCRIPT = Path(sys.executable).with_name("dagrun")
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Result:
    """What a finished ``dagrun`` process left: exit code, stdout, stderr."""

    rc: int
    stdout: str
    stderr: str

    def __iter__(self) -> Iterator[Any]:  # rc, out, err = run(...)
        return iter((self.rc, self.stdout, self.stderr))

    @property
    def error_lines(self) -> list[str]:
        """Non-empty stderr lines, progress-bar redraws removed."""
        lines = []
        for line in self.stderr.splitlines():
            line = line.split("\r")[-1].strip()
            if line:
                lines.append(line)
        return lines


def dagrun_command(*args: str | os.PathLike[str], script: bool = False) -> list[str]:
    """The argv of ``dagrun ARGS``: ``python -m dagrun``, or the installed script."""
    head = [str(DAGRUN_SCRIPT)] if script else [sys.executable, "-m", "dagrun"]
    return [*head, *(os.fspath(a) for a in args)]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``dagrun`` subprocess: ours, unbuffered, 100 columns, plus
    ``extra`` (a Ray cluster's client variables, a test tag)."""
    env = dict(os.environ)
    env.pop("DAGRUN_TRUST_GROUP", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "100"
    env.update(extra or {})
    return env


def run_dagrun(*args: str | os.PathLike[str], cwd: Path | None = None,
               timeout: float = DEFAULT_TIMEOUT, script: bool = False,
               env: Mapping[str, str] | None = None) -> Result:
    """Run ``dagrun ARGS`` to completion (bounded by ``timeout``), ``env`` added to
    :func:`child_env`."""
    proc = subprocess.run(dagrun_command(*args, script=script), cwd=cwd, env=child_env(env),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def start_dagrun(*args: str | os.PathLike[str], cwd: Path | None = None,
                 log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``dagrun ARGS`` in the background; its output goes to ``log`` (or nowhere)."""
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(dagrun_command(*args), cwd=cwd, env=child_env(),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]


def kill_tree(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL,
              grace: float = 10.0) -> int:
    """Send ``sig`` to ``proc`` alone, reap it, then make sure its descendants are gone.

    Only the driver gets the signal (that is the crash being simulated); worker processes
    it left behind get ``grace`` seconds to notice and exit, then are killed so the test
    leaves nothing running.
    """
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(sig)
    rc = proc.wait(timeout=30)
    _gone, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        child.kill()
    psutil.wait_procs(alive, timeout=10)
    return rc


def finish(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> int:
    """``proc``'s exit code; after ``timeout`` s its tree is killed and the test fails."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        pytest.fail(f"{proc.args!r} (pid {proc.pid}) did not finish in {timeout} s")


def pool_workers(driver_pid: int) -> list[psutil.Process]:
    """A driver's multiprocessing workers: the children it spawned (``spawn_main``) or
    forked (its own command line), not the watchdog nor a resource tracker."""
    try:
        driver = psutil.Process(driver_pid)
        own, children = driver.cmdline(), driver.children()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []
    found = []
    for child in children:
        try:
            line = child.cmdline()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        text = " ".join(line)
        if "resource_tracker" not in text and ("spawn_main" in text or line == own):
            found.append(child)
    return found


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.02)


# --------------------------------------------------------------------------------------------
# Workflow files.

def write_workflow(folder: Path, source: str, name: str = "workflow.py") -> Path:
    """Write a workflow file (dedented ``source``) into ``folder``; returns its path."""
    path = folder / name
    path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    return path


# A workflow whose stages leave a trace of every execution: COUNTS/<stage>-<id>-<rep> gets
# one line per call. pre records the cfg it received; fit can fail once (FAIL_ONCE names
# experiment ids whose first fit raises) or wait for a release file (WAIT_FOR).
COUNTING_WORKFLOW = '''
import json
import os
import time

OUT = {out!r}
COUNTS = {counts!r}
SLEEP = {sleep!r}
FAIL_ONCE = {fail_once!r}
WAIT_FOR = {wait_for!r}


def _count(stage, cfg):
    os.makedirs(COUNTS, exist_ok=True)
    name = "%s-%d-%d" % (stage, cfg["experiment_id"], cfg["run_id"])
    with open(os.path.join(COUNTS, name), "a") as f:
        f.write("%d\\n" % os.getpid())


def pre(cfg):
    _count("pre", cfg)
    name = "cfg-%d-%d.json" % (cfg["experiment_id"], cfg["run_id"])
    with open(os.path.join(COUNTS, name), "w") as f:
        json.dump(cfg, f)
    print("pre says hello")
    time.sleep(SLEEP)
    return {{"x": cfg["x"], "rep": cfg["run_id"]}}


def fit(cfg, data):
    _count("fit", cfg)
    if WAIT_FOR:
        deadline = time.time() + 60
        while not os.path.exists(WAIT_FOR) and time.time() < deadline:
            time.sleep(0.02)
    time.sleep(SLEEP)
    flag = os.path.join(COUNTS, "failed-once-%d-%d" % (cfg["experiment_id"], cfg["run_id"]))
    if cfg["experiment_id"] in FAIL_ONCE and not os.path.exists(flag):
        open(flag, "w").close()
        raise RuntimeError("boom in fit\\nsecond line of the message")
    return {{"w": data["x"] * 10 + data["rep"], "rep": data["rep"]}}


def post(cfg, model):
    _count("post", cfg)
    time.sleep(SLEEP)
    return {{"acc": model["w"] + 0.5, "rep_seen": model["rep"], "tag": "t%d" % cfg["x"]}}


basecfg = {{"out_path": OUT, "repetitions": {repetitions!r}, "verbose": {verbose!r},
           **{settings!r}}}

cfgs = {cfgs!r}

if __name__ == "__main__":
    raise SystemExit("the __main__ block must not run")
'''


@dataclass
class Sweep:
    """A counting workflow file, its OUT folder and its counter folder."""

    folder: Path
    out: Path
    counts: Path
    workflow: Path

    def write(self, cfgs: Sequence[Mapping[str, Any]], *, repetitions: int = 1,
              sleep: float = 0.0, fail_once: Sequence[int] = (),
              wait_for: Path | None = None, verbose: bool = True,
              settings: Mapping[str, Any] | None = None) -> Path:
        """Write the workflow file; ``settings`` are added to its basecfg (e.g. ssh_config)."""
        source = COUNTING_WORKFLOW.format(
            out=str(self.out), counts=str(self.counts), sleep=sleep,
            fail_once=list(fail_once), wait_for=str(wait_for) if wait_for else "",
            repetitions=repetitions, verbose=verbose, cfgs=list(cfgs),
            settings=dict(settings or {}))
        self.workflow.write_text(source, encoding="utf-8")
        return self.workflow

    def count(self, stage: str, exp_id: int, rep: int = 0) -> int:
        """How many times ``stage`` of run (exp_id, rep) was executed."""
        path = self.counts / f"{stage}-{exp_id}-{rep}"
        if not path.exists():
            return 0
        return len(path.read_text().splitlines())

    def received_cfg(self, exp_id: int, rep: int = 0) -> dict[str, Any]:
        """The cfg that pre of run (exp_id, rep) received, as it saved it."""
        data: dict[str, Any] = json.loads(
            (self.counts / f"cfg-{exp_id}-{rep}.json").read_text())
        return data

    def execute(self, *flags: str, timeout: float = DEFAULT_TIMEOUT,
                env: Mapping[str, str] | None = None) -> Result:
        """``dagrun execute`` this workflow with ``flags`` (``env`` added to the default)."""
        return run_dagrun("execute", self.workflow, *flags, cwd=self.folder, timeout=timeout,
                          env=env)

    def results(self) -> list[dict[str, Any]]:
        """The lines of OUT/results.jsonl."""
        return read_jsonl(self.out / "results.jsonl")


def make_sweep(folder: Path, name: str = "sweep") -> Sweep:
    """A :class:`Sweep` in a new subfolder ``name`` of ``folder`` (names with spaces)."""
    base = folder / name
    base.mkdir()
    return Sweep(base, base / "OUT dir", base / "counts", base / f"{name} workflow.py")


def copy_finished(done: Path, into: Path) -> Path:
    """A private copy of a finished sweep's folder as ``into/sweep``, mtimes kept (the
    planner trusts results.jsonl by its size and mtime, so the copy is as finished)."""
    folder = into / "sweep"
    shutil.copytree(done, folder, copy_function=shutil.copy2)
    return folder


def _reject_constant(name: str) -> object:
    raise ValueError(f"results.jsonl holds non-standard JSON constant {name}")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Parse a JSON-lines file strictly (no NaN/Infinity, every line a JSON object)."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "results.jsonl does not end with a newline"
    rows = []
    for line in text.splitlines():
        row = json.loads(line, parse_constant=_reject_constant)
        assert isinstance(row, dict)
        rows.append(row)
    return rows


def markers(out: Path) -> set[tuple[str, int, int]]:
    """(stage, experiment_id, rep) of every ``.done`` marker under ``out`` (rep 0 if flat)."""
    found = set()
    for folder, dirs, files in os.walk(out):  # a folder vanishing mid-walk is skipped
        dirs[:] = [d for d in dirs if d != ".dagrun"]  # dagrun's own state, written meanwhile
        for name in files:
            if name.endswith(".done"):
                rel = Path(folder, name).relative_to(out).parts
                rep = int(rel[1]) if len(rel) == 3 else 0
                found.add((name[: -len(".done")], int(rel[0]), rep))
    return found


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``folder`` with its size, mtime and content (to prove nothing moved)."""
    snap = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            st = path.stat()
            snap[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns, path.read_bytes())
    return snap


# --------------------------------------------------------------------------------------------
# Processes a stage left behind, found by a marker in their command line.

def processes_with(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line holds ``marker``."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and \
                    any(marker in a for a in p.info["cmdline"] or []):
                found.append(p.pid)
        except psutil.Error:
            continue
    return found


def saw_both(seen: set[str], marker: str) -> bool:
    """Whether the daemons of runs 0 and 1 (markers ``MARKER-0``, ``MARKER-1``) have each
    been seen alive (not necessarily at once: run 0's daemon goes when its run ends)."""
    seen.update(m for m in (f"{marker}-0", f"{marker}-1") if processes_with(m))
    return len(seen) == 2
