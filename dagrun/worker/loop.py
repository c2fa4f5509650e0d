"""``dagrun worker OUT``: claim runs of a planned sweep and execute them until none is left.

A worker reads the stored plan (it never rewrites it), loads the workflow the sweep was
planned with, and loops: it claims runs that are not done and not leased (``dagrun.disk.leases``),
executes up to ``-j`` of them at once in its pool (``executor.py``), retries a failed run up
to ``retries`` times while it holds it, takes over runs whose lease went stale, and waits
while other workers' leases are live. It ends when every run is done or given up, and then
rewrites ``results.jsonl`` under the one-driver lock (held for a moment), so whoever ends
last leaves it complete and sorted.

Attempts: a run that failed before the sweep was last planned (``dagrun plan`` or
``execute``) is attempted again (attempt 1, as ``execute`` would). A failure record written
since then — by this worker, another worker or the driver, whenever each started — counts:
its attempt count (kept in the record) says whether attempts are left. "Since" compares the
record's modification time with ``workflow.pkl``'s, both set by the file system holding OUT,
never the clocks of two hosts; a record that changed while this worker watched counts too.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

from dagrun.backends import validate_basecfg
from dagrun.code.workflow import Workflow
from dagrun.config import Settings
from dagrun.disk import atomic, formatversion, trust
from dagrun.disk.layout import STAGES, RunDir, Stage, SweepDir, error_name
from dagrun.disk.leases import (
    MAX_TAKEOVERS,
    WORKER_GRACE,
    Heartbeat,
    Holder,
    Lease,
    LeaseIndex,
    Observer,
    WorkerWatch,
    claim,
    take_over,
)
from dagrun.disk.lock import REDUCE_WAIT, driver_lock, holder_role
from dagrun.disk.plan import make_plan, scan_run
from dagrun.disk.planstore import planned_runs, read_plan, require_sweep
from dagrun.disk.records import Failure, failure_signature
from dagrun.errors import FailureKind, SweepBusyError, UsageError
from dagrun.record import record, replace
from dagrun.results import reduce
from dagrun.run.failures import lost_run
from dagrun.run.failures import record as record_failure
from dagrun.run.gpus import slots
from dagrun.run.runwarning import WarningTally
from dagrun.run.signals import stop_signals_interrupt
from dagrun.run.stages import RunOutcome, RunTask
from dagrun.worker.executor import Executor

POLL = 0.1  # seconds a worker waits for an outcome per turn
RESCAN = 0.5  # seconds between looks at runs others hold, when nothing finished
WATCH_MIN = 0.5  # seconds between looks at the other workers' announcements, at least


@record(frozen=True)
class WorkerOptions:
    """The command line of ``dagrun worker``."""

    jobs: int | None = None
    lease_timeout: float | None = None
    idle_exit: float | None = None
    # only the runs of these experiments (a search's trials not finished: a failed trial
    # is failed for the study, and is not attempted again whenever a new trial is planned)
    experiments: frozenset[int] | None = None
    # leave as soon as every run left is held by others (a search's worker then asks the
    # next trial instead of waiting for theirs; it stays on the study's last trials)
    leave_idle: bool = False


def say(text: str) -> None:
    print(f"dagrun worker: {text}", file=sys.stderr, flush=True)


def worker_settings(workflow: Workflow, sweep: SweepDir, options: WorkerOptions) -> Settings:
    """The sweep's settings as planned, with this worker's flags and its view of OUT."""
    base: dict[str, Any] = {**workflow.basecfg, "pre": workflow.pre, "fit": workflow.fit,
                            "post": workflow.post, "out_path": sweep.path}
    if options.jobs is not None:
        base["num_cpus"] = options.jobs
    if options.lease_timeout is not None:
        base["lease_timeout"] = options.lease_timeout
    return validate_basecfg(base).settings


def run_worker(out: str, options: WorkerOptions) -> int:
    """The ``dagrun worker`` command; returns its exit code (0 all done, 1 some failed or
    left undone by ``--idle-exit``)."""
    sweep = require_sweep(out)
    formatversion.check_joinable(sweep)
    if not os.path.isfile(sweep.workflow):
        raise UsageError(f"{sweep.path} keeps no pickled workflow: plan it with "
                         "`dagrun plan WORKFLOW.py` first")
    plan = PlanWatch(sweep)  # before loading: a plan written meanwhile is seen as new
    workflow = Workflow.load(sweep.workflow)
    settings = worker_settings(workflow, sweep, options)
    loop = WorkerLoop(sweep, settings, slots(settings, settings.num_cpus), options.idle_exit,
                      plan, options.experiments, options.leave_idle)
    with stop_signals_interrupt():
        loop.run()
    reduce_results(sweep)
    # 0 only when every run this worker saw is done: one that left with runs still held by
    # others (--idle-exit) cannot say they will finish
    return 1 if loop.failed or loop.left_undone else 0


def reduce_results(sweep: SweepDir) -> None:
    """Rewrite results.jsonl under the lock; a driver holding it rewrites it itself. Lines
    of experiments whose runs are all verified against them are copied (workers append no
    lines, so after the first worker's rewrite most lines are), not recomputed."""
    if holder_role(sweep) == "execute":  # it rewrites results.jsonl when it ends
        say("a dagrun execute holds OUT: it rewrites results.jsonl when it ends")
        return
    try:
        with driver_lock(sweep, wait=REDUCE_WAIT, role="reduce"):
            experiments = list(read_plan(sweep).values())
            lines = reduce.rewrite(sweep, experiments,
                                   reuse=trust.verified_ids(sweep, experiments))
    except SweepBusyError:
        say("a dagrun driver holds OUT: it rewrites results.jsonl when it ends")
        return
    say(f"{sweep.results}: {lines} experiments")


class PlanWatch:
    """Tells when the sweep is planned again: ``planned-code.json`` (what the sweep was
    planned with) differs from what it held when this worker started. Its ``stat`` is
    compared on every look, its content only when that changed (an ``execute`` of the same
    plan writes it again, equal)."""

    def __init__(self, sweep: SweepDir) -> None:
        self.path = sweep.planned_code
        self.signature = self._signature()
        self.content = self._content()

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _content(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except OSError:
            return None

    def changed(self) -> bool:
        signature = self._signature()
        if signature == self.signature or signature is None:
            return False  # unchanged, or OUT/.dagrun deleted (it is written again the same)
        content = self._content()
        if content == self.content:
            self.signature = signature
            return False
        return True


@record
class _Run:
    """A run this worker may still have to execute."""

    task: RunTask
    errors: tuple[Any, ...]  # its failure records as first seen (to spot new failures)


class WorkerLoop:
    """Claims, executes and releases runs until none is left for this worker."""

    def __init__(self, sweep: SweepDir, settings: Settings, cudas: list[str | None],
                 idle_exit: float | None, plan: PlanWatch | None = None,
                 experiments: frozenset[int] | None = None, leave_idle: bool = False) -> None:
        self.sweep = sweep
        self.experiments = experiments
        self.leave_idle = leave_idle
        self.settings = settings
        self.idle_exit = idle_exit
        self.holder = Holder.here(settings.lease_timeout)
        self.observer = Observer(settings.lease_timeout)
        self.heartbeat = Heartbeat(settings.lease_timeout)
        self.executor = Executor(sweep.workflow, cudas, settings.timeout)
        self.runs_at_once = len(cudas)
        self.pending: dict[str, _Run] = {}
        self.mine: dict[str, Lease] = {}
        self.failed: set[str] = set()
        self.ran = 0
        self.warnings = WarningTally()  # the first of each kind is printed, all counted
        self._next_fill = 0.0
        self._grace_end = 0.0
        self.left_undone = 0  # runs still held by others when --idle-exit made it leave
        self._idle_since: float | None = None
        self.planned_ns = atomic.mtime_ns(sweep.workflow, 0)  # when the sweep was last planned
        self.watch = WorkerWatch(sweep, settings.lease_timeout)
        self._next_watch = 0.0
        self.index = LeaseIndex(sweep)
        self.plan = plan or PlanWatch(sweep)
        self.replanned = False  # the sweep was planned again: this worker stopped claiming

    def run(self) -> None:
        """The loop; on Ctrl-C/SIGTERM its runs are killed and its leases released."""
        self._load()
        say(f"{self.holder.host} pid {self.holder.pid}: {len(self.pending)} run(s) to do in "
            f"{self.sweep.path}, up to {self.runs_at_once} at once")
        self.heartbeat.announce(self.sweep, self.holder)  # a driver beside us leases ...
        self._next_fill = self._grace_end = time.monotonic() + WORKER_GRACE  # ... by then
        self.heartbeat.start()
        self.executor.start()
        interrupted = True
        try:
            self._loop()
            interrupted = False
        finally:
            self.executor.shutdown(kill=interrupted)
            self.heartbeat.stop()
        self.failed = {p for p in self.failed if not _done(p)}  # others may have done them
        say(f"ran {self.ran} run(s); {len(self.failed)} failed")
        for line in self.warnings.lines():
            say(line)

    def _load(self) -> None:
        experiments = planned_runs(self.sweep)
        if self.experiments is not None:
            experiments = [e for e in experiments if e.exp_id in self.experiments]
        plan = make_plan(self.sweep, experiments, compare=False)
        for planned in plan.todo():
            s = planned.status
            task = RunTask(s.exp_id, s.rep, s.run.path, 1)
            self.pending[s.run.path] = _Run(task, _errors(s.run) if s.failed else ())

    def _loop(self) -> None:
        while True:
            finished = self.executor.poll(POLL)
            for outcome in finished:
                self._finished(outcome)
            for lease in self.heartbeat.take_lost():
                self._lost(lease)
            if self.executor.free() and (finished or time.monotonic() >= self._next_fill):
                self._fill()
            if self.executor.busy():
                self._idle_since = None
                continue
            if not self.pending:
                return
            if self.replanned:
                self.left_undone = len(self.pending)
                return
            if self.leave_idle and time.monotonic() >= self._grace_end:
                self.left_undone = len(self.pending)  # held by others (the fill took none)
                return
            if self._idle_too_long() and self._others_stay():
                self.pending = {p: r for p, r in self.pending.items() if not _done(p)}
                self.left_undone = len(self.pending)
                say(f"leaving: {len(self.pending)} run(s) still held by other workers")
                return

    def _others_stay(self) -> bool:
        """Whether this worker may leave runs held by others: a live holder stays behind
        to take over any lease that still goes stale. An ``execute`` that leases stays
        until its runs are done; of the live workers, the one with the least id stays
        (every idle worker computes the same one), so at least one is left and a run held
        by a dead or frozen holder is never stranded. Looks at the announcements once per
        heartbeat interval (all idle workers of a large array read them)."""
        now = time.monotonic()
        if now < self._next_watch:
            return False
        self._next_watch = now + max(WATCH_MIN, self.heartbeat.interval)
        live = [(w, role) for w, role in self.watch.live() if w != self.holder.worker]
        if any(role == "driver" for _w, role in live):
            return True
        return any(w < self.holder.worker for w, _role in live)

    def _idle_too_long(self) -> bool:
        if self.idle_exit is None or time.monotonic() < self._grace_end:
            return False
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        return now - self._idle_since >= self.idle_exit

    def _fill(self) -> None:
        """Claim runs for the free slots, in plan order (not within ``WORKER_GRACE`` of
        announcing this worker, again after its announcement was deleted)."""
        now = time.monotonic()
        self.heartbeat.ensure_announced()
        if now < self.heartbeat.announced_at + WORKER_GRACE:
            self._next_fill = self._grace_end = self.heartbeat.announced_at + WORKER_GRACE
            return
        self._next_fill = now + RESCAN
        if self.plan.changed():
            self._replanned()
            return
        for path, item in list(self.pending.items()):
            if not self.executor.free():
                return
            if path in self.mine:
                continue
            status = scan_run(item.task.exp_id, item.task.rep, RunDir(path))
            if status.next_stage is None:
                del self.pending[path]  # done by another worker
                continue
            task = self._attempt(item, RunDir(path), status.failed_stage is not None)
            if task is None:
                self._give_up(path)
                continue
            lease = self._lease(task)
            if lease is not None and self.plan.changed():  # planned again before our claim
                lease.release()
                self._replanned()
                return
            if lease is not None:
                self.mine[path] = lease
                self.heartbeat.add(lease)
                self.executor.submit(replace(task, folder=lease.folder))

    def _replanned(self) -> None:
        """The sweep was planned again (other configs or code): this worker runs the old
        plan, so it claims nothing more (runs it holds finish: a re-plan is refused while
        they live)."""
        if not self.replanned:
            self.replanned = True
            say("the sweep was planned again since this worker started: it claims nothing "
                "more; start a new dagrun worker to run the new plan")

    def _attempt(self, item: _Run, run: RunDir, failed: bool) -> RunTask | None:
        """The task to execute next for ``run``; ``None`` when its attempts are spent."""
        if not failed or (_errors(run) == item.errors and not self._this_plan(run)):
            return item.task
        last = max((f for f in (Failure.read(run, s) for s in _stages(run)) if f),
                   key=lambda f: f.attempt, default=None)
        attempt = last.attempt if last is not None else 0
        if attempt > self.settings.retries:
            return None
        return RunTask(item.task.exp_id, item.task.rep, run.path, attempt + 1)

    def _this_plan(self, run: RunDir) -> bool:
        """Whether a failure record of ``run`` was written since the sweep was planned."""
        for stage in _stages(run):
            with contextlib.suppress(OSError):
                if os.stat(run.error(stage)).st_mtime_ns >= self.planned_ns:
                    return True
        return False

    def _lease(self, task: RunTask) -> Lease | None:
        """Claim the run, or take it over when its lease is stale; ``None`` when another
        worker holds it (or it was taken over too often and is now recorded as crashed)."""
        run = RunDir(task.path)
        os.makedirs(run.path, mode=0o755, exist_ok=True)
        lease = claim(run, self.holder, index=self.index)
        if lease is not None:
            self.observer.forget(run)
            return lease
        seen = self.observer.look(run)
        if seen is None:
            return claim(run, self.holder, index=self.index)
        if not self.observer.stale(seen):
            return None
        lease = take_over(run, seen, self.holder, self.index)
        if lease is None:
            return None
        if lease.takeovers >= MAX_TAKEOVERS:
            record_failure(lost_run(task, FailureKind.CRASHED,
                                    f"the workers running {{stage}} stopped "
                                    f"{lease.takeovers} times without finishing it (each "
                                    "lease went stale: killed, e.g. out of memory, or lost)"),
                           replace(task, folder=lease.folder))
            lease.release()
            self._give_up(task.path)
            return None
        say(f"took over run {task.label} from {seen.describe()}: its lease did not move "
            f"for {max(self.settings.lease_timeout, seen.timeout):g} s")
        return lease

    def _finished(self, outcome: RunOutcome) -> None:
        task = outcome.task
        for warning in outcome.warnings:
            if self.warnings.add(task.label, warning):
                say(f"warning: run {task.label}: {warning.message}")
        failure = outcome.failure
        if task.path not in self.mine:
            return  # its lease was taken over meanwhile: another worker owns the run
        if outcome.superseded:  # claimed by another holder before it could commit
            self._lost(self.mine[task.path])
            return
        if failure is not None and task.attempt <= self.settings.retries:
            say(f"run {task.label} failed in {failure.stage} ({failure.first_line}); "
                f"retrying ({task.attempt}/{self.settings.retries})")
            self.executor.submit(task.retry())
            return
        if outcome.ran or failure is not None:  # not a run another worker had finished
            self.ran += 1
        self._release(task.path)
        if failure is None:
            self.pending.pop(task.path, None)
        else:
            say(f"run {task.label} failed in {failure.stage}: {failure.first_line}")
            self._give_up(task.path)

    def _release(self, path: str) -> None:
        if self.mine.pop(path, None) is not None:
            self.heartbeat.release(RunDir(path))

    def _give_up(self, path: str) -> None:
        self.pending.pop(path, None)
        self.failed.add(path)

    def _lost(self, lease: Lease) -> None:
        """Our lease of a run was taken over: stop the run, record nothing (its attempt
        folder was fenced by the new holder: nothing the run writes now lands)."""
        path = lease.run.path
        self.executor.abandon(path)
        self.heartbeat.release(lease.run)  # closes it: the lease is the new holder's
        self.mine.pop(path, None)
        lease.close()
        self.observer.forget(lease.run)
        say(f"the lease of {path} was taken over by another worker; stopped that run here")



_ERROR_NAMES = frozenset(error_name(s) for s in STAGES)


def _stages(run: RunDir) -> list[Stage]:
    """Stages with a failure record in ``run``."""
    return [s for s in STAGES if os.path.exists(run.error(s))]


def _done(path: str) -> bool:
    return os.path.exists(RunDir(path).marker(Stage.POST))


def _errors(run: RunDir) -> tuple[Any, ...]:
    """What the run's failure records look like now (name, inode, size, mtime)."""
    try:
        names = _ERROR_NAMES.intersection(os.listdir(run.path))
    except OSError:
        return ()
    return failure_signature(run.path, names)
