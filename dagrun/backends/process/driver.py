"""``multiprocessing``: up to ``num_cpus`` reused worker processes on this machine.

Built on ``RunPool`` (``runpool.py``): each worker is given its runs through its own pipe
and reports each outcome without being asked, so the driver always knows which run a worker
executes: per-run timeouts kill the worker (SIGTERM, then SIGKILL after a short grace) and
replace it, and a worker that died fails exactly its current run, whatever its exit code.
Workers are forked from the driver where ``dagrun.run.forking`` finds that as safe as a
spawn (it has what the workflow imported; they start before the driver's own threads), else
spawned (a new interpreter that gets the workflow once, through the pool initializer). No
more workers are started than there are runs to do.

With ``num_gpus`` per run the workers are a ``SlotPool`` (``slots.py``, on pebble): one
process per GPU slot (``dagrun.run.gpus``), each pinned to its slot's
``CUDA_VISIBLE_DEVICES`` for life, so runs never share a GPU unless fractions were asked
for; ``min(num_cpus, slots)`` runs at once.

Every process a run starts is stopped with it (``dagrun.run.proctree``): a worker stops its own
tree when it is sent SIGTERM; after a worker was killed or crashed the driver kills what its
runs left (its process group and the processes tagged with it); a watchdog outside the tree
kills every process of the sweep when the driver ends, ``kill -9`` included.

The driver's own cost per run is kept independent of how many runs are in flight: the run
pool reads whatever outcomes arrived in one wait; with GPU slots a finished future puts
itself into one queue (``add_done_callback``) that ``poll`` waits on. ``concurrent.futures``
(which imports ``logging``: ~5 ms of every sweep's start) is imported with GPU slots only.
"""

from __future__ import annotations

import functools
import os
import queue
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import concurrent.futures as cf

    from dagrun.backends.process.slots import SlotPool

from dagrun.backends.base import Backend
from dagrun.backends.process.runpool import QUEUED, Forked, RunPool, RunTimedOut, WorkerDied
from dagrun.backends.process.spawning import WORKER_CONTEXT
from dagrun.backends.process.worker import init_forked, init_worker, pool_args, run_task
from dagrun.config import Settings
from dagrun.disk.records import Failure
from dagrun.errors import FailureKind
from dagrun.progress import note
from dagrun.run import failures, gpus, proctree
from dagrun.run.failures import crashed_failure, lost_run, timeout_failure
from dagrun.run.stages import RunOutcome, RunTask

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

JOIN_TIMEOUT = 30.0


def lost_run_failure(task: RunTask, exc: BaseException, timeout: float) -> Failure:
    """The failure record of a run whose worker process was killed or died."""
    if isinstance(exc, (TimeoutError, RunTimedOut)) or _futures_timeout(exc):
        return timeout_failure(task, timeout)
    if isinstance(exc, WorkerDied):
        return crashed_failure(task, exc.exitcode)
    pebble = sys.modules.get("pebble")  # loaded with GPU slots only (``SlotPool``)
    if pebble is not None and isinstance(exc, pebble.ProcessExpired):
        return crashed_failure(task, exc.exitcode or 0)
    return lost_run(task, FailureKind.ENGINE, f"{type(exc).__name__}: {exc}")


def _futures_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is ``concurrent.futures.TimeoutError`` (``TimeoutError`` itself
    from Python 3.11 on); one exists only where something imported that module."""
    futures = sys.modules.get("concurrent.futures")
    return futures is not None and isinstance(exc, futures.TimeoutError)


class ProcessBackend(Backend):
    name = "multiprocessing"
    _pool: RunPool | SlotPool | None = None
    _watchdog: Any = None

    @classmethod
    def check(cls, settings: Settings, cfgs: Sequence[Mapping[str, Any]]) -> None:
        """With ``num_gpus``: GPUs must be known here (``gpu_ids`` or CUDA_VISIBLE_DEVICES)."""
        gpus.slots(settings, settings.num_cpus)

    @functools.cached_property
    def gpu_slots(self) -> list[str | None] | None:
        """Each worker's ``CUDA_VISIBLE_DEVICES`` with ``num_gpus``; ``None`` without."""
        if not self.settings.num_gpus:
            return None
        return gpus.slots(self.settings, self.settings.num_cpus)

    @property
    def workers(self) -> int:
        """``num_cpus``, capped by the number of GPU slots with ``num_gpus``."""
        cudas = self.gpu_slots
        return self.settings.num_cpus if cudas is None else len(cudas)

    @property
    def capacity(self) -> int:
        return self.workers

    @property
    def ahead(self) -> int | None:
        """Each worker's next run (``runpool.QUEUED``), so none waits for the driver between
        two runs; GPU slots (pebble) take one run at a time."""
        if self.gpu_slots is not None:
            return None
        return self.workers * (QUEUED - 1)

    def before_threads(self) -> None:
        """Start the workers now, while this process may still fork them."""
        self.start()

    def start(self) -> None:
        if self._pool is not None:  # started by ``before_threads``
            return
        self._warn_oversubscribed()
        self._token = proctree.new_token()
        self._watchdog = proctree.start_watchdog(proctree.TOKEN_ENV, self._token)
        cudas = self.gpu_slots
        if cudas is None:
            forked = Forked(init_forked, (self.workflow, self.fingerprints, os.getpid(),
                                          self._token))
            self._pool = RunPool(self._pool_size(), init_worker, self._spawn_args,
                                 WORKER_CONTEXT, self.settings.timeout or None, run_task,
                                 forked)
        else:
            from dagrun.backends.process.slots import SlotPool  # pebble: GPU slots only

            self._note_capped()
            self._pool = SlotPool(cudas[:self._pool_size()], init_worker, self._spawn_args())
        self._futures: dict[cf.Future[Any], RunTask] = {}
        self._finished: queue.SimpleQueue[cf.Future[Any]] = queue.SimpleQueue()

    def _spawn_args(self) -> tuple[Any, ...]:
        """A spawned worker's initializer arguments: the workflow pickled (made only when a
        worker is spawned; forked ones have the driver's)."""
        return pool_args(self.workflow.dumps(), self.fingerprints, self._token)

    def _pool_size(self) -> int:
        """``workers``, but never more than there are runs to do."""
        expected = self.expected_runs
        return self.workers if expected is None else max(1, min(self.workers, expected))

    def _warn_oversubscribed(self) -> None:
        """One line when ``-j`` asks for more workers than this machine has CPUs (written
        the way the progress bar's lines are, so it does not break the bar)."""
        cpus = os.cpu_count() or 1
        if self.workers > cpus:
            note(f"dagrun: note: {self.workers} worker processes (num_cpus / -j) asked for "
                 f"on a machine with {cpus} CPUs: runs will share them")

    def _capped(self) -> str:
        """Why fewer workers than ``num_cpus`` run with GPU slots ('' when not capped)."""
        asked = self.settings.num_cpus
        if self.gpu_slots is None or self.workers >= asked:
            return ""
        given = ", ".join(gpus.visible_gpus(self.settings))
        return (f"num_cpus (-j) {asked} capped at {self.workers}: num_gpus "
                f"{self.settings.num_gpus:g} per run leaves {self.workers} GPU slot(s) on "
                f"GPUs {given}")

    def _note_capped(self) -> None:
        if self._capped():
            note(f"dagrun: note: {self._capped()}")

    def submit(self, task: RunTask) -> None:
        if self._pool is None:
            raise RuntimeError("the process pool is not running")
        if isinstance(self._pool, RunPool):
            self._pool.submit(task)
            return
        future = self._pool.schedule(run_task, args=(task,),
                                     timeout=self.settings.timeout or None)
        self._futures[future] = task
        future.add_done_callback(self._finished.put)  # at once when it is done already

    def poll(self, timeout: float) -> list[RunOutcome]:
        """The outcomes of the futures that finished: waits for the first one at most
        ``timeout`` s, then takes the others already there (O(finished), not O(in flight))."""
        if isinstance(self._pool, RunPool):
            return [outcome if isinstance(outcome, RunOutcome) else self._lost(task, outcome)
                    for task, outcome in self._pool.poll(timeout)]
        if not self._futures:
            return []
        if self._pool is not None:  # a SlotPool (not a RunPool: that returned above)
            self._pool.retry()  # tasks waiting for GPUs another process on this node used
        try:
            finished = [self._finished.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                finished.append(self._finished.get_nowait())
            except queue.Empty:
                break
        return [self._outcome(f, self._futures.pop(f)) for f in finished]

    def _outcome(self, future: cf.Future[Any], task: RunTask) -> RunOutcome:
        import concurrent.futures as cf  # (loaded already: a SlotPool's futures are its)

        try:
            outcome: RunOutcome = future.result()
            return outcome
        except (cf.TimeoutError, cf.CancelledError, OSError, RuntimeError) as exc:
            return self._lost(task, exc)
        except Exception as exc:
            pebble = sys.modules.get("pebble")  # a SlotPool's futures: pebble is loaded
            if pebble is not None and isinstance(exc, pebble.ProcessExpired):
                return self._lost(task, exc)
            raise

    def _lost(self, task: RunTask, exc: BaseException) -> RunOutcome:
        """The outcome of a run whose worker could not report on it (killed, crashed)."""
        self._kill_orphans()
        return failures.commit(lost_run_failure(task, exc, self.settings.timeout), task)

    def _kill_orphans(self) -> None:
        """Kill what the runs of workers that ended (killed, crashed) left running."""
        if self._pool is not None:
            ended = self._pool.take_ended()
            if ended:
                proctree.kill_orphans(self._token, ended)

    def running(self) -> int:
        """Runs a worker has started and not finished: the pool's count, O(1)."""
        return self._pool.running() if self._pool is not None else 0

    def describe(self) -> str:
        timeout = f", timeout {self.settings.timeout:g} s" if self.settings.timeout else ""
        cudas = self.gpu_slots
        pinned = ""
        if cudas is not None:
            devices = " | ".join(str(c) for c in cudas[:self._pool_size()])
            capped = f"; {self._capped()}" if self._capped() else ""
            pinned = f", each pinned to a GPU slot (CUDA_VISIBLE_DEVICES {devices}{capped})"
        return (f"multiprocessing, {self._pool_size()} worker process(es){pinned}{timeout}"
                f"{self._started()}")

    def _started(self) -> str:
        """How the run pool's workers were started, and why not forked where they were not
        (``dagrun.run.forking``)."""
        pool = self._pool
        if not isinstance(pool, RunPool):
            return ""
        if pool.started["spawned"] == 0:
            return ", forked"
        return f", spawned ({pool.spawn_reason})" if pool.spawn_reason else ""

    def shutdown(self, *, kill: bool = False) -> None:
        """Stop the pool; with ``kill`` (Ctrl-C, errors) the runs' trees die before this
        returns, otherwise the watchdog kills what runs left running (daemons) meanwhile."""
        pool, self._pool = self._pool, None
        if pool is not None:
            if kill:
                pool.stop()  # type: ignore[no-untyped-call, unused-ignore]
            else:
                pool.close()  # type: ignore[no-untyped-call, unused-ignore]
            pool.join(timeout=JOIN_TIMEOUT)
            if kill:
                proctree.kill_tagged(proctree.TOKEN_ENV, self._token, proctree.KILL_GRACE)
        watchdog, self._watchdog = self._watchdog, None
        proctree.stop_watchdog(watchdog)
