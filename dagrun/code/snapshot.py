"""The code a sweep was planned with: a copy of the user's code, imported under its own names.

At plan time dagrun copies the user's code (``dagrun.code.usercode`` says what that is:
every top-level package or module imported now that is not a library) whole into
``OUT/.dagrun/code/<digest>/`` (``dagrun.code.copying``: every file of a user package,
stored once per content), plus the workflow file when it is a script (``dagrun execute
wf.py`` or ``python wf.py``) as ``dagrun_workflow_<stem>.py``. ``python -m pkg.experiments``
keeps its name: the workflow is ``pkg.experiments`` inside the copied ``pkg``.

Every process that runs stages imports the copy (``activate``): the driver's own children,
pool workers, Ray tasks, ssh hosts, ``dagrun worker`` and ``dagrun resume``. A finder on
``sys.meta_path`` serves every module of a copied package from the copy — submodules a
registry imports lazily, extension modules, package data through ``importlib.resources``
— under its real name, while ``__file__`` names the user's file (code that reads data next
to itself keeps working). The workflow is imported with the script's own ``sys.argv``
(module-level argument parsing sees what it saw in the driver). Modules that are not in the
copy (a top-level module imported only inside a stage) come from the user's folders, which
stay on ``sys.path`` behind the copy.

While a workflow is imported this way, ``run_experiments`` does not start a sweep (a
script without an ``if __name__ == "__main__":`` guard stops there); names bound only
inside that block are recorded, so a stage that needs one fails with a message saying why.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any

from dagrun.code import copying, mainref, staleness
from dagrun.code.copying import Collected, Limits
from dagrun.code.usercode import Rule, Top, real_file, user_tops
from dagrun.disk.layout import CODE_DIR
from dagrun.errors import UsageError
from dagrun.record import asdict, record, replace

_importing = False  # True while a workflow file or its copy is being imported
LAYOUT = 2  # 1: flat copies of imported .py files (on-disk format <= 3); 2: whole packages


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


@record(frozen=True)
class Snapshot:
    """Where a sweep's code lives: everything a process needs to import it (plain data, so
    it can be read before any of the user's classes can be unpickled)."""

    folder: str  # OUT/.dagrun/code/<digest> as the planning driver saw it
    module: str  # the workflow's module name ("" when the sweep has no workflow module)
    source: str  # the workflow file the copy was taken from ("" when none)
    sys_path: tuple[str, ...] = ()  # the user's folders, searched after the copy
    main_only: tuple[str, ...] = ()  # names bound only in the ``__main__`` block
    # layout 1: module name -> (file inside the copy, the user's file it was copied from)
    modules: tuple[tuple[str, str, str], ...] = ()
    # layout 2: top-level name -> (its folder or file inside the copy, the user's original)
    tops: tuple[tuple[str, str, str], ...] = ()
    argv: tuple[str, ...] = ()  # the script's sys.argv, for every process that imports it
    workflow_file: str = ""  # the workflow's file inside the copy, when it is a script
    layout: int = 1

    def relocated(self, state_dir: str) -> Snapshot:
        """The same snapshot seen from another mount of OUT (``state_dir`` = OUT/.dagrun)."""
        folder = os.path.join(state_dir, CODE_DIR, os.path.basename(self.folder))
        return replace(self, folder=folder)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``workflow.pkl``'s first layer."""
        data: dict[str, Any] = asdict(self)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls(data["folder"], data["module"], data["source"], tuple(data["sys_path"]),
                   tuple(data["main_only"]), tuple(tuple(m) for m in data.get("modules", ())),
                   tuple(tuple(t) for t in data.get("tops", ())),
                   tuple(data.get("argv", ())), data.get("workflow_file", ""),
                   data.get("layout", 1))

    def explain(self, exc: BaseException) -> str | None:
        """Why a stage's ``NameError`` happened, when the name exists only under ``__main__``."""
        name = getattr(exc, "name", None)
        if isinstance(exc, NameError) and name in self.main_only:
            base = os.path.basename(self.source)
            return (f"name {name!r} is set only inside the `if __name__ == \"__main__\":` "
                    f"block of {base}, which does not run where stages run (workers import "
                    "the file as a module); set it at module level or pass it in the cfg")
        return None


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


def main_workflow(functions: Iterable[Any]) -> tuple[str, str] | None:
    """(file, module name) of the script run as ``python wf.py`` (or ``python -m
    pkg.experiments``) when it defines a stage function; its module name is
    ``dagrun_workflow_<stem>`` for a script and the dotted name given to ``-m``."""
    main = sys.modules.get("__main__")
    path = str(getattr(main, "__file__", None) or "")
    if not path or not os.path.isfile(path):
        return None
    if not any(getattr(fn, "__module__", None) == "__main__" for fn in functions):
        return None
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if not isinstance(name, str) or name in ("", "__main__"):
        name = module_name(path)
    return os.path.abspath(path), name


@record(frozen=True)
class Request:
    """What to copy: the workflow (if any), the user's overrides and where OUT is."""

    source: str | None  # the workflow file
    module: str | None  # its module name (None: ``module_name(source)``)
    functions: tuple[Callable[..., Any], ...]
    rule: Rule
    limits: Limits
    state_dir: str  # OUT/.dagrun
    avoid: tuple[str, ...]  # folders never copied (OUT), each ending with a separator
    argv: tuple[str, ...]
    from_main: bool = False  # the workflow is this process's ``__main__``


def take(req: Request) -> tuple[Collected, Snapshot]:
    """Read the user's code as it is loaded now (refusing a file edited since it was
    loaded); nothing is written. The snapshot's folder is named by the content."""
    tops = {t.name: t for t in user_tops(sys.modules, req.rule)}
    extra: dict[str, str] = {}
    name, workflow_file, source = req.module or "", "", req.source or ""
    if source:
        # a dotted name (python -m pkg.exp) comes from its copied package, or from the
        # installed package itself when that is a library
        name = name or module_name(source)
        if name.startswith("dagrun_workflow_"):
            workflow_file = f"{name}.py"
            extra[workflow_file] = source
        elif "." not in name and name not in tops:
            tops[name] = Top(name, os.path.realpath(source), os.path.dirname(
                os.path.realpath(source)), False)
    read = _check_loaded(tops.values(), source, name, req)
    code_dir = os.path.join(req.state_dir, CODE_DIR)
    hasher = copying.Hasher(code_dir)
    collected = copying.collect(list(tops.values()), extra, req.rule, req.limits, hasher,
                                req.avoid, read)
    collected.hasher = hasher
    main_only: tuple[str, ...] = ()
    if source:
        with open(source, "rb") as f:
            main_only = main_only_names(f.read().decode("utf-8", "replace"))
    # the workflow's folder: where Python itself looks first for the script's imports
    entries = (os.path.dirname(os.path.abspath(source)),) if source else ()
    snap = Snapshot(os.path.join(code_dir, collected.digest()), name, source, entries,
                    main_only, (), tuple((t.name, os.path.basename(t.path), t.path)
                                        for t in sorted(tops.values(), key=lambda t: t.name)),
                    req.argv, workflow_file, LAYOUT)
    if req.from_main and name:
        mainref.register(name)
    return collected, snap


def _check_loaded(tops: Iterable[Top], source: str, name: str,
                  req: Request) -> dict[str, bytes]:
    """Check every loaded module of the copy that was modified after this process started
    against its file (``dagrun.code.staleness``); returns the bytes read (the copy takes
    exactly those)."""
    roots = tuple(os.path.join(t.path, "") if t.package else t.path for t in tops)
    real_source = os.path.realpath(source) if source else ""
    read: dict[str, bytes] = {}
    for mod_name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not file.endswith(".py"):
            continue
        real = real_file(file)
        ours = real == real_source and mod_name in ("__main__", name)
        if not (ours or (real.startswith(roots) and mod_name != "__main__")):
            continue
        if real in read or not staleness.suspect(real):
            continue
        with open(real, "rb") as f:
            read[real] = f.read()
        staleness.check(module, read[real], real)
    for fn in req.functions:
        staleness.check_function(fn)
    return read


def write(snap: Snapshot, collected: Collected) -> None:
    """Write the copy (once per content) and remove older ones (``dagrun.code.copying``)."""
    copying.write(collected, os.path.dirname(snap.folder), snap.folder)
    if collected.hasher is not None:
        collected.hasher.save()


def put_on_path(snap: Snapshot) -> None:
    """The copy first on ``sys.path``, the user's folders behind it (lazy imports)."""
    wanted = [snap.folder, *snap.sys_path]
    sys.path[:] = wanted + [p for p in sys.path if p not in wanted]


def serve_imports(snap: Snapshot) -> None:
    """In a worker forked from the planning driver (``dagrun.run.forking``): the modules it
    has are the driver's (checked equal to the copy at plan time); every module of the
    user's code it imports from now on comes from the copy, as in a process that
    ``activate`` did (a stage's lazy import of a file edited since)."""
    put_on_path(snap)
    _install(_TreeFinder(snap) if snap.layout >= 2 else _CopyFinder(snap))


def reachable(snap: Snapshot) -> None:
    """In the planning driver: the copy *last* on ``sys.path``, so that processes a stage
    starts here (its own spawn pool) can import the workflow's module by its name, while
    every import of this process — ``importlib.reload`` included — still finds the
    user's files first, as it would without dagrun."""
    if snap.folder in sys.path:
        sys.path.remove(snap.folder)
    sys.path.append(snap.folder)


def activate(snap: Snapshot) -> ModuleType | None:
    """Import the copy of the workflow (once per process); returns its module (``None``
    when the sweep has no workflow module: its stages come from the user's modules).

    Its ``__main__`` block is not run; a top-level ``run_experiments`` call stops the import
    there. Errors become a one-line ``UsageError`` naming the file and line.
    """
    if snap.layout < 2:
        return _activate_flat(snap)
    if snap.argv:
        sys.argv = list(snap.argv)
    put_on_path(snap)
    _install(_TreeFinder(snap))
    if not snap.module:
        return None
    loaded = sys.modules.get(snap.module)
    if loaded is not None and getattr(loaded, "__dagrun_copy__", None) == snap.folder:
        return loaded  # this copy is imported already (a worker serving the same sweep)
    shown = os.path.basename(snap.source)
    if snap.workflow_file:
        path = os.path.join(snap.folder, snap.workflow_file)
        spec = _spec(snap.module, path, snap.source)
    else:
        parent = snap.module.rpartition(".")[0]
        if parent:
            _import_parent(parent, shown)
        found = importlib.util.find_spec(snap.module)
        if found is None:
            raise UsageError(f"cannot find {snap.module} in the copy of the code at "
                             f"{snap.folder}")
        spec = found
    module = _exec(spec, snap.module, shown, False, spec.origin or "")
    module.__dict__["__dagrun_copy__"] = snap.folder
    return module


def _import_parent(parent: str, shown: str) -> None:
    try:
        importlib.import_module(parent)
    except Exception as exc:
        raise UsageError(f"importing {parent} (the package of {shown}) raised "
                         f"{type(exc).__name__}: {exc}") from exc


class _TreeFinder:
    """Serves every module of a copied top-level package or module from the copy, under
    its real name; ``__file__`` names the user's file (data next to it stays reachable)."""

    def __init__(self, snap: Snapshot) -> None:
        self.root = snap.folder
        self.entries = {name: os.path.dirname(orig) for name, _, orig in snap.tops}

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        top = fullname.partition(".")[0]
        entry = self.entries.get(top)
        if entry is None:
            return None
        search = [self.root] if "." not in fullname else self._in_copy(top, entry, path)
        spec = importlib.machinery.PathFinder.find_spec(fullname, search)
        prefix = os.path.join(self.root, "")
        if spec is not None and spec.origin and spec.origin.endswith(".py") \
                and spec.origin.startswith(prefix):
            spec.origin = os.path.join(entry, spec.origin[len(prefix):])
            spec.cached = None
        return spec


    def _in_copy(self, top: str, entry: str, path: Sequence[str] | None
                 ) -> list[str] | None:
        """A package's ``__path__`` as the copy lays it out: a package imported from the
        user's folder (by the driver, before a worker was forked from it) finds its
        submodules in the copy all the same."""
        if path is None:
            return None
        found = []
        for folder in path:
            rel = os.path.relpath(folder, entry)
            found.append(os.path.join(self.root, rel) if rel == top or rel.startswith(
                top + os.sep) else folder)
        return found


def _install(finder: _TreeFinder | _CopyFinder) -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, (_TreeFinder,
                                                                        _CopyFinder))]
    sys.meta_path.insert(0, finder)


def _activate_flat(snap: Snapshot) -> ModuleType:
    """Layout 1 (a sweep planned by on-disk format 3 or older): flat copies of modules."""
    put_on_path(snap)
    _install(_CopyFinder(snap))
    path = os.path.join(snap.folder, f"{snap.module}.py")
    loaded = sys.modules.get(snap.module)
    spec = getattr(loaded, "__spec__", None)
    if loaded is not None and getattr(getattr(spec, "loader", None), "path", None) == path:
        return loaded
    return import_file(path, snap.module, shown=os.path.basename(snap.source),
                       origin=snap.source)


class _CopyFinder:
    """Layout 1: finds the modules of a snapshot in the copy, ``__file__`` the user's.

    (Finders on ``sys.meta_path`` need only ``find_spec``; not deriving from
    ``importlib.abc.MetaPathFinder`` spares every sweep that module's ~7 ms import.)"""

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


def import_file(path: str, name: str, shown: str | None = None, *,
                driver: bool = False, origin: str | None = None) -> ModuleType:
    """Import ``path`` as module ``name`` (in ``sys.modules``), without its ``__main__``
    block; every way it can fail becomes a one-line ``UsageError``. In the ``driver``
    (``dagrun execute``) a top-level ``run_experiments`` call is a ``UsageError`` too."""
    spec = _spec(name, path, origin) if origin else \
        importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load {path} as a Python file")
    return _exec(spec, name, shown or os.path.basename(path), driver, path)


def _exec(spec: importlib.machinery.ModuleSpec, name: str, shown: str, driver: bool,
          path: str) -> ModuleType:
    """Execute the module of ``spec`` as ``name``, stopping at a ``run_experiments`` call;
    errors become one-line ``UsageError``s (``path``: the file their line refers to)."""
    global _importing
    if spec.loader is None:
        raise UsageError(f"cannot load {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    code_file = getattr(spec.loader, "path", path)
    _importing = True
    try:
        spec.loader.exec_module(module)
    except SnapshotImportStop as exc:
        if driver:
            del sys.modules[name]
            raise UsageError(
                f"{shown} calls run_experiments while being loaded"
                f"{_user_frame(exc, code_file)}: `dagrun execute` loads the file and runs the "
                "sweep itself; put that call under `if __name__ == \"__main__\":` (or run "
                f"`python {shown}`)") from None
        # where stages run: the import stops there, the functions above it are loaded
    except SyntaxError as exc:
        del sys.modules[name]
        raise UsageError(f"syntax error in {exc.filename}, line {exc.lineno}: {exc.msg}") from exc
    except Exception as exc:
        del sys.modules[name]
        raise UsageError(f"{shown} raised {type(exc).__name__} while loading"
                         f"{_user_frame(exc, code_file)}: {exc}") from exc
    finally:
        _importing = False
    return module


def _user_frame(exc: BaseException, path: str) -> str:
    import traceback  # (a workflow that fails to load: not every sweep's import)

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    return f" (line {frames[-1].lineno})" if frames else ""
