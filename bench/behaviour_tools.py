"""The three sweeps that ``behaviour.py`` hurts: dagrun, labtech and exca, each as its docs show.

Every tool runs the same pre -> fit -> post on configs ``x = 0..N-1`` with two workers:
``pre`` makes ``{"x": x, "data": 3x}``, ``fit`` returns ``data + 1`` (after ``BEH_SLEEP``
seconds, and raises for ``x == BEH_FAIL``), ``post`` returns ``{"score": 2 * model}``. Every
stage call appends ``"PHASE STAGE X PID"`` to the ``BEH_LOG`` file (one ``O_APPEND`` write),
so the harness can count what each execution recomputed. The metric is the same text in
every tool (``METRIC``), so "editing the metric function" is one textual edit.

* dagrun: a workflow file, ``dagrun execute wf.py --out STATE -q``, multiprocessing -j 2.
* labtech: nested tasks ``Pre``, ``Fit(pre)``, ``Post(fit)``, ``Lab(max_workers=2)`` (fork pool);
  with ``BEH_LABTECH_FORM=whole`` one task per config doing the three stages (same writes per
  task, a third of the tasks: used where the 3-task form is too slow to repeat).
* exca: a ``MapInfra`` method over the configs, ``cluster="processpool"``, ``max_jobs=2``
  (exca caps its pool at ``os.cpu_count() - 1`` workers).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

METRIC = '{"score": 2 * model}'
EDITED_METRIC = '{"score": 2 * model + 1000}'

STAGES_SRC = '''
import json
import os
import time

N = int(os.environ["BEH_RUNS"])
SLEEP = float(os.environ.get("BEH_SLEEP", "0"))
FAIL = int(os.environ.get("BEH_FAIL", "-1"))
LOG = os.environ["BEH_LOG"]
PHASE = os.environ.get("BEH_PHASE", "-")


def _log(stage, x):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{PHASE} {stage} {x} {os.getpid()}\\n".encode())
    finally:
        os.close(fd)


def do_pre(x):
    _log("pre", x)
    return {"x": x, "data": 3 * x}


def do_fit(x, data):
    _log("fit", x)
    time.sleep(SLEEP)
    if x == FAIL:
        raise ValueError(f"run {x} fails on purpose")
    return data["data"] + 1


def save_results(scores):
    path = os.environ["BEH_RESULTS"]
    with open(path + ".tmp", "w") as fh:
        json.dump(scores, fh)
    os.replace(path + ".tmp", path)
'''

DAGRUN_SRC = STAGES_SRC + '''

def pre(cfg):
    return do_pre(cfg["x"])


def fit(cfg, data):
    return do_fit(cfg["x"], data)


def post(cfg, model):
    _log("post", cfg["x"])
    return @METRIC@


basecfg = {"out_path": "out", "backend": "multiprocessing", "num_cpus": 2, "verbose": False}
cfgs = [{"x": i} for i in range(N)]
'''.replace("@METRIC@", METRIC)

LABTECH_SRC = STAGES_SRC + '''
import sys

import labtech


@labtech.task
class Pre:
    x: int

    def run(self):
        return do_pre(self.x)


@labtech.task
class Fit:
    pre: Pre

    def run(self):
        return do_fit(self.pre.x, self.pre.result)


@labtech.task
class Post:
    fit: Fit

    def run(self):
        model = self.fit.result
        _log("post", self.fit.pre.x)
        return @METRIC@


@labtech.task
class Whole:
    x: int

    def run(self):
        model = do_fit(self.x, do_pre(self.x))
        _log("post", self.x)
        return @METRIC@


def main():
    lab = labtech.Lab(storage=sys.argv[1], max_workers=2)
    if os.environ.get("BEH_LABTECH_FORM") == "whole":
        tasks = [Whole(x=i) for i in range(N)]
    else:
        tasks = [Post(fit=Fit(pre=Pre(x=i))) for i in range(N)]
    results = lab.run_tasks(tasks, disable_progress=True, disable_top=True)
    save_results({(t.x if isinstance(t, Whole) else t.fit.pre.x): r["score"]
                  for t, r in results.items()})


if __name__ == "__main__":
    main()
'''.replace("@METRIC@", METRIC)

EXCA_MODELS_SRC = STAGES_SRC + '''
import typing as tp

import exca
import pydantic


class Sweep(pydantic.BaseModel):
    infra: exca.MapInfra = exca.MapInfra()

    @infra.apply(item_uid=str)
    def process(self, items: tp.Iterable[int]) -> tp.Iterator[dict]:
        for x in items:
            model = do_fit(x, do_pre(x))
            _log("post", x)
            yield @METRIC@
'''.replace("@METRIC@", METRIC)

EXCA_MAIN_SRC = '''
import sys

from exca_models import N, Sweep, save_results


def main():
    sweep = Sweep(infra={"folder": sys.argv[1], "cluster": "processpool", "max_jobs": 2})
    xs = list(range(N))
    save_results({x: r["score"] for x, r in zip(xs, sweep.process(xs))})


if __name__ == "__main__":
    main()
'''


@dataclass(frozen=True)
class Tool:
    """One tool's sweep: its source files, how to run it, where its results are."""

    name: str
    files: dict[str, str]
    script: str  # the file run (dagrun: the workflow file)
    ours: bool  # runs in dagrun's environment, not the peers'

    def argv(self, python: str, work: Path, extra: tuple[str, ...] = ()) -> list[str]:
        """The command that runs (or re-runs) the whole sweep in ``work``."""
        state = str(work / "state")
        if self.ours:
            return [python, "-m", "dagrun", "execute", str(work / self.script), "--out", state,
                    "-q", *extra]
        return [python, str(work / self.script), state, *extra]

    def write(self, work: Path) -> None:
        """Write the tool's source files into ``work``."""
        work.mkdir(parents=True, exist_ok=True)
        for name, text in self.files.items():
            (work / name).write_text(text)

    def edit_metric(self, work: Path) -> None:
        """Change the metric line in place, as a user editing ``post`` would."""
        for name, text in self.files.items():
            if METRIC in text:
                path = work / name
                path.write_text(path.read_text().replace(METRIC, EDITED_METRIC))

    def results(self, work: Path) -> dict[int, float]:
        """Scores by config as the tool left them (empty when it left none)."""
        if self.ours:
            path = work / "state" / "results.jsonl"
            if not path.is_file():
                return {}
            lines = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
            return {int(r["x"]): float(r["scores"]["mean_score"]) for r in lines}
        path = work / "results.json"
        if not path.is_file():
            return {}
        return {int(k): float(v) for k, v in json.loads(path.read_text()).items()}


TOOLS: tuple[Tool, ...] = (
    Tool("dagrun", {"wf.py": DAGRUN_SRC}, "wf.py", ours=True),
    Tool("labtech", {"lt.py": LABTECH_SRC}, "lt.py", ours=False),
    Tool("exca", {"exca_models.py": EXCA_MODELS_SRC, "exca_main.py": EXCA_MAIN_SRC},
         "exca_main.py", ours=False),
)


def expected(n: int, edited: bool = False) -> dict[int, float]:
    """The scores an uninterrupted sweep of ``n`` configs gives."""
    return {x: 2.0 * (3 * x + 1) + (1000.0 if edited else 0.0) for x in range(n)}


def by_name(name: str) -> Tool:
    """The tool called ``name``."""
    for tool in TOOLS:
        if tool.name == name:
            return tool
    sys.exit(f"unknown tool {name!r}; known: {', '.join(t.name for t in TOOLS)}")
