"""Where code lives in its source, for ``dagrun.code.fingerprint``.

* ``source_for(filename)``: a file's syntax tree, docstrings removed, parsed once per
  (path, modification time, size); sources that exist only in ``linecache`` (a notebook's
  cells, ``<ipython-input-…>``) are parsed once per text.
* ``Source.node_of(code)``: the ``def`` (decorators included) or ``lambda`` a code object was
  compiled from, found by its first line and, where several share that line, by its
  arguments and the positions of its instructions (innermost wins) — so a lambda inside a
  multi-line list is its own node, not the text of its line.
* ``Source.class_nodes(qualname)``, ``Source.bindings(name)``, ``Source.imports_of(name)``:
  a class's statement; the module-level statements that bind or change a name; the import
  statements that bind it.
* ``Source.names_of(node)``: the names a statement reads, with the attribute chains read
  off each (``lab.core.train`` -> ``lab``: ``("core", "train")``; ``()`` for a name used as
  a value).
* ``locate(name)``: a module's file (and a package's folders) found through
  ``sys.meta_path`` finders without importing it;
* ``library_roots()``: the folders whose code is never the user's (``dagrun.code.usercode``
  builds its rule on them).

Nothing here executes user code.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import sys
import sysconfig
import types
from collections.abc import Iterator

from dagrun.record import record


@functools.lru_cache(maxsize=1)
def library_roots() -> tuple[str, ...]:
    """Folders whose code is not the user's: Python's own, installed packages, dagrun."""
    paths = sysconfig.get_paths()
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix,
             *(paths.get(k, "") for k in ("stdlib", "purelib", "platlib"))}
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)


_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)

Chains = dict[str, set[tuple[str, ...]]]


@record(frozen=True)
class ImportBinding:
    """One name an import statement binds: ``from <level dots><module> import <name>`` or
    ``import <module>`` (``name`` None)."""

    module: str
    level: int
    name: str | None


@record(frozen=True)
class Located:
    """Where a module's code is: its source file (``None``: no ``.py`` file) and, for a
    package, its folders."""

    origin: str | None
    locations: tuple[str, ...] | None


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (*_FUNCS, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]  # docstrings are comments too


def _first_line(node: ast.AST) -> int:
    decorators = getattr(node, "decorator_list", None)
    line: int = node.decorator_list[0].lineno if decorators else node.lineno  # type: ignore[attr-defined]
    return line


def _span(node: ast.AST) -> tuple[int, int, int, int]:
    return (node.lineno, node.col_offset,  # type: ignore[attr-defined]
            node.end_lineno or node.lineno, node.end_col_offset or 0)  # type: ignore[attr-defined]


def _arg_names(args: ast.arguments) -> list[str]:
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    if args.vararg is not None:
        names.append(args.vararg.arg)
    if args.kwarg is not None:
        names.append(args.kwarg.arg)
    return names


CO_VARARGS, CO_VARKEYWORDS = 0x04, 0x08  # ``inspect``'s (not imported for two numbers)


def _code_args(code: types.CodeType) -> list[str]:
    count = code.co_argcount + code.co_kwonlyargcount
    count += bool(code.co_flags & CO_VARARGS) + bool(code.co_flags & CO_VARKEYWORDS)
    return list(code.co_varnames[:count])


def _positions(code: types.CodeType) -> list[tuple[int, int, int, int]]:
    """Where the code's own instructions are (artificial ones, at column 0 to 0, left out);
    empty before Python 3.11."""
    get = getattr(code, "co_positions", None)
    if get is None:
        return []
    out = []
    for line, end, col, end_col in get():
        if line is None or end is None or col is None or end_col is None:
            continue
        if (line, col) < (end, end_col):
            out.append((line, col, end, end_col))
    return out


def _contains(span: tuple[int, int, int, int], pos: tuple[int, int, int, int]) -> bool:
    return (span[0], span[1]) <= (pos[0], pos[1]) and (pos[2], pos[3]) <= (span[2], span[3])


def name_chains(node: ast.AST, outer: bool = False) -> tuple[set[str], Chains]:
    """The names ``node`` reads (or writes) and, per name, the attribute chains read off it
    (``()``: the name used as a value). Names bound inside it (a comprehension's variable)
    are counted too: reading more is the safe side. ``outer``: not inside the bodies of the
    functions and lambdas in it (a class's bases, decorators and class-level statements)."""
    names: set[str] = set()
    chains: Chains = {}
    stack: list[ast.AST] = [node]
    while stack:
        sub = stack.pop()
        if outer and sub is not node and isinstance(sub, (*_FUNCS, ast.Lambda)):
            stack.extend(_header(sub))
            continue
        if isinstance(sub, ast.Attribute):
            attrs: list[str] = []
            root: ast.AST = sub
            while isinstance(root, ast.Attribute):
                attrs.append(root.attr)
                root = root.value
            if isinstance(root, ast.Name):
                names.add(root.id)
                chains.setdefault(root.id, set()).add(tuple(reversed(attrs)))
            else:
                stack.append(root)
            continue
        if isinstance(sub, ast.Name):
            names.add(sub.id)
            chains.setdefault(sub.id, set()).add(())
            continue
        stack.extend(ast.iter_child_nodes(sub))
    return names, chains


def _header(node: ast.AST) -> list[ast.AST]:
    """What of a function, lambda or class runs where it is defined: decorators, default
    values, bases."""
    if isinstance(node, ast.ClassDef):
        return [*node.decorator_list, *node.bases, *node.keywords]
    if isinstance(node, (*_FUNCS, ast.Lambda)):
        args = node.args
        out: list[ast.AST] = [*args.defaults, *(d for d in args.kw_defaults if d)]
        if isinstance(node, _FUNCS):
            out.extend(node.decorator_list)
        return out
    return []


def _outer_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """``node`` and what is inside it, not entering the bodies of functions, lambdas and
    classes (their decorators, defaults and bases are entered)."""
    stack = [node]
    while stack:
        sub = stack.pop()
        yield sub
        if sub is not node and isinstance(sub, _SCOPES):
            stack.extend(_header(sub))
            continue
        stack.extend(ast.iter_child_nodes(sub))


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _bound_names(stmt: ast.stmt) -> set[str]:
    """The module-level names a statement binds or changes: names assigned (anywhere in a
    compound statement), the objects whose items or attributes it sets (``REG["a"] = f``),
    and every name an expression statement reads (``REG.update(...)``, ``setup(CONFIG)``
    may change them)."""
    names: set[str] = set()
    for sub in _outer_nodes(stmt):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            names.add(sub.id)
        elif isinstance(sub, (*_FUNCS, ast.ClassDef)) and sub is not stmt:
            names.add(sub.name)
        elif isinstance(sub, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = sub.targets if isinstance(sub, (ast.Assign, ast.Delete)) else [sub.target]
            for target in targets:
                for part in ast.walk(target):
                    root = _root_name(part) if isinstance(part, (ast.Attribute, ast.Subscript)) \
                        else None
                    if root:
                        names.add(root)
        elif isinstance(sub, ast.Expr):
            names.update(n.id for n in ast.walk(sub) if isinstance(n, ast.Name))
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).partition(".")[0] for a in sub.names)
    return names


class Source:
    """One parsed source (docstrings removed) and its lazily built indexes."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self._dumps: dict[int, str] = {}
        self._names: dict[int, tuple[set[str], Chains]] = {}
        self._defs: dict[int, list[ast.AST]] | None = None
        self._lambdas: dict[int, list[ast.Lambda]] = {}
        self._classes: dict[str, list[ast.ClassDef]] = {}
        self._bindings: dict[str, list[ast.stmt]] | None = None
        self._imports: dict[str, list[ImportBinding]] = {}
        self._stars: list[ImportBinding] = []
        self._all_imports: list[ImportBinding] = []

    # -- text ----------------------------------------------------------------------------

    def dump(self, node: ast.AST) -> str:
        """``node`` as text without positions (formatting and comments never count)."""
        found = self._dumps.get(id(node))
        if found is None:
            found = self._dumps[id(node)] = ast.dump(node, annotate_fields=False,
                                                     include_attributes=False)
        return found

    def whole(self) -> str:
        return self.dump(self.tree)

    def names_of(self, node: ast.AST, outer: bool = False) -> tuple[set[str], Chains]:
        """``name_chains(node, outer)``, cached."""
        key = id(node) * 2 + outer
        found = self._names.get(key)
        if found is None:
            found = self._names[key] = name_chains(node, outer)
        return found

    def header_names(self, node: ast.AST) -> tuple[set[str], Chains]:
        """The names a ``def``/``lambda``/``class`` reads where it is defined: decorators,
        default values, bases."""
        names: set[str] = set()
        chains: Chains = {}
        for part in _header(node):
            found, found_chains = self.names_of(part)
            names |= found
            for name, chain in found_chains.items():
                chains.setdefault(name, set()).update(chain)
        return names, chains

    # -- code objects and classes --------------------------------------------------------

    def _index(self) -> dict[int, list[ast.AST]]:
        if self._defs is None:
            defs: dict[int, list[ast.AST]] = {}

            def visit(node: ast.AST, prefix: str) -> None:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, _FUNCS):
                        defs.setdefault(_first_line(child), []).append(child)
                        visit(child, f"{prefix}{child.name}.<locals>.")
                    elif isinstance(child, ast.ClassDef):
                        self._classes.setdefault(prefix + child.name, []).append(child)
                        visit(child, f"{prefix}{child.name}.")
                    else:
                        if isinstance(child, ast.Lambda):
                            self._lambdas.setdefault(child.lineno, []).append(child)
                        visit(child, prefix)

            visit(self.tree, "")
            self._defs = defs
        return self._defs

    def node_of(self, code: types.CodeType) -> ast.AST | None:
        """The ``def``/``lambda`` node ``code`` was compiled from, or ``None``."""
        defs = self._index()
        first = code.co_firstlineno
        candidates: list[ast.AST]
        if code.co_name == "<lambda>":
            candidates = list(self._lambdas.get(first, []))
        else:
            candidates = [n for n in defs.get(first, []) if n.name == code.co_name]  # type: ignore[attr-defined]
        args = _code_args(code)
        candidates = [n for n in candidates if _arg_names(n.args) == args]  # type: ignore[attr-defined]
        if len(candidates) > 1:
            positions = _positions(code)
            inside = [n for n in candidates if all(_contains(_span(n), p) for p in positions)]
            if positions and inside:
                inside.sort(key=lambda n: (_span(n)[2] - _span(n)[0], _span(n)[3] - _span(n)[1]))
                candidates = inside[:1]
        return candidates[0] if len(candidates) == 1 else None

    def class_nodes(self, qualname: str) -> list[ast.ClassDef]:
        self._index()
        return list(self._classes.get(qualname, []))

    # -- module-level bindings -----------------------------------------------------------

    def _bind(self) -> dict[str, list[ast.stmt]]:
        if self._bindings is not None:
            return self._bindings
        bindings: dict[str, list[ast.stmt]] = {}
        for stmt in self.tree.body:
            for sub in _outer_nodes(stmt):
                if isinstance(sub, ast.Import):
                    for alias in sub.names:
                        bound = alias.asname or alias.name.partition(".")[0]
                        module = alias.name if alias.asname else bound
                        self._imports.setdefault(bound, []).append(ImportBinding(module, 0, None))
                elif isinstance(sub, ast.ImportFrom):
                    for alias in sub.names:
                        imp = ImportBinding(sub.module or "", sub.level, alias.name)
                        if alias.name == "*":
                            self._stars.append(imp)
                        else:
                            self._imports.setdefault(alias.asname or alias.name, []).append(imp)
            if isinstance(stmt, (*_FUNCS, ast.ClassDef)):
                for sub in ast.walk(stmt):  # a function that sets a module global
                    if isinstance(sub, ast.Global):
                        for name in sub.names:
                            bindings.setdefault(name, []).append(stmt)
                continue
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                continue
            for name in _bound_names(stmt):
                bindings.setdefault(name, []).append(stmt)
        self._bindings = bindings
        return bindings

    def bindings(self, name: str) -> list[ast.stmt]:
        """Module-level statements (not plain ``def``/``class``/imports) that bind or change
        ``name``, and functions declaring it ``global``."""
        return self._bind().get(name, [])

    def imports_of(self, name: str) -> list[ImportBinding]:
        self._bind()
        return self._imports.get(name, [])

    def star_imports(self) -> list[ImportBinding]:
        self._bind()
        return self._stars

    def all_imports(self) -> list[ImportBinding]:
        """Every import in the file, at any depth (functions' lazy imports included)."""
        if not self._all_imports:
            found: list[ImportBinding] = []
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Import):
                    found.extend(ImportBinding(a.name, 0, None) for a in node.names)
                elif isinstance(node, ast.ImportFrom):
                    found.extend(ImportBinding(node.module or "", node.level, a.name)
                                 for a in node.names)
            self._all_imports = found
        return self._all_imports


# ------------------------------------------------------------------------------------------
# Parsed sources, cached.

_files: dict[str, tuple[tuple[int, int], Source | None]] = {}
_lines: dict[str, tuple[str, Source | None]] = {}


def _parse(data: str | bytes, filename: str) -> Source | None:
    try:
        tree = ast.parse(data, filename)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    _strip_docstrings(tree)
    return Source(tree)


def source_of_file(path: str) -> Source | None:
    """The parsed file at ``path`` (``None``: unreadable or not Python)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    found = _files.get(path)
    if found is not None and found[0] == stamp:
        return found[1]
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    source = _parse(data, path)
    _files[path] = (stamp, source)
    return source


def source_for(filename: str) -> Source | None:
    """The source a code object's ``co_filename`` names: a file on disk, or text that only
    ``linecache`` holds (notebook cells)."""
    if not filename:
        return None
    if not (filename.startswith("<") and filename.endswith(">")) and os.path.isfile(filename):
        return source_of_file(filename)
    import linecache  # (notebook cells only: it imports ``tokenize``)

    lines = linecache.getlines(filename)
    if not lines:
        return None
    text = "".join(lines)
    found = _lines.get(filename)
    if found is not None and found[0] == text:
        return found[1]
    source = _parse(text, filename)
    _lines[filename] = (text, source)
    return source


def file_stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


# ------------------------------------------------------------------------------------------
# Modules located without importing them.

def resolve(module: str, level: int, package: str) -> str | None:
    """The absolute name of ``from <level dots><module> import …`` in ``package``."""
    if not level:
        return module or None
    try:
        return importlib.util.resolve_name("." * level + module, package or None)
    except (ImportError, ValueError):
        return None


def locate(name: str) -> Located | None:
    """Where module ``name`` is, found as the import system would find it but without
    executing anything (a loaded module: its ``__file__`` and ``__path__``)."""
    module = sys.modules.get(name)
    if module is not None:
        file = getattr(module, "__file__", None)
        path = getattr(module, "__path__", None)
        try:
            folders = tuple(str(p) for p in path) if path is not None else None
        except TypeError:
            folders = None
        return Located(file if isinstance(file, str) and file.endswith(".py") else None, folders)
    parent, _, _ = name.rpartition(".")
    search: list[str] | None = None
    if parent:
        found = locate(parent)
        if found is None or found.locations is None:
            return None
        search = list(found.locations)
    for finder in list(sys.meta_path):
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            spec = find_spec(name, search)
        except Exception:  # a finder that fails on a name it does not know
            continue
        if spec is not None:
            origin = spec.origin if spec.has_location else None
            folders = spec.submodule_search_locations
            return Located(origin if isinstance(origin, str) and origin.endswith(".py") else None,
                           tuple(folders) if folders is not None else None)
    return None


def package_modules(name: str, located: Located) -> Iterator[tuple[str, str]]:
    """(module name, file) of every ``.py`` module under package ``name``'s folders."""
    for folder in located.locations or ():
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d.isidentifier())
            rel = os.path.relpath(root, folder)
            prefix = name if rel == "." else ".".join([name, *rel.split(os.sep)])
            for file in sorted(files):
                if file.endswith(".py") and file[:-3].isidentifier():
                    stem = file[:-3]
                    yield (prefix if stem == "__init__" else f"{prefix}.{stem}",
                           os.path.join(root, file))
