"""``dagrun.record`` against ``dataclasses``: the same class body made both ways behaves alike
(construction, defaults, factories, equality, hashing, repr, frozen assignment, replace,
fields, asdict, pickling, inheritance, ``__post_init__``), and ``__init__`` is compiled on
first use, in whichever process that is."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dagrun import record as rec


def _both(frozen: bool) -> tuple[Any, Any]:
    """One class body, made a dataclass and a record."""

    def body(decorate: Callable[[type], type], field: Callable[..., Any]) -> Any:
        class Point:
            """A point."""

            limit: ClassVar[int] = 3
            x: int
            y: str
            z: float = 1.5
            tags: tuple[str, ...] = ()
            extra: dict[str, int] = field(default_factory=dict, compare=False)
            note: str = field(default="n", repr=False)
            seen: int = field(default=0, hash=False)

            def total(self) -> float:
                return self.x + self.z

        Point.__qualname__ = "Point"
        return decorate(Point)

    return (body(dataclasses.dataclass(frozen=frozen), dataclasses.field),
            body(rec.record(frozen=frozen), rec.field))


@pytest.mark.parametrize("frozen", [True, False])
def test_a_record_behaves_as_the_dataclass_of_the_same_body(frozen: bool) -> None:
    dc, rc = _both(frozen)
    cases: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1, "a"), {}), ((1, "a", 2.0), {"tags": ("t",)}),
        ((), {"x": 2, "y": "b", "extra": {"k": 1}, "note": "m"})]
    for args, kwargs in cases:
        d, r = dc(*args, **kwargs), rc(*args, **kwargs)
        assert repr(d) == repr(r)
        assert vars(d) == vars(r)
        assert d.total() == r.total()
        assert (r == rc(*args, **kwargs)) is True
        assert r != dc(*args, **kwargs)  # another class: NotImplemented both ways
    assert rc(1, "a", extra={"a": 1}) == rc(1, "a")  # compare=False
    assert rc(1, "a") != rc(1, "b")
    assert rc(1, "a").extra is not rc(1, "a").extra  # a factory per instance
    assert [f.name for f in rec.fields(rc)] == [f.name for f in dataclasses.fields(dc)]
    assert rc.limit == 3 and "limit" not in rec.field_names(rc)
    assert rc.z == dc.z == 1.5 and rc.note == "n"  # plain defaults stay class attributes
    assert not hasattr(rc, "extra") and not hasattr(dc, "extra")
    bad: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {}), ((1,), {}), ((1, "a"), {"nope": 1}), ((1, "a", 1.0, (), {}, "n", 0, 9), {})]
    for bad_args, bad_kwargs in bad:
        with pytest.raises(TypeError):
            dc(*bad_args, **bad_kwargs)
        with pytest.raises(TypeError):
            rc(*bad_args, **bad_kwargs)
    r = rc(1, "a")
    if frozen:
        assert hash(rc(1, "a", seen=5)) == hash(r) and hash(r) == hash(dc(1, "a"))
        with pytest.raises(AttributeError):
            r.x = 2
        with pytest.raises(AttributeError):
            del r.y
        r.other = 1  # not a field: allowed, as on a frozen dataclass
    else:
        with pytest.raises(TypeError):
            hash(r)
        r.x = 5
        assert r.x == 5
    changed = rec.replace(r, y="b")
    assert (changed.x, changed.y, type(changed)) == (r.x, "b", rc)
    with pytest.raises(TypeError):
        rec.replace(r, nope=1)
    assert rec.asdict(rc(1, "a", tags=("t",))) == dataclasses.asdict(dc(1, "a", tags=("t",)))


def test_the_rules_dataclasses_enforce_are_enforced() -> None:
    with pytest.raises(TypeError, match="non-default argument"):
        @rec.record
        class Bad:
            a: int = 1
            b: int  # type: ignore[misc]
    with pytest.raises(ValueError, match="mutable default"):
        @rec.record
        class Mutable:
            a: list[int] = []  # noqa: RUF012
    with pytest.raises(TypeError, match="frozen and a mutable"):
        @rec.record(frozen=True)
        class Base:
            a: int

        @rec.record
        class Child(Base):  # type: ignore[misc]
            b: int
    with pytest.raises(ValueError):
        rec.field(default=1, default_factory=int)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="not a record"):
        rec.fields(object())


def test_inheritance_post_init_and_methods_the_class_writes() -> None:
    calls: list[str] = []

    @rec.record(frozen=True)
    class Base:
        a: int
        b: int = 2

    @rec.record(frozen=True)
    class Child(Base):
        c: str = "c"

        def __post_init__(self) -> None:
            calls.append(f"{self.a}{self.b}{self.c}")

        def __repr__(self) -> str:
            return "mine"

    child = Child(1, c="z")
    assert (child.a, child.b, child.c, calls) == (1, 2, "z", ["12z"])
    assert rec.field_names(Child) == ("a", "b", "c") and repr(child) == "mine"
    assert Base(1) == Base(1) and Base(1) != Child(1)
    assert {Base(1), Base(1)} == {Base(1)}

    @rec.record
    class Hashed:
        a: int

        def __hash__(self) -> int:
            return 7

    assert hash(Hashed(1)) == 7  # a mutable record keeps a hash it writes itself

    @rec.record
    class Empty:
        pass

    assert Empty() == Empty() and repr(Empty()).endswith(".Empty()")  # the qualname


def test_nested_records_in_asdict() -> None:
    @rec.record(frozen=True)
    class Inner:
        v: int

    @rec.record(frozen=True)
    class Outer:
        inner: Inner
        many: tuple[Inner, ...]
        by: dict[str, Inner]

    out = Outer(Inner(1), (Inner(2),), {"k": Inner(3)})
    assert rec.asdict(out) == {"inner": {"v": 1}, "many": ({"v": 2},), "by": {"k": {"v": 3}}}
    assert rec.is_record(out) and rec.is_record(Outer) and not rec.is_record(1)


def test_init_is_compiled_on_first_use_and_records_pickle() -> None:
    from dagrun.run.stages import RunOutcome, RunTask

    code = ("from dagrun.run.stages import RunTask; "
            "print(RunTask.__init__.__code__.co_filename.endswith('record.py'))")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                           check=True)
    assert fresh.stdout.split() == [b"True"]  # imported, not compiled: the stand-in
    task = RunTask(exp_id=1, rep=0, path="/o/1", attempt=1)
    # made now, by the maker dagrun.record_inits holds for its exact source
    assert RunTask.__init__.__code__.co_filename.endswith("record_inits.py")
    again = pickle.loads(pickle.dumps(task))
    assert again == task and again is not task
    assert rec.replace(again, attempt=2).attempt == 2
    # a process that unpickles a record before making one: its methods work, and its
    # first ``replace`` compiles ``__init__`` there
    code = ("import pickle, sys; from dagrun import record as rec; "
            "t = pickle.loads(sys.stdin.buffer.read()); "
            "print(t == pickle.loads(pickle.dumps(t)), repr(t)[:8], "
            "rec.replace(t, attempt=3).attempt)")
    proc = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(task),
                          capture_output=True, timeout=60, check=True)
    assert proc.stdout.decode().split() == ["True", "RunTask(", "3"]
    assert rec.field_names(RunOutcome)[0] == "task"


def test_a_record_of_no_precompiled_source_is_compiled_and_makers_are_exact() -> None:
    """A record ``dagrun.record_inits`` holds no maker for (a user's, or one of dagrun's
    changed since the file was written) is compiled from its source; a maker taken from
    the file makes the record the compiled source makes."""
    @rec.record(frozen=True)
    class Local:
        a: int
        b: list[int] = rec.field(default_factory=list)

    local = Local(1)
    assert Local.__init__.__code__.co_filename == "<string>" and local.b == []
    from dagrun.record_inits import MAKERS
    from dagrun.run.stages import RunTask

    source, names = rec.init_text(RunTask)
    scope: dict[str, Any] = {}
    exec(source, {}, scope)
    maker: Callable[..., Any] = MAKERS[source]
    compiled, taken = scope["__make__"](*names.values()), maker(*names.values())
    assert compiled.__code__.co_code == taken.__code__.co_code
    assert compiled.__code__.co_varnames == taken.__code__.co_varnames
    assert compiled.__defaults__ == taken.__defaults__


def test_the_precompiled_makers_are_those_of_dagruns_records() -> None:
    """``dagrun/record_inits.py`` is what ``scripts/record_inits.py`` writes for the
    records as they are now (else ``make records``; a stale file is only slower)."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "record_inits.py"
    proc = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_no_dagrun_module_imports_dataclasses() -> None:
    """Records are ``dagrun.record`` (the module docstring says why): an ``import
    dataclasses`` would put its cost back on every sweep."""
    import ast
    from pathlib import Path

    root = Path(rec.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            named = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if "dataclasses" in named:
                offenders.append(str(path.relative_to(root)))
    assert offenders == []
