"""Which imported code is the user's own (copied with the sweep) and which is a library.

The rule, per top-level module or package (``pkg`` for ``pkg.sub.mod``), first match wins:

1. named in ``include`` (basecfg ``code``, env ``DAGRUN_CODE_INCLUDE``): the user's;
2. named in ``exclude`` (``DAGRUN_CODE_EXCLUDE``): a library;
3. the standard library, a built-in or frozen module, dagrun itself, or a module without a
   file on disk (a zip import): a library;
4. its files lie under a site directory (the interpreter's prefixes, ``site-packages`` of
   the system, the virtual environment and the user site): a library;
5. the folder that holds it (its ``sys.path`` entry) holds an installed distribution
   (``*.dist-info``) that lists it — ``pip install --target``, a vendored folder on
   ``PYTHONPATH`` — unless that distribution is an editable install (its
   ``direct_url.json`` says ``"editable": true``): a library;
6. everything else: the user's (the workflow's folder, the working folder, any folder on
   ``sys.path``/``PYTHONPATH`` without installed distributions, an editable install of
   the user's own package, whose files stay in the user's checkout).

Editable installs keep their files outside site directories (rule 4 does not see them);
``*.egg-info`` in a source folder is what ``setup.py develop`` leaves beside the user's own
code, so it does not make a folder a library's.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import json
import os
import site
import sys
import sysconfig
import types
from collections.abc import Iterable, Mapping
from typing import Any

from dagrun.code.sourcemap import library_roots
from dagrun.errors import ConfigError
from dagrun.record import record

INCLUDE_ENV = "DAGRUN_CODE_INCLUDE"
EXCLUDE_ENV = "DAGRUN_CODE_EXCLUDE"


@functools.lru_cache(maxsize=1)
def site_roots() -> tuple[str, ...]:
    """Folders whose code is never the user's: the fingerprint's library roots (Python's
    own, installed packages, dagrun) plus every site directory the ``site`` module knows
    (the system's and the user site, where ``pip install --user`` puts libraries)."""
    roots = {sysconfig.get_paths().get("platstdlib", "")}
    with contextlib.suppress(AttributeError):  # an old virtualenv's site module lacks it
        roots.update(site.getsitepackages())
    user = getattr(site, "getusersitepackages", lambda: "")()
    if user:
        roots.add(user)
    extra = {os.path.join(os.path.realpath(r), "") for r in roots if r}
    return library_roots() + tuple(sorted(extra - set(library_roots())))


def under(path: str, roots: Iterable[str]) -> bool:
    """Whether real path ``path`` lies inside one of ``roots`` (each ending with ``/``)."""
    probe = os.path.join(path, "")
    return any(probe.startswith(r) for r in roots)


@record(frozen=True)
class Top:
    """A top-level module or package of the user's: where it is and how it is laid out."""

    name: str
    path: str  # the package's folder or the module's file (real path)
    entry: str  # the folder holding it (its ``sys.path`` entry)
    package: bool


@record(frozen=True)
class Rule:
    """The user's overrides of the rule (basecfg ``code`` and the environment)."""

    include: frozenset[str] = frozenset()
    exclude: tuple[str, ...] = ()  # top-level names, or paths/globs inside copied packages

    @classmethod
    def of(cls, code: Mapping[str, Any] | None) -> Rule:
        code = code or {}
        include = set(_names(code.get("include"), "include"))
        exclude = list(_names(code.get("exclude"), "exclude"))
        include.update(_env_list(INCLUDE_ENV))
        exclude.extend(_env_list(EXCLUDE_ENV))
        return cls(frozenset(include), tuple(exclude))


def _names(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"basecfg['code'][{key!r}] must be a list of module names or "
                          f"paths inside them, got {value!r}")
    return [v.strip().strip("/") for v in value]


def _env_list(var: str) -> list[str]:
    return [v.strip().strip("/") for v in os.environ.get(var, "").split(",") if v.strip()]


_real_dirs: dict[str, str] = {}


def real_file(path: str) -> str:
    """``os.path.realpath`` of a file by its folder's real path (cached per folder: a
    process has ~1,500 modules in ~200 folders, and resolving each path costs ~0.1 ms)."""
    folder, name = os.path.split(os.path.abspath(path))
    real = _real_dirs.get(folder)
    if real is None:
        real = _real_dirs[folder] = os.path.realpath(folder)
    return os.path.join(real, name)


def top_of(name: str, module: types.ModuleType) -> Top | None:
    """Where top-level module ``name`` lives, or ``None`` when it has no folder or file of
    its own on disk (built-in, frozen, zip, a namespace spread over several folders)."""
    path = getattr(module, "__path__", None)
    if path is not None:
        try:
            entries = list(path)
        except TypeError:  # a __path__ that is not iterable: not a package on disk
            return None
        if len(entries) != 1 or not isinstance(entries[0], str):
            return None
        folder = real_file(entries[0])
        if not os.path.isdir(folder):
            return None
        return Top(name, folder, os.path.dirname(folder), True)
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not os.path.isfile(file):
        return None
    real = real_file(file)
    return Top(name, real, os.path.dirname(real), False)


def is_users(top: Top, rule: Rule) -> bool:
    """Whether ``top`` is the user's code (see the module's docstring for the rule)."""
    if top.name in rule.include:
        return True
    if top.name in rule.exclude or top.name in sys.stdlib_module_names \
            or top.name in sys.builtin_module_names or top.name == "dagrun":
        return False
    if under(top.path, site_roots()):
        return False
    return top.name not in installed_tops(top.entry)


@functools.lru_cache(maxsize=256)
def installed_tops(folder: str) -> frozenset[str]:
    """Top-level names that non-editable distributions installed into ``folder`` own
    (from their ``top_level.txt`` or ``RECORD``)."""
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".dist-info")]
    except OSError:
        return frozenset()
    tops: set[str] = set()
    for name in names:
        meta = os.path.join(folder, name)
        if _editable(meta):
            continue
        tops.update(_dist_tops(meta))
    return frozenset(tops)


def _editable(meta: str) -> bool:
    try:
        with open(os.path.join(meta, "direct_url.json"), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    info = data.get("dir_info") if isinstance(data, dict) else None
    return isinstance(info, dict) and info.get("editable") is True


def _dist_tops(meta: str) -> set[str]:
    tops: set[str] = set()
    try:
        with open(os.path.join(meta, "top_level.txt"), encoding="utf-8") as f:
            tops.update(line.strip() for line in f if line.strip())
    except OSError:
        pass
    try:
        with open(os.path.join(meta, "RECORD"), encoding="utf-8") as f:
            tops.update(filter(None, (_record_top(line.split(",", 1)[0]) for line in f)))
    except OSError:
        pass
    return tops


def _record_top(path: str) -> str | None:
    """The top-level module a ``RECORD`` line installs, if any (``pkg/x.py`` -> ``pkg``,
    ``mod.py`` -> ``mod``, ``_ext.cpython-311-x86_64-linux-gnu.so`` -> ``_ext``)."""
    first, slash, _ = path.partition("/")
    if slash:
        skip = first.startswith("..") or first.endswith((".dist-info", ".data", ".egg-info"))
        return None if skip else first
    if first.endswith(".py"):
        return first[:-3]
    if first.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return first.split(".", 1)[0]
    return None


def user_tops(modules: Mapping[str, types.ModuleType], rule: Rule) -> list[Top]:
    """The user's top-level modules and packages among ``modules`` (``sys.modules``)."""
    found: dict[str, Top] = {}
    for name in sorted({n.partition(".")[0] for n in modules}):
        module = modules.get(name)
        if name in ("__main__", "__mp_main__") or module is None or name.startswith(
                "dagrun_workflow_"):
            continue
        top = top_of(name, module)
        if top is not None and is_users(top, rule):
            found[name] = top
    return list(found.values())
