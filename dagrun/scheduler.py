"""From configs to results: validate, plan, hand runs to a backend, retry, reduce.

A run flows one way: plan -> backend -> stage runner -> disk -> reduce. The scheduler never
calls user code and never trusts memory over the disk: what is done is read from markers.
"""

from __future__ import annotations

import collections
import os
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagrun import atomic, codecheck, reduce
from dagrun import snapshot as snapshots
from dagrun.backends import backend_class
from dagrun.config import (
    BaseConfig,
    Settings,
    json_view,
    repetitions_of,
    validate_basecfg,
    validate_cfgs,
)
from dagrun.errors import ChangedConfigError, ConfigError
from dagrun.fingerprint import fingerprint
from dagrun.layout import STAGES, SweepDir
from dagrun.lock import driver_lock
from dagrun.plan import Experiment, RunStatus, scan
from dagrun.planstore import (
    changed_experiments,
    plan_digest,
    read_plan,
    stored_digest,
    write_plan,
)
from dagrun.progress import Progress, say
from dagrun.records import read_scores
from dagrun.signals import stop_signals_interrupt
from dagrun.snapshot import Snapshot
from dagrun.stages import RunOutcome, RunTask
from dagrun.summary import FailedRun, Summary
from dagrun.workflow import Workflow, sys_path_for

DRY_RUN_LISTING = 100


@dataclass(frozen=True)
class Options:
    """How to execute, beyond the basecfg: the command line's switches."""

    dry_run: bool = False
    rerun_changed: bool = False
    source: str | None = None  # the workflow file, when there is one
    # resume: the fingerprints stored with the pickled workflow (its functions have no
    # source any more, so fingerprinting them again would differ from the markers)
    fingerprints: Mapping[str, str] | None = None
    snapshot: Snapshot | None = None  # resume: the copy of the code the sweep was planned with


@dataclass
class Prepared:
    """A validated sweep, ready to plan."""

    base: BaseConfig
    settings: Settings
    sweep: SweepDir
    workflow: Workflow
    experiments: list[Experiment]
    fingerprints: dict[str, str]
    collected: snapshots.Collected | None = None  # the code to copy into OUT/.dagrun


def prepare(basecfg: Mapping[str, Any], cfgs: Sequence[Any], source: str | None,
            known: Mapping[str, str] | None = None, keep: Snapshot | None = None) -> Prepared:
    """Validate everything up front; raises ``ConfigError`` before anything is written."""
    base = validate_basecfg(basecfg)
    settings = base.settings
    cfg_list = validate_cfgs(cfgs, settings.repetitions)
    backend_class(settings.backend).check(settings, cfg_list)
    sweep = SweepDir.at(settings.out_path)
    if os.path.exists(sweep.path) and not os.path.isdir(sweep.path):
        raise ConfigError(f"basecfg['out_path'] {sweep.path} exists and is not a folder")
    experiments = [Experiment(i, repetitions_of(cfg, settings.repetitions), json_view(cfg))
                   for i, cfg in enumerate(cfg_list)]
    plain = {k: v for k, v in basecfg.items() if k not in ("pre", "fit", "post")}
    workflow = Workflow(base.pre, base.fit, base.post, cfg_list, plain, sys_path_for(source),
                        source)
    collected = _snapshot(workflow, sweep, source, keep)
    fingerprints = {s.value: (known or {}).get(s.value) or fingerprint(workflow.function(s))
                    for s in STAGES}
    workflow.fingerprints = dict(fingerprints)
    return Prepared(base, settings, sweep, workflow, experiments, fingerprints, collected)


def _snapshot(workflow: Workflow, sweep: SweepDir, source: str | None,
              keep: Snapshot | None) -> snapshots.Collected | None:
    """Take the copy of the code (read now, written under the lock), or ``keep`` the one a
    resumed sweep was planned with. Without a file (notebook, stdin) there is none."""
    if keep is not None:
        workflow.snapshot = keep
        return None
    source = source or snapshots.script_of(workflow.function(s) for s in STAGES)
    if source is None:
        return None
    collected, snap = snapshots.collect(source)
    workflow.snapshot = snapshots.placed(snap, collected, sweep.state)
    return collected


def execute(basecfg: Mapping[str, Any], cfgs: Sequence[Any],
            options: Options | None = None) -> Summary:
    """Plan and execute a sweep; the engine behind ``run_experiments`` and ``dagrun execute``."""
    options = options or Options()
    prep = prepare(basecfg, cfgs, options.source, options.fingerprints, options.snapshot)
    if options.dry_run:
        return _dry_run(prep)
    blob = _workflow_blob(prep)
    try:
        atomic.makedirs(prep.sweep.path)
    except OSError as exc:
        raise ConfigError(f"cannot create out_path {prep.sweep.path}: {exc.strerror}") from exc
    with stop_signals_interrupt(), driver_lock(prep.sweep):
        return _execute_locked(prep, options, blob)


def _workflow_blob(prep: Prepared) -> bytes | None:
    """The pickled workflow; only the in-process backend can do without one."""
    try:
        return prep.workflow.dumps()
    except ConfigError:
        if prep.settings.backend != "single":
            raise
        warnings.warn("the workflow cannot be pickled: `dagrun resume` will need the "
                      "workflow again", UserWarning, stacklevel=2)
        return None


def _execute_locked(prep: Prepared, options: Options, blob: bytes | None) -> Summary:
    sweep = prep.sweep
    merged, changed = _merge_plan(prep, options)
    if prep.collected is not None and prep.workflow.snapshot is not None:
        snapshots.write(prep.workflow.snapshot, prep.collected)
        snapshots.put_on_path(prep.workflow.snapshot)  # for processes stages start here
    if blob is not None:
        atomic.write_bytes(sweep.workflow, blob)
    for exp_id in changed:
        _invalidate_experiment(sweep, exp_id)
    statuses = _scan(prep, bool(changed))
    statuses = _check_code(prep, statuses, options.rerun_changed, len(merged))
    summary = Summary(out_path=sweep.path, planned=len(statuses))
    started = time.time()
    fresh: dict[int, dict[str, Any]] = {}  # results lines computed during this execution
    try:
        _run_all(prep, statuses, summary, fresh)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        summary.results_lines = _reduce(prep, merged, statuses, summary, fresh, bool(changed))
        summary.seconds = time.time() - started
        text = summary.text(prep.settings.verbose)
        if text:
            say(text)
    return summary


def _merge_plan(prep: Prepared, options: Options) -> tuple[dict[int, Experiment],
                                                         dict[int, list[str]]]:
    """The stored plan updated with the current experiments, and the changed ones.

    When the index's digest equals the current experiments' digest, the plan is the same
    and is not read at all (the common case of re-executing a large sweep)."""
    sweep = prep.sweep
    current = {e.exp_id: e for e in prep.experiments}
    if stored_digest(sweep) == plan_digest(prep.experiments):
        return current, {}
    stored = read_plan(sweep)
    changed = changed_experiments(stored, prep.experiments)
    if changed and not options.rerun_changed:
        raise ChangedConfigError(_changed_message(sweep, changed))
    merged = {**stored, **current}
    write_plan(sweep, merged, json_view(prep.workflow.basecfg))
    return merged, changed


def _reduce(prep: Prepared, merged: dict[int, Experiment], statuses: list[RunStatus],
            summary: Summary, fresh: dict[int, dict[str, Any]], invalidated: bool) -> int:
    """Rewrite results.jsonl, unless nothing ran and it already lists exactly the complete
    experiments (a no-op re-execute of a large sweep then reads no run's metrics)."""
    if summary.done == 0 and summary.failed == 0 and not invalidated:
        if len(merged) != len(prep.experiments):
            statuses = scan(prep.sweep, list(merged.values()))
        incomplete = {s.exp_id for s in statuses if s.next_stage is not None}
        complete = [e for e in merged if e not in incomplete]
        if reduce.lists_exactly(prep.sweep, complete):
            return len(complete)
    return reduce.rewrite(prep.sweep, merged.values(), fresh)


def _check_code(prep: Prepared, statuses: list[RunStatus], rerun_changed: bool,
                planned_experiments: int) -> list[RunStatus]:
    """Say which stage's code changed; with ``rerun_changed`` invalidate those stages."""
    changes = codecheck.find_changes(prep.sweep, statuses, prep.fingerprints)
    if changes:
        if rerun_changed:
            count = codecheck.invalidate(changes)
            say(f"dagrun: {'; '.join(changes.lines())}: recomputing it for {count} run(s)")
            statuses = scan(prep.sweep, prep.experiments)
        else:
            say(f"dagrun: note: {'; '.join(changes.lines())}. Their results are kept as "
                "they are; use --rerun-changed (rerun_changed=True) to recompute that stage "
                "and the ones after it")
    codecheck.remember(prep.sweep, prep.fingerprints, changes, rerun_changed,
                       planned_experiments == len(prep.experiments))
    return statuses


def _changed_message(sweep: SweepDir, changed: dict[int, list[str]]) -> str:
    shown = []
    for exp_id, diff in list(changed.items())[:5]:
        shown.append(f"experiment {exp_id}: " + "; ".join(diff[:4]))
    more = f" (and {len(changed) - 5} more)" if len(changed) > 5 else ""
    return (f"{len(changed)} experiment(s) in {sweep.path} have a different config than the "
            f"one they were run with: {' | '.join(shown)}{more}. Use --rerun-changed "
            "(rerun_changed=True) to recompute them, or a new out_path")


def _invalidate_experiment(sweep: SweepDir, exp_id: int) -> None:
    """Forget every run of an experiment whose config changed (its folder is recomputed)."""
    path = sweep.experiment_path(exp_id)
    if os.path.isdir(path):
        shutil.rmtree(path)


def _scan(prep: Prepared, changed: bool) -> list[RunStatus]:
    """Run states for planning. Complete experiments listed in results.jsonl are checked
    with two stats per run instead of a listdir, unless stage markers must be read in full
    (a config or a stage's code changed)."""
    sweep = prep.sweep
    if changed or codecheck.suspect_stages(sweep, prep.fingerprints):
        return scan(sweep, prep.experiments)
    return scan(sweep, prep.experiments, reduce.listed_ids(sweep), _mtime_ns(sweep.results))


def _tasks(statuses: list[RunStatus]) -> list[RunTask]:
    """Runs not done, and done runs whose post.json cannot be read (the runner recomputes it).

    A done run's post.json is read only when ``_scan`` could not verify it cheaply (results
    .jsonl lists the experiment and post.json is unchanged since): reading every post.json
    of a large finished sweep would dominate a re-execute.
    """
    return [RunTask(s.exp_id, s.rep, s.run.path, 1, s.reason if s.next_stage else "unreadable")
            for s in statuses
            if s.next_stage is not None or (not s.verified and not _post_readable(s))]


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _post_readable(status: RunStatus) -> bool:
    return read_scores(status.run) is not None


def _run_all(prep: Prepared, statuses: list[RunStatus], summary: Summary,
             fresh: dict[int, dict[str, Any]]) -> None:
    """Execute every run of ``statuses`` that is not done; fills ``summary`` and ``fresh``."""
    todo = collections.deque(_tasks(statuses))
    summary.skipped = len(statuses) - len(todo)
    if todo:
        _Execution(prep, summary, fresh).run(todo, len(statuses))


class _Execution:
    """One pass over the runs to do: feeds the backend, counts outcomes, retries failures,
    and appends each experiment's results line as soon as its last repetition is done."""

    def __init__(self, prep: Prepared, summary: Summary,
                 fresh: dict[int, dict[str, Any]]) -> None:
        self.prep = prep
        self.settings = prep.settings
        self.summary = summary
        self.fresh = fresh
        self.by_id = {e.exp_id: e for e in prep.experiments}
        self.appender = reduce.Appender(prep.sweep)

    def run(self, todo: collections.deque[RunTask], total: int) -> None:
        remaining = collections.Counter(t.exp_id for t in todo)
        # scores reported by runs of experiments not complete yet: {id: {rep: scores}}
        scores: collections.defaultdict[int, dict[int, dict[str, Any]]] = \
            collections.defaultdict(dict)
        self.progress = Progress(total, self.summary.skipped, self.settings.verbose)
        backend = backend_class(self.settings.backend)(
            self.settings, self.prep.sweep, self.prep.workflow, self.prep.fingerprints)
        try:
            with backend:
                if self.settings.verbose:
                    self.progress.write(
                        f"dagrun: {len(todo)} of {total} runs to execute on "
                        f"{backend.describe()}; out: {self.prep.sweep.path}")
                outstanding = 0
                while todo or outstanding:
                    while todo and outstanding < backend.capacity * 2 + 16:
                        backend.submit(todo.popleft())
                        outstanding += 1
                    for outcome in backend.poll(0.2):
                        outstanding -= 1
                        retry = self._record(outcome, backend.running())
                        if retry is not None:
                            todo.appendleft(retry)
                        elif outcome.ok:
                            exp_id = outcome.task.exp_id
                            if outcome.scores is not None:
                                scores[exp_id][outcome.task.rep] = outcome.scores
                            remaining[exp_id] -= 1
                            if remaining[exp_id] == 0:
                                self._append_result(self.by_id[exp_id], scores.pop(exp_id, {}))
                    self.progress.set_running(backend.running())
        finally:
            self.progress.close()
            self.appender.close()
            self.summary.notes.extend(backend.notes())

    def _record(self, outcome: RunOutcome, running: int) -> RunTask | None:
        """Count an outcome; returns the retry task when the run gets another attempt."""
        task, summary, progress = outcome.task, self.summary, self.progress
        for message in outcome.warnings:
            progress.write(f"dagrun: warning: run {task.label}: {message}")
        failure = outcome.failure
        if failure is None:
            summary.done += 1
            progress.finished(True, running)
            return None
        retries = self.settings.retries
        if task.attempt <= retries:
            progress.write(f"dagrun: run {task.label} failed in {failure.stage} "
                           f"({failure.first_line}); retrying ({task.attempt}/{retries})")
            return RunTask(task.exp_id, task.rep, task.path, task.attempt + 1, "retry")
        summary.failed += 1
        summary.failed_runs.append(FailedRun(task.label, task.path, failure.stage,
                                             failure.kind, failure.message))
        progress.finished(False, running)
        return None

    def _append_result(self, exp: Experiment, known: dict[int, dict[str, Any]]) -> None:
        line = reduce.experiment_line(self.prep.sweep, exp, known)
        if line is not None:
            self.appender.append(line)
            self.fresh[exp.exp_id] = line


def _dry_run(prep: Prepared) -> Summary:
    """Print what would run and why; write nothing."""
    sweep = prep.sweep
    stored = read_plan(sweep) if os.path.isdir(sweep.state) else {}
    changed = changed_experiments(stored, prep.experiments)
    statuses = scan(sweep, prep.experiments)
    code = codecheck.find_changes(sweep, statuses, prep.fingerprints)
    reasons: collections.Counter[str] = collections.Counter()
    lines: list[str] = []
    for s in statuses:
        stale = code.first_stage(s)
        if s.exp_id in changed:
            reason = "config changed"
        elif stale is not None:
            reason = f"code of {stale.value} changed (recomputed with --rerun-changed)"
        else:
            reason = s.reason
        reasons[reason] += 1
        if reason != "done" and len(lines) < DRY_RUN_LISTING:
            lines.append(f"  run {s.label}: {reason}  ({s.run.path})")
    summary = Summary(out_path=sweep.path, planned=len(statuses), dry_run=True,
                      skipped=reasons.get("done", 0))
    print(f"plan for {sweep.path} ({prep.settings.backend} backend):")
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {count:>7} {reason}")
    for line in lines:
        print(line)
    todo = len(statuses) - summary.skipped
    if todo > len(lines):
        print(f"  ... and {todo - len(lines)} more runs")
    for exp_id, diff in list(changed.items())[:10]:
        print(f"  experiment {exp_id} config changed: {'; '.join(diff)}")
    return summary
