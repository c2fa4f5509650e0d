"""Workflow and stage outputs are pickled by ``pickle`` where that gives cloudpickle's bytes.

``dagrun.code.mainref.dumps`` tries ``pickle``'s own pickler first and starts over with
cloudpickle for what only cloudpickle pickles right (a lambda, a class of ``__main__``, a
bound method, ...). The promise: whichever path pickled it, the bytes are cloudpickle's.
Each value below is held against cloudpickle's bytes; the plain ones must also be taken by
the plain path (else the fast path would be dead code), the others refused by it.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import fractions
import functools
import io
import logging
import os
import pathlib
import re
import subprocess
import sys
import types
import typing
import weakref
from typing import Any

import numpy as np
import pytest

from dagrun.code import mainref
from dagrun.record import record


class Opt(dict):  # type: ignore[type-arg]  # an attribute dict, as research code writes them
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__dict__ = self


class Color(enum.Enum):
    RED = 1


@record
class Point:
    x: int
    y: float = 0.0


class Plain:
    def __init__(self) -> None:
        self.data = [1, 2]

    def method(self) -> int:
        return 1


def top_level(x: int) -> int:
    return x


def _local_function() -> Any:
    def inner() -> int:
        return 1
    return inner


def _local_instance() -> Any:
    class Local:
        pass
    return Local()


def _in_main() -> Any:
    def fn() -> int:
        return 2
    fn.__module__, fn.__qualname__ = "__main__", "fn_not_there"
    return fn


def _not_imported() -> Any:
    def fn() -> int:
        return 3
    fn.__module__, fn.__qualname__ = "a_module_nobody_imported", "fn"
    return fn


PLAIN: dict[str, Any] = {
    "nested data": {"a": [1, 2.5, (3, "x")], "b": {None: b"raw"}, "c": {1, 2}},
    "set and frozenset": [{1, 2}, frozenset({"a"})],
    "bytearray, complex, range, slice": [bytearray(b"ab"), 1 + 2j, range(3), slice(1, 5)],
    "numpy array": np.arange(12, dtype=np.float32).reshape(3, 4),
    "numpy scalar and dtype": [np.float64(1.5), np.dtype("int16")],
    "attribute dict": Opt(lr=0.1, layers=[1, 2]),
    "enum member": Color.RED,
    "record": Point(1, 2.0),
    "instance of an importable class": Plain(),
    "top-level function": top_level,
    "classes": [int, Plain, type(None), type(Ellipsis)],
    "ordered and default dict": [collections.OrderedDict(a=1),
                                 collections.defaultdict(list, a=[1])],
    "dates, decimals, fractions, paths": [datetime.datetime(2026, 1, 2, 3, 4),
                                          decimal.Decimal("1.25"), fractions.Fraction(1, 3),
                                          pathlib.PurePosixPath("/a/b")],
    "compiled pattern": re.compile(r"a+b", re.I),
    "partial of a builtin": functools.partial(max, 3),
    "shared references": (lambda shared: [shared, shared])([1, 2]),
}

CLOUD: dict[str, Any] = {
    "lambda": lambda x: x + 1,
    "local function": _local_function(),
    "instance of a local class": _local_instance(),
    "function named in __main__": _in_main(),
    "function of a module not imported": _not_imported(),
    "module": types,
    "bound method": Plain().method,
    "classmethod object": classmethod(top_level),  # type: ignore[arg-type]
    "property": property(top_level),
    "type variable": typing.TypeVar("T"),
    "logger": logging.getLogger("dagrun.test.pickle"),
    "dict keys view": {"a": 1}.keys(),
    "mapping proxy": types.MappingProxyType({"a": 1}),
    "weak set": weakref.WeakSet(),
    "simple namespace": types.SimpleNamespace(a=1),
    "default dict with a lambda": collections.defaultdict(lambda: 0),
    "lambda deep inside data": {"a": [1, {"b": (2, lambda: 3)}]},
}


def _plain_bytes(value: Any) -> bytes | None:
    """What the plain path writes for ``value`` (``None``: it leaves it to cloudpickle)."""
    with io.BytesIO() as f:
        try:
            mainref._Plain(f, protocol=5).dump(value)
        except Exception:
            return None
        return f.getvalue()


def _plain_takes(value: Any) -> bool:
    return _plain_bytes(value) is not None


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_values_take_the_plain_path_with_cloudpickles_bytes(name: str) -> None:
    value = PLAIN[name]
    assert _plain_takes(value), name
    assert mainref.dumps(value) == mainref.cloud_dumps(value)


@pytest.mark.parametrize("name", sorted(CLOUD))
def test_other_values_are_left_to_cloudpickle(name: str) -> None:
    value = CLOUD[name]
    assert not _plain_takes(value), name
    assert mainref.dumps(value) == mainref.cloud_dumps(value)


def test_a_function_of_the_workflow_script_is_a_reference_on_both_paths() -> None:
    """``__main__``'s own top-level function, with the workflow's alias registered: a
    reference to the alias, whichever pickler writes it."""
    main = sys.modules["__main__"]
    saved = mainref._alias
    main.dagrun_test_fn = top_level  # type: ignore[attr-defined]
    original = (top_level.__module__, top_level.__qualname__)
    top_level.__module__, top_level.__qualname__ = "__main__", "dagrun_test_fn"
    try:
        mainref._alias = "dagrun_workflow_test"
        assert _plain_takes(top_level)
        assert mainref.dumps(top_level) == mainref.cloud_dumps(top_level)
        assert b"dagrun_workflow_test" in mainref.dumps(top_level)
    finally:
        top_level.__module__, top_level.__qualname__ = original
        mainref._alias = saved
        del main.dagrun_test_fn


_PROBE = """
import sys
from dagrun.code import mainref
mainref.dumps({"cfg": [1, 2.0, "x"], "nested": {"a": (1,)}})
print("after plain", "cloudpickle" in sys.modules)
mainref.dumps(lambda: 1)
print("after lambda", "cloudpickle" in sys.modules)
"""


def test_cloudpickle_is_imported_only_when_a_value_needs_it() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         env=env, timeout=60, check=True).stdout.split("\n")
    assert out[:2] == ["after plain False", "after lambda True"]


def test_a_module_registered_by_value_is_pickled_by_value() -> None:
    """Once cloudpickle is imported, a module registered to be pickled by value (the user's
    choice, which only cloudpickle knows) is: the plain path is not taken."""
    import cloudpickle

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        data = mainref.dumps(top_level)
        assert data == mainref.cloud_dumps(top_level)
        assert b"top_level" in data and data != _plain_bytes(top_level)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
