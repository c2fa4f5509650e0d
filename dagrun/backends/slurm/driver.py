"""``slurm``: the sweep as one Slurm job array of ``dagrun worker`` tasks.

    driver (execute)                 Slurm                      array task i (a node)
    plan -> OUT/.dagrun  ---sbatch--> job array J, N tasks --->  dagrun worker OUT -j 1
    watch run folders    <--squeue--  task states                claims runs by lease,
    (progress, failures)              (every few seconds)        runs them, releases
    reduce results.jsonl                                         (the last one reduces)

The driver hands no run to anyone: workers claim runs from the disk (``dagrun.disk.leases``), so
a task that Slurm stops (time limit, preemption, node failure, ``scancel``) gets SIGTERM,
releases its leases and its runs go to the other tasks. Attached (the default) the driver
follows the run folders, asks ``squeue`` at most every ``poll_every`` seconds (never per
run), and when the arrays have ended with runs left undone because Slurm stopped their
workers, submits a new array for them, at most ``max_resubmits`` times (not after the user
cancelled the whole array); such resubmissions are not retries of the runs. Ctrl-C cancels
the arrays and waits until Slurm lists none of their tasks. ``--detach`` submits and returns;
the workers reduce results.jsonl at the end. ``job.json`` keeps the arrays' ids, so an
``execute`` while one is alive submits nothing.
"""

from __future__ import annotations

import collections
import glob
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from dagrun.backends.base import Backend
from dagrun.backends.slurm import commands, options
from dagrun.backends.slurm.commands import SbatchRefused, Task, TaskState
from dagrun.backends.slurm.jobs import Arrays
from dagrun.backends.slurm.options import SlurmOptions
from dagrun.backends.slurm.watch import RunWatch
from dagrun.config import Settings, repetitions_of
from dagrun.disk import atomic
from dagrun.disk.layout import RunDir, SweepDir
from dagrun.errors import BackendUnavailableError, ConfigError, FailureKind
from dagrun.progress import Progress, say
from dagrun.run.failures import lost_run
from dagrun.run.stages import RunOutcome, RunTask
from dagrun.run.summary import FailedRun, Summary

TICK = 0.2
SQUEUE_PATIENCE = 300.0  # seconds of failing squeue calls before an attached driver leaves
SQUEUE_BACKOFF_MAX = 30.0  # the longest pause between two squeue calls while they fail


class SlurmBackend(Backend):
    name = "slurm"
    pulls_runs = True

    # knobs (class attributes so tests can shorten them)
    poll_every: ClassVar[float] = 3.0  # seconds between squeue calls
    max_resubmits: ClassVar[int] = 2  # new arrays for runs Slurm stopped, per execute
    cancel_wait: ClassVar[float] = 120.0  # seconds to wait for cancelled tasks to end

    @classmethod
    def check(cls, settings: Settings, cfgs: Sequence[Mapping[str, Any]]) -> None:
        """Tools on PATH, the ``slurm`` dict, and ``sbatch --test-only`` with its options."""
        commands.require_tools()
        opts = SlurmOptions.of(settings)
        runs = sum(repetitions_of(cfg, settings.repetitions) for cfg in cfgs)
        try:
            commands.test_only(options.check_args(opts, options.workers(settings, runs)),
                               options.TEST_SCRIPT)
        except SbatchRefused as exc:
            raise ConfigError(f"sbatch refuses the job that basecfg['slurm'] describes: {exc} "
                              "(`sinfo` lists partitions and limits)") from None

    # the scheduler's submit/poll is not used: workers claim runs from the disk themselves
    def submit(self, task: RunTask) -> None:
        raise NotImplementedError("the slurm backend's workers claim runs themselves")

    def poll(self, timeout: float) -> list[RunOutcome]:
        raise NotImplementedError("the slurm backend's workers claim runs themselves")

    def describe(self) -> str:
        return f"slurm ({' '.join(SlurmOptions.of(self.settings).flags) or 'default options'})"

    # -- the sweep -------------------------------------------------------------------------

    @classmethod
    def workers_alive(cls, sweep: SweepDir) -> bool:
        """Whether a task of an array of ``sweep`` is pending or running (squeue)."""
        try:
            return bool(Arrays.read(sweep).active())
        except BackendUnavailableError:  # Slurm does not answer: the next submit says so
            return False

    def run_pulled(self, tasks: list[RunTask], summary: Summary, *, detach: bool) -> None:
        """Have Slurm workers execute ``tasks``: submit (unless an array of this sweep is
        alive), then return at once (``detach``) or follow them to the end."""
        self.opts = SlurmOptions.of(self.settings)
        self.arrays = Arrays.read(self.sweep)
        alive = self.arrays.active()
        if detach:
            self._detach(tasks, alive)
            return
        jobs = _job_ids(alive)
        if jobs:
            say(f"dagrun: Slurm array {', '.join(jobs)} of this sweep is still running: "
                "following it, submitting nothing")
        else:
            jobs = [self._submit(len(tasks))]
        try:
            _Follow(self, tasks, summary).run(jobs)
        except KeyboardInterrupt:
            self._cancel()
            raise

    def _detach(self, tasks: list[RunTask], alive: list[Task]) -> None:
        follow = f"dagrun status {shlex.quote(self.sweep.path)}"
        if alive:
            jobs = ", ".join(_job_ids(alive))
            print(f"Slurm array {jobs} of this sweep is still running ({len(alive)} task(s) "
                  f"pending or running): submitted nothing. Follow with: {follow}")
            return
        job = self._submit(len(tasks))
        print(f"submitted Slurm array {job} for {len(tasks)} run(s); worker logs in "
              f"{self.sweep.slurm}. Follow with: {follow}")

    def _submit(self, runs: int) -> str:
        """Submit one array of workers for ``runs`` runs; returns its job id."""
        count = options.workers(self.settings, runs)
        atomic.makedirs(self.sweep.slurm)
        script = options.batch_script(self.sweep, self.settings, self.opts)
        args = self.opts.sbatch_args(count, options.log_pattern(self.sweep))
        try:
            job = commands.sbatch(args, script)
        except SbatchRefused as exc:
            raise BackendUnavailableError(f"sbatch refused the array: {exc}") from None
        self.arrays.add(self.sweep, job)
        atomic.write_text(self.sweep.slurm_script(job), script)
        if self.settings.verbose:
            say(f"dagrun: submitted Slurm array {job}: {count} worker(s) for {runs} run(s); "
                f"logs {self.sweep.slurm_log(job + '_*')}")
        return job

    def _cancel(self) -> None:
        """Cancel every array of this sweep and wait (bounded) until none of their tasks
        is pending or running."""
        jobs = _job_ids(self.arrays.active())
        if not jobs:
            return
        say(f"dagrun: cancelling Slurm array {', '.join(jobs)}")
        commands.scancel(jobs)
        deadline = time.monotonic() + self.cancel_wait
        while self.arrays.active() and time.monotonic() < deadline:
            time.sleep(0.5)


class _Follow:
    """An attached sweep: waits for the arrays, resubmits what Slurm stopped, counts."""

    def __init__(self, backend: SlurmBackend, tasks: list[RunTask], summary: Summary) -> None:
        self.backend = backend
        self.settings = backend.settings
        self.summary = summary
        self.watch = RunWatch.of(tasks, self.settings.retries)
        self.stops: collections.Counter[str] = collections.Counter()  # run path -> times
        self.last_state: dict[str, TaskState] = {}  # run path -> how its worker ended
        self.progress = Progress(summary.planned, summary.skipped, self.settings.verbose)
        self.reported = 0
        self._failing_since: float | None = None  # when squeue began to fail (monotonic)
        self._backoff = backend.poll_every

    def run(self, jobs: list[str]) -> None:
        try:
            self._rounds(jobs)
        finally:
            self.progress.close()
            self.summary.done = self.watch.done
            self.summary.failed = len(self.watch.failed)
            self.summary.failed_runs.extend(self.watch.failed)

    def _rounds(self, jobs: list[str]) -> None:
        resubmits = 0
        while True:
            self.watch.new_round()
            finished_before = self.watch.done + len(self.watch.failed)
            ended = self._wait(jobs)
            if not self.watch.pending:
                return
            self._check_setup(jobs)
            states = collections.Counter(t.state.value for t in ended if t.state.stopped)
            stopped = self._stopped(ended)
            self._note(jobs, ended)
            whole = bool(ended) and all(t.state is TaskState.CANCELLED for t in ended)
            progressed = bool(stopped) or self.watch.done + len(self.watch.failed) > finished_before
            if whole or not progressed or resubmits >= self.backend.max_resubmits:
                self._give_up(whole, states)
                return
            resubmits += 1
            left = len(self.watch.pending)
            jobs = [self.backend._submit(left)]
            self.summary.notes.append(
                f"slurm: Slurm stopped worker(s) ({_counts(states)}) with {left} run(s) left "
                f"undone; resubmitted them as array {jobs[0]} (not counted as retries)")

    def _wait(self, jobs: list[str]) -> list[Task]:
        """Until every run is finished or none of ``jobs``' tasks is alive; returns the
        tasks as squeue last listed them."""
        tasks: list[Task] = []
        next_poll = 0.0
        while True:
            if self.watch.scan():
                self._report()
            if not self.watch.pending:
                return tasks
            if time.monotonic() >= next_poll:
                listed = self._squeue(jobs)
                if listed is None:  # slurmctld did not answer: ask again later
                    next_poll = time.monotonic() + self._backoff
                    continue
                tasks = listed
                next_poll = time.monotonic() + self.backend.poll_every
                if not any(t.state.active for t in tasks):
                    self.watch.scan(force=True)
                    self._report()
                    return tasks
            self.progress.set_running(self.watch.held)
            time.sleep(TICK)

    def _check_setup(self, jobs: list[str]) -> None:
        """``ConfigError`` naming the basecfg setup line that failed in a worker (its
        workers never started: resubmitting would fail the same way)."""
        folder = self.backend.sweep.slurm
        for job in jobs:
            for log in sorted(glob.glob(os.path.join(glob.escape(folder), f"worker-{job}_*.log"))):
                try:
                    with open(log, encoding="utf-8", errors="replace") as f:
                        found = options.setup_failure(f.read(), self.backend.opts)
                except OSError:
                    continue
                if found is not None:
                    raise ConfigError(f"{found}; fix basecfg['slurm']['setup'] (worker log: "
                                      f"{log})")

    def _squeue(self, jobs: list[str]) -> list[Task] | None:
        """``squeue`` of ``jobs``; ``None`` while it fails (a slurmctld that stalls or
        restarts), retried with a growing delay for up to ``SQUEUE_PATIENCE`` seconds (the
        runs' progress is followed on disk meanwhile); then one line saying the array
        keeps running and how to follow it."""
        try:
            found = commands.squeue(jobs)
        except BackendUnavailableError as exc:
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since, self._backoff = now, self.backend.poll_every
                self.progress.write(f"dagrun: {exc}; asking again (runs are followed on disk)")
            elif now - self._failing_since >= SQUEUE_PATIENCE:
                raise BackendUnavailableError(
                    f"{exc} for {SQUEUE_PATIENCE:g} s; array {', '.join(jobs)} keeps running "
                    f"without this driver: follow it with `dagrun status "
                    f"{self.backend.sweep.path}` (its workers rewrite results.jsonl when the "
                    f"last one ends)") from exc
            else:
                self._backoff = min(self._backoff * 2, SQUEUE_BACKOFF_MAX)
            return None
        if self._failing_since is not None:
            self.progress.write("dagrun: squeue answers again")
            self._failing_since = None
        return found

    def _report(self) -> None:
        """Advance the progress bar by what finished since the last report."""
        done = self.watch.done - self.progress.done
        failed = len(self.watch.failed) - self.progress.failed
        for _ in range(done):
            self.progress.finished(True, self.watch.held)
        for run in self.watch.failed[len(self.watch.failed) - failed:]:
            self.progress.write(f"dagrun: run {run.label} failed in {run.stage} ({run.kind})")
            self.progress.finished(False, self.watch.held)

    def _stopped(self, ended: list[Task]) -> dict[str, str | None]:
        """Runs left undone that a worker held when Slurm stopped it; counted per run."""
        state = {t.task_id: t.state for t in ended}
        stopped = self.watch.stopped_runs()
        for path, task_id in stopped.items():
            self.stops[path] += 1
            self.last_state[path] = state.get(task_id or "", TaskState.OTHER)
        return stopped

    def _note(self, jobs: list[str], ended: list[Task]) -> None:
        counts = collections.Counter(t.state.value for t in ended)
        if counts:
            self.summary.notes.append(f"slurm: array {', '.join(jobs)}: {_counts(counts)} "
                                      f"(worker logs in {self.backend.sweep.slurm})")

    def _give_up(self, whole: bool, states: collections.Counter[str]) -> None:
        """No more arrays: runs Slurm stopped in every round are recorded as failed
        (``timeout`` after time limits, else ``crashed``); the others stay undone."""
        for path, times in self.stops.items():
            task = self.watch.pending.get(path)
            if task is None or times <= self.backend.max_resubmits:
                continue
            state = self.last_state.get(path, TaskState.OTHER)
            kind = FailureKind.TIMEOUT if state is TaskState.TIMEOUT else FailureKind.CRASHED
            failure = lost_run(task, kind, f"Slurm stopped the worker running {{stage}} "
                                           f"{times} times (last: {state.value})")
            failure.write(RunDir(path))
            del self.watch.pending[path]
            self.watch.failed.append(FailedRun(task.label, path, failure.stage, failure.kind,
                                               failure.message))
        left = len(self.watch.pending)
        if not left:
            return
        why = ("the Slurm array was cancelled" if whole else
               f"Slurm stopped worker(s) ({_counts(states)})" if states else
               "the Slurm array ended")
        self.summary.notes.append(
            f"slurm: {why} with {left} run(s) left undone; run the same command again to "
            f"resume (worker logs in {self.backend.sweep.slurm})")


def _job_ids(tasks: list[Task]) -> list[str]:
    """The arrays these tasks belong to (``JOB_TASK`` -> ``JOB``)."""
    return sorted({t.task_id.split("_")[0] for t in tasks})


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counter.items())) or "none"


__all__ = ["SlurmBackend"]
