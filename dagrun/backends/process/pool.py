"""``pebble.ProcessPool`` with the repairs dagrun's workers need.

pebble runs each task in a reused worker process and kills a worker whose task overstays.
Five of its habits do not fit a sweep, and are changed here (on pebble's ``PoolManager`` and
``WorkerManager``, the classes its pool loops call):

* A worker that exits with code 0 in the middle of a task (``os._exit(0)`` in a stage) counts
  as a normal exit: its task is never finished and the sweep waits forever. Here every worker
  that ends while it holds a task fails that task with ``ProcessExpired`` (code 0 included),
  also when the worker ended before the pool had read its acknowledgement of the task.
* A worker that dies while no task runs anywhere breaks the whole pool ("All workers
  expired"). Here it is only replaced.
* At shutdown pebble unlinks the channel's semaphores *before* it stops the workers, one after
  the other: a worker still starting up then fails in ``SemLock._rebuild`` and prints a
  traceback into the user's terminal. Here every worker is sent SIGTERM first (they stop their
  process trees in parallel), joined, and only then are the channels closed.
* pebble stops every worker with SIGTERM, even idle ones after ``close``. A worker dies of it
  without running ``multiprocessing``'s exit handlers, so a semaphore that a stage created
  in it (``tqdm``'s lock, a ``multiprocessing.Queue``: workers start with ``spawn``, whose
  semaphores the resource tracker follows) is never unlinked, and the driver's resource
  tracker prints "leaked semaphore objects to clean up at shutdown" when the sweep ends.
  Here, after ``close``, the idle workers first get the end of their task pipe and return
  from pebble's loop like any finished process (``EXIT_WAIT``); only those still alive then
  are sent SIGTERM.
* The pool does not say which workers ended. ``take_ended`` does, so that the driver can kill
  what a dead worker's runs left behind (``dagrun.run.proctree.kill_orphans``).
* Counting the tasks a worker has started means asking every future (``Future.running``),
  which costs the driver O(tasks in flight) per question. ``running`` is a count kept by the
  task manager as tasks start and end instead.

These hooks reach into pebble's internals (as of pebble 5.2); ``tests/test_process_tree.py``
exercises each of them, so a pebble release that moves them fails there, not in a sweep.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pebble
from pebble.common.types import ProcessExpired, Result, ResultStatus
from pebble.pool import process as pebble_process

EXIT_WAIT = 2.0  # seconds idle workers get to end by themselves when a closed pool stops


class _Workers(pebble_process.WorkerManager):
    """pebble's worker manager, reporting every worker that ended (exit code 0 included)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.ended: set[int] = set()
        self.ended_lock = threading.Lock()

    def _ended(self, pid: int | None) -> None:
        if pid is not None:
            with self.ended_lock:
                self.ended.add(pid)

    def inspect_workers(self) -> tuple[tuple[int, int], ...]:
        expired = [w for w in pebble_process.dictionary_values(self.workers)
                   if not w.is_alive()]
        for worker in expired:
            self.workers.pop(worker.pid, None)
            self._ended(worker.pid)
        return tuple((w.pid, w.exitcode) for w in expired if w.pid is not None)

    def maybe_stop_worker(self, worker_id: int) -> bool:
        stopped: bool = super().maybe_stop_worker(worker_id)
        if stopped:
            self._ended(worker_id)
        return stopped

    def let_workers_exit(self, wait: float) -> None:
        """Close the pool's end of the task pipe: each idle worker reads its end and returns
        from pebble's loop, running ``multiprocessing``'s exit handlers (unlinking what its
        stages created). Waits at most ``wait`` s for all of them."""
        channel = self.pool_channel
        if channel is None:
            return
        with contextlib.suppress(OSError):
            channel.writer.close()
        deadline = time.monotonic() + wait
        for worker in pebble_process.dictionary_values(self.workers):
            worker.join(max(0.0, deadline - time.monotonic()))

    def force_stop_workers(self) -> None:
        for worker in pebble_process.dictionary_values(self.workers):
            with contextlib.suppress(OSError, AttributeError):
                worker.terminate()  # all at once: each stops its own tree meanwhile
        super().force_stop_workers()  # type: ignore[no-untyped-call]


class _Tasks(pebble_process.TaskManager):
    """pebble's task manager, counting the tasks a worker has started and not finished.

    Tasks start in pebble's message thread and end there or in its pool-manager thread
    (timeouts, dead workers). ``_ending`` holds the tasks being finished, so that a start
    that races with the end of the same task is never counted after its end."""

    def __init__(self, task_done_callback: Any) -> None:
        super().__init__(task_done_callback)
        self.started: set[int] = set()
        self._ending: set[int] = set()
        self._count_lock = threading.Lock()

    def task_start(self, task_id: int, worker_id: int | None) -> None:
        super().task_start(task_id, worker_id)
        with self._count_lock:
            task = self.tasks.get(task_id)
            if task is not None and task.started and task_id not in self._ending:
                self.started.add(task_id)

    def task_done(self, task_id: int, result: Result[Any]) -> None:
        with self._count_lock:
            self.started.discard(task_id)
            self._ending.add(task_id)
        try:
            super().task_done(task_id, result)
        finally:
            with self._count_lock:
                self._ending.discard(task_id)


class _Manager(pebble_process.PoolManager):
    """pebble's pool manager: a worker's end fails its task, whatever the exit code."""

    def __init__(self, context: Any, mp_context: Any) -> None:
        super().__init__(context, mp_context)
        self.task_manager: _Tasks = _Tasks(context.task_queue.task_done)
        self.worker_manager: _Workers = _Workers(
            context.workers, context.worker_parameters, mp_context)
        self.exit_codes: dict[int, int] = {}  # workers that ended, for late acknowledgements
        self.closing = False  # ``Pool.close`` was called: no task is left when it stops

    def stop(self) -> None:
        if self.closing and not self.task_manager.tasks:  # idle: they may end on their own
            self.worker_manager.let_workers_exit(EXIT_WAIT)
        self.worker_manager.force_stop_workers()  # before their semaphores are unlinked
        self.worker_manager.close_channels()  # type: ignore[no-untyped-call]

    def handle_worker_expiration(self, expiration: tuple[int, int]) -> None:
        pid, code = expiration
        self.exit_codes[pid] = code
        self._expire(pid, code)

    def process_next_message(self, timeout: float) -> None:
        message = self.worker_manager.receive(timeout)
        if isinstance(message, pebble_process.Acknowledgement):
            self.task_manager.task_start(message.task, message.worker)
            if message.worker in self.exit_codes:  # it died before we read this
                self._expire(message.worker, self.exit_codes[message.worker])
        elif isinstance(message, pebble_process.TaskResult):
            self.task_manager.task_done(message.task, message.result)
        elif isinstance(message, pebble_process.TaskProblem):
            self.task_manager.task_problem(message.task, message.error)

    def _expire(self, pid: int, code: int) -> None:
        """Fail the task worker ``pid`` held, if any (none: an idle worker, replaced)."""
        for task in pebble_process.dictionary_values(self.task_manager.tasks):
            if task.worker_id == pid:
                error = ProcessExpired(  # type: ignore[no-untyped-call]
                    "Abnormal termination", code=code, pid=pid)
                self.task_manager.task_done(task.id, Result(ResultStatus.ERROR, error))


class Pool(pebble.ProcessPool):
    """A ``pebble.ProcessPool`` with the repairs above; ``take_ended`` names dead workers."""

    def __init__(self, max_workers: int, initializer: Any, initargs: tuple[Any, ...],
                 context: Any) -> None:
        super().__init__(max_workers=max_workers, initializer=initializer,
                         initargs=initargs, context=context)
        self._manager = _Manager(self._context, context)
        self._pool_manager = self._manager

    def close(self) -> None:
        """No new tasks; the pending ones are finished, then the workers end by themselves
        (those still alive after ``EXIT_WAIT`` s are stopped)."""
        self._manager.closing = True
        super().close()  # type: ignore[no-untyped-call]

    def running(self) -> int:
        """How many tasks a worker has started and not finished (O(1): a kept count)."""
        return len(self._manager.task_manager.started)

    def take_ended(self) -> set[int]:
        """pids of the workers that ended since the last call (killed, crashed, exited)."""
        workers = self._manager.worker_manager
        with workers.ended_lock:
            ended, workers.ended = workers.ended, set()
        return ended
