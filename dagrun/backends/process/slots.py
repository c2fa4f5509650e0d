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

**Slots are per node.** Two workers (or a worker and an ``execute``) on one machine given the
same GPUs would each cut them into slots and put two runs on one GPU. So a slot that pins
GPUs is used only while its process holds a lock on each of them: ``flock`` on files in a
node-local folder (``NodeLocks``; ``<tmp>/dagrun-gpu-slots-<uid>/gpu<ID>.<share>``, one
share per run a fraction allows), taken when a task goes to the slot and dropped when it
ends. A slot whose GPU another process on the node uses is skipped; waiting tasks go to it
when it is free (``retry``). ``flock`` locks die with their process, so a killed worker
leaves no lock behind.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import fcntl
import functools
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from dagrun.backends.process.pool import Pool
from dagrun.backends.process.spawning import WORKER_CONTEXT
from dagrun.record import record


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


@record
class _Waiting:
    future: SlotFuture
    function: Callable[..., Any]
    args: tuple[Any, ...]
    timeout: float | None


@record
class _Slot:
    pool: Pool
    busy: bool = False
    locks: tuple[str, ...] = ()  # node-wide lock files of its GPUs
    held: list[int] | None = None  # descriptors of the locks while it runs a task


LOCK_DIR_ENV = "DAGRUN_GPU_LOCK_DIR"  # where /tmp is not local to the node: name a folder


def node_lock_folder() -> str:
    """The node-local folder of GPU slot locks (one per user; ``$DAGRUN_GPU_LOCK_DIR``
    where the temporary folder is shared between nodes)."""
    return os.environ.get(LOCK_DIR_ENV) or os.path.join(tempfile.gettempdir(),
                                                         f"dagrun-gpu-slots-{os.getuid()}")


def lock_names(cudas: Sequence[str | None]) -> list[tuple[str, ...]]:
    """For each slot, the lock files of the GPU shares it uses: ``gpu<ID>.<n>`` where
    ``n`` counts the earlier slots on that GPU (fractions give one GPU several slots)."""
    seen: collections.Counter[str] = collections.Counter()
    names = []
    for cuda in cudas:
        mine = []
        for gpu in (cuda.split(",") if cuda else []):
            safe = gpu.strip().replace(os.sep, "_")
            mine.append(f"gpu{safe}.{seen[safe]}")
            seen[safe] += 1
        names.append(tuple(mine))
    return names


def _try_lock(folder: str, names: tuple[str, ...]) -> list[int] | None:
    """Descriptors holding every lock of ``names``; ``None`` (nothing held) when another
    process holds one."""
    held: list[int] = []
    for name in names:
        try:
            fd = os.open(os.path.join(folder, name), os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(folder, name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            _unlock(held)
            return None
        held.append(fd)
    return held


def _unlock(held: list[int]) -> None:
    for fd in held:
        os.close(fd)  # closing the last descriptor drops the flock


class SlotPool:
    """One process per entry of ``cudas`` (its ``CUDA_VISIBLE_DEVICES``, or ``None``), each
    started with ``initializer(*initargs)`` after its slot is pinned."""

    def __init__(self, cudas: Sequence[str | None], initializer: Callable[..., None],
                 initargs: tuple[Any, ...], context: Any = WORKER_CONTEXT) -> None:
        self.cudas = list(cudas)
        # reentrant: a task that is already done runs its callback inside ``_dispatch``
        self._lock = threading.RLock()
        self._queue: collections.deque[_Waiting] = collections.deque()
        self.lock_folder = node_lock_folder()
        self._slots = [_Slot(Pool(max_workers=1, initializer=pinned,
                                  initargs=(cuda, initializer, *initargs), context=context),
                             locks=names)
                       for cuda, names in zip(self.cudas, lock_names(self.cudas), strict=True)]

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

    def free(self) -> int:
        """Slots free now: not busy here, and their GPUs not used by another process on
        this node (a task given now would start at once)."""
        with self._lock:
            count = 0
            for slot in self._slots:
                if slot.busy:
                    continue
                held = _try_lock(self.lock_folder, slot.locks) if slot.locks else []
                if held is not None:
                    _unlock(held)
                    count += 1
            return max(0, count - len(self._queue))

    def retry(self) -> None:
        """Give waiting tasks to slots whose GPUs were freed by other processes."""
        with self._lock:
            if self._queue:
                self._dispatch()

    def _dispatch(self) -> None:
        """Give waiting tasks to free slots (called with the lock held)."""
        for index, slot in enumerate(self._slots):
            while not slot.busy and self._queue:
                if slot.locks and slot.held is None:
                    slot.held = _try_lock(self.lock_folder, slot.locks)
                    if slot.held is None:
                        break  # another process on this node uses its GPUs
                waiting = self._queue.popleft()
                if not waiting.future.set_running_or_notify_cancel():
                    continue  # cancelled while it waited
                inner = slot.pool.schedule(waiting.function, args=waiting.args,
                                           timeout=waiting.timeout)
                slot.busy = True
                waiting.future.inner = inner
                inner.add_done_callback(functools.partial(self._finished, index,
                                                          outer=waiting.future))
            if not slot.busy and slot.held is not None:  # its tasks were all cancelled
                _unlock(slot.held)
                slot.held = None

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
            slot = self._slots[index]
            slot.busy = False
            if slot.held is not None:
                _unlock(slot.held)
                slot.held = None
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
            slot.pool.close()

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
