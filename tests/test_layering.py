"""The package's map, enforced: wings in a written order, no import circle, no stale path.

Every import of every module under ``dagrun/`` is read with ``ast`` — at module level, inside
functions (lazy imports) and under ``TYPE_CHECKING`` alike — and resolved to the dagrun
module it names. The order (lowest first) is the one each wing's docstring states:

    base (errors, config, progress, version, record) < disk < code < search < run < results
    < backends < worker < the top-level commands (api, cli, scheduler, sweep, clean,
    status, optimize)

A module may import its own layer or a lower one. Module paths written as strings
(``importlib.import_module("dagrun.api")``, ``python -m dagrun.backends.ssh.remote``) must
name a module that exists, so a move cannot leave one behind.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagrun.code.workflow import MOVED_MODULES

ROOT = Path(__file__).resolve().parent.parent / "dagrun"

BASE = ("dagrun.errors", "dagrun.config", "dagrun.progress", "dagrun.version", "dagrun.record",
        "dagrun.record_inits")
LAYERS = [BASE, ("dagrun.disk",), ("dagrun.code",), ("dagrun.search",), ("dagrun.run",),
          ("dagrun.results",), ("dagrun.backends",), ("dagrun.worker",)]
TOP = ("dagrun", "dagrun.__main__", "dagrun.api", "dagrun.cli", "dagrun.scheduler",
       "dagrun.sweep", "dagrun.clean", "dagrun.status", "dagrun.optimize")


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def layer(module: str) -> int:
    if module in TOP:
        return len(LAYERS)
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to the map (and to "
                         "docs/development.md)")


def _owner(name: str) -> str | None:
    """The dagrun module ``name`` (a module or ``module.attribute``) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> Iterator[tuple[int, str]]:
    """(line, imported dagrun module) for every import statement of ``module``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" for a in node.names]
        for target in targets:
            owner = _owner(target) if target.startswith("dagrun") else None
            if owner is not None and owner != module:
                yield node.lineno, owner


IMPORTS = {m: list(imports(m)) for m in MODULES}  # each module parsed once
GRAPH = {m: sorted({t for _, t in found}) for m, found in IMPORTS.items()}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer(module)


def test_no_import_against_the_order() -> None:
    wrong = [f"{MODULES[m].relative_to(ROOT.parent)}:{line}: {m} (layer {layer(m)}) imports "
             f"{t} (layer {layer(t)})"
             for m, found in IMPORTS.items() for line, t in found if layer(t) > layer(m)]
    assert not wrong, "\n".join(wrong)


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in GRAPH[m]:
            if state.get(t) == 1:
                return [*stack[stack.index(t):], t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(MODULES):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_circle() -> None:
    cycle = _cycle()
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_a_circle_is_found() -> None:
    """The walker itself: a planted circle is reported (the test above can fail)."""
    saved = dict(GRAPH)
    try:
        GRAPH["dagrun.disk.layout"] = [*GRAPH["dagrun.disk.layout"], "dagrun.disk.atomic"]
        GRAPH["dagrun.disk.atomic"] = [*GRAPH["dagrun.disk.atomic"], "dagrun.disk.layout"]
        assert _cycle() is not None
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


def test_lazy_imports_are_seen() -> None:
    """Imports inside functions count: cli imports the scheduler only inside commands."""
    assert "dagrun.scheduler" in GRAPH["dagrun.cli"]


# a string that is a module path (``"dagrun.api"``, ``"dagrun.x:attr"``), or runs one
# (``python -m dagrun.backends.ssh.remote``); prose that mentions a path is not checked
_WHOLE_PATH = re.compile(r"(dagrun(?:\.\w+)+)(?::\w+)?")
_RUN_MODULE = re.compile(r"-m (dagrun(?:\.\w+)+)")


def _exists(name: str) -> bool:
    """``name`` is a dagrun module, or an attribute of one."""
    if name in MODULES:
        return True
    parent, _, attr = name.rpartition(".")
    return parent in MODULES and hasattr(importlib.import_module(parent), attr)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_paths_in_strings_exist(module: str) -> None:
    """``"dagrun.x.y"`` in a string (lazy registries, ``python -m``) names a real module."""
    tree = ast.parse(MODULES[module].read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef,
                                    ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr)
                  and isinstance(n.body[0].value, ast.Constant)}
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            whole = _WHOLE_PATH.fullmatch(node.value.strip())
            names = [whole.group(1)] if whole else _RUN_MODULE.findall(node.value)
            for name in names:
                if name in MOVED_MODULES and module == "dagrun.code.workflow":
                    continue  # the old paths a format-1 workflow.pkl names, mapped there
                if not _exists(name):
                    missing.append(name)
    assert not missing, f"{module} names modules that do not exist: {missing}"


def test_top_level_stays_small() -> None:
    files = [p.name for p in ROOT.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(files) <= 14, sorted(files)
