"""The code a sweep was planned with: a copy of the workflow file and the user's own modules.

At plan time dagrun copies the workflow file (the file given to ``dagrun execute``, or the
script that called ``run_experiments`` as ``python wf.py``) and every module it imported that
is the user's own (its file lies under the workflow's folder or the current folder, never
under ``sys.prefix``/``sys.base_prefix``, never dagrun itself) into
``OUT/.dagrun/code/<digest>/``. The workflow file is stored under a stable module name
(``dagrun_workflow_<stem>.py``) and user modules under their own dotted names.

Every process that runs stages imports that copy as a real module (``activate``): the
driver's own children, pool workers, Ray tasks, ssh hosts and ``dagrun worker``. So module
level code (``logging.basicConfig``, seeding, constants) runs there as it does in the driver,
functions of the workflow are importable by name (a stage's own process pool works), and the
sweep runs the code it was planned with even when files are edited while it runs. Modules a
stage imports lazily (inside a function) are not copied: they are imported from the user's
folder, which stays on ``sys.path`` behind the copy.

While a copy is imported, ``run_experiments`` does not start a sweep (a script without an
``if __name__ == "__main__":`` guard stops there); names bound only inside that block are
recorded, so a stage that needs one fails with a message saying why.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import shutil
import sys
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from dagrun.code.fingerprint import library_roots
from dagrun.disk import atomic
from dagrun.disk.layout import CODE_DIR
from dagrun.errors import UsageError

_importing = False  # True while a workflow file or its copy is being imported


class SnapshotImportStop(BaseException):
    """Raised by ``run_experiments`` when it is called while a workflow file is imported:
    the import stops there. Where stages run, that is fine (the functions defined above the
    call are what they need); in ``dagrun execute`` it is the user's mistake, said so."""


def check_not_importing() -> None:
    """Called by ``run_experiments``: stop an import of the workflow that reaches it."""
    if _importing:
        raise SnapshotImportStop


def module_name(path: str) -> str:
    """The stable module name of a workflow file: ``dagrun_workflow_<stem>``."""
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    return f"dagrun_workflow_{stem}"


@dataclass(frozen=True)
class Snapshot:
    """Where a sweep's code lives: everything a process needs to import it (plain data, so
    it can be read before any of the user's classes can be unpickled)."""

    folder: str  # OUT/.dagrun/code/<digest> as the planning driver saw it
    module: str  # the workflow file's module name inside ``folder``
    source: str  # the workflow file the copy was taken from
    sys_path: tuple[str, ...] = ()  # the user's folders, searched after the copy
    main_only: tuple[str, ...] = ()  # names bound only in the ``__main__`` block
    # module name -> (file inside the copy, the user's file it was copied from)
    modules: tuple[tuple[str, str, str], ...] = ()

    def relocated(self, state_dir: str) -> Snapshot:
        """The same snapshot seen from another mount of OUT (``state_dir`` = OUT/.dagrun)."""
        folder = os.path.join(state_dir, CODE_DIR, os.path.basename(self.folder))
        return dataclasses.replace(self, folder=folder)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``workflow.pkl``'s first layer."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls(data["folder"], data["module"], data["source"], tuple(data["sys_path"]),
                   tuple(data["main_only"]), tuple(tuple(m) for m in data.get("modules", ())))

    def explain(self, exc: BaseException) -> str | None:
        """Why a stage's ``NameError`` happened, when the name exists only under ``__main__``."""
        name = getattr(exc, "name", None)
        if isinstance(exc, NameError) and name in self.main_only:
            base = os.path.basename(self.source)
            return (f"name {name!r} is set only inside the `if __name__ == \"__main__\":` "
                    f"block of {base}, which does not run where stages run (workers import "
                    "the file as a module); set it at module level or pass it in the cfg")
        return None


@dataclass
class Collected:
    """Files to copy: module file name inside the snapshot -> source text."""

    files: dict[str, bytes] = field(default_factory=dict)

    def digest(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        return h.hexdigest()[:16]


def _user_modules(folders: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(dotted name, file) of imported modules whose source lies under ``folders``."""
    excluded = library_roots()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py") or name == "__main__" or name.startswith(
                ("dagrun_workflow_", "dagrun.")):
            continue
        real = os.path.realpath(path)
        if real.startswith(excluded) or not real.startswith(folders):
            continue
        yield name, real


def _relative_file(name: str, path: str) -> str | None:
    """Where module ``name`` (file ``path``) goes in the snapshot: ``pkg/mod.py``."""
    parts = name.split(".")
    if os.path.basename(path) == "__init__.py":
        rel = os.path.join(*parts, "__init__.py")
    else:
        rel = os.path.join(*parts[:-1], parts[-1] + ".py")
    return rel if path.endswith(os.sep + rel) or path == rel else None


def main_only_names(source: str) -> tuple[str, ...]:
    """Names bound inside ``if __name__ == "__main__":`` and nowhere else at module level."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ()
    inside: set[str] = set()
    outside: set[str] = set()
    for node in tree.body:
        target = inside if _is_main_guard(node) else outside
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                target.add(sub.id)
            elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                target.add(sub.name)
            elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                target.update((a.asname or a.name).split(".")[0] for a in sub.names)
    return tuple(sorted(inside - outside))


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    parts = [node.test.left, *node.test.comparators]
    names = {p.id for p in parts if isinstance(p, ast.Name)}
    consts = {p.value for p in parts if isinstance(p, ast.Constant)}
    return names == {"__name__"} and "__main__" in consts


def script_of(functions: Iterable[Any]) -> str | None:
    """The script run as ``python wf.py`` that defines a stage function, if any."""
    main = sys.modules.get("__main__")
    path = str(getattr(main, "__file__", None) or "")
    if not path or not os.path.isfile(path):
        return None
    if any(getattr(fn, "__module__", None) == "__main__" for fn in functions):
        return os.path.abspath(path)
    return None


def collect(source: str) -> tuple[Collected, Snapshot]:
    """Read the workflow file and the user's modules imported now; nothing is written."""
    source = os.path.abspath(source)
    folder = os.path.dirname(source)
    roots = tuple(os.path.join(os.path.realpath(p), "") for p in {folder, os.getcwd()})
    collected = Collected()
    name = module_name(source)
    with open(source, "rb") as f:
        text = f.read()
    collected.files[f"{name}.py"] = text
    modules = [(name, f"{name}.py", source)]
    for mod, path in _user_modules(roots):
        if os.path.realpath(path) == os.path.realpath(source):
            continue
        rel = _relative_file(mod, path)
        if rel is None:
            continue
        try:
            with open(path, "rb") as f:
                collected.files[rel] = f.read()
        except OSError:
            continue
        modules.append((mod, rel, path))
    main_only = main_only_names(text.decode("utf-8", "replace"))
    snap = Snapshot("", name, source, (folder,), main_only, tuple(sorted(modules)))
    return collected, snap


def placed(snap: Snapshot, collected: Collected, state_dir: str) -> Snapshot:
    """``snap`` with its folder: ``state_dir/code/<digest of the files>``."""
    return dataclasses.replace(snap, folder=os.path.join(state_dir, CODE_DIR, collected.digest()))


def write(snap: Snapshot, collected: Collected) -> None:
    """Write the copy (once per content: the folder name is its digest) and remove older
    copies; a folder appears complete or not at all (written aside, then renamed)."""
    if not os.path.isdir(snap.folder):
        parent = os.path.dirname(snap.folder)
        atomic.makedirs(parent)
        tmp = f"{snap.folder}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for rel, data in collected.files.items():
            path = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic.write_bytes(path, data)
        try:
            os.rename(tmp, snap.folder)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not os.path.isdir(snap.folder):
                raise
    _prune(os.path.dirname(snap.folder), keep=os.path.basename(snap.folder))


def _prune(code_dir: str, keep: str) -> None:
    """Remove copies of earlier plans. A worker still running one has imported it already."""
    try:
        names = os.listdir(code_dir)
    except OSError:
        return
    for name in names:
        if name != keep:
            shutil.rmtree(os.path.join(code_dir, name), ignore_errors=True)


def put_on_path(snap: Snapshot) -> None:
    """The copy first on ``sys.path``, the user's folders behind it (lazy imports)."""
    wanted = [snap.folder, *snap.sys_path]
    sys.path[:] = wanted + [p for p in sys.path if p not in wanted]


def activate(snap: Snapshot) -> ModuleType:
    """Import the copy of the workflow (once per process); returns its module.

    Its ``__main__`` block is not run; a top-level ``run_experiments`` call stops the import
    there. Errors become a one-line ``UsageError`` naming the file and line.
    """
    put_on_path(snap)
    _install_finder(snap)
    path = os.path.join(snap.folder, f"{snap.module}.py")
    loaded = sys.modules.get(snap.module)
    spec = getattr(loaded, "__spec__", None)
    if loaded is not None and getattr(getattr(spec, "loader", None), "path", None) == path:
        return loaded  # this copy is imported already (a worker serving the same sweep)
    return import_file(path, snap.module, shown=os.path.basename(snap.source),
                       origin=snap.source)


class _CopyFinder(importlib.abc.MetaPathFinder):
    """Finds the user's modules of a snapshot in the copy, while their ``__file__`` stays the
    user's file (code that locates data next to itself keeps working)."""

    def __init__(self, snap: Snapshot) -> None:
        self.files = {mod: (os.path.join(snap.folder, rel), orig)
                      for mod, rel, orig in snap.modules}

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        found = self.files.get(fullname)
        if found is None or not os.path.isfile(found[0]):
            return None
        return _spec(fullname, found[0], found[1])


def _spec(name: str, copy: str, origin: str) -> importlib.machinery.ModuleSpec:
    """A spec that loads ``copy`` but names ``origin`` as the module's ``__file__``."""
    package = os.path.basename(copy) == "__init__.py"
    spec = importlib.util.spec_from_file_location(
        name, copy, submodule_search_locations=[os.path.dirname(copy)] if package else None)
    if spec is None:
        raise ImportError(f"cannot load {copy}")
    spec.origin = origin
    spec.cached = None
    return spec


def _install_finder(snap: Snapshot) -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _CopyFinder)]
    sys.meta_path.insert(0, _CopyFinder(snap))


def import_file(path: str, name: str, shown: str | None = None, *,
                driver: bool = False, origin: str | None = None) -> ModuleType:
    """Import ``path`` as module ``name`` (in ``sys.modules``), without its ``__main__``
    block; every way it can fail becomes a one-line ``UsageError``. In the ``driver``
    (``dagrun execute``) a top-level ``run_experiments`` call is a ``UsageError`` too."""
    global _importing
    spec = _spec(name, path, origin) if origin else \
        importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    shown = shown or os.path.basename(path)
    _importing = True
    try:
        spec.loader.exec_module(module)
    except SnapshotImportStop as exc:
        if driver:
            del sys.modules[name]
            raise UsageError(
                f"{shown} calls run_experiments while being loaded{_user_frame(exc, path)}: "
                "`dagrun execute` loads the file and runs the sweep itself; put that call "
                f"under `if __name__ == \"__main__\":` (or run `python {shown}`)") from None
        # where stages run: the import stops there, the functions above it are loaded
    except SyntaxError as exc:
        del sys.modules[name]
        raise UsageError(f"syntax error in {exc.filename}, line {exc.lineno}: {exc.msg}") from exc
    except Exception as exc:
        del sys.modules[name]
        raise UsageError(f"{shown} raised {type(exc).__name__} while loading"
                         f"{_user_frame(exc, path)}: {exc}") from exc
    finally:
        _importing = False
    return module


def _user_frame(exc: BaseException, path: str) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    return f" (line {frames[-1].lineno})" if frames else ""
