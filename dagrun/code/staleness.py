"""Whether the code loaded in this process is the code its file holds now.

A module edited after it was imported (a notebook without autoreload, a helper saved while
a slow workflow was still loading) runs the old code in this process, while its file — what
dagrun copies and fingerprints — holds the new one: the sweep would run one version and
record another. ``check`` compiles the file as it is now and compares it with the loaded
module: every function and method defined there (bytecode, names, constants, nested code;
line numbers do not count) and every module-level name bound once to a literal
(``SCALE = 2``). A difference is refused; the user restarts the session or reloads it.

Only files modified after this process started are compiled (one ``stat`` each
otherwise): a file older than the process is the file it imported.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

from dagrun.disk.keeper import process_state
from dagrun.errors import UsageError


@functools.lru_cache(maxsize=1)
def process_start() -> float:
    """When this process started (seconds since the epoch; 0 when unknown: check all)."""
    state = process_state(os.getpid())
    if state is None:
        return 0.0
    try:
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        # 1 s earlier: btime is in whole seconds
        return boot + int(state[1]) / os.sysconf("SC_CLK_TCK") - 1.0
    except (OSError, ValueError, IndexError, StopIteration):
        return 0.0


def suspect(path: str) -> bool:
    """Whether ``path`` was modified after this process started."""
    try:
        return os.stat(path).st_mtime > min(process_start(), time.time())
    except OSError:
        return False


def _shape(code: types.CodeType) -> tuple[Any, ...]:
    """What a code object does, without where it is (line numbers, file name)."""
    consts = tuple(_shape(c) if isinstance(c, types.CodeType) else (type(c).__name__, repr(c))
                   for c in code.co_consts)
    return (code.co_code, code.co_names, code.co_varnames, code.co_freevars,
            code.co_cellvars, code.co_argcount, code.co_kwonlyargcount, code.co_flags, consts)


def _codes(code: types.CodeType, prefix: str = "") -> Iterator[tuple[str, types.CodeType]]:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            name = f"{prefix}{const.co_name}"
            yield name, const
            yield from _codes(const, name + ".")


def _loaded_functions(module: types.ModuleType, file: str
                      ) -> Iterator[tuple[str, types.CodeType]]:
    """(dotted name, code) of the functions and methods defined in ``module`` (whose file
    is named ``file``)."""
    name = module.__name__
    for value in list(vars(module).values()):
        if isinstance(value, type):
            if value.__module__ == name:
                for member in list(vars(value).values()):
                    yield from _own(member.fget if isinstance(member, property) else
                                    getattr(member, "__func__", member), name, file)
        else:
            yield from _own(value, name, file)


def unwrap(fn: Any) -> Any:
    """``inspect.unwrap(fn)``: the function under a decorator's ``__wrapped__`` chain
    (``ValueError`` on a loop), without importing ``inspect`` (~7 ms a sweep)."""
    seen = {id(fn)}
    limit = sys.getrecursionlimit()
    while hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
        if id(fn) in seen or len(seen) >= limit:
            raise ValueError(f"wrapper loop when unwrapping {fn!r}")
        seen.add(id(fn))
    return fn


def _own(value: Any, module: str, file: str) -> Iterator[tuple[str, types.CodeType]]:
    """``value``'s code when it is a function written in ``file`` (a decorator's wrapper
    is looked through; code generated at run time, e.g. a dataclass's ``__init__``, is
    not in any file and is left out)."""
    try:
        fn = unwrap(value) if callable(value) else value
    except ValueError:  # a cycle of __wrapped__
        return
    code = getattr(fn, "__code__", None)
    if isinstance(fn, types.FunctionType) and fn.__module__ == module and isinstance(
            code, types.CodeType) and os.path.basename(code.co_filename) == file:
        yield _plain(fn.__qualname__), code


def _plain(qualname: str) -> str:
    return qualname.replace("<locals>.", "")


def _literals(tree: ast.Module) -> dict[str, Any]:
    """Module-level names bound exactly once, to a literal, and never declared global."""
    bound: dict[str, int] = {}
    values: dict[str, Any] = {}
    globals_: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            globals_.update(node.names)
    for node in tree.body:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                bound[sub.id] = bound.get(sub.id, 0) + 1
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
    return {k: v for k, v in values.items() if bound.get(k) == 1 and k not in globals_
            and isinstance(v, (int, float, str, bytes, bool, type(None), tuple))}


def difference(module: types.ModuleType, data: bytes, path: str) -> str | None:
    """What of ``module`` differs from ``data`` (its file's content now), or ``None``."""
    try:
        tree = ast.parse(data, path)
        _as_loaded(module, tree, data, path)
        code = compile(tree, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return "the file no longer compiles"
    fresh: dict[str, list[tuple[Any, ...]]] = {}
    for name, c in _codes(code):
        fresh.setdefault(name, []).append(_shape(c))
    for name, loaded in _loaded_functions(module, os.path.basename(path)):
        if _shape(loaded) not in fresh.get(name, []):
            return f"{name} differs"
    namespace = vars(module)
    for name, value in _literals(tree).items():
        if name in namespace and (type(namespace[name]) is not type(value)
                                  or namespace[name] != value):
            return f"{name} is {namespace[name]!r} in memory, {value!r} in the file"
    return None


def _as_loaded(module: types.ModuleType, tree: ast.Module, data: bytes, path: str) -> None:
    """Transform ``tree`` the way ``module``'s loader transformed its source: pytest imports
    test modules and conftest files through a hook that rewrites their ``assert``
    statements, so the code in memory is the rewritten one (without this, an unchanged
    conftest modified just before the process started would compare as edited)."""
    loader = getattr(getattr(module, "__spec__", None), "loader", None)
    if type(loader).__name__ != "AssertionRewritingHook":
        return
    try:
        from _pytest.assertion.rewrite import rewrite_asserts
    except ImportError:  # a loader of that name that is not pytest's: compare as is
        return
    rewrite_asserts(tree, data, path, getattr(loader, "config", None))


def check(module: types.ModuleType, data: bytes, path: str) -> None:
    """``UsageError`` when ``module`` is not what ``data`` (``path``'s content) compiles to."""
    diff = difference(module, data, path)
    if diff is not None:
        raise UsageError(
            f"{path} was edited after it was loaded ({diff}): this process would run the "
            "old code and record the new one; restart the session (or reload the module: "
            "importlib.reload, %autoreload) and run again")


def check_function(fn: Any) -> None:
    """``UsageError`` when stage function ``fn`` is not what its file now defines (a
    function imported from a module that was reloaded or edited since)."""
    code = getattr(fn, "__code__", None)
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    path = getattr(code, "co_filename", "")
    if not isinstance(code, types.CodeType) or module is None or not suspect(path):
        return
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return
    shadow = types.ModuleType(module.__name__)
    shadow.__dict__[fn.__name__] = fn
    check(shadow, data, path)
