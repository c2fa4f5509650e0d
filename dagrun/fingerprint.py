"""Code fingerprints of the stage functions.

A fingerprint hashes the function's syntax tree (so comments, blank lines and formatting do
not count) together with the fingerprints of the functions and classes it calls that are
defined in the same module (the workflow file). When no source is available (a lambda typed
at a prompt) the bytecode, constants and names are hashed instead.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
import types
from collections.abc import Callable
from typing import Any


def _source_tree(obj: Any) -> str | None:
    try:
        src = textwrap.dedent(inspect.getsource(obj))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]  # docstrings are comments too
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _code_bytes(code: types.CodeType) -> str:
    parts = [code.co_code.hex(), repr(code.co_names), repr(code.co_varnames)]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if isinstance(const, types.CodeType) else repr(const))
    return "|".join(parts)


def _referenced_names(obj: Any) -> set[str]:
    code = getattr(obj, "__code__", None)
    names: set[str] = set()
    stack = [code] if code is not None else []
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return names


def _local_callees(obj: Any) -> list[tuple[str, Any]]:
    """Functions and classes ``obj`` refers to that live in its own module."""
    module = getattr(obj, "__module__", None)
    glb = getattr(obj, "__globals__", {})
    out = []
    for name in sorted(_referenced_names(obj)):
        target = glb.get(name)
        if (inspect.isfunction(target) or inspect.isclass(target)) and \
                getattr(target, "__module__", None) == module:
            out.append((name, target))
    return out


def fingerprint(fn: Callable[..., Any]) -> str:
    """A short hex digest of ``fn``'s code and the same-module code it calls."""
    h = hashlib.sha256()
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        tree = _source_tree(obj)
        if tree is None:
            code = getattr(obj, "__code__", None)
            tree = _code_bytes(code) if code is not None else repr(obj)
        h.update(tree.encode())
        for name, callee in _local_callees(obj):
            h.update(name.encode())
            visit(callee)

    visit(inspect.unwrap(fn))
    return h.hexdigest()[:16]
