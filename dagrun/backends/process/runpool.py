"""A pool of worker processes that run dagrun runs: no round trip per run, each run fenced.

Why not pebble (still used for GPU slots, ``slots.py``): pebble hands every task through a
manager thread, a shared channel and an acknowledgement, so each run costs the driver a
round trip and three threads' worth of GIL hand-offs (~0.3 ms) — the largest part of a
no-op run's cost on ``multiprocessing``. Here each worker has its own pipe and a queue of
runs the driver gave it, in order:

* the driver sends a worker the runs it is to execute next (several in one message when
  runs are quick: ``depth``), and the worker goes from one to the next without asking;
* the worker sends each run's outcome as soon as the run ends (one message, never waited
  for); the driver reads whatever has arrived in one go;
* the driver knows at every moment which run a worker executes: the first of that worker's
  queue whose outcome has not arrived. So a worker that dies (``os._exit``, a segfault,
  SIGKILL, exit code 0 included) fails exactly that run as ``crashed``; a run that
  overstays its timeout is that run's, and its worker is sent SIGTERM (its handler stops
  the run's process tree, ``dagrun.run.proctree``), then SIGKILL; the runs queued behind it
  are taken back at once (see permits below: none of them started, none will), so no run
  ever has two processes at once. A replacement worker is started while runs are left.
* a worker starts a run only with its *permit*: every run given to a worker gets a
  sequence number, written (8 bytes) into that worker's permit pipe before the run is
  sent, and the worker reads one permit before it starts a run. The driver takes runs back
  from a worker by reading that pipe itself: the kernel hands each permit to one reader
  only, so a run whose permit the driver read was not started and never will be (the
  worker drops it, finding a later permit or none), and one whose permit the worker read
  is that worker's. No lock, no shared memory, no thread in the worker, and no round trip:
  the worker may be deep in another run meanwhile.
* so a worker holds the run it executes and the next (``QUEUED``; more while runs are
  quick, ``DEEP``) and goes from one to the next without waiting for the driver; when a
  worker is idle and nothing waits, the runs queued in the others that have not started
  are taken back and given out again, so no worker idles beside a queue at a sweep's end.

The timeout clock of a queued run starts when the outcome of the run before it arrives (a
few hundred microseconds after the run really started), and that of a worker's first run
when the worker says it is ready (its start and the workflow's import, which may take
seconds, are not the run's): a timeout is never early.

A worker is forked from the driver (``Forked``) where ``dagrun.run.forking`` finds that as
safe as a spawn, so it has what the workflow imported (no second import of scikit-learn,
~1 s per worker); else it is spawned, as every worker started once the driver runs threads
(a replacement) is.

Spawned workers start side by side: the initializer's arguments (the pickled workflow, often MBs)
are not part of what ``spawn`` writes to a new process, which the driver would block on
until that process's interpreter is up, delaying the start of the next worker by as much;
every worker is started first, then each is sent its arguments on its own pipe.

A worker's life ends without the interpreter's last garbage collections walking every
object of the libraries it imported (0.2-0.3 s with scikit-learn and pandas, on the sweep's
end since the driver waits for its workers): what it holds once initialized is frozen
(``gc.freeze``), and when it leaves, the garbage of its runs is collected (their finalizers
run) and the rest frozen too; atexit handlers and the modules' teardown run as usual.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import multiprocessing.connection
import operator
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from dagrun.disk.layout import Stage
from dagrun.disk.records import Failure
from dagrun.errors import FailureKind
from dagrun.record import field, fields, record
from dagrun.run import forking
from dagrun.run.proctree import KILL_GRACE
from dagrun.run.stages import RunOutcome, RunTask

QUICK = 0.02  # seconds: runs shorter than this get a deeper per-worker queue
QUEUED = 2  # runs a worker holds (the one it executes included) once runs are not quick
DEEP = 8  # runs a worker may hold (the one it executes included) while runs are quick
_PERMIT = 8  # bytes of one permit: a run's sequence number in its worker
EXIT_WAIT = 2.0  # seconds idle workers get to end by themselves when a closed pool stops
STOP_WAIT = KILL_GRACE + 2.0  # seconds between SIGTERM and SIGKILL of a worker
STARTUP_DEATHS = 3  # workers in a row dying before they are ready fail a run each


class WorkerDied(Exception):
    """The worker executing a run ended before the run did; ``exitcode`` as
    ``multiprocessing`` gives it (negative: killed by that signal)."""

    def __init__(self, exitcode: int) -> None:
        super().__init__(f"worker ended with exit code {exitcode}")
        self.exitcode = exitcode


class RunTimedOut(Exception):
    """The run exceeded the pool's timeout; its worker was stopped."""


Event = tuple[RunTask, "RunOutcome | BaseException"]
READY = "ready"  # a worker's first message: initialized, about to take runs


def serve(conn: Connection, permits: Connection, initializer: Callable[..., None],
          run: Callable[[RunTask], RunOutcome]) -> None:
    """A spawned worker's life: ``initializer(*initargs)`` with the arguments the driver
    sends first, then run what it sends next, in order, each with its permit (read from
    ``permits``), sending each outcome as soon as the run ends; ``None`` or the end of the
    pipe ends it."""
    try:
        initargs = conn.recv()
    except (EOFError, OSError):  # the driver is gone
        return
    initializer(*initargs)
    _serve_initialized(conn, permits, run)


def serve_forked(conn: Connection, permits: Connection, initializer: Callable[..., None],
                 initargs: tuple[Any, ...], run: Callable[[RunTask], RunOutcome]) -> None:
    """A forked worker's life (``dagrun.run.forking``): as ``serve``, its initializer's
    arguments already in its memory."""
    initializer(*initargs)
    _serve_initialized(conn, permits, run)


def _serve_initialized(conn: Connection, permits: Connection,
                       run: Callable[[RunTask], RunOutcome]) -> None:
    gc.freeze()  # kept for life (modules, the workflow): no collection walks it again
    try:
        conn.send(READY)
    except (OSError, ValueError):  # the driver is gone
        return
    try:
        _serve_runs(conn, permits.fileno(), run)
    finally:
        leave()


# A run as the pipe carries it: its sequence number in its worker, then its fields as a
# tuple, in their order (a fifth of the pickle's size and time of the record, twice per
# run: to the worker and back).
_to_wire = operator.attrgetter(*(f.name for f in fields(RunTask)))
# An outcome's fields after its task (the driver knows which run the worker executes).
_OUTCOME_REST = operator.attrgetter(*(f.name for f in fields(RunOutcome)[1:]))


def _outcome_to_wire(outcome: RunOutcome) -> tuple[Any, ...]:
    """An outcome as the pipe carries it: its run's label (checked by the driver), then
    its fields but the task."""
    return (outcome.task.label, *_OUTCOME_REST(outcome))


def take_permit(fd: int) -> int | None:
    """The next permit in the (non-blocking) permit pipe ``fd``, or ``None`` when there is
    none. Whoever reads a permit owns it: the worker to start that run, the driver to take
    that run back (writes and reads of 8 bytes on a pipe are whole: never split or shared)."""
    try:
        data = os.read(fd, _PERMIT)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:  # closed: the other side is gone
        return None
    if len(data) != _PERMIT:  # end of the pipe (b""); a partial read does not happen
        return None
    return int.from_bytes(data, "little")


def _serve_runs(conn: Connection, permits: int,
                run: Callable[[RunTask], RunOutcome]) -> None:
    os.set_blocking(permits, False)
    queue: collections.deque[tuple[int, RunTask]] = collections.deque()
    held: int | None = None  # a permit read whose run has not arrived yet
    while True:
        if not queue or conn.poll():  # keep the queue as the driver sees it
            try:
                batch = conn.recv()
            except (EOFError, OSError):
                return
            if batch is None:
                return
            queue.extend((seq, RunTask(*rest)) for seq, *rest in batch)
            continue
        if held is None:
            held = take_permit(permits)
            if held is None:  # the driver took back every run queued here
                queue.clear()
                continue
        while queue and queue[0][0] < held:  # taken back by the driver: not ours to run
            queue.popleft()
        if not queue:
            continue  # the permit's run is on its way (permits are written first)
        seq, task = queue.popleft()
        if seq != held:  # never happens: permits and runs come in the same order
            queue.appendleft((seq, task))
            held = None
            continue
        held = None
        try:
            outcome = run(task)
        except Exception as exc:  # the worker boundary: the run fails, the worker goes on
            outcome = RunOutcome(task, Failure.make(
                Stage.PRE, FailureKind.ENGINE, f"{type(exc).__name__}: {exc}", task.attempt))
        try:
            conn.send(_outcome_to_wire(outcome))
        except (OSError, ValueError):  # the driver is gone (or its pipe closed)
            return


def leave() -> None:
    """Get a worker process ready to end: the garbage its runs left is collected now (a
    collection that skips the frozen objects: milliseconds), so their finalizers run as
    they would have, and everything still alive is frozen, so the interpreter's teardown
    does not walk it in its own collections (the slow part of a worker's end)."""
    gc.collect()
    gc.freeze()


@record(frozen=True)
class Forked:
    """How the pool forks a worker instead of spawning one, where ``forking.blocked`` lets
    it: ``initializer(*initargs)`` in the child, the arguments objects of this process."""

    initializer: Callable[..., None]
    initargs: tuple[Any, ...]


@record
class _Worker:
    process: Any  # a multiprocessing process of the pool's context
    conn: Connection
    permits: Connection  # the permit pipe's reading end (the driver reads to take back)
    grants: Connection  # its writing end
    # its runs with their permits, in order: the first is the one it executes (once ready)
    queue: collections.deque[tuple[int, RunTask]] = field(default_factory=collections.deque)
    next_seq: int = 0
    since: float = 0.0  # monotonic time the first run of ``queue`` started (as seen here)
    stopping_at: float | None = None  # SIGTERM sent then: SIGKILL after ``STOP_WAIT``
    ready: bool = False  # it said it is initialized (its first run's clock starts then)
    handed: bool = False  # it was sent its initializer's arguments
    outbox: list[tuple[int, RunTask]] = field(default_factory=list)  # given, not sent yet


class RunPool:
    """Up to ``workers`` processes of ``context`` executing runs (see the module docstring).

    ``submit`` queues a run; ``poll`` returns ``(task, outcome)`` pairs, where the outcome
    is the worker's ``RunOutcome``, or ``RunTimedOut`` / ``WorkerDied`` for a run its worker
    could not report on. Single-threaded: everything happens in the caller's calls.
    """

    def __init__(self, workers: int, initializer: Callable[..., None],
                 initargs: tuple[Any, ...] | Callable[[], tuple[Any, ...]], context: Any,
                 timeout: float | None, run: Callable[[RunTask], RunOutcome],
                 forked: Forked | None = None) -> None:
        self._size = workers
        self._start_args = (initializer, run)
        self._initargs = initargs  # a callable: made when the first worker is spawned
        self._forked = forked
        self.started = {"forked": 0, "spawned": 0}
        self.spawn_reason: str | None = None  # why the last worker was not forked
        self._context = context
        self._timeout = timeout or None
        self._waiting: collections.deque[RunTask] = collections.deque()
        self._workers: list[_Worker] = []
        self._events: list[Event] = []
        self._ended: set[int] = set()
        self._closed = False
        self._stopped = False  # ``stop``: nothing is given to any worker any more
        self._mean: float | None = None  # seconds a run takes, smoothed (None: not seen)
        self._startup_deaths = 0  # workers in a row that died before they were ready
        self.taken_back = 0  # runs taken back from a worker that had not started them
        for _ in range(workers):
            self._start_worker(hand=False)
        self._hand_over()  # all started first: their interpreters start side by side

    # -- the caller's side ---------------------------------------------------------------

    def submit(self, task: RunTask) -> None:
        if self._closed:
            raise RuntimeError("the run pool is closed")
        self._waiting.append(task)
        self._dispatch()

    def running(self) -> int:
        """Runs a worker executes now (the first of each worker's queue)."""
        return sum(1 for w in self._workers if w.queue and w.stopping_at is None)

    def pending(self) -> int:
        """Runs given to the pool whose outcome has not been returned yet."""
        return len(self._waiting) + sum(len(w.queue) for w in self._workers) + len(
            self._events)

    def take_ended(self) -> set[int]:
        """pids of the workers that ended since the last call (killed, crashed, exited)."""
        ended, self._ended = self._ended, set()
        return ended

    def poll(self, timeout: float) -> list[Event]:
        """The runs that ended: waits for the first at most ``timeout`` s."""
        self._flush()
        if not self._events:
            self._wait(timeout)
        events, self._events = self._events, []
        return events

    # -- dispatch --------------------------------------------------------------------------

    def _depth(self) -> int:
        return DEEP if self._mean is not None and self._mean < QUICK else QUEUED

    def _dispatch(self) -> None:
        """Give waiting runs to the workers with the shortest queues, up to ``_depth``;
        with a worker idle and nothing waiting, first take back the runs other workers
        have not started (``_take_back``)."""
        if self._stopped:
            return
        live = [w for w in self._workers if w.stopping_at is None]
        if not self._waiting and not (any(w.ready and not w.queue for w in live)
                                      and self._take_back(live)):
            return  # (a worker idle beside runs others have not started: taken back)
        while len(live) < self._size and not self._closed:
            # workers that died while nothing waited were not replaced (a run's retry,
            # given later, is the first to need one)
            self._start_worker()
            live = [w for w in self._workers if w.stopping_at is None]
        depth = self._depth()
        while self._waiting and live:
            worker = min(live, key=lambda w: (len(w.queue), not w.ready))
            if len(worker.queue) >= depth:
                return
            task = self._waiting.popleft()
            if not worker.queue and worker.ready:
                worker.since = time.monotonic()
            seq = worker.next_seq
            worker.next_seq += 1
            # the permit before the run (see the module docstring); a worker that died
            with contextlib.suppress(OSError):  # is buried next, the run given again
                os.write(worker.grants.fileno(), seq.to_bytes(_PERMIT, "little"))
            worker.queue.append((seq, task))
            worker.outbox.append((seq, task))

    def _take_back(self, live: list[_Worker]) -> bool:
        """Take back every run queued in ``live`` workers that has not started (its permit
        is still in the pipe), to be given out again; returns whether any was."""
        taken: list[RunTask] = []
        for worker in live:
            # a ready worker executes its first run (unless it is about to): the others
            # may be taken; a worker still starting up started none of its runs
            if len(worker.queue) >= (2 if worker.ready else 1):
                taken += self._taken_from(worker)
        self._waiting.extendleft(reversed(taken))
        return bool(taken)

    def _taken_from(self, worker: _Worker) -> list[RunTask]:
        """The runs of ``worker`` whose permits this driver could read (so it will never
        start them), removed from its queue and from what is to be sent to it."""
        back: set[int] = set()
        while (seq := take_permit(worker.permits.fileno())) is not None:
            back.add(seq)
        if not back:
            return []
        taken = [t for s, t in worker.queue if s in back]
        worker.queue = collections.deque((s, t) for s, t in worker.queue if s not in back)
        worker.outbox = [(s, t) for s, t in worker.outbox if s not in back]
        self.taken_back += len(taken)
        return taken

    def _flush(self) -> None:
        """Send each worker the runs given to it since the last send (one message each)."""
        for worker in self._workers:
            if worker.outbox:
                batch, worker.outbox = worker.outbox, []
                # a worker that died: its sentinel says so next
                with contextlib.suppress(OSError, ValueError):
                    worker.conn.send([(seq, *_to_wire(t)) for seq, t in batch])

    def _wait(self, timeout: float) -> None:
        now = time.monotonic()
        deadline = now + timeout
        for worker in self._workers:  # wake up for the next timeout or SIGKILL due
            due = self._due(worker)
            if due is not None:
                deadline = min(deadline, max(due, now))
        handles: list[Any] = []
        for worker in self._workers:
            handles += [worker.conn, worker.process.sentinel]
        if handles:
            multiprocessing.connection.wait(handles, max(0.0, deadline - now))
        else:
            time.sleep(max(0.0, min(timeout, 0.05)))
        self._collect()
        self._enforce_timeouts()
        self._dispatch()
        self._flush()

    def _due(self, worker: _Worker) -> float | None:
        if worker.stopping_at is not None:
            return worker.stopping_at + STOP_WAIT
        if worker.queue and worker.ready and self._timeout is not None:
            return worker.since + self._timeout
        return None

    # -- outcomes, deaths, timeouts --------------------------------------------------------

    def _collect(self) -> None:
        for worker in list(self._workers):
            self._read(worker)
            if not worker.process.is_alive():
                self._read(worker)  # what it sent before it ended
                self._bury(worker)

    def _read(self, worker: _Worker) -> None:
        conn = worker.conn
        try:
            while conn.poll():
                message = conn.recv()
                if isinstance(message, str) and message == READY:
                    worker.ready, worker.since = True, time.monotonic()
                    self._startup_deaths = 0
                    continue
                self._finished(worker, message)
        except (EOFError, OSError):
            return

    def _finished(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        label, *rest = message
        if not worker.queue or worker.queue[0][1].label != label:
            return  # not a run this pool gave it (never happens): ignored
        outcome = RunOutcome(worker.queue[0][1], *rest)
        if worker.stopping_at is not None:
            return  # its timeout was already reported; the run is that record's
        worker.queue.popleft()
        now = time.monotonic()
        took = now - worker.since
        self._mean = took if self._mean is None else 0.8 * self._mean + 0.2 * took
        worker.since = now
        self._events.append((outcome.task, outcome))

    def _bury(self, worker: _Worker) -> None:
        """A worker ended: its current run failed (unless its timeout was reported), the
        runs queued behind it go back first in line; a replacement starts when needed."""
        self._workers.remove(worker)
        pid = worker.process.pid
        if pid is not None:
            self._ended.add(pid)
        worker.process.join(0)
        code = worker.process.exitcode if worker.process.exitcode is not None else 0
        _close(worker)
        queue = collections.deque(task for _, task in worker.queue)
        if not worker.ready and worker.stopping_at is None:
            # it died starting up: none of its runs began; they go to the others, unless
            # workers keep dying that way (then the first run fails, or nothing would end)
            self._startup_deaths += 1
            if queue and self._startup_deaths >= STARTUP_DEATHS:
                self._events.append((queue.popleft(), WorkerDied(code)))
        elif queue and worker.stopping_at is None:
            task = queue.popleft()
            self._events.append((task, WorkerDied(code)))
        elif queue:
            queue.popleft()  # the run that timed out: already reported
        self._waiting.extendleft(reversed(queue))  # a replacement: ``_dispatch``

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            if worker.stopping_at is not None:
                if now >= worker.stopping_at + STOP_WAIT:
                    with contextlib.suppress(OSError, AttributeError):
                        worker.process.kill()
                continue
            if worker.queue and worker.ready and self._timeout is not None \
                    and now - worker.since > self._timeout:
                worker.stopping_at = now
                self._events.append((worker.queue[0][1], RunTimedOut()))
                with contextlib.suppress(OSError, AttributeError):
                    worker.process.terminate()  # its handler stops the run's tree first
                # the runs queued behind it go to the others now, not at its end
                self._waiting.extendleft(reversed(self._taken_from(worker)))
                if len(worker.queue) > 1 or self._waiting:  # (their start: ``_dispatch``)
                    self._start_worker()  # a replacement: its runs need not wait for its end

    def _start_worker(self, hand: bool = True) -> None:
        """Start a worker (unless the pool is full) and, with ``hand``, send it its
        initializer's arguments (``_hand_over``)."""
        if len([w for w in self._workers if w.stopping_at is None]) >= self._size:
            return
        ours, theirs = self._context.Pipe(duplex=True)
        permits, grants = self._context.Pipe(duplex=False)
        os.set_blocking(permits.fileno(), False)  # shared with the worker: both read it
        process = self._fork(theirs, permits)
        forked = process is not None
        if process is None:
            # not daemonic: a run may start processes of its own (a stage's own Pool)
            process = self._context.Process(
                target=serve, args=(theirs, permits, *self._start_args), daemon=False,
                name="dagrun-worker")
            process.start()
        self.started["forked" if forked else "spawned"] += 1
        theirs.close()
        self._workers.append(_Worker(process, ours, permits, grants,
                                     handed=forked))  # forked: has its args
        if hand:
            self._hand_over()

    def _fork(self, theirs: Connection, permits: Connection) -> Any:
        """A worker forked from this process, or ``None`` where that is not safe now
        (``spawn_reason`` says why)."""
        if self._forked is None:
            return None
        reason = forking.blocked()
        if reason is None:
            run = self._start_args[1]
            try:
                return forking.start(serve_forked, (theirs, permits, self._forked.initializer,
                                                    self._forked.initargs, run),
                                     (theirs.fileno(), permits.fileno()), "dagrun-worker")
            except OSError as exc:  # no memory for the copy, too many processes
                reason = f"fork failed: {exc}"
        self.spawn_reason = reason
        return None

    def _hand_over(self) -> None:
        """Send each started worker its initializer's arguments, once. A worker reads them
        first thing, so this waits for it to be up; one that died meanwhile is buried by
        ``_collect`` (its sentinel)."""
        for worker in self._workers:
            if not worker.handed:
                worker.handed = True
                if callable(self._initargs):
                    self._initargs = self._initargs()
                with contextlib.suppress(OSError, ValueError):
                    worker.conn.send(self._initargs)

    # -- the end ---------------------------------------------------------------------------

    def close(self) -> None:
        """No new runs; the given ones are finished (``join``), then the workers end."""
        self._closed = True

    def stop(self) -> None:
        """End now: every worker is sent SIGTERM (each stops its runs' trees meanwhile)."""
        self._closed = self._stopped = True
        self._waiting.clear()
        for worker in self._workers:
            with contextlib.suppress(OSError, AttributeError):
                worker.process.terminate()

    def join(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) for the given runs, when closed, then for the
        workers to end; those still alive are stopped (SIGTERM, then SIGKILL)."""
        deadline = time.monotonic() + timeout
        while self._closed and self.pending() and self._workers \
                and time.monotonic() < deadline:
            self._events.clear()  # nobody polls any more: outcomes are on disk
            self._wait(min(0.1, max(0.0, deadline - time.monotonic())))
        for worker in self._workers:
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
        end = min(deadline, time.monotonic() + EXIT_WAIT)
        for worker in self._workers:
            worker.process.join(max(0.0, end - time.monotonic()))
        alive = [w for w in self._workers if w.process.is_alive()]
        for worker in alive:
            with contextlib.suppress(OSError, AttributeError):
                worker.process.terminate()
        end = time.monotonic() + STOP_WAIT
        for worker in alive:
            worker.process.join(max(0.0, end - time.monotonic()))
            if worker.process.is_alive():
                with contextlib.suppress(OSError, AttributeError):
                    worker.process.kill()
                worker.process.join(1.0)
        for worker in self._workers:
            if worker.process.pid is not None:
                self._ended.add(worker.process.pid)
            _close(worker)
        self._workers.clear()


def _close(worker: _Worker) -> None:
    for conn in (worker.conn, worker.permits, worker.grants):
        with contextlib.suppress(OSError):
            conn.close()


__all__ = ["Forked", "RunPool", "RunTimedOut", "WorkerDied"]
