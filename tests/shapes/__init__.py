"""A corpus of small fake research repositories, shaped like the code users really run.

Each builder writes one repository into a folder and returns a ``Repo``: where it is, the
command that runs its sweep, the environment that command needs, and where its results go.
Tests run dagrun's features against every shape (``ALL``); a new feature gets tried on all
of them, not only on the flat ``wf.py`` of its own tests.

* ``registry``: a package with a registry importing its models lazily
  (``importlib.import_module(f".models.{name}", __package__)``), package data read through
  ``importlib.resources``, and a C extension module built in place with the system compiler.
* ``module_run``: ``python -m lab.experiments`` with relative imports, an Enum and a
  dataclass of the script used as cfg values, and a ``pre`` that returns a script class.
* ``script_classes``: the same classes in a flat ``python wf.py``.
* ``src_layout``: ``experiments/wf.py`` using a src-layout package of the user's own,
  installed editable into a virtual environment (a ``.pth`` file and a ``direct_url.json``
  saying ``editable``, as pip writes them).
* ``user_site``: the working folder is the user's home, holding a library installed with
  ``pip install --user`` (its ``.py`` files beside an extension module and its
  ``.dist-info``) that the workflow uses.
* ``argparse_script``: a published-style script parsing ``sys.argv`` at module level and
  calling ``run_experiments`` without a main guard.

The notebook shape (an IPython ``InteractiveShell``) lives in ``tests/test_shapes.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_SITE = sysconfig.get_paths()["purelib"]


@dataclass(frozen=True)
class Repo:
    """A fake repository: how to run its sweep, and what its results must be."""

    name: str
    root: Path
    argv: list[str]  # the command that runs the sweep (in ``cwd``)
    cwd: Path
    out: Path
    expected: dict[int, float]  # experiment id -> metric "y" when the code ran as planned
    env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable
    backend_arg: str = "backend"  # how the command picks its backend: a cfg key via argv

    def command(self, backend: str) -> list[str]:
        return [*self.argv, f"--{self.backend_arg}", backend]


def _code(*parts: str) -> str:
    """Source made of ``parts``, each dedented on its own."""
    return "\n".join(textwrap.dedent(p).strip("\n") for p in parts) + "\n"


def _write(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def build_extension(folder: Path, name: str, body: str) -> Path:
    """Compile ``name`` (C source ``body``: a module with one function ``twice``) in
    ``folder`` with the system compiler; returns the extension module's file."""
    src = folder / f"{name}.c"
    src.write_text(textwrap.dedent(body))
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = folder / f"{name}{suffix}"
    include = sysconfig.get_paths()["include"]
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", f"-I{include}", str(src), "-o",
                    str(target)], check=True, capture_output=True, timeout=120)
    src.unlink()
    return target


C_TWICE = """
#include <Python.h>
static PyObject *twice(PyObject *self, PyObject *arg) {
    double x = PyFloat_AsDouble(arg);
    if (x == -1.0 && PyErr_Occurred()) return NULL;
    return PyFloat_FromDouble(2.0 * x);
}
static PyMethodDef methods[] = {{"twice", twice, METH_O, "2 x"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "%s", NULL, -1, methods};
PyMODINIT_FUNC PyInit_%s(void) { return PyModule_Create(&mod); }
"""


def _ext(folder: Path, name: str) -> Path:
    return build_extension(folder, name, C_TWICE % (name, name))


STAGES_TAIL = """
def post(cfg, y):
    return {"y": y}
"""


def registry(base: Path) -> Repo:
    root = base / "registry-repo"
    _write(root, {
        "labkit/__init__.py": """
            from labkit.registry import get
            """,
        "labkit/registry.py": """
            import importlib

            def get(name):
                return importlib.import_module(f".models.{name}", "labkit").build
            """,
        "labkit/models/__init__.py": "",
        "labkit/models/linear.py": """
            import json
            from importlib import resources

            def build():
                scale = json.loads(resources.files("labkit").joinpath(
                    "data/scale.json").read_text())["scale"]
                from labkit import _ops
                return lambda x: _ops.twice(x) * scale
            """,
        "labkit/data/scale.json": '{"scale": 10}\n',
        "run.py": _code("""
            import sys
            import labkit
            from dagrun import run_experiments

            def pre(cfg):
                return cfg["x"]

            def fit(cfg, x):
                return labkit.get(cfg["model"])()(x)
            """, STAGES_TAIL, """
            if __name__ == "__main__":
                backend = sys.argv[sys.argv.index("--backend") + 1]
                run_experiments({"pre": pre, "fit": fit, "post": post, "out_path": "out",
                 "backend": backend, "num_cpus": 2,
                                 "verbose": False},
                                [{"x": float(i), "model": "linear"} for i in range(3)])
            """),
    })
    _ext(root / "labkit", "_ops")
    return Repo("registry", root, [sys.executable, "run.py"], root, root / "out",
                {i: 20.0 * i for i in range(3)})


CLASSES = """
import dataclasses
import enum
import sys

from dagrun import run_experiments
# FACTOR

class Mode(enum.Enum):
    SLOW = 1
    FAST = 10

@dataclasses.dataclass
class Opt:
    lr: float = 0.1

class Prepared:
    def __init__(self, x):
        self.x = x

def pre(cfg):
    if not isinstance(cfg["opt"], Opt):
        raise TypeError(f"the cfg's Opt is a {type(cfg['opt'])}, not this module's Opt")
    return Prepared(cfg["x"])

def fit(cfg, prepared):
    if not isinstance(prepared, Prepared):
        return -1.0  # as a user's `isinstance` branch would: a silently other result
    speed = 10 if cfg["mode"] is Mode.FAST else 1
    return prepared.x * FACTOR * speed * cfg["opt"].lr

def post(cfg, y):
    return {"y": y}

def _flag(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default

if __name__ == "__main__":
    run_experiments({"pre": pre, "fit": fit, "post": post, "out_path": "out",
                     "backend": _flag("--backend", "single"), "num_cpus": 2,
                     "timeout": float(_flag("--timeout", 0)), "verbose": False},
                    [{"x": float(i), "mode": Mode.FAST, "opt": Opt(lr=2.0)}
                     for i in range(3)])
"""


def module_run(base: Path) -> Repo:
    root = base / "module-repo"
    _write(root, {
        "lab/__init__.py": "",
        "lab/common.py": "FACTOR = 3\n",
        "lab/experiments.py": CLASSES.replace("# FACTOR", "from .common import FACTOR"),
    })
    return Repo("module_run", root, [sys.executable, "-m", "lab.experiments"], root,
                root / "out", {i: 60.0 * i for i in range(3)})


def script_classes(base: Path) -> Repo:
    """``python wf.py`` whose cfgs hold an Enum member and a dataclass of the script."""
    root = base / "classes-repo"
    _write(root, {"wf.py": CLASSES.replace("# FACTOR", "FACTOR = 3")})
    return Repo("script_classes", root, [sys.executable, "wf.py"], root, root / "out",
                {i: 60.0 * i for i in range(3)})


def make_venv(folder: Path, user_site: bool = False) -> Path:
    """A virtual environment (no pip) that sees this test environment's packages and
    dagrun through a ``.pth`` file; ``user_site``: with the user site enabled (as a
    system interpreter has it). Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip",
                    *(["--system-site-packages"] if user_site else []), str(folder)],
                   check=True, capture_output=True, timeout=120)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, capture_output=True, text=True,
                             timeout=60).stdout.strip()
    Path(purelib, "_dagrun_tests.pth").write_text(f"{_SITE}\n{REPO_ROOT}\n")
    return python


def src_layout(base: Path) -> Repo:
    root = base / "src-repo"
    _write(root, {
        "src/tools/__init__.py": "",
        "src/tools/scale.py": """
            def scale(x):
                return 7 * x
            """,
        "experiments/wf.py": _code("""
            import sys
            from tools.scale import scale
            from dagrun import run_experiments

            def pre(cfg):
                return cfg["x"]

            def fit(cfg, x):
                return float(scale(x))
            """, STAGES_TAIL, """
            basecfg = {"pre": pre, "fit": fit, "post": post, "out_path": "out",
                 "num_cpus": 2, "verbose": False}
            cfgs = [{"x": i} for i in range(3)]
            if __name__ == "__main__":
                basecfg["backend"] = sys.argv[sys.argv.index("--backend") + 1]
                run_experiments(basecfg, cfgs)
            """),
    })
    python = make_venv(root / "venv")
    purelib = next((root / "venv" / "lib").glob("python*/site-packages"))
    (purelib / "__editable__.tools-0.1.pth").write_text(f"{root / 'src'}\n")
    meta = purelib / "tools-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: tools\nVersion: 0.1\n")
    (meta / "RECORD").write_text("__editable__.tools-0.1.pth,,\ntools-0.1.dist-info/RECORD,,\n")
    (meta / "direct_url.json").write_text(
        f'{{"url": "file://{root}", "dir_info": {{"editable": true}}}}\n')
    return Repo("src_layout", root, [str(python), "wf.py"], root / "experiments",
                root / "experiments" / "out", {i: 7.0 * i for i in range(3)},
                python=str(python))


def user_site(base: Path) -> Repo:
    home = base / "home"
    python = make_venv(base / "sysvenv", user_site=True)
    userbase = home / ".local"
    site = userbase / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / \
        "site-packages"
    _write(site, {
        "fastlib/__init__.py": """
            from fastlib._native import twice
            """,
    })
    native = _ext(site / "fastlib", "_native")
    meta = site / "fastlib-1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: fastlib\nVersion: 1.0\n")
    (meta / "RECORD").write_text(f"fastlib/__init__.py,,\nfastlib/{native.name},,\n"
                                 "fastlib-1.0.dist-info/RECORD,,\n")
    _write(home, {
        "wf.py": _code("""
            import sys
            import fastlib
            from dagrun import run_experiments

            def pre(cfg):
                return cfg["x"]

            def fit(cfg, x):
                return fastlib.twice(x)
            """, STAGES_TAIL, """
            if __name__ == "__main__":
                backend = sys.argv[sys.argv.index("--backend") + 1]
                run_experiments({"pre": pre, "fit": fit, "post": post, "out_path": "out",
                 "backend": backend, "num_cpus": 2,
                                 "verbose": False}, [{"x": float(i)} for i in range(3)])
            """),
    })
    return Repo("user_site", home, [str(python), "wf.py"], home, home / "out",
                {i: 2.0 * i for i in range(3)}, env={"PYTHONUSERBASE": str(userbase),
                                                     "HOME": str(home)},
                python=str(python))


ARGPARSE_SCRIPT = _code("""
import argparse
from dagrun import run_experiments

parser = argparse.ArgumentParser()
parser.add_argument("--scale", type=float, required=True)
parser.add_argument("--backend", default="single")
args = parser.parse_args()


def pre(cfg):
    return cfg["x"]


def fit(cfg, x):
    return x * args.scale
""", STAGES_TAIL, """
run_experiments({"pre": pre, "fit": fit, "post": post, "out_path": "out",
                 "backend": args.backend, "num_cpus": 2,
                 "verbose": False}, [{"x": float(i)} for i in range(3)])
""")


def argparse_script(base: Path) -> Repo:
    root = base / "argparse-repo"
    _write(root, {"train.py": ARGPARSE_SCRIPT})
    return Repo("argparse_script", root, [sys.executable, "train.py", "--scale", "3"], root,
                root / "out", {i: 3.0 * i for i in range(3)})


ALL: dict[str, Callable[[Path], Repo]] = {
    "registry": registry, "module_run": module_run, "script_classes": script_classes,
    "src_layout": src_layout,
    "user_site": user_site, "argparse_script": argparse_script,
}


def env_for(repo: Repo) -> dict[str, str]:
    """The environment a repo's command runs in: ours, plus the repo's own."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(repo.env)
    return env
