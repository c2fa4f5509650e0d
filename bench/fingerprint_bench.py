"""Code fingerprints of a workflow that imports 50 modules of the user's own.

``make_repo`` writes a package of generated modules (constants, a class with a property and
a decorated method, a registry, helpers calling into the previous module) and a workflow whose
stages reach all of them; ``CHILD`` imports it in a fresh interpreter and times
``fingerprint`` of the three stages: the first time (every file parsed) and again (parsed
files and per-code analysis cached). Used by ``bench/run.py`` (table "Code fingerprints").
"""

from __future__ import annotations

import textwrap
from pathlib import Path

MODULE = '''
"""Generated module {i}."""

import functools

from fpbench import {prev} as previous

SCALE_{i} = {i} + 1
DERIVED_{i} = SCALE_{i} * 2
REGISTRY = {{}}


def register(name):
    def deco(fn):
        REGISTRY[name] = fn
        return fn
    return deco


def timed(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


class Model{i}:
    """A model."""

    def __init__(self, lr=0.5):
        self.lr = lr

    @property
    def rate(self):
        return self.lr * DERIVED_{i}

    @timed
    def step(self, x):
        return helper(x) * self.rate


@register("a")
def make_a(x):
    return x + SCALE_{i}


@functools.lru_cache(maxsize=None)
def cached(x):
    return x * 2


def helper(x):
    return cached(x) + make_a(x)


def run(x):
    return previous.run(Model{i}().step(x)) if {i} else Model{i}().step(x)
'''

WORKFLOW = '''
from fpbench import {last} as top


def pre(cfg):
    return cfg["x"]


def fit(cfg, x):
    return top.run(x)


def post(cfg, y):
    return {{"y": y}}


basecfg = {{"out_path": "out"}}
cfgs = [{{"x": 1}}]
'''

CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from dagrun.code.workflow import import_workflow_file
from dagrun.code.fingerprint import fingerprint
wf = import_workflow_file(sys.argv[1] + "/wf.py")
stages = (wf.pre, wf.fit, wf.post)
t = time.perf_counter()
first = [fingerprint(s) for s in stages]
cold = time.perf_counter() - t
t = time.perf_counter()
again = [fingerprint(s) for s in stages]
warm = time.perf_counter() - t
assert first == again
print(json.dumps({"cold": cold, "warm": warm}))
"""


def make_repo(folder: Path, modules: int = 50) -> Path:
    """Write the package ``fpbench`` of ``modules`` modules and ``wf.py`` into ``folder``."""
    package = folder / "fpbench"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    for i in range(modules):
        prev = f"mod_{max(i - 1, 0):02d}"
        (package / f"mod_{i:02d}.py").write_text(
            textwrap.dedent(MODULE).format(i=i, prev=prev))
    workflow = folder / "wf.py"
    workflow.write_text(textwrap.dedent(WORKFLOW).format(last=f"mod_{modules - 1:02d}"))
    return workflow
