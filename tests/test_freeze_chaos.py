"""Freeze chaos: SIGSTOP and SIGKILL the holders of one sweep, past the lease timeout.

One sweep of ``RUNS`` runs is planned, then executed by three ``dagrun worker`` processes
and one ``dagrun execute`` (multiprocessing, two slots) at once, all with a lease timeout of
``LEASE`` seconds. Ten seeded rounds then each pick a holder and either stop it (SIGSTOP of
its whole process tree, as ``scontrol suspend`` does, or of the driver's process alone, as
Ctrl-Z or a debugger does) for longer than the lease timeout and resume it (SIGCONT), or
SIGKILL a worker's tree and start a new worker. Frozen holders lose their runs to the others
(takeovers); when they wake, their fenced attempts must write nothing.

Two workflows: a deterministic one, whose results.jsonl must equal that of ``--backend
single``; and one whose fit returns a random number that post reports, whose run files must
be consistent (post.json reports the fit.pkl on disk, and ``clean --stage post`` + execute
reproduces results.jsonl). No failure record, no exit 3 (nor any other failure).

Freezes count toward the 3-takeover cap like deaths do (a takeover is a takeover: the new
holder cannot tell a frozen holder from a dead one). So that the rounds never reach the cap
by chance, a round never stops a holder whose leases were already taken over twice; it picks
another target (and the kill rounds only kill workers whose runs were taken over at most
once).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers import (
    child_env,
    dagrun_command,
    kill_tree,
    read_jsonl,
    run_dagrun,
    wait_for,
    write_workflow,
)

pytestmark = pytest.mark.timeout(480)

RUNS = 40
ROUNDS = 10
LEASE = 2.0
FREEZE = 1.5 * LEASE + 1.0  # past the lease timeout, by the observers' clocks
SEED = 20261206

WORKFLOW = '''
import os
import random
import time

OUT = {out!r}
KIND = {kind!r}


def _sleep(cfg):
    time.sleep(float(os.environ.get("CHAOS_FIT_SECONDS", "0")) * (1 + cfg["x"] % 3) / 2)


def pre(cfg):
    return {{"x": cfg["x"], "sq": cfg["x"] ** 2}}


def fit(cfg, data):
    _sleep(cfg)
    if KIND == "random":
        return {{"x": data["x"], "r": random.random()}}
    return {{"x": data["x"], "v": data["sq"] + 3 * data["x"]}}


def post(cfg, model):
    _sleep(cfg)
    if KIND == "random":
        return {{"r": model["r"]}}
    return {{"value": model["v"], "parity": model["v"] % 2}}


basecfg = {{"out_path": OUT, "verbose": False, "lease_timeout": {lease!r}}}
cfgs = [{{"x": i}} for i in range({runs})]
'''


def _env(seconds: float) -> dict[str, str]:
    return child_env({"CHAOS_FIT_SECONDS": str(seconds)})


def _start(*args: str | os.PathLike[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(dagrun_command(*args), cwd=cwd, env=_env(3.0),
                                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _takeovers(out: Path) -> dict[int, int]:
    """pid of each lease holder -> the most takeovers among the leases it holds."""
    found: dict[int, int] = {}
    for path in out.glob("*/lease.json"):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        pid = int(info.get("pid", 0))
        found[pid] = max(found.get(pid, 0), int(info.get("takeovers", 0)))
    return found


def _tree(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        root = psutil.Process(proc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal(procs: list[psutil.Process], sig: int) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)


def _done(out: Path) -> int:
    return sum(1 for _ in out.glob("*/post.done"))


def _chaos(folder: Path, workflow: Path, out: Path) -> list[str]:
    """Plan, start 3 workers and a driver, run the rounds; returns what each round did."""
    assert run_dagrun("plan", workflow, cwd=folder).rc == 0
    rng = random.Random(SEED)
    workers = [_start("worker", out, "--lease-timeout", str(LEASE), "-j", "1", cwd=folder,
                      log=folder / f"w{i}.log") for i in range(3)]
    driver = _start("execute", workflow, "--backend", "multiprocessing", "-j", "2",
                    cwd=folder, log=folder / "driver.log")
    wait_for(lambda: _done(out) >= 2, 120, "the sweep to get going")
    did: list[str] = []
    frozen: list[psutil.Process] = []
    try:
        for round_ in range(ROUNDS):
            time.sleep(rng.uniform(0.3, 1.0))
            holders = _takeovers(out)
            live = [w for w in workers if w.poll() is None]
            if round_ % 4 == 3 and live:  # kill -9 a worker, start a new one
                victims = [w for w in live if holders.get(w.pid, 0) <= 1]
                if victims:
                    victim = rng.choice(victims)
                    kill_tree(victim)
                    workers.append(_start("worker", out, "--lease-timeout", str(LEASE), "-j",
                                          "1", cwd=folder, log=folder / f"w{len(workers)}.log"))
                    did.append(f"kill worker {victim.pid}")
                    continue
            targets: list[tuple[str, subprocess.Popen[bytes], bool]] = [
                ("driver alone", driver, False), ("driver tree", driver, True),
                *((f"worker {w.pid}", w, True) for w in live)]
            targets = [t for t in targets
                       if t[1].poll() is None and holders.get(t[1].pid, 0) < 2]
            if not targets:
                did.append("nothing to stop")
                continue
            name, proc, tree = rng.choice(targets)
            frozen = _tree(proc) if tree else _tree(proc)[:1]
            _signal(frozen, signal.SIGSTOP)
            time.sleep(FREEZE)
            _signal(frozen, signal.SIGCONT)
            frozen = []
            did.append(f"stop {name} at {_done(out)} done")
        assert driver.wait(timeout=240) == 0, (folder / "driver.log").read_text()
        for w in workers:
            code = w.wait(timeout=120)
            assert code in (0, -signal.SIGKILL), (code, did)
    finally:
        _signal(frozen, signal.SIGCONT)
        for proc in (driver, *workers):
            if proc.poll() is None:
                kill_tree(proc)
    log = (folder / "driver.log").read_text()
    assert "Traceback" not in log, log
    return did


def _scores(out: Path) -> list[dict[str, Any]]:
    return [{"id": r["experiment_id"],
             "scores": {k: v for k, v in r["scores"].items() if "fit_time" not in k}}
            for r in read_jsonl(out / "results.jsonl")]


def _tokens_in_stage_order(out: Path) -> None:
    """Each marker records the lease token it was committed under; a later stage is never
    committed under an older token than an earlier one (a superseded holder's late commit
    would be)."""
    for i in range(RUNS):
        tokens = [json.loads((out / str(i) / f"{s}.done").read_text()).get("token")
                  for s in ("pre", "fit", "post")]
        assert all(isinstance(t, int) for t in tokens), (i, tokens)
        assert tokens == sorted(tokens), (i, tokens)


def _consistent(out: Path) -> None:
    for i in range(RUNS):
        run = out / str(i)
        with open(run / "fit.pkl", "rb") as f:
            model = pickle.load(f)
        assert json.loads((run / "post.json").read_text())["r"] == model["r"], i
    assert not list(out.rglob("*.error")), [str(p) for p in out.rglob("*.error")]
    assert not [p for p in out.rglob("lease.json") if ".dagrun" not in p.parts]


@pytest.mark.parametrize("kind", ["deterministic", "random"])
def test_freeze_and_kill_rounds_keep_every_run_consistent(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "OUT"
    workflow = write_workflow(tmp_path, WORKFLOW.format(out=str(out), kind=kind, lease=LEASE,
                                                        runs=RUNS))
    did = _chaos(tmp_path, workflow, out)
    stops = [d for d in did if d.startswith("stop")]
    assert len(stops) >= 5, did
    assert sum(not d.endswith(f" {RUNS} done") for d in stops) >= 5, did  # mid-sweep
    assert not list(out.rglob("*.error")), did
    assert len(read_jsonl(out / "results.jsonl")) == RUNS
    _tokens_in_stage_order(out)
    if kind == "deterministic":
        reference = tmp_path / "single"
        reference.mkdir()
        single = write_workflow(reference, WORKFLOW.format(
            out=str(reference / "OUT"), kind=kind, lease=LEASE, runs=RUNS))
        assert run_dagrun("execute", single, "--backend", "single", cwd=reference,
                          env={"CHAOS_FIT_SECONDS": "0"}).rc == 0
        assert _scores(out) == _scores(reference / "OUT"), did
        return
    _consistent(out)
    before = _scores(out)
    assert run_dagrun("clean", out, "--stage", "post", cwd=tmp_path).rc == 0
    again = run_dagrun("execute", workflow, cwd=tmp_path, env={"CHAOS_FIT_SECONDS": "0"})
    assert again.rc == 0, again.stderr
    assert _scores(out) == before, did
