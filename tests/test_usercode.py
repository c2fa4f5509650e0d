"""What counts as the user's code, what of it is copied, and the check that the code loaded
in a process is the code its file holds (units of dagrun.code.usercode, .copying and
.staleness; the end-to-end shapes are in test_shapes.py)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagrun.code import copying, staleness, usercode
from dagrun.code.copying import Hasher, Limits
from dagrun.code.usercode import Rule, Top
from dagrun.errors import ConfigError, UsageError
from tests.helpers import read_jsonl, run_dagrun, write_workflow


def _top(path: Path, package: bool = True) -> Top:
    real = os.path.realpath(path)
    return Top(path.name.split(".")[0], real, os.path.dirname(real), package)


def _dist(folder: Path, name: str, record: str, editable: bool = False) -> None:
    meta = folder / f"{name}-1.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "RECORD").write_text(record)
    if editable:
        (meta / "direct_url.json").write_text(json.dumps(
            {"url": "file:///src", "dir_info": {"editable": True}}))
    usercode.installed_tops.cache_clear()


# --------------------------------------------------------------------------------------------
# User code or library.

def test_site_directories_hold_libraries_and_other_folders_user_code(tmp_path: Path) -> None:
    import numpy

    assert not usercode.is_users(usercode.top_of("numpy", numpy), Rule())  # type: ignore[arg-type]
    (tmp_path / "mine").mkdir()
    assert usercode.is_users(_top(tmp_path / "mine"), Rule())
    assert not usercode.is_users(_top(tmp_path / "json"), Rule())  # the standard library's name
    assert not usercode.is_users(_top(tmp_path / "dagrun"), Rule())


def test_a_folder_with_an_installed_distribution_holds_a_library(tmp_path: Path) -> None:
    """``pip install --target DIR`` / a vendored folder on PYTHONPATH: what its
    distributions list is a library; what they do not list beside it is the user's."""
    for name in ("vendored", "_speedups", "mine"):
        (tmp_path / name).mkdir()
    _dist(tmp_path, "vendored", "vendored/__init__.py,,\n_speedups.cpython-311-x86_64-linux-"
          "gnu.so,,\nvendored-1.0.dist-info/RECORD,,\n../../bin/tool,,\n")
    assert not usercode.is_users(_top(tmp_path / "vendored"), Rule())
    assert not usercode.is_users(_top(tmp_path / "_speedups"), Rule())
    assert usercode.is_users(_top(tmp_path / "mine"), Rule())


def test_an_editable_install_is_the_users_code(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    _dist(tmp_path, "proj", "proj/__init__.py,,\n", editable=True)
    assert usercode.is_users(_top(tmp_path / "proj"), Rule())


def test_include_and_exclude_override_the_rule(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "vendored").mkdir()
    (tmp_path / "mine").mkdir()
    _dist(tmp_path, "vendored", "vendored/__init__.py,,\n")
    rule = Rule.of({"include": ["vendored"], "exclude": ["mine"]})
    assert usercode.is_users(_top(tmp_path / "vendored"), rule)
    assert not usercode.is_users(_top(tmp_path / "mine"), rule)
    monkeypatch.setenv(usercode.EXCLUDE_ENV, "vendored, other")
    assert Rule.of(None).exclude == ("vendored", "other")
    with pytest.raises(ConfigError, match=r"basecfg\['code'\]\['include'\] must be a list"):
        Rule.of({"include": "vendored"})
    with pytest.raises(ConfigError, match="max_total_mb"):
        Limits.of({"max_total_mb": 0})


# --------------------------------------------------------------------------------------------
# What is copied.

def _package(root: Path) -> Path:
    pkg = root / "pkg"
    for rel, text in {"__init__.py": "", "models/a.py": "A = 1\n", "data/x.json": "{}",
                      ".git/HEAD": "ref", "__pycache__/m.pyc": "", "sub/.venv/pyvenv.cfg": "",
                      "venv/pyvenv.cfg": "home = /usr\n", "venv/lib/big.py": "",
                      "out/0/fit.done": "{}", "notes/big.bin": "x" * 3000}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    return pkg


def test_a_package_is_copied_whole_but_never_vcs_caches_venvs_or_out(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    avoid = (os.path.join(os.path.realpath(pkg / "out"), ""),)
    limits = Limits(max_file=2000, max_total=1 << 20)
    got = copying.collect([_top(pkg)], {}, Rule(), limits, Hasher(str(tmp_path / "code")),
                          avoid, {})
    assert sorted(got.files) == ["pkg/__init__.py", "pkg/data/x.json", "pkg/models/a.py"]
    assert got.skipped == [("pkg/notes/big.bin", 3000)]
    excluded = copying.collect([_top(pkg)], {}, Rule(exclude=("pkg/data", "pkg/*/a.py")),
                               limits, Hasher(str(tmp_path / "code")), avoid, {})
    assert sorted(excluded.files) == ["pkg/__init__.py"]


def test_a_copy_over_the_limit_is_refused_naming_the_biggest_folder(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    (pkg / "weights").mkdir()
    (pkg / "weights" / "w.py").write_text("#" * 5000)
    with pytest.raises(UsageError, match=r"more than 0 MB \(largest: pkg/weights .*'exclude': "
                                         r"\['pkg/weights'\]"):
        copying.collect([_top(pkg)], {}, Rule(), Limits(max_file=1 << 20, max_total=4000),
                        Hasher(str(tmp_path / "code")), (), {})


def test_unchanged_files_are_stored_once_and_an_edit_adds_one_blob(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    code = tmp_path / "state" / "code"

    def plan() -> str:
        hasher = Hasher(str(code))
        got = copying.collect([_top(pkg)], {}, Rule(), Limits(), hasher, (), {})
        folder = str(code / got.digest())
        copying.write(got, str(code), folder)
        hasher.save()
        return folder

    first = plan()
    blobs = set(os.listdir(code / "files"))
    assert plan() == first and set(os.listdir(code / "files")) == blobs
    (pkg / "models" / "a.py").write_text("A = 2\n")
    second = plan()
    assert second != first and not os.path.exists(first)  # the earlier tree is pruned
    assert len(set(os.listdir(code / "files")) - blobs) == 1
    assert (Path(second) / "pkg" / "models" / "a.py").read_text() == "A = 2\n"
    empty = hashlib.sha256(b"").hexdigest()  # pkg/__init__.py: a hard link to its blob
    assert os.stat(Path(second) / "pkg" / "__init__.py").st_ino == \
        os.stat(code / "files" / empty).st_ino


def test_a_file_edited_between_hashing_and_copying_is_refused(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    code = tmp_path / "code"
    got = copying.collect([_top(pkg)], {}, Rule(), Limits(), Hasher(str(code)), (), {})
    (pkg / "models" / "a.py").write_text("A = 3\n")
    with pytest.raises(UsageError, match="changed while the sweep was being planned"):
        copying.write(got, str(code), str(code / got.digest()))


def test_the_size_limit_and_exclusions_work_from_basecfg(tmp_path: Path) -> None:
    """End to end: ``basecfg['code']`` leaves a data folder out of the copy."""
    pkg = tmp_path / "lab"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("def twice(x):\n    return 2 * x\n")
    (pkg / "data" / "table.csv").write_text("a,b\n" * 10)
    wf = write_workflow(tmp_path, """
        import lab

        def pre(cfg):
            return cfg["x"]

        def fit(cfg, x):
            return lab.twice(x)

        def post(cfg, y):
            return {"y": y}

        basecfg = {"out_path": "out", "backend": "multiprocessing", "verbose": False,
                   "code": {"exclude": ["lab/data"], "max_total_mb": 1}}
        cfgs = [{"x": 1}, {"x": 2}]
        """, name="wf.py")
    result = run_dagrun("execute", wf, cwd=tmp_path)
    assert result.rc == 0, result.stderr
    assert [line["scores"]["mean_y"] for line in read_jsonl(tmp_path / "out" / "results.jsonl")] \
        == [2, 4]
    trees = [p for p in (tmp_path / "out" / ".dagrun" / "code").iterdir()
             if p.is_dir() and p.name != "files"]
    assert [p.relative_to(trees[0]).as_posix() for p in sorted(trees[0].rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts] == \
        ["dagrun_workflow_wf.py", "lab/__init__.py"]


def test_a_bad_code_key_is_one_clear_error(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, """
        def pre(cfg): return 1
        def fit(cfg, x): return x
        def post(cfg, y): return {}
        basecfg = {"out_path": "out", "code": {"exclude": "lab"}}
        cfgs = [{}]
        """, name="wf.py")
    result = run_dagrun("execute", wf, cwd=tmp_path)
    assert result.rc == 2
    assert "basecfg['code']['exclude'] must be a list" in result.stderr


# --------------------------------------------------------------------------------------------
# The code loaded in this process is the code its file holds.

MODULE = '''
import dataclasses
import functools

SCALE = 2
NAMES = ("a", "b")


def deco(fn):
    @functools.wraps(fn)
    def wrapper(*a):
        return fn(*a)
    return wrapper


@dataclasses.dataclass
class Opt:
    lr: float = 0.1

    @property
    def double(self):
        return 2 * self.lr

    def step(self, x):
        return x * self.lr


@deco
def decorated(x):
    return x + 1


@functools.lru_cache
def cached(x):
    return x * SCALE


def make(k):
    def inner(x):
        return x * k
    return inner


scaled = make(3)
square = lambda x: x * x  # noqa: E731
'''


@pytest.fixture
def loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[Path, types.ModuleType]]:
    name = f"stale_probe_{time.monotonic_ns()}"
    path = tmp_path / f"{name}.py"
    path.write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    yield path, module
    sys.modules.pop(name, None)


def test_the_same_code_is_never_called_stale(loaded: tuple[Path, types.ModuleType]) -> None:
    """Dataclasses (generated methods), decorators, lru_cache, closures, properties and
    lambdas, a touched file, a comment and blank lines added above: all the same code."""
    path, module = loaded
    assert staleness.difference(module, path.read_bytes(), str(path)) is None
    moved = "# a comment\n\n\n" + MODULE.replace("    return x + 1", "    return x + 1  # !")
    assert staleness.difference(module, moved.encode(), str(path)) is None


@pytest.mark.parametrize(("old", "new", "what"), [
    ("return x + 1", "return x + 2", "decorated differs"),
    ("return x * self.lr", "return x / self.lr", "Opt.step differs"),
    ("return 2 * self.lr", "return 3 * self.lr", "Opt.double differs"),
    ("return x * k", "return x * k * 2", "make differs"),
    ("SCALE = 2", "SCALE = 3", "SCALE is 2 in memory, 3 in the file"),
    ("return x * SCALE", "return x * SCALE * 2", "cached differs"),
])
def test_an_edit_after_loading_is_found(loaded: tuple[Path, types.ModuleType], old: str,
                                        new: str, what: str) -> None:
    path, module = loaded
    edited = MODULE.replace(old, new).encode()
    assert staleness.difference(module, edited, str(path)) == what


def test_only_files_modified_after_the_process_started_are_compiled(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("X = 1\n")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    assert not staleness.suspect(str(path))
    now = time.time()
    os.utime(path, (now, now))
    assert staleness.suspect(str(path))


def _asserts_something(x: int) -> int:
    assert x > 0, "positive"
    return x


def test_a_module_whose_asserts_pytest_rewrote_is_its_file() -> None:
    """pytest loads test modules and conftest files with their ``assert`` statements
    rewritten: compared with its plain compilation, this very module would look edited
    whenever its file is newer than the process (a fresh clone tested at once)."""
    module = sys.modules[__name__]
    path = str(module.__file__)
    data = Path(path).read_bytes()
    assert staleness.difference(module, data, path) is None
    edited = data.replace(b'assert x > 0, "positive"', b'assert x > 1, "positive"')
    assert staleness.difference(module, edited, path) == "_asserts_something differs"
