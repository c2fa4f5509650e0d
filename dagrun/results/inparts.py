"""Work in several processes at once: parts of it (the lines of a large text, the rows of
a large table) each in a forked child, the first part in this process meanwhile (or every
part in a child, this process gathering), in two steps with a meeting here between them
(``Steps``).

Decoding results.jsonl is most of a first ``dagrun results`` on a large sweep (50 MB of
JSON at 100,000 experiments of three repetitions), and JSON decoding holds the GIL: only
processes run it side by side. Forking needs nothing pickled or imported anew (the child
has the text and the code already) and returns as soon as the child is started.

Two steps, because such work needs something only the whole can say before a part can be
finished: the columns of a part of results.jsonl need the plan's repetitions (read here
while the children decode), a part of a table's lines needs the widest cell of any row.
Each part's first step gives a product, kept where it was made, and a small measure (plain
data ``marshal`` holds); the measures meet here, and what the meeting gives is sent to
every child for its part's second step, whose result comes back as bytes.

Only where it is safe and pays: a POSIX ``fork``, one Python thread (forking beside other
threads may deadlock the child), more than one CPU to run on, and a part's worth of work
for each part (``count``). A child that fails, or whose result does not arrive, costs its
part being computed here: never a wrong or missing result. The child leaves by
``os._exit`` (no buffers flushed, no exit handlers run); a parent interrupted meanwhile
kills its children. Children are reaped once they have exited, without waiting for it (a
child that answered gives back its memory while this process goes on), and at the latest
when this process ends.
"""

from __future__ import annotations

import atexit
import contextlib
import marshal
import os
import signal
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, Generic, TypeVar

T = TypeVar("T")
P = TypeVar("P")  # a part's first step: what its second step goes on from
X = TypeVar("X")  # a part as the caller cut it

MOST_PARTS = 8


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def forkable() -> bool:
    """Whether work may be forked here: a POSIX ``fork`` and no other Python thread."""
    return hasattr(os, "fork") and threading.active_count() == 1


def count(size: int, part_size: int) -> int:
    """How many parts ``size`` units of work are worth: one per CPU (at most
    ``MOST_PARTS``), each at least ``part_size`` units; 1 where forking does not pay."""
    return max(1, min(cpus(), MOST_PARTS, size // max(part_size, 1)))


def bounds(size: int, parts: int) -> list[int]:
    """Where ``size`` units of work are cut into ``parts`` parts of about the same size
    (``parts + 1`` positions, from 0 to ``size``)."""
    return [size * k // parts for k in range(parts + 1)]


def spans(data: bytes, parts: int) -> list[tuple[int, int]]:
    """Where ``data`` (whole lines) is cut into about ``parts`` parts of whole lines, in
    order: each part's start and end (at least one part; no part empty unless ``data``
    is). The parts are not copied out: a child reads its part of ``data`` where it is."""
    out, start = [], 0
    for position in bounds(len(data), parts)[1:-1]:
        end = data.find(b"\n", position) + 1
        if end <= start:
            continue
        out.append((start, end))
        start = end
    if start < len(data) or not out:
        out.append((start, len(data)))
    return out


_LENGTH = struct.Struct("<Q")  # the length of a measure or of what the meeting gave
# The marshal version of what goes between the processes: 2, without references (tracking
# every object another holds too, as a part's decoded lines do, is most of a dump's cost).
MARSHAL = 2


def map_steps(parts: Sequence[X], first: Callable[[X], tuple[P, Any]],
              meet: Callable[[list[Any]], Any], then: Callable[[P, Any], T],
              dump: Callable[[T], bytes], load: Callable[[bytes], T]) -> list[T]:
    """``then(product, met)`` of each part, in order, where ``first(part)`` gives the part's
    ``product`` and a measure of it (plain data ``marshal`` holds), and ``met`` is
    ``meet`` of every part's measure, in order (plain data too): ``Steps``."""
    with Steps(parts, first, then, dump, load) as steps:
        return steps.results(meet(steps.measures()))


class Steps(Generic[X, P, T]):
    """Work on parts in two steps (``map_steps``), started: every part but the first (every
    part, unless ``here``) runs ``first``, then ``then`` with what the meeting gave, in a
    forked child (``dump`` turns its result into bytes there, ``load`` back here) where
    forking is possible; the other parts, and any part whose child fails, run here, so the
    results are the same either way. Made, the children start at once, and the caller may
    do other work meanwhile (read what the meeting needs); ``measures`` runs the first
    steps left to this process and gathers every part's measure; ``results(met)`` sends
    ``met`` to the children and gives every part's result in order. Leaving it (a ``with``
    block) kills the children that did not answer. A child that answered is not waited for
    while it exits (giving back a large memory takes a while): it is reaped later
    (``_reap``). Without ``here`` this process only meets and gathers: what the parts'
    first steps make (decoded lines, most of the memory) never lives in it.

    ``met`` goes to the children as soon as it is known (before the first part's first
    step here, when no measure was asked: each child goes on from its own first step
    without waiting for this one's), through a temporary file they share when it is larger
    than a pipe surely holds: a child reads it only when its own first step is done, and a
    large ``met`` written to a pipe meanwhile would keep this process waiting."""

    def __init__(self, parts: Sequence[X], first: Callable[[X], tuple[P, Any]],
                 then: Callable[[P, Any], T], dump: Callable[[T], bytes],
                 load: Callable[[bytes], T], here: bool = True) -> None:
        self._parts, self._first, self._then, self._load = parts, first, then, load
        self._products: dict[int, P] = {}  # parts whose first step ran here
        self._measures: list[Any] | None = None
        self._children: dict[int, _Child] = {}  # by part, while it may still answer
        self._shared: BinaryIO | None = None  # the file a large met goes through
        _reap()
        if len(parts) > 1 and forkable():
            import tempfile  # (here: a command that forks nothing does without it)

            try:
                with contextlib.suppress(OSError):  # (without: through the pipes)
                    self._shared = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 (close)
                shared = self._shared.fileno() if self._shared is not None else -1
                for k in range(1 if here else 0, len(parts)):
                    others = [fd for child in self._children.values()
                              for fd in (child.up, child.down)]
                    self._children[k] = _start_steps(parts[k], first, then, dump, shared,
                                                     others)
            except BaseException:
                self.close()
                raise

    def __enter__(self) -> Steps[X, P, T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _here(self, k: int) -> P:
        """Part ``k``'s product, its first step run here (once)."""
        if k not in self._products:
            self._drop(k)
            self._products[k] = self._first(self._parts[k])[0]
        return self._products[k]

    def measures(self) -> list[Any]:
        """Every part's measure, in order (the first steps left to this process run now)."""
        if self._measures is None:
            found = []
            for k in range(len(self._parts)):
                answer = self._measure_of(k)
                if answer is _FAILED:  # no child, or it failed: the part's first step here
                    self._drop(k)
                    product, answer = self._first(self._parts[k])
                    self._products[k] = product
                found.append(answer)
            self._measures = found
        return self._measures

    def _measure_of(self, k: int) -> Any:
        """Child ``k``'s measure (read once), or ``_FAILED`` when it sent none."""
        child = self._children.get(k)
        if child is None:
            return _FAILED
        if child.measure is _UNREAD:
            child.measure = _measure_of(child.up)
        return child.measure

    def results(self, met: Any) -> list[T]:
        """``then(product, met)`` of every part, in order."""
        if self._children:
            self._send(marshal.dumps(met, MARSHAL))
        out = []
        for k in range(len(self._parts)):  # (the parts here first: each before any child's)
            result = self._result_of(k)
            out.append(self._then(self._here(k), met) if result is None else result)
        return out

    def _send(self, message: bytes) -> None:
        """``message`` (what the meeting gave) to every child: in the pipe down when small,
        else in the shared file, the pipe saying so."""
        kind = b"P"
        if len(message) > _IN_PIPE and self._shared is not None:
            try:
                _write_all_at(self._shared.fileno(), message)
                kind = b"F"
            except OSError:  # (a full disk: through the pipes)
                pass
        head = _LENGTH.pack(len(message)) + kind
        for k, child in list(self._children.items()):
            try:
                _write_all(child.down, head + message if kind == b"P" else head)
            except OSError:  # (a child gone: its part is done here)
                self._drop(k)

    def _result_of(self, k: int) -> T | None:
        """Child ``k``'s result, or ``None`` when it failed (or there is none)."""
        if self._measure_of(k) is _FAILED:
            return None
        child = self._children[k]
        payload = _framed(child.up)
        if payload is None:
            return None
        child.answered = True
        self._drop(k)
        with contextlib.suppress(ValueError, EOFError, TypeError, KeyError, IndexError,
                                 AttributeError):
            return self._load(payload)
        return None

    def _drop(self, k: int) -> None:
        """Child ``k`` is not asked anything more: its pipes closed, and unless it
        answered, killed (its part is done here)."""
        child = self._children.pop(k, None)
        if child is not None:
            child.close()

    def close(self) -> None:
        """Close every child's pipes and kill those that did not answer."""
        for k in list(self._children):
            self._drop(k)
        if self._shared is not None:
            self._shared.close()
            self._shared = None
        _reap()


_IN_PIPE = 4096  # a met this large goes through the pipe (a pipe holds at least a page)
_UNREAD = object()  # a child's measure not read yet


class _Child:
    """A forked child of ``Steps``: its pid, the read end of its pipe up and the write
    end of its pipe down; its ``measure`` once read; ``answered``: its result arrived (it
    exits by itself)."""

    def __init__(self, pid: int, up: int, down: int) -> None:
        self.pid, self.up, self.down, self.answered = pid, up, down, False
        self.measure: Any = _UNREAD

    def close(self) -> None:
        for fd in (self.up, self.down):
            with contextlib.suppress(OSError):
                os.close(fd)
        if not self.answered:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
        _EXITING.append(self.pid)


_EXITING: list[int] = []  # children closed and not reaped yet (``_reap``)


def _reap(wait: bool = False) -> None:
    """Reap the children of ``Steps`` that have exited (the others on a later call), or
    ``wait`` for them all: when this process ends (``atexit``), so that none is left to an
    init that may never reap it."""
    for pid in list(_EXITING):
        try:
            done, _status = os.waitpid(pid, 0 if wait else os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _EXITING.remove(pid)


atexit.register(_reap, wait=True)


def _start_steps(part: X, first: Callable[[X], tuple[P, Any]], then: Callable[[P, Any], T],
                 dump: Callable[[T], bytes], shared: int, others: Sequence[int]) -> _Child:
    """Fork a child that runs ``first`` of ``part``, sends its measure up, waits for what
    the meeting gave (in the pipe down, or in the file ``shared``) and sends ``dump`` of
    ``then`` up (each message up its length first). The child closes this process's ends
    of its pipes and of the earlier children's (``others``): this process ending is the
    end of every pipe down, and no child waits for ever."""
    up_read, up_write = os.pipe()
    down_read, down_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            for fd in (up_read, down_write, *others):
                os.close(fd)
            product, measure = first(part)
            message = marshal.dumps(measure, MARSHAL)
            _write_all(up_write, _LENGTH.pack(len(message)) + message)
            met = _met(down_read, shared)
            if met is not None:
                result = dump(then(product, marshal.loads(met)))
                _write_all(up_write, _LENGTH.pack(len(result)) + result)
                code = 0
        finally:
            os._exit(code)
    os.close(up_write)
    os.close(down_read)
    return _Child(pid, up_read, down_write)


def _met(fd: int, shared: int) -> bytes | None:
    """What the meeting gave (``Steps._send``), or ``None`` when nothing came."""
    head = _read_exactly(fd, _LENGTH.size + 1)
    if head is None:
        return None
    size = _LENGTH.unpack(head[:-1])[0]
    if head[-1:] == b"P":
        return _read_exactly(fd, size)
    chunks, done = [], 0
    while done < size:
        chunk = os.pread(shared, size - done, done)
        if not chunk:
            return None
        chunks.append(chunk)
        done += len(chunk)
    return b"".join(chunks)


_FAILED = object()  # a child's measure that did not arrive


def _measure_of(fd: int) -> Any:
    """A child's measure, or ``_FAILED`` when it sent none (it failed)."""
    message = _framed(fd)
    if message is None:
        return _FAILED
    try:
        return marshal.loads(message)
    except (ValueError, EOFError, TypeError):
        return _FAILED


def _framed(fd: int) -> bytes | None:
    """One message (its length first) from ``fd``; ``None`` at the end of the pipe."""
    head = _read_exactly(fd, _LENGTH.size)
    if head is None:
        return None
    return _read_exactly(fd, _LENGTH.unpack(head)[0])


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all_at(fd: int, data: bytes) -> None:
    """``data`` written to the file ``fd`` from its start."""
    view, done = memoryview(data), 0
    while done < len(data):
        done += os.pwrite(fd, view[done:], done)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
