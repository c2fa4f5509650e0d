"""Code fingerprints of the stage functions.

A fingerprint hashes the function's syntax tree (so comments, blank lines, formatting and
docstrings do not count) together with everything of the user's that it depends on:

* the functions and classes it refers to that are the user's own code — in the workflow
  file or in the user's modules (``helper.value()`` through a module, or ``from helper
  import value``), followed recursively; libraries (standard library, site-packages) and
  dagrun itself are not followed;
* the module-level statements that bind the globals it reads (``SCALE = 2`` becoming ``3``
  changes the fingerprint of every stage that reads ``SCALE``);
* for ``functools.partial`` objects, the function and the content digest of the bound
  arguments; for callable instances, their class's ``__call__`` and their state.

When no source is available (a lambda typed at a prompt) the bytecode, constants and names
are hashed instead. Nothing depends on memory addresses, so a fingerprint is the same in
every process and execution.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import os
import sys
import sysconfig
import textwrap
import types
from collections.abc import Callable, Iterator
from typing import Any

from dagrun.code.encoding import value_digest


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]  # docstrings are comments too
    return tree


def _source_tree(obj: Any) -> str | None:
    try:
        src = textwrap.dedent(inspect.getsource(obj))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    return ast.dump(_strip_docstrings(tree), annotate_fields=False, include_attributes=False)


def _code_bytes(code: types.CodeType) -> str:
    parts = [code.co_code.hex(), repr(code.co_names), repr(code.co_varnames)]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if isinstance(const, types.CodeType) else repr(const))
    return "|".join(parts)


def _referenced_names(obj: Any) -> set[str]:
    """Global and attribute names used by a function's code (nested code included), or by
    every method of a class."""
    codes: list[types.CodeType] = []
    if inspect.isclass(obj):
        for member in vars(obj).values():
            fn = getattr(member, "__func__", member)
            if isinstance(getattr(fn, "__code__", None), types.CodeType):
                codes.append(fn.__code__)
    elif isinstance(getattr(obj, "__code__", None), types.CodeType):
        codes.append(obj.__code__)
    names: set[str] = set()
    while codes:
        c = codes.pop()
        names.update(c.co_names)
        codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return names


@functools.lru_cache(maxsize=1)
def library_roots() -> tuple[str, ...]:
    """Folders whose code is not the user's: Python's own, installed packages, dagrun."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix,
             *(sysconfig.get_paths().get(k, "") for k in ("stdlib", "purelib", "platlib"))}
    roots.add(os.path.dirname(os.path.abspath(__file__)))
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)


def is_user_module(module: types.ModuleType | None) -> bool:
    """A module of the user's own code: it has a source file outside the library roots."""
    path = getattr(module, "__file__", None)
    if module is None or not path:
        return False
    return not os.path.realpath(path).startswith(library_roots())


def _user_code(obj: Any) -> bool:
    return (inspect.isfunction(obj) or inspect.isclass(obj)) and \
        is_user_module(sys.modules.get(getattr(obj, "__module__", "") or ""))


@functools.lru_cache(maxsize=64)
def _module_bindings(path: str, mtime: float) -> dict[str, str]:
    """Top-level statements of a module's source that bind plain names (not functions or
    classes, which are followed as code), as ``name -> dumped statement``."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return {}
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import,
                             ast.ImportFrom)):
            continue
        names = [n.id for n in ast.walk(node)
                 if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
        if names:
            dumped = ast.dump(node, annotate_fields=False, include_attributes=False)
            for name in names:
                out[name] = out.get(name, "") + dumped
    return out


def _bindings_of(module: types.ModuleType) -> dict[str, str]:
    path = getattr(module, "__file__", None)
    if not path:
        return {}
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return {}
    return _module_bindings(path, mtime)


def _dependencies(obj: Any) -> Iterator[tuple[str, Any]]:
    """What ``obj``'s fingerprint includes besides its own code: (label, thing) pairs, where
    a thing is user code to follow or a string (a module-level binding's source)."""
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    if module is None:
        return
    glb = getattr(obj, "__globals__", None) or vars(module)
    names = sorted(_referenced_names(obj))
    bindings = _bindings_of(module) if is_user_module(module) else {}
    for name in names:
        target = glb.get(name)
        if _user_code(target):
            yield name, target
        elif isinstance(target, types.ModuleType) and is_user_module(target):
            for attr in names:  # helper.value(): attribute names used with the module
                member = getattr(target, attr, None)
                if _user_code(member):
                    yield f"{name}.{attr}", member
        elif name in bindings:
            yield name, bindings[name]


def fingerprint(fn: Callable[..., Any]) -> str:
    """A short hex digest of ``fn``'s code and the user's code and constants it uses."""
    h = hashlib.sha256()
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, str):  # a module-level binding's source
            h.update(obj.encode())
            return
        tree = _source_tree(obj)
        if tree is None:
            code = getattr(obj, "__code__", None)
            tree = _code_bytes(code) if code is not None else type(obj).__qualname__
        h.update(tree.encode())
        for label, dep in _dependencies(obj):
            h.update(label.encode())
            visit(dep)

    for part in _parts(fn):
        visit(part)
    return h.hexdigest()[:16]


def _parts(fn: Any) -> list[Any]:
    """The code objects to fingerprint for a stage given as a function, a
    ``functools.partial`` (its function, plus its arguments as a digest string) or a
    callable instance (its class, plus its state)."""
    if isinstance(fn, functools.partial):
        args = value_digest((fn.args, fn.keywords or {}), cached_fingerprint)
        return [*_parts(fn.func), f"partial:{args}"]
    fn = inspect.unwrap(fn)
    if inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn):
        return [getattr(fn, "__func__", fn)]
    if callable(fn):  # an instance with __call__
        state = getattr(fn, "__dict__", None)
        digest = value_digest(state, cached_fingerprint) if state is not None else ""
        return [type(fn), f"state:{digest}"]
    return [fn]


_fingerprints: dict[Any, str] = {}


def cached_fingerprint(fn: Callable[..., Any]) -> str:
    """The fingerprint of a function, cached by its code (parsing source is slow)."""
    key = getattr(fn, "__code__", None) or fn
    try:
        found = _fingerprints.get(key)
    except TypeError:  # an unhashable callable
        return fingerprint(fn)
    if found is None:
        found = _fingerprints[key] = fingerprint(fn)
    return found
