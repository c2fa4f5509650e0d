"""Code fingerprints of the stage functions (``FINGERPRINT_SCHEME`` 2).

A stage's fingerprint hashes everything of the user's code the stage can reach, collected as
a set of pieces (the order they are found in never counts). Sound before precise: where the
reach cannot be read off the code, the fingerprint takes more, never less.

What counts:

* **functions**: the syntax tree of the function's own ``def`` (decorators included) or
  ``lambda`` node, found in the parsed file by first line, argument names and instruction
  positions (innermost wins), so comments, docstrings and formatting never count and a
  lambda in a multi-line list is only itself. Its default values, keyword defaults and
  closure cells count by content (``fit = make_fit(lr=0.5)``: the ``0.5``); so do the
  function ``functools.wraps`` wrapped (``__wrapped__``), the decorators above a ``def``
  (their bodies too), the function a closure was made in and the class a method belongs to;
* **names a function reads**, told apart by their bytecode (``dis``): globals are looked up
  in the function's module; attribute names are followed only off a module of the user's,
  chain by chain (``settings.SCALE``, ``lab.core.train``), never matched against globals of
  the same name (``StandardScaler().fit`` does not reach a stage named ``fit``); a name a
  package does not have yet is its submodule of that name where one exists (imported at run
  time, by a stage or the package's ``__getattr__``), taken whole;
* **classes**: the whole ``class`` statement; every member (decorated methods, properties,
  ``lru_cache`` and other wrappers, static and class methods) with what it reads; the base
  classes of the user's (inherited methods count) and what the class body reads. An
  instance of a user class (a module-level singleton, a cfg value, the object a bound-method
  stage belongs to) brings its class and the code its attributes hold;
* **module-level values**: the statements that bind or change the name read (``SCALE = 2``;
  ``HIDDEN = N * 2`` brings ``N = 4``; ``REG["a"] = f``; a function declaring it
  ``global``), followed through imports (``from settings import SCALE`` reaches
  ``SCALE = 2`` in ``settings``); the code a value holds is followed too (a registry
  ``{"a": make_a}``, also one filled by a ``@register("a")`` decorator in another module);
* **modules imported inside a function** (``import lab.extra``, which may not be imported
  yet): located through the import system's finders without running them and taken whole —
  their file, their parent packages and, transitively, the user's modules they import;
* **which library object a name is bound to** (``import numpy as np``, ``from math import
  floor as rounding``): its module and qualified name, never its code;
* ``functools.partial`` stages: the function and the bound arguments' content; a callable
  instance or a bound method: its class and the object's state.

**Where static reading cannot tell, it widens** to whole modules (their file, parents and the
user's modules they import): ``getattr(module, <computed name>)`` takes that module;
``getattr`` on anything but a global, ``self`` or ``cls``, and ``globals()``, ``vars()``,
``eval``, ``exec`` take the function's own module and every module of the user's it reads;
``importlib.import_module``/``__import__`` take the user's modules and packages named by the
function's string constants (``f".models.{name}"``: every module of package ``models``), or
every module of the user's imported so far when none is named; a module of the user's used
as a value (passed on, stored) is taken whole.

In a notebook (``__main__`` without a file) functions are read from ``linecache`` (the
cells), and module-level values, which have no statements to read, count by their content
at the time (their class name when that cannot be digested).

**Library code is never followed** (the standard library, installed packages, dagrun;
``dagrun.code.usercode`` says what is the user's, ``DAGRUN_CODE_INCLUDE``/``EXCLUDE``
included): upgrading a library never changes a fingerprint. Code without source (made by
``exec``) is hashed from its bytecode, names and constants, set constants sorted and line
tables left out. Nothing depends on memory addresses or the hash seed.

Parsed files are cached by (path, mtime, size) and what each code object reads by the code
object. ``cached_fingerprint`` (config digests meet one function or class in many cfgs)
reuses a whole result while every global it looked up still holds the same object, every
container it searched has the same length and (checked at most once a second) every file it
read is unchanged.

Limits: an attribute read off anything but a module (``self.model.helper()``) is found only
through the classes and values the stage reaches; the code held in a value is searched at
most 6 levels deep and 10,000 objects wide; a default value or notebook value that running
the stage mutates changes the fingerprint; a module name computed entirely at run time only
reaches modules already imported; a class is taken whole, so one stage's edit to a method
reaches every stage using that class.
"""

from __future__ import annotations

import ast
import builtins
import collections
import dis
import functools
import hashlib
import importlib
import itertools
import os
import sys
import time
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dagrun.code import sourcemap, usercode
from dagrun.code.encoding import value_digest
from dagrun.code.sourcemap import ImportBinding, Located, Source
from dagrun.code.sourcemap import library_roots as library_roots  # its former home
from dagrun.code.usercode import Rule, Top
from dagrun.disk import formatversion
from dagrun.record import record

#: The version of what a fingerprint covers; a sweep whose markers hold fingerprints of an
#: older scheme cannot compare them with today's (``dagrun.disk.codecheck`` takes the code a
#: sweep was last planned with as today's, once). Kept in ``dagrun.disk.formatversion``.
FINGERPRINT_SCHEME = formatversion.FINGERPRINTS


# --------------------------------------------------------------------------------------------
# Whose code it is.

_MISSING: Any = object()
_BARE = frozenset({()})  # a name used as a value
_MAINS = ("__main__", "__mp_main__")
_SHELL_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython", "open"})
_tops: dict[tuple[str, Rule], bool] = {}
_env_rules: dict[tuple[str | None, str | None], Rule] = {}


def _rule(rule: Rule | None = None) -> Rule:
    """``rule``, or the one the environment's overrides make (no basecfg ``code``)."""
    if rule is not None:
        return rule
    key = (os.environ.get(usercode.INCLUDE_ENV), os.environ.get(usercode.EXCLUDE_ENV))
    found = _env_rules.get(key)
    if found is None:
        found = _env_rules[key] = usercode.Rule.of(None)
    return found


def _top_at(name: str, located: Located | None) -> Top | None:
    if located is None:
        return None
    if located.locations is not None:
        if len(located.locations) != 1 or not os.path.isdir(located.locations[0]):
            return None
        folder = usercode.real_file(located.locations[0])
        return Top(name, folder, os.path.dirname(folder), True)
    if located.origin is None:
        return None
    real = usercode.real_file(located.origin)
    return Top(name, real, os.path.dirname(real), False)


def _user_top(top: str, rule: Rule) -> bool:
    """Whether top-level module ``top`` is the user's (``dagrun.code.usercode``'s rule; a
    ``__main__`` without a file — a notebook, a prompt — is)."""
    module = sys.modules.get(top)
    if top in _MAINS:  # not remembered: a notebook's shell replaces __main__
        file = getattr(module, "__file__", None)
        return not isinstance(file, str) or not usercode.under(
            usercode.real_file(file), usercode.site_roots())
    found = _tops.get((top, rule))
    if found is not None:
        return found
    if module is not None:
        info = usercode.top_of(top, module)
        found = info is not None and usercode.is_users(info, rule)
    else:
        info = _top_at(top, sourcemap.locate(top)) if top else None
        if info is None:
            return False  # not found (yet): not remembered
        found = usercode.is_users(info, rule)
    _tops[(top, rule)] = found
    return found


def _user_name(name: str, rule: Rule) -> bool:
    return bool(name) and _user_top(name.partition(".")[0], rule)


def _user_function(fn: types.FunctionType, rule: Rule) -> bool:
    name = fn.__globals__.get("__name__")
    return isinstance(name, str) and _user_name(name, rule)


def _user_class(cls: type, rule: Rule) -> bool:
    name = getattr(cls, "__module__", None)
    return isinstance(name, str) and _user_name(name, rule)


def is_user_module(module: types.ModuleType | None) -> bool:
    """A module of the user's own code (``dagrun.code.usercode``'s rule)."""
    return module is not None and _user_name(module.__name__, _rule())


def is_users_code(obj: Any, rule: Rule | None = None) -> bool:
    """Whether ``obj`` is a function, method or class of the user's, or an instance of a
    class of the user's: something whose digest depends on the user's code."""
    rule = _rule(rule)
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    if isinstance(obj, types.FunctionType):
        return _user_function(obj, rule)
    if isinstance(obj, type):
        return _user_class(obj, rule)
    return _user_class(type(obj), rule)


# --------------------------------------------------------------------------------------------
# What one code object reads (cached by code object).

_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS",
                         "STORE_GLOBAL", "STORE_NAME", "DELETE_GLOBAL", "DELETE_NAME"})
_CHAIN_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR"})
_ATTR_ENDS = frozenset({"STORE_ATTR", "DELETE_ATTR"})
_DYNAMIC = frozenset({"getattr", "globals", "vars", "eval", "exec", "__import__"})


@record(frozen=True)
class _Static:
    """A code object's own text and the names it reads."""

    text: str  # its syntax tree (or bytecode, without source)
    source: Source | None  # what ``text`` was read from (the cache entry's validity)
    globals: tuple[str, ...]
    chains: Mapping[str, frozenset[tuple[str, ...]]]  # global -> attribute chains read off it
    imports: tuple[tuple[str, int, tuple[str, ...]], ...]  # (module, level, fromlist)
    strings: tuple[str, ...]  # string constants (module names for import_module)
    # what getattr(x, <computed name>) reads from: x's chain (("lab", "models")); (): unknown
    getattr_on: frozenset[tuple[str, ...]]


_statics: dict[tuple[types.CodeType, str], _Static] = {}


def _const_text(value: Any) -> str:
    """A constant as text, the same under every hash seed (sets sorted)."""
    if isinstance(value, types.CodeType):
        return "<" + _code_text(value) + ">"
    if isinstance(value, (frozenset, set)):
        return "{" + ",".join(sorted(_const_text(v) for v in value)) + "}"
    if isinstance(value, tuple):
        return "(" + ",".join(_const_text(v) for v in value) + ")"
    return f"{type(value).__name__}:{value!r}"


def _code_text(code: types.CodeType) -> str:
    """What a code object does without where it is: bytecode, names, constants (nested code
    included), flags; no line numbers, no file name."""
    parts = [code.co_name, code.co_code.hex(), ",".join(code.co_names),
             ",".join(code.co_varnames), ",".join(code.co_freevars), ",".join(code.co_cellvars),
             f"{code.co_argcount}/{code.co_posonlyargcount}/{code.co_kwonlyargcount}/"
             f"{code.co_flags}", getattr(code, "co_exceptiontable", b"").hex()]
    parts.extend(_const_text(c) for c in code.co_consts)
    return "|".join(parts)


def _read_code(code: types.CodeType, names: set[str], chains: dict[str, set[tuple[str, ...]]],
               imports: list[tuple[str, int, tuple[str, ...]]], strings: set[str]) -> None:
    """Globals, attribute chains read off them, imports and string constants of ``code`` and
    the code nested in it."""
    todo = [code]
    while todo:
        current = todo.pop()
        root: str | None = None
        attrs: list[str] = []
        consts: list[Any] = [None, None]
        for ins in dis.get_instructions(current):
            op = ins.opname
            if op in _CHAIN_OPS or op in _ATTR_ENDS:
                if root is not None:
                    attrs.append(str(ins.argval))
                    if op in _ATTR_ENDS:
                        chains.setdefault(root, set()).add(tuple(attrs))
                        root = None
                continue
            if root is not None:
                chains.setdefault(root, set()).add(tuple(attrs))
                root = None
            if op in _GLOBAL_OPS:
                names.add(str(ins.argval))
                if op.startswith("LOAD"):
                    root, attrs = str(ins.argval), []
            elif op == "LOAD_CONST":
                consts = [consts[1], ins.argval]
            elif op == "IMPORT_NAME":
                level = consts[0] if isinstance(consts[0], int) else 0
                fromlist = consts[1] if isinstance(consts[1], tuple) else ()
                imports.append((str(ins.argval), level, tuple(str(f) for f in fromlist)))
        if root is not None:
            chains.setdefault(root, set()).add(tuple(attrs))
        for const in current.co_consts:
            if isinstance(const, types.CodeType):
                todo.append(const)
            elif isinstance(const, str):
                strings.add(const)


def _chain_of(node: ast.AST) -> tuple[str, ...]:
    """``lab.models`` -> ``("lab", "models")``; ``()`` for anything but a dotted name."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return (node.id, *reversed(attrs)) if isinstance(node, ast.Name) else ()


def _static(code: types.CodeType, source: Source | None) -> _Static:
    """What ``code`` is and reads (``source``: its file as parsed now)."""
    key = (code, code.co_filename)
    found = _statics.get(key)
    if found is not None and found.source is source:
        return found
    names: set[str] = set()
    chains: dict[str, set[tuple[str, ...]]] = {}
    imports: list[tuple[str, int, tuple[str, ...]]] = []
    strings: set[str] = set()
    _read_code(code, names, chains, imports, strings)
    node = source.node_of(code) if source is not None else None
    getattr_on: set[tuple[str, ...]] = set()
    if node is not None and source is not None:
        text = "def:" + source.dump(node)
        header, header_chains = source.header_names(node)
        args = node.args  # type: ignore[attr-defined]
        params = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
        for name in header - params:  # decorators and defaults: read where it is defined
            names.add(name)
            chains.setdefault(name, set()).update(header_chains.get(name, {()}))
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) \
                    and sub.func.id == "getattr" and len(sub.args) >= 2:
                target, attr = sub.args[0], sub.args[1]
                chain = _chain_of(target)
                if isinstance(attr, ast.Constant) and isinstance(attr.value, str):
                    if chain:  # getattr(lab.models, "relu"): lab.models.relu
                        chains.setdefault(chain[0], set()).add((*chain[1:], attr.value))
                else:
                    getattr_on.add(chain)
    else:
        text = "code:" + _code_text(code)
        if "getattr" in names:
            getattr_on.add(())
    found = _Static(text, source, tuple(sorted(names)),
                    {k: frozenset(v) for k, v in chains.items()}, tuple(imports),
                    tuple(sorted(strings)), frozenset(getattr_on))
    _statics[key] = found
    return found


# --------------------------------------------------------------------------------------------
# The walk: every piece of the user's code a root reaches.

class _Space:
    """A module's namespace as the walk sees it."""

    def __init__(self, namespace: Mapping[str, Any], user: bool) -> None:
        self.globals = namespace
        name = namespace.get("__name__")
        self.name = name if isinstance(name, str) else ""
        package = namespace.get("__package__")
        self.package = package if isinstance(package, str) else self.name.rpartition(".")[0]
        file = namespace.get("__file__")
        self.file = file if isinstance(file, str) and file.endswith(".py") else None
        self.source = sourcemap.source_of_file(self.file) if self.file else None
        self.user = user


_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes, bytearray, range,
                    type(Ellipsis), type(NotImplemented)})
_SCAN_BUDGET = 10_000  # objects searched for code per value
_SCAN_DEPTH = 6


class _Walk:
    """One fingerprint's collection of pieces; ``later`` queues work (no deep recursion)."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.items: set[str] = set()
        self.witnesses: dict[tuple[int, str], tuple[Mapping[str, Any], str, Any]] = {}
        self.lengths: list[tuple[Any, int]] = []
        self.files: set[str] = set()
        self.cacheable = True
        self._todo: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = \
            collections.deque()
        self._keep: list[Any] = []  # objects whose id is remembered stay alive
        self._seen: set[int] = set()
        self._scanned: set[int] = set()
        self._names: set[tuple[int, str]] = set()
        self._chains: set[tuple[int, tuple[str, ...]]] = set()
        self._stmts: set[int] = set()
        self._wholes: set[str] = set()
        self._spaces: dict[int, _Space] = {}
        self._located: dict[str, Located | None] = {}

    # -- bookkeeping ---------------------------------------------------------------------

    def later(self, work: Callable[..., None], *args: Any) -> None:
        self._todo.append((work, args))

    def drain(self) -> None:
        while self._todo:
            work, args = self._todo.popleft()
            try:
                work(*args)
            except Exception as exc:  # an object that cannot be read: said, not fatal
                self.add(f"unreadable:{work.__name__}:{type(exc).__qualname__}")

    def add(self, item: str) -> None:
        self.items.add(item)

    def digest(self) -> str:
        h = hashlib.sha256(b"dagrun fingerprint %d\0" % FINGERPRINT_SCHEME)
        for item in sorted(self.items):
            h.update(item.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.hexdigest()[:16]

    def _first(self, obj: Any) -> bool:
        """True the first time ``obj`` is met in this walk."""
        if id(obj) in self._seen:
            return False
        self._seen.add(id(obj))
        self._keep.append(obj)
        return True

    def lookup(self, space: _Space, name: str) -> Any:
        value = space.globals.get(name, _MISSING)
        self.witnesses[(id(space.globals), name)] = (space.globals, name, value)
        return value

    def space(self, namespace: Mapping[str, Any]) -> _Space:
        found = self._spaces.get(id(namespace))
        if found is None:
            name = namespace.get("__name__")
            user = isinstance(name, str) and _user_name(name, self.rule)
            found = self._spaces[id(namespace)] = _Space(namespace, user)
            self._keep.append(namespace)
            if found.source is None and user:
                self.cacheable = False  # values without statements: digested as they are now
        return found

    def locate(self, name: str) -> Located | None:
        if name not in self._located:
            self._located[name] = sourcemap.locate(name)
        return self._located[name]

    def user_module(self, module: types.ModuleType) -> bool:
        return _user_name(module.__name__, self.rule)

    def value_digest(self, value: Any) -> str:
        try:
            return value_digest(value, self._identity)
        except Exception:  # an object whose state cannot be read: its class
            return type(value).__qualname__

    def _identity(self, obj: Any) -> str | None:
        """The encoder's code identity inside a walk: the user's code joins the walk (its
        pieces count) and is named here by nothing more; a library's is ``None``."""
        if isinstance(obj, type):
            if _user_class(obj, self.rule):
                self.later(self.cls, obj)
                return ""
            return None
        if isinstance(obj, types.FunctionType) and _user_function(obj, self.rule):
            self.later(self.function, obj)
            return ""
        self.scan(obj)  # a library's function may wrap the user's (__wrapped__, a closure)
        return None

    # -- roots ---------------------------------------------------------------------------

    def root(self, obj: Any, cached: bool) -> None:
        """Collect what stage ``obj`` reaches (``cached``: reuse earlier walks' results)."""
        if isinstance(obj, functools.partial):
            self.root(obj.func, cached)
            self.add("partial:" + self.value_digest((obj.args, obj.keywords or {})))
        elif isinstance(obj, types.MethodType):
            self.root(obj.__func__, cached)
            self.add("self:" + self.value_digest(obj.__self__))
        elif isinstance(obj, types.FunctionType) and _user_function(obj, self.rule):
            self.items |= self._cached(obj, obj.__code__, obj.__globals__, cached,
                                       lambda walk: walk.function(obj, own=False))
            self.own(obj)
        elif isinstance(obj, type) and _user_class(obj, self.rule):
            self.items |= self._cached(obj, obj, obj, cached, lambda walk: walk.cls(obj))
        elif isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type)):
            self.add(f"library:{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}")
            self.scan(obj)
        else:  # a callable instance: its class and its state
            self.add("object:" + self.value_digest(obj))
            self.scan(obj)
        self.drain()

    def _cached(self, obj: Any, key: Any, owner: Any, cached: bool,
                start: Callable[[_Walk], None]) -> frozenset[str]:
        """The pieces ``start`` collects in a walk of their own, reused (``cached``) while
        that walk's lookups still find the same objects."""
        entries = _results.setdefault(key if not isinstance(key, type) else id(key), [])
        if cached:
            for entry in entries:
                if entry.owner is owner and entry.valid():
                    return entry.items
        sub = _Walk(self.rule)
        start(sub)
        sub.drain()
        items = frozenset(sub.items)
        if sub.cacheable:
            entries[:] = [e for e in entries if e.owner is not owner][-3:]
            entries.append(_Entry(owner, items, list(sub.witnesses.values()), sub.lengths,
                                  [(f, sourcemap.file_stamp(f)) for f in sorted(sub.files)]))
        else:
            self.cacheable = False
        return items

    # -- functions -----------------------------------------------------------------------

    def function(self, fn: types.FunctionType, own: bool = True) -> None:
        """A function of the user's: its text, what it reads, and (``own``) its defaults,
        closure cells and attributes."""
        if not self._first(fn):
            return
        code = fn.__code__
        static = _static(code, sourcemap.source_for(code.co_filename))
        self.add(static.text)
        if static.source is not None and static.text.startswith("def:"):
            self.files.add(code.co_filename)
        if own:
            self.own(fn)
        space = self.space(fn.__globals__)
        head, dot, _ = fn.__qualname__.partition(".")
        if dot and head.isidentifier():  # the class of a method, the maker of a closure
            value = self.lookup(space, head)
            if value is not _MISSING:
                self.scan(value)
        for name in static.globals:
            self.later(self.global_, space, name, static.chains.get(name, _BARE))
        for module, level, fromlist in static.imports:
            self.later(self.lazy_import, space, module, level, fromlist)
        self.later(self.dynamic, space, static)

    def own(self, fn: types.FunctionType) -> None:
        """What a function object holds besides its code: defaults, cells, attributes."""
        qual = fn.__qualname__
        if fn.__defaults__:
            self.add(f"defaults:{qual}:{self.value_digest(fn.__defaults__)}")
        if fn.__kwdefaults__:
            self.add(f"kwdefaults:{qual}:{self.value_digest(fn.__kwdefaults__)}")
        if fn.__closure__:
            cells: list[tuple[Any, ...]] = []
            for name, cell in zip(fn.__code__.co_freevars, fn.__closure__, strict=False):
                try:
                    cells.append((name, cell.cell_contents))
                except ValueError:  # not filled yet
                    cells.append((name,))
            self.add(f"cells:{qual}:{self.value_digest(cells)}")
        attrs = getattr(fn, "__dict__", None)
        if attrs:  # __wrapped__, attributes set on it
            self.scan(list(attrs.values()))

    # -- names ---------------------------------------------------------------------------

    def global_(self, space: _Space, name: str, chains: Iterable[tuple[str, ...]]) -> None:
        """Module-level name ``name`` of ``space`` read (with these attribute chains)."""
        value = self.lookup(space, name)
        if value is _MISSING:
            return
        if isinstance(value, types.ModuleType):
            if self.user_module(value):
                for chain in sorted(chains):
                    if chain:
                        self.later(self.chain, value, chain)
                    else:
                        self.later(self.whole_module, value)
            else:  # a library's module: which one (never its code)
                self.add(f"library module:{name}={value.__name__}")
            return
        key = (id(space.globals), name)
        if key in self._names:
            return
        self._names.add(key)
        library = _library_name(value, self.rule)
        if library is not None:  # a library's function or class: which one
            self.add(f"library:{name}={library}")
        self.scan(value, top=True)
        if space.source is not None:
            self.later(self.binding, space, name)
        elif space.user and not _is_code(value):  # a notebook's value: as it is now
            self.add(f"value:{name}:{self.value_digest(value)}")

    def chain(self, module: types.ModuleType, chain: tuple[str, ...]) -> None:
        """``module.a.b…`` read: follow ``a`` (a submodule, a function, a value)."""
        key = (id(module), chain)
        if key in self._chains:
            return
        self._chains.add(key)
        space = self.space(vars(module))
        head, rest = chain[0], chain[1:]
        if self.lookup(space, head) is _MISSING:
            if hasattr(module, "__path__"):  # a submodule not imported yet (a stage or the
                # package's ``__getattr__`` imports it at run time): its file, whole
                self.later(self.import_name, f"{module.__name__}.{head}")
            if "__getattr__" in space.globals:  # PEP 562: any name may be computed
                self.whole_module(module)
            return
        self.global_(space, head, {rest})

    def binding(self, space: _Space, name: str) -> None:
        """The module-level statements of ``space`` that bind or change ``name``, what they
        read, and the modules it is imported from."""
        source = space.source
        if source is None:
            return
        for stmt in source.bindings(name):
            if id(stmt) in self._stmts:
                continue
            self._stmts.add(id(stmt))
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                value = self.lookup(space, stmt.name)  # a def declaring it global
                if value is not _MISSING:
                    self.scan(value)
                continue
            self.add("stmt:" + source.dump(stmt))
            if space.file:
                self.files.add(space.file)
            names, chains = source.names_of(stmt)
            for read in sorted(names):
                self.later(self.global_, space, read, chains.get(read, _BARE))
        imports = source.imports_of(name)
        for imp in imports:
            self.import_binding(space, imp)
        if not imports and not source.bindings(name):
            for imp in source.star_imports():
                target = self._imported(space, imp)
                if target is not None and name in vars(target):
                    self.later(self.global_, self.space(vars(target)), name, _BARE)

    def _imported(self, space: _Space, imp: ImportBinding) -> types.ModuleType | None:
        absolute = sourcemap.resolve(imp.module, imp.level, space.package)
        if not absolute:
            return None
        target = sys.modules.get(absolute)
        if target is None:
            self.later(self.import_name, absolute)  # imported, then removed: read its file
            return None
        return target if self.user_module(target) else None

    def import_binding(self, space: _Space, imp: ImportBinding) -> None:
        """``from module import name``: follow ``name`` in ``module``."""
        if imp.name is None:
            return
        target = self._imported(space, imp)
        if target is None:
            absolute = sourcemap.resolve(imp.module, imp.level, space.package)
            self.add(f"library import:{absolute}.{imp.name}")  # which name, never its code
            return
        value = vars(target).get(imp.name, _MISSING)
        if isinstance(value, types.ModuleType):
            return  # a submodule: followed as the value it is
        self.later(self.global_, self.space(vars(target)), imp.name, _BARE)

    # -- values --------------------------------------------------------------------------

    def scan(self, root: Any, top: bool = False) -> None:
        """Follow the user's code held in a value: functions, classes (an instance's too),
        modules, through containers and objects' attributes (bounded)."""
        stack: list[tuple[Any, int]] = [(root, 0)]
        budget = _SCAN_BUDGET
        while stack and budget > 0:
            obj, depth = stack.pop()
            kind = type(obj)
            if kind in _ATOMS or id(obj) in self._scanned:
                continue
            self._scanned.add(id(obj))
            self._keep.append(obj)
            budget -= 1
            children: Iterable[Any] = ()
            if kind is types.FunctionType:
                if _user_function(obj, self.rule):
                    self.later(self.function, obj)
                    continue
                children = [*(_cell_values(obj)), *(obj.__defaults__ or ()),
                            *(obj.__kwdefaults__ or {}).values(), *vars(obj).values()]
            elif kind is types.MethodType:
                children = (obj.__func__, obj.__self__)
            elif isinstance(obj, type):
                if _user_class(obj, self.rule):
                    self.later(self.cls, obj)
                continue
            elif isinstance(obj, types.ModuleType):
                if self.user_module(obj):  # a module passed around: any of its names
                    self.later(self.whole_module, obj)
                continue
            elif kind is types.BuiltinFunctionType:
                bound = obj.__self__
                if bound is not None and not isinstance(bound, types.ModuleType):
                    children = (bound,)
            elif depth >= _SCAN_DEPTH:
                continue
            elif isinstance(obj, dict):
                if top and obj is root:
                    self.lengths.append((obj, len(obj)))
                children = itertools.chain.from_iterable(
                    itertools.islice(obj.items(), budget))
            elif isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
                if top and obj is root and isinstance(obj, (list, set)):
                    self.lengths.append((obj, len(obj)))
                children = itertools.islice(obj, budget)
            elif isinstance(obj, functools.partial):
                children = (obj.func, *obj.args, *(obj.keywords or {}).values(),
                            *vars(obj).values())
            elif isinstance(obj, (staticmethod, classmethod)):
                children = (obj.__func__,)
            elif isinstance(obj, property):
                children = (obj.fget, obj.fset, obj.fdel)
            elif _plain_array(obj):
                continue
            else:
                if _user_class(kind, self.rule):
                    self.later(self.cls, kind)
                children = _state(obj)
            stack.extend((child, depth + 1) for child in children
                         if type(child) not in _ATOMS)

    # -- classes -------------------------------------------------------------------------

    def cls(self, klass: type) -> None:
        """A class of the user's: its statement, its members, its bases, what its body and
        decorators read."""
        if not self._first(klass):
            return
        module = sys.modules.get(klass.__module__)
        found = self._class_source(klass, module)
        if found:
            source, nodes, file = found
            self.add("class:" + "".join(source.dump(n) for n in nodes))
            self.files.add(file)
        else:
            self.add(f"class:{klass.__qualname__}:{','.join(sorted(vars(klass)))}")
        for base in klass.__bases__:
            self.scan(base)
        if type(klass) is not type:
            self.scan(type(klass))
        members = vars(klass)
        for name in sorted(members):
            if name not in ("__dict__", "__weakref__", "__module__", "__qualname__", "__doc__"):
                self.scan(members[name])
        if found and module is not None:
            space = self.space(vars(module))
            source, nodes, _ = found
            for node in nodes:
                names, chains = source.names_of(node, outer=True)
                for name in sorted(names):
                    self.later(self.global_, space, name, chains.get(name, _BARE))

    def _class_source(self, klass: type, module: types.ModuleType | None
                      ) -> tuple[Source, list[Any], str] | None:
        """The ``class`` statement(s) of ``klass``: in its module's file, else in the file
        its methods were compiled from (a notebook cell)."""
        codes = [c for c in (_code_of(m) for m in vars(klass).values()) if c is not None]
        files: list[str] = []
        file = getattr(module, "__file__", None)
        if isinstance(file, str):
            files.append(file)
        files.extend(c.co_filename for c in codes)
        for path in dict.fromkeys(files):
            source = sourcemap.source_for(path)
            nodes = source.class_nodes(klass.__qualname__) if source is not None else []
            if len(nodes) > 1:  # defined more than once: the one holding its methods
                lines = [c.co_firstlineno for c in codes if c.co_filename == path]
                holding = [n for n in nodes if any(
                    n.lineno <= line <= (n.end_lineno or n.lineno) for line in lines)]
                nodes = holding or nodes
            if source is not None and nodes:
                return source, nodes, path
        return None

    # -- modules -------------------------------------------------------------------------

    def lazy_import(self, space: _Space, module: str, level: int,
                    fromlist: tuple[str, ...]) -> None:
        """An import inside a function: the modules it names, whole."""
        absolute = sourcemap.resolve(module, level, space.package)
        if not absolute:
            return
        self.import_name(absolute)
        for item in fromlist:
            if item != "*":
                self.import_name(f"{absolute}.{item}")

    def import_name(self, name: str) -> None:
        """Module ``name`` (when it is the user's and exists), whole, without importing it."""
        if name in self._wholes:
            return
        self._wholes.add(name)
        if not _user_name(name, self.rule):
            return
        located = self.locate(name)
        if located is None:
            return
        parent = name.rpartition(".")[0]
        if parent:  # importing it runs its packages first
            self.import_name(parent)
        if located.origin is not None:
            self.whole_file(name, located.origin, located.locations is not None)

    def whole_file(self, name: str, path: str, package: bool) -> None:
        """A module's whole source, and every module of the user's it imports."""
        source = sourcemap.source_of_file(path)
        if source is None:
            return
        self.add("module:" + source.whole())
        self.files.add(path)
        base = name if package else name.rpartition(".")[0]
        for imp in source.all_imports():
            absolute = sourcemap.resolve(imp.module, imp.level, base)
            if not absolute:
                continue
            self.later(self.import_name, absolute)
            if imp.name and imp.name != "*":
                self.later(self.import_name, f"{absolute}.{imp.name}")

    def whole_module(self, module: types.ModuleType) -> None:
        self.whole_space(self.space(vars(module)))

    def whole_space(self, space: _Space) -> None:
        """Everything in a module of the user's: its file, or (a notebook) every value."""
        if space.name in self._wholes:
            return
        self._wholes.add(space.name)
        if space.file is not None:
            parent = space.name.rpartition(".")[0]
            if parent:
                self.import_name(parent)
            self.whole_file(space.name, space.file, space.file.endswith("__init__.py"))
            return
        for name in sorted(space.globals):
            if not name.startswith("_") and name not in _SHELL_NAMES:
                self.later(self.global_, space, name, _BARE)

    def dynamic(self, space: _Space, static: _Static) -> None:
        """Code reached by computed names: widen to whole modules."""
        widen = False
        for name in static.globals:
            value = space.globals.get(name, _MISSING)
            if value is _MISSING and name in _DYNAMIC:  # the builtin
                if name == "getattr":
                    widen |= self._getattr(space, static)
                elif name == "__import__":
                    self._import_dynamic(space, static)
                else:
                    widen = True
            elif value is importlib.import_module or value is builtins.__import__ or (
                    value is importlib and ("import_module",) in static.chains.get(name, ())):
                self._import_dynamic(space, static)
        if widen:
            self.whole_space(space)
            for name in static.globals:
                value = space.globals.get(name)
                if isinstance(value, types.ModuleType) and self.user_module(value):
                    self.whole_module(value)

    def _getattr(self, space: _Space, static: _Static) -> bool:
        """``getattr(x, <computed name>)``: ``x`` a module of the user's (``lab.models``) ->
        that module whole; a library's -> nothing; ``self``/``cls`` -> the class (followed
        with the method); a global object -> its class and values (followed); anything else
        (a parameter, an expression) -> widen."""
        widen = False
        for target in sorted(static.getattr_on):
            if not target:
                widen = True
                continue
            if target[0] in ("self", "cls"):
                continue
            value = space.globals.get(target[0], _MISSING)
            for attr in target[1:]:
                if not isinstance(value, types.ModuleType):
                    break
                value = vars(value).get(attr, _MISSING)
            if isinstance(value, types.ModuleType):
                if self.user_module(value):
                    self.whole_module(value)
            elif value is _MISSING:
                widen = True
            else:
                self.scan(value)
        return widen

    def _import_dynamic(self, space: _Space, static: _Static) -> None:
        """``import_module(...)``: the modules and packages of the user's that the
        function's strings name, whole; none named: every module of the user's loaded."""
        found = False
        for text in static.strings:
            stripped = text.strip()
            rest = stripped.lstrip(".")
            level = len(stripped) - len(rest)
            rest = rest.rstrip(".")
            if (not rest and not level) or (rest and not all(
                    p.isidentifier() for p in rest.split("."))):
                continue
            absolute = sourcemap.resolve(rest, level, space.package)
            if not absolute or not _user_name(absolute, self.rule):
                continue
            located = self.locate(absolute)
            if located is None:
                continue
            found = True
            self.import_name(absolute)
            if located.locations is not None:
                for name, _ in sourcemap.package_modules(absolute, located):
                    self.import_name(name)
        if not found:
            for name in sorted(sys.modules):
                module = sys.modules.get(name)
                if isinstance(module, types.ModuleType) and self.user_module(module):
                    self.whole_module(module)


def _library_name(value: Any, rule: Rule) -> str | None:
    """``module.qualname`` of a library's function or class (``None`` for anything else)."""
    if isinstance(value, type):
        user = _user_class(value, rule)
    elif isinstance(value, types.FunctionType):
        user = _user_function(value, rule)
    elif isinstance(value, types.BuiltinFunctionType):
        user = False
    else:
        return None
    if user:
        return None
    return f"{getattr(value, '__module__', None)}.{getattr(value, '__qualname__', None)}"


def _cell_values(fn: types.FunctionType) -> list[Any]:
    out = []
    for cell in fn.__closure__ or ():
        try:
            out.append(cell.cell_contents)
        except ValueError:
            continue
    return out


def _code_of(member: Any) -> types.CodeType | None:
    fn = getattr(member, "__func__", None) or getattr(member, "fget", None) or member
    code = getattr(fn, "__code__", None) if isinstance(fn, types.FunctionType) else None
    return code if isinstance(code, types.CodeType) else None


def _is_code(value: Any) -> bool:
    return isinstance(value, (types.FunctionType, types.MethodType, types.BuiltinFunctionType,
                              types.ModuleType, type, functools.partial))


def _plain_array(obj: Any) -> bool:
    dtype = getattr(type(obj), "__module__", "") == "numpy" and getattr(obj, "dtype", None)
    return dtype is not None and dtype is not False and not getattr(dtype, "hasobject", True)


def _state(obj: Any) -> list[Any]:
    """An object's attribute values (``__dict__`` and slots), read without running its
    code (no ``__getattr__``)."""
    out: list[Any] = []
    try:
        attrs = object.__getattribute__(obj, "__dict__")
    except (AttributeError, TypeError):
        attrs = None
    if isinstance(attrs, dict):
        out.extend(itertools.islice(attrs.values(), _SCAN_BUDGET))
    for klass in type(obj).__mro__:
        slots = vars(klass).get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            try:
                out.append(object.__getattribute__(obj, slot))
            except (AttributeError, TypeError):
                continue
    return out


# --------------------------------------------------------------------------------------------
# Results reused between calls (cached_fingerprint).

class _Entry:
    """A walk's pieces and what they rest on: every global it looked up (the same object
    must still be there), the containers it searched (the same length), the files it read
    (the same size and mtime, checked at most once a second)."""

    def __init__(self, owner: Any, items: frozenset[str],
                 witnesses: list[tuple[Mapping[str, Any], str, Any]],
                 lengths: list[tuple[Any, int]], files: list[tuple[str, Any]]) -> None:
        self.owner = owner
        self.items = items
        self.witnesses = witnesses
        self.lengths = lengths
        self.files = files
        self.checked = time.monotonic()

    def valid(self) -> bool:
        for namespace, name, value in self.witnesses:
            if namespace.get(name, _MISSING) is not value:
                return False
        for container, size in self.lengths:
            if len(container) != size:
                return False
        now = time.monotonic()
        if now - self.checked > 1.0:
            if any(sourcemap.file_stamp(path) != stamp for path, stamp in self.files):
                return False
            self.checked = now
        return True


_results: dict[Any, list[_Entry]] = {}


# --------------------------------------------------------------------------------------------
# Public.

def fingerprint(fn: Any, rule: Rule | None = None) -> str:
    """A short hex digest of stage ``fn``'s code and everything of the user's it reaches
    (``rule``: what is the user's code, default the environment's overrides only)."""
    walk = _Walk(_rule(rule))
    walk.root(fn, cached=False)
    return walk.digest()


def cached_fingerprint(fn: Any) -> str:
    """``fingerprint(fn)``, reusing what an earlier call found while nothing it rests on
    changed (config digests meet the same function or class in many cfgs)."""
    walk = _Walk(_rule())
    walk.root(fn, cached=True)
    return walk.digest()


def code_identity(obj: Any) -> str | None:
    """For ``dagrun.code.encoding``: the fingerprint of a function or class of the user's;
    ``None`` for a library's (named by module and qualified name, never by its code)."""
    rule = _rule()
    if isinstance(obj, type):
        return cached_fingerprint(obj) if _user_class(obj, rule) else None
    if isinstance(obj, types.FunctionType) and _user_function(obj, rule):
        return cached_fingerprint(obj)
    return None
