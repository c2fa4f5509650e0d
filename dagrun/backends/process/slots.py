"""A pool of processes each pinned to a slot for its whole life (GPU slots).

CUDA reads ``CUDA_VISIBLE_DEVICES`` once per process, so a process that is to use other GPUs
than its neighbours must be given them before anything in it can touch CUDA, and must never
run a task meant for another slot. ``SlotPool`` keeps one single-process ``Pool`` per slot
(``pool.py``: timeouts, crash detection, process trees), whose initializer is ``pinned``:
the slot's ``CUDA_VISIBLE_DEVICES`` is set first, before the given initializer imports the
user's code. A process replaced after a timeout or a crash is started by the same pool, with
the same initializer, so the slot stays pinned.

Tasks wait in the ``SlotPool`` until a slot is free and then go to that slot's pool; the
future ``schedule`` returns behaves like pebble's (``cancel`` stops a running task's process).
Used by the multiprocessing backend with ``num_gpus`` and by ``dagrun worker``.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dagrun.backends.process.pool import Pool
from dagrun.backends.process.spawning import WORKER_CONTEXT


def pinned(cuda: str | None, initializer: Callable[..., None], *args: Any) -> None:
    """Pool initializer: set the slot's ``CUDA_VISIBLE_DEVICES`` (``None``: keep what the
    process inherited), then run ``initializer(*args)``, which loads the user's code."""
    if cuda is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda
    initializer(*args)


class SlotFuture(cf.Future[Any]):
    """The future of a task in a ``SlotPool``: cancelling a running task stops its process
    (like pebble's futures), cancelling a waiting one removes it from the queue."""

    def __init__(self, lock: threading.RLock) -> None:
        super().__init__()
        self._slot_lock = lock
        self.inner: cf.Future[Any] | None = None  # the slot pool's future, once dispatched

    def cancel(self) -> bool:
        with self._slot_lock:
            inner = self.inner
            if inner is None:
                return super().cancel()
        return inner.cancel()


@dataclass
class _Waiting:
    future: SlotFuture
    function: Callable[..., Any]
    args: tuple[Any, ...]
    timeout: float | None


@dataclass
class _Slot:
    pool: Pool
    busy: bool = False


class SlotPool:
    """One process per entry of ``cudas`` (its ``CUDA_VISIBLE_DEVICES``, or ``None``), each
    started with ``initializer(*initargs)`` after its slot is pinned."""

    def __init__(self, cudas: Sequence[str | None], initializer: Callable[..., None],
                 initargs: tuple[Any, ...], context: Any = WORKER_CONTEXT) -> None:
        self.cudas = list(cudas)
        # reentrant: a task that is already done runs its callback inside ``_dispatch``
        self._lock = threading.RLock()
        self._queue: collections.deque[_Waiting] = collections.deque()
        self._slots = [_Slot(Pool(max_workers=1, initializer=pinned,
                                  initargs=(cuda, initializer, *initargs), context=context))
                       for cuda in self.cudas]

    def __len__(self) -> int:
        return len(self._slots)

    def schedule(self, function: Callable[..., Any], args: tuple[Any, ...] = (),
                 timeout: float | None = None) -> SlotFuture:
        """Run ``function(*args)`` in the first slot that is free (now, or when one is)."""
        future = SlotFuture(self._lock)
        with self._lock:
            self._queue.append(_Waiting(future, function, args, timeout))
            self._dispatch()
        return future

    def _dispatch(self) -> None:
        """Give waiting tasks to free slots (called with the lock held)."""
        for index, slot in enumerate(self._slots):
            while not slot.busy and self._queue:
                waiting = self._queue.popleft()
                if not waiting.future.set_running_or_notify_cancel():
                    continue  # cancelled while it waited
                inner = slot.pool.schedule(waiting.function, args=waiting.args,
                                           timeout=waiting.timeout)
                slot.busy = True
                waiting.future.inner = inner
                inner.add_done_callback(functools.partial(self._finished, index,
                                                          outer=waiting.future))

    def _finished(self, index: int, inner: cf.Future[Any], *, outer: SlotFuture) -> None:
        """A slot's task ended (pebble's thread, or a canceller's): pass its outcome on,
        then hand the slot the next waiting task."""
        if inner.cancelled():
            outer.set_exception(cf.CancelledError())
        elif inner.exception() is not None:
            outer.set_exception(inner.exception())
        else:
            outer.set_result(inner.result())
        with self._lock:
            self._slots[index].busy = False
            self._dispatch()

    def running(self) -> int:
        """How many tasks a slot's process has started and not finished (one per slot)."""
        return sum(slot.pool.running() for slot in self._slots)

    def take_ended(self) -> set[int]:
        """pids of the processes that ended since the last call (killed, crashed, exited)."""
        ended: set[int] = set()
        for slot in self._slots:
            ended |= slot.pool.take_ended()
        return ended

    def _drop_waiting(self) -> None:
        with self._lock:
            waiting, self._queue = self._queue, collections.deque()
        for item in waiting:
            item.future.cancel()

    def close(self) -> None:
        """Let running tasks finish (waiting ones are cancelled); accept no more."""
        self._drop_waiting()
        for slot in self._slots:
            slot.pool.close()  # type: ignore[no-untyped-call]

    def stop(self) -> None:
        """Stop every process now (they stop their process trees)."""
        self._drop_waiting()
        for slot in self._slots:
            slot.pool.stop()  # type: ignore[no-untyped-call]

    def join(self, timeout: float) -> None:
        """Wait for every process to end, ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        for slot in self._slots:
            slot.pool.join(timeout=max(0.0, deadline - time.monotonic()))
