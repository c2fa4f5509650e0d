"""From configs to results: validate, plan, hand runs to a backend, retry, reduce.

A run flows one way: plan -> backend -> stage runner -> disk -> reduce. The scheduler never
calls user code and never trusts memory over the disk: what is done is read from markers.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import itertools
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from dagrun.backends import backend_class, validate_basecfg
from dagrun.backends.base import Backend
from dagrun.code import snapshot as snapshots
from dagrun.code import values
from dagrun.code.copying import Collected, Limits
from dagrun.code.digest import cached_digests, cfgs_key, config_digest, digest, store_digests
from dagrun.code.encoding import shared_objects
from dagrun.code.fingerprint import fingerprint
from dagrun.code.snapshot import Snapshot
from dagrun.code.usercode import Rule
from dagrun.code.values import ValueRef
from dagrun.code.workflow import Addition, Workflow, sys_path_for
from dagrun.config import (
    BaseConfig,
    Settings,
    json_view,
    repetitions_of,
    validate_cfgs,
)
from dagrun.disk import (
    atomic,
    codecheck,
    formatversion,
    identity,
    leases,
    provenance,
    trust,
    unrecorded,
)
from dagrun.disk.identity import Assignment
from dagrun.disk.layout import STAGES, RunDir, Stage, SweepDir
from dagrun.disk.lock import driver_lock
from dagrun.disk.plan import Experiment, Plan, Reason, make_plan
from dagrun.disk.planstore import plan_digest, stored_digest, write_plan
from dagrun.disk.records import Failure
from dagrun.errors import ConfigError, EnvironmentProblem, FailureKind, UsageError
from dagrun.progress import Progress, say
from dagrun.record import field, record, replace
from dagrun.results import reduce
from dagrun.run import failures, forking, supervisor
from dagrun.run.signals import stop_signals_interrupt
from dagrun.run.stages import RunOutcome, RunTask
from dagrun.run.summary import FailedRun, Summary

DRY_RUN_LISTING = 100
RETRY_DELAY = 0.5  # seconds before a failed run's first retry; doubles per attempt
RETRY_DELAY_MAX = 10.0
POLL_IDLE = 0.2  # seconds the loop sleeps at most when only delayed retries are left
STATE_CHECK_EVERY = 2.0  # seconds between checks that OUT/.dagrun still exists
PREFETCH = 8  # at most this many runs queued in the backend beyond its capacity (+ 2)
QUICK_RUN = 1.0  # seconds per run and slot under which the backend's queue may be deeper


class Feed(Protocol):
    """Who adds experiments to a sweep while it runs (``dagrun.optimize``: a search that
    asks a trial whenever a slot frees)."""

    def more(self, count: int) -> list[Any]:
        """Up to ``count`` new cfgs to plan and run now; ``[]``: none now (the sweep ends
        once nothing else runs)."""

    def ended(self, exp: Experiment) -> None:
        """Every run of ``exp`` that this execution had to do has ended (done, pruned, or
        failed with no attempt left)."""


@record(frozen=True)
class Options:
    """How to execute, beyond the basecfg: the command line's switches."""

    dry_run: bool = False
    rerun_changed: bool = False
    source: str | None = None  # the workflow file, when there is one
    # resume: the fingerprints stored with the pickled workflow (its functions have no
    # source any more, so fingerprinting them again would differ from the markers)
    fingerprints: Mapping[str, str] | None = None
    # resume: the config digests stored with it, for the same reason (cfgs holding functions)
    digests: Sequence[str] | None = None
    snapshot: Snapshot | None = None  # resume: the copy of the code the sweep was planned with
    plan_only: bool = False  # dagrun plan: write the plan, the workflow and its code; run nothing
    detach: bool = False  # a backend whose workers pull runs (slurm): start them, return
    # the config digests of the experiments whose runs may execute now (None: all): a
    # search's round runs its trials, not the failed ones of earlier rounds (dagrun.optimize)
    only: frozenset[str] | None = None
    grows: bool = False  # a search adding trials: workers attached may stay (same code)
    # adds experiments while the runs execute (a search asking as slots free); a backend
    # whose workers pull runs (slurm) executes what was planned before it started
    feed: Feed | None = None


@record
class Prepared:
    """A validated sweep, ready to plan."""

    base: BaseConfig
    settings: Settings
    sweep: SweepDir
    workflow: Workflow
    experiments: list[Experiment]
    fingerprints: dict[str, str]
    collected: Collected | None = None  # the code to copy into OUT/.dagrun
    digests_key: str | None = None  # digests computed now, to remember under this key
    identity: Assignment | None = None  # how the cfgs were matched to the sweep's experiments
    # the big cfg values to write into the values store (digest -> (ref, payload))
    values: dict[str, tuple[ValueRef, Any]] = field(default_factory=dict)
    cfgs: list[dict[str, Any]] = field(default_factory=list)  # as given, validated

    def match(self) -> None:
        """Give each cfg its experiment id: the experiment of the same content this sweep
        knows, else a new one (``dagrun.disk.identity``). Done again under the lock when the
        stored plan changed since (another driver planned meanwhile)."""
        cfgs = self.workflow.cfgs
        digests = self.workflow.digests
        reps = [repetitions_of(cfg, self.settings.repetitions) for cfg in cfgs]
        views = [e.config for e in self.experiments] if self.experiments else \
            [json_view(cfg) for cfg in cfgs]
        self.identity = identity.assign(self.sweep, digests, reps, views)
        self.experiments = self.identity.experiments
        self.workflow.ids = [e.exp_id for e in self.experiments]

    @property
    def orphans(self) -> list[Experiment]:
        return self.identity.orphans if self.identity is not None else []


def prepare(basecfg: Mapping[str, Any], cfgs: Sequence[Any], source: str | None,
            known: Mapping[str, str] | None = None, keep: Snapshot | None = None,
            digests: Sequence[str] | None = None) -> Prepared:
    """Validate everything up front; raises ``ConfigError`` before anything is written.

    Each experiment gets its config's content digest (``digests`` when they were stored
    with a resumed workflow and match the cfgs in number)."""
    base = validate_basecfg(basecfg)
    settings = base.settings
    cfg_list = validate_cfgs(cfgs, settings.repetitions)
    backend_class(settings.backend).check(settings, cfg_list)
    sweep = SweepDir.at(settings.out_path)
    if os.path.exists(sweep.path) and not os.path.isdir(sweep.path):
        raise ConfigError(f"basecfg['out_path'] {sweep.path} exists and is not a folder")
    cache_key: str | None = None
    if digests is None or len(digests) != len(cfg_list):
        key = cfgs_key(cfg_list)  # versioned: digests of another version are never taken
        cache_key = None if key is None else f"v{formatversion.DIGESTS}:{key}"
        digests = cached_digests(sweep.digest_cache, cache_key, len(cfg_list))
        if digests is None:
            with shared_objects():  # an object in many cfgs is encoded once
                digests = [config_digest(cfg) for cfg in cfg_list]
        else:
            cache_key = None  # found: nothing to store
    plain = {k: v for k, v in basecfg.items() if k not in ("pre", "fit", "post")}
    workflow = Workflow(base.pre, base.fit, base.post, cfg_list, plain, sys_path_for(source),
                        source, digests=list(digests))
    collected = _snapshot(workflow, sweep, source, keep, settings.code)
    fingerprints = {s.value: (known or {}).get(s.value) or fingerprint(workflow.function(s))
                    for s in STAGES}
    workflow.fingerprints = dict(fingerprints)
    workflow.code_id = code_id(workflow)
    stored = values.Externalizer(digest, settings.inline_max_kb)  # after the snapshot: a
    workflow.cfgs = [stored.cfg(cfg) for cfg in cfg_list]  # script's classes by their name
    workflow.stored_values = stored.holds_refs
    prep = Prepared(base, settings, sweep, workflow, [], fingerprints, collected, cache_key,
                    values=stored.pending, cfgs=cfg_list)
    formatversion.check_readable(sweep)  # never match against a newer dagrun's plan
    prep.match()
    return prep


def _snapshot(workflow: Workflow, sweep: SweepDir, source: str | None,
              keep: Snapshot | None, code: Mapping[str, Any]) -> Collected | None:
    """Take the copy of the user's code (read now, written under the lock), or ``keep``
    the one a resumed sweep was planned with. A sweep without user code (stages from a
    notebook's cells that import nothing of the user's) has none."""
    if keep is not None:
        workflow.snapshot = keep
        return None
    functions = tuple(workflow.function(s) for s in STAGES)
    module = None
    from_main = False
    if source is None:
        found = snapshots.main_workflow(functions)
        if found is not None:
            (source, module), from_main = found, True
    req = snapshots.Request(source, module, functions, Rule.of(code), Limits.of(code),
                            sweep.state, (os.path.join(os.path.realpath(sweep.path), ""),),
                            tuple(sys.argv), from_main)
    collected, snap = snapshots.take(req)
    if not snap.module and not snap.tops:
        return None
    workflow.snapshot = snap
    if collected.skipped:
        shown = ", ".join(f"{rel} ({size >> 20} MB)" for rel, size in collected.skipped[:3])
        more = f" and {len(collected.skipped) - 3} more" if len(collected.skipped) > 3 else ""
        say(f"dagrun: not copied with the code (data files over the size limit, read from "
            f"your folder): {shown}{more}")
    return collected


def execute(basecfg: Mapping[str, Any], cfgs: Sequence[Any],
            options: Options | None = None) -> Summary:
    """Plan and execute a sweep; the engine behind ``run_experiments`` and ``dagrun execute``."""
    forking.mark_entry()  # what the program holds open before dagrun opens anything
    options = options or Options()
    prep = prepare(basecfg, cfgs, options.source, options.fingerprints, options.snapshot,
                   options.digests)
    if options.dry_run:
        return _dry_run(prep, options)
    if options.detach and not backend_class(prep.settings.backend).pulls_runs:
        raise ConfigError(f"--detach needs a backend whose workers run without the driver "
                          f"(slurm), not {prep.settings.backend!r}")
    blob = prep.workflow.dumps() if options.plan_only else _workflow_blob(prep)
    _check_path_lengths(prep)
    try:
        atomic.makedirs(prep.sweep.path)
    except OSError as exc:
        raise ConfigError(f"cannot create out_path {prep.sweep.path}: {exc.strerror}") from exc
    # "execute": this driver rewrites results.jsonl when it ends (a worker leaving meanwhile
    # does not wait for the lock to do it); plan and --detach leave that to the workers
    role = "plan" if options.plan_only or options.detach else "execute"
    with stop_signals_interrupt(), driver_lock(prep.sweep, role=role, pid=supervisor.command_pid()):
        if prep.identity is None or stored_digest(prep.sweep) != prep.identity.stored_digest:
            prep.match()  # another driver planned since: match against its plan
            blob = prep.workflow.dumps() if options.plan_only else _workflow_blob(prep)
        return _execute_locked(prep, options, blob)


def submit_window(capacity: int, quick: bool = False, ahead: int | None = None) -> int:
    """Runs handed to the backend at once: its capacity plus a small prefetch that keeps its
    processes busy between two looks of the driver (``ahead``: the runs the backend holds
    next to its running ones by design, e.g. each multiprocessing worker's next run;
    default ``PREFETCH`` at most). The driver leases each of them once a worker shares OUT,
    so a deep queue would hold runs that idle workers could take for as long as runs last;
    only while runs are ``quick`` (``QUICK_RUN``: they leave the queue within a second) is it
    deeper, which keeps a pool busy with runs of milliseconds."""
    if quick:
        return capacity * 2 + 16
    return capacity + (min(capacity, PREFETCH) if ahead is None else ahead) + 2


def quick_runs(capacity: int, finished: int, seconds: float) -> bool:
    """Whether runs take under ``QUICK_RUN`` s per slot, judged once each slot finished one."""
    return finished >= capacity and seconds * capacity < QUICK_RUN * finished


def _check_path_lengths(prep: Prepared) -> None:
    """Refuse an out_path under which the deepest file this sweep writes (a run's
    config.json, the copy of the code) would be too long, before any folder is created."""
    sweep, experiments = prep.sweep, prep.experiments
    deepest = [sweep.results_index, sweep.results_cache]
    if experiments:
        reps = max(e.repetitions for e in experiments)
        last = max(e.exp_id for e in experiments)
        deepest.append(sweep.run_dir(last, reps - 1, reps).config)
    snap = prep.workflow.snapshot
    if snap is not None and prep.collected is not None:
        deepest += [os.path.join(f"{snap.folder}.{os.getpid()}.tmp", rel)
                    for rel in prep.collected.files]
    for path in deepest:
        problem = atomic.too_long(path)
        if problem is not None:
            shown = sweep.path if len(sweep.path) <= 120 else \
                f"{sweep.path[:60]}...{sweep.path[-50:]}"
            raise ConfigError(f"out_path {shown} ({len(sweep.path)} characters) is too long: "
                              f"{problem}; use a shorter out_path")


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
    formatversion.check_readable(sweep)  # never plan over a newer dagrun's sweep
    plan = make_plan(sweep, prep.experiments, prep.fingerprints, options.rerun_changed,
                     orphans=prep.orphans)
    _refuse_replan_beside_workers(plan, prep.fingerprints, options.grows)
    legacy = prep.identity is not None and prep.identity.legacy
    _write_state(prep, blob, write_plan_too=not plan.stored_same or legacy)
    invalidated = _invalidate(plan, options.rerun_changed)
    codecheck.remember(sweep, prep.fingerprints, plan.code, options.rerun_changed, True)
    writing = provenance.Writing(sweep, options.source, prep.settings.backend,
                                 prep.workflow.code_id, _code_files(prep))
    for note in _notes(prep, plan, options.grows):
        say(f"dagrun: {note}")
    if options.plan_only:  # workers (dagrun worker) execute it
        _provenance_written(writing)
        return Summary(sweep.path, len(plan.runs), skipped=len(plan.runs) - len(plan.todo()))
    if options.detach and plan.todo():  # the workers execute it and reduce at the end
        _provenance_written(writing)
        return _detach(prep, plan)
    summary = Summary(out_path=sweep.path, planned=len(plan.runs))
    started = time.time()
    fresh = reduce.Fresh()  # results lines computed during this execution
    growth = _Growth(options.feed, prep, plan, options) if options.feed is not None else None
    try:
        _run_all(prep, plan, summary, fresh, options.only, growth)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        _provenance_written(writing)
        if not os.path.isfile(sweep.plan):  # OUT/.dagrun was deleted while this ran
            say(f"dagrun: {sweep.state} was deleted while this driver ran; writing it again")
            _write_state(prep, blob, write_plan_too=True)
            codecheck.remember(sweep, prep.fingerprints, plan.code, options.rerun_changed,
                               True)
        if growth is not None:
            prep, plan = growth.prep, growth.plan  # with the experiments added meanwhile
        problem = _final_reduce(plan, summary, fresh, invalidated)
        summary.seconds = time.time() - started
        text = summary.text(prep.settings.verbose)
        if text:
            say(text)
    if problem is not None:  # after the summary: what ran is reported, then why it stops
        raise problem
    if (summary.done or summary.failed) and prep.settings.report:
        from dagrun.results import html as htmlreport  # imported when a report is due

        htmlreport.after_execute(sweep, prep.settings.report, prep.settings.verbose)
    return summary


def _provenance_written(writing: provenance.Writing) -> None:
    """Wait for the provenance record written beside the first runs; say if it failed."""
    problem = writing.join()
    if problem is not None:
        say(f"dagrun: the provenance of this execute was not recorded ({problem})")


def _planned_code(experiments: list[Experiment], fingerprints: Mapping[str, str]
                  ) -> dict[str, Any]:
    """What ``planned-code.json`` keeps: the code and the plan workers load."""
    return {"fingerprints": dict(fingerprints), "plan": plan_digest(experiments)}


def _holders_of(plan: Plan) -> list[str]:
    """Holders of live leases in the sweep (found from its lease index, also when the
    announcements were deleted). A lease whose heartbeat is older than twice its
    holder's timeout (by its mtime: a holder dead, or frozen) is fenced instead: taken over
    and released, so that its holder, should it wake, commits nothing under the old plan."""
    found = []
    holder = leases.Holder.here(0.0)
    for run, seen in leases.LeaseIndex(plan.sweep).held():
        age = leases.heartbeat_age(run)
        if age is not None and age < 2 * max(seen.timeout, 1.0):
            found.append(f"{seen.describe()} ({leases.heartbeat_text(age)}, run {run.path})")
            continue
        lease = leases.take_over(run, seen, holder)
        if lease is not None:
            lease.release()
    return found


def _refuse_replan_beside_workers(plan: Plan, fingerprints: Mapping[str, str],
                                  grows: bool = False) -> None:
    """``UsageError`` when this execution changes the plan or the stage code while
    ``dagrun worker``s are attached to the sweep: they run the workflow they loaded, so their
    runs would be computed with the old code or configs and counted done (and
    ``--rerun-changed`` would delete folders they write in)."""
    previous = atomic.read_json_or_none(plan.sweep.planned_code)
    if previous is None or previous == _planned_code(plan.experiments, fingerprints):
        return
    if grows and isinstance(previous, dict) and previous.get("fingerprints") == fingerprints:
        return  # a search's new trials: workers of the old plan claim none of them
    workers = leases.announced_workers(plan.sweep) + _holders_of(plan)
    if workers:
        more = f" and {len(workers) - 3} more" if len(workers) > 3 else ""
        raise UsageError(
            f"the plan or the stage code changed while dagrun workers run this sweep with "
            f"the old one: {'; '.join(workers[:3])}{more}; stop them first (Ctrl-C, kill "
            f"PID, scancel JOB), delete the announcement of one that is gone, then run this "
            f"again")


def _write_state(prep: Prepared, blob: bytes | None, *, write_plan_too: bool) -> None:
    """Write the plan (when it changed), the copy of the code and the pickled workflow into
    OUT/.dagrun; the copy goes at the end of this process's import path (for processes that
    stages start here, e.g. a stage's own pool on the single backend)."""
    sweep = prep.sweep
    atomic.makedirs(sweep.state)
    if write_plan_too:
        write_plan(sweep, prep.experiments, json_view(prep.workflow.basecfg), prep.orphans)
    snap = prep.workflow.snapshot
    if snap is not None:
        if prep.collected is not None:
            snapshots.write(snap, prep.collected)
        snapshots.reachable(snap)
    for ref, payload in prep.values.values():  # before any run, and before the workflow
        values.put(sweep, ref, payload)
    if blob is not None:
        atomic.write_bytes(sweep.workflow, blob)
    if prep.digests_key is not None:
        store_digests(sweep.digest_cache, prep.digests_key, prep.workflow.digests)
    atomic.write_json(sweep.planned_code, _planned_code(prep.experiments, prep.fingerprints))
    formatversion.write(sweep)  # an older OUT is now migrated: its state is this format


def code_id(workflow: Workflow) -> str:
    """The version of the code a sweep is planned with: the digest of the copy of the user's
    code (every file of theirs it imports), and the stages' fingerprints (a notebook's
    stages have no copy)."""
    snap = workflow.snapshot
    copy = os.path.basename(snap.folder) if snap is not None else ""
    stages = ",".join(f"{k}={v}" for k, v in sorted(workflow.fingerprints.items()))
    return hashlib.sha256(f"{copy}|{stages}".encode()).hexdigest()[:16]


def _code_files(prep: Prepared) -> list[str]:
    """The user's code files this sweep imports (the copy's sources), for provenance."""
    collected = prep.collected
    files = [s.path for s in collected.files.values()] if collected is not None else []
    source = prep.workflow.source
    return [*files, source] if source else files


def _notes(prep: Prepared, plan: Plan, grows: bool = False) -> list[str]:
    """What moved among the experiments since the last plan, then the plan's own notes.
    A search adding its trials (``grows``) says itself what it asked: its new experiments
    are not news."""
    moves = prep.identity.moves if prep.identity is not None else None
    only_new = moves is not None and grows and moves.only_new()
    moved = moves.line() if moves is not None and not only_new else None
    return ([moved] if moved else []) + plan.notes()


def _invalidate(plan: Plan, rerun_changed: bool) -> bool:
    """Remove what the plan recomputes from scratch: stage files of runs holding another
    config's results, and (with ``rerun_changed``) stages whose code changed. Says what
    changed code means; returns whether anything went."""
    other = plan.of(Reason.OTHER_CONFIG)
    for run in other:
        _remove_stages(run.status.run, Stage.PRE)
    code = plan.code
    if code and rerun_changed:
        count = codecheck.invalidate(code)
        say(f"dagrun: {'; '.join(code.lines())}: recomputing it for {count} run(s)")
    elif code:
        say(f"dagrun: note: {'; '.join(code.lines())}. Their results are kept as "
            "they are; use --rerun-changed (rerun_changed=True) to recompute that stage "
            "and the ones after it")
    return bool(other or (code and rerun_changed))


def _remove_stages(run: RunDir, first: Stage) -> None:
    for stage in first.and_after():
        for name in run.stage_files(stage):
            atomic.remove(name)


def _reduce(plan: Plan, summary: Summary, fresh: reduce.Fresh,
            invalidated: bool) -> int:
    """Rewrite results.jsonl, unless nothing ran and its record says it lists exactly the
    complete experiments, each reduced from its current config and repetitions (a no-op
    re-execute of a large sweep then reads no run's metrics). Experiments whose every run
    the planner verified against its line keep that line as it is."""
    if summary.done == 0 and summary.failed == 0 and not invalidated:
        complete = plan.complete()
        if trust.up_to_date(plan.sweep, complete):
            return len(complete)
    checked = {e.exp_id for e in plan.complete()}
    return reduce.rewrite(plan.sweep, plan.experiments, fresh, checked, plan.standing(),
                          fresh.texts)


def _final_reduce(plan: Plan, summary: Summary, fresh: reduce.Fresh,
                  invalidated: bool) -> EnvironmentProblem | None:
    """``_reduce`` into ``summary``; a rewrite that fails (a full disk) is returned, not
    raised, so the summary of what ran is still printed before the one error line."""
    try:
        summary.results_lines = _reduce(plan, summary, fresh, invalidated)
    except OSError as exc:
        where = exc.filename or plan.sweep.results
        reason = str(exc.strerror or exc)
        summary.results_error = reason if where == plan.sweep.results else f"{where}: {reason}"
        return EnvironmentProblem(
            f"cannot rewrite {where} ({reason}): finished stages are kept; free "
            f"space or make it writable, then run `dagrun reduce {plan.sweep.path}`")
    return None


def _tasks(plan: Plan, only: frozenset[str] | None = None) -> list[RunTask]:
    """The runs to execute (of the experiments of the config digests ``only``, unless
    ``None``)."""
    ids = None if only is None else {e.exp_id for e in plan.experiments if e.digest in only}
    return [RunTask(r.status.exp_id, r.status.rep, r.status.run.path, 1)
            for r in plan.todo() if ids is None or r.status.exp_id in ids]


def _run_all(prep: Prepared, plan: Plan, summary: Summary,
             fresh: reduce.Fresh, only: frozenset[str] | None = None,
             growth: _Growth | None = None) -> None:
    """Execute every run the plan says to (and those ``growth`` adds meanwhile); fills
    ``summary`` and ``fresh``."""
    todo = collections.deque(_tasks(plan, only))
    summary.skipped = len(plan.runs) - len(todo)
    pulls = backend_class(prep.settings.backend).pulls_runs
    if todo and pulls:
        _backend(prep).run_pulled(list(todo), summary, detach=False)
    elif todo or (growth is not None and not pulls):
        _Execution(prep, summary, fresh, None if pulls else growth).run(todo, len(plan.runs))


def _backend(prep: Prepared) -> Backend:
    return backend_class(prep.settings.backend)(prep.settings, prep.sweep, prep.workflow,
                                                prep.fingerprints)


def _detach(prep: Prepared, plan: Plan) -> Summary:
    """Hand the runs to workers that outlive this driver (``--detach``); they reduce."""
    tasks = _tasks(plan)
    summary = Summary(prep.sweep.path, len(plan.runs), skipped=len(plan.runs) - len(tasks))
    _backend(prep).run_pulled(tasks, summary, detach=True)
    return summary


class _Growth:
    """A sweep that gains experiments while it runs. Each cfg its ``Feed`` gives is planned
    the way ``execute`` plans (the same validation, identity, plan, values store and
    workflow.pkl, under the driver lock this execution holds) before any of its runs is
    handed out; a run of an experiment planned after the backend started carries it
    (``RunTask.adds``) to processes that loaded the workflow before."""

    def __init__(self, feed: Feed, prep: Prepared, plan: Plan, options: Options) -> None:
        self.feed = feed
        self.prep = prep
        self.plan = plan
        self.options = options
        self.adds: dict[int, Addition] = {}  # new experiments' ids -> what their runs carry

    def more(self, count: int) -> tuple[list[RunTask], list[Experiment]] | None:
        """Plan up to ``count`` cfgs the feed gives now: their runs to do, and their
        experiments; ``None`` when the feed gives none."""
        cfgs = self.feed.more(count)
        if not cfgs:
            return None
        old, wf = self.prep, self.prep.workflow
        cfg_list = validate_cfgs(cfgs, old.settings.repetitions)
        with shared_objects():
            digests = [config_digest(cfg) for cfg in cfg_list]
        basecfg = {**wf.basecfg, "pre": wf.pre, "fit": wf.fit, "post": wf.post}
        prep = prepare(basecfg, [*old.cfgs, *cfg_list], self.options.source, old.fingerprints,
                       wf.snapshot, [*wf.digests, *digests])
        _check_path_lengths(prep)
        new = frozenset(digests)
        added = [e for e in prep.experiments if e.digest in new]
        # only the new experiments' runs are looked at: the others' are this execution's
        # (their outcomes count as they come; the first plan's view of them stays the
        # final reduce's, as without growth), and scanning them per trial asked would make
        # a study's cost grow with the square of its trials
        part = make_plan(prep.sweep, added, prep.fingerprints, False, compare=False)
        ids = {e.exp_id for e in prep.experiments}
        plan = Plan(prep.sweep, prep.experiments,
                    [r for r in self.plan.runs if r.status.exp_id in ids] + part.runs,
                    self.plan.code)
        _refuse_replan_beside_workers(plan, prep.fingerprints, grows=True)
        _write_state(prep, _workflow_blob(prep), write_plan_too=True)
        self.prep, self.plan = prep, plan
        for exp in added:
            self.adds[exp.exp_id] = Addition(exp.exp_id, prep.workflow.cfg(exp.exp_id),
                                             exp.digest, prep.workflow.stored_values)
        return _tasks(part, new), added


class _Execution:
    """One pass over the runs to do: feeds the backend, counts outcomes, retries failures,
    and appends each experiment's results line as soon as its last repetition is done."""

    def __init__(self, prep: Prepared, summary: Summary,
                 fresh: reduce.Fresh, growth: _Growth | None = None) -> None:
        self.prep = prep
        self.growth = growth
        self.left: collections.Counter[int] = collections.Counter()  # runs not ended
        self.settings = prep.settings
        self.summary = summary
        self.fresh = fresh
        self.by_id = {e.exp_id: e for e in prep.experiments}
        self.appender = reduce.Appender(prep.sweep)
        self.delayed: list[tuple[float, int, RunTask]] = []  # (due, order, retry): a heap
        self.order = itertools.count()
        self.state_lost = False
        self.next_state_check = 0.0

    def run(self, todo: collections.deque[RunTask], total: int) -> None:
        self.remaining = collections.Counter(t.exp_id for t in todo)  # runs not done
        self.left = collections.Counter(self.remaining)
        # scores reported by runs of experiments not complete yet: {id: {rep: scores}}
        scores: collections.defaultdict[int, dict[int, dict[str, Any]]] = \
            collections.defaultdict(dict)
        backend = backend_class(self.settings.backend)(
            self.settings, self.prep.sweep, self.prep.workflow, self.prep.fingerprints)
        backend.expected_runs = len(todo) if self.growth is None else None
        try:  # processes first: no thread of this process (the bar's, the gate's) runs yet
            backend.before_threads()
            self.progress = Progress(total, self.summary.skipped, self.settings.verbose)
            gate = leases.Gate(self.prep.sweep, self.settings.lease_timeout)
        except BaseException:
            backend.shutdown(kill=True)
            raise
        try:
            with gate, backend:
                if self.settings.verbose:
                    self.progress.write(
                        f"dagrun: {len(todo)} of {total} runs to execute on "
                        f"{backend.describe()}; out: {self.prep.sweep.path}")
                outstanding, finished, began = 0, 0, time.monotonic()
                while True:
                    if self.growth is not None and not todo:
                        self._grow(backend, todo, backend.capacity - outstanding -
                                   gate.waiting - len(self.delayed))
                    if not (todo or outstanding or gate.waiting or self.delayed):
                        break
                    quick = quick_runs(backend.capacity, finished, time.monotonic() - began)
                    window = submit_window(backend.capacity, quick, backend.ahead)
                    while todo and outstanding < window:
                        admitted = self._admit(gate, todo.popleft(), backend)
                        if admitted is not None:
                            backend.submit(self._carrying(admitted))
                            outstanding += 1
                    todo.extend(gate.ready(idle=not outstanding))
                    todo.extend(self._due_retries(idle=not (todo or outstanding)))
                    for outcome in backend.poll(0.2):
                        outstanding -= 1
                        if outcome.superseded:  # another holder claimed it: wait for it
                            self._taken_over(outcome.task)
                            gate.park(outcome.task)
                            continue
                        gate.release(outcome.task, outcome.ok)
                        finished += 1
                        self._record(outcome, backend.running())
                        if outcome.ok:
                            exp_id = outcome.task.exp_id
                            if outcome.scores is not None:
                                scores[exp_id][outcome.task.rep] = outcome.scores
                            self.remaining[exp_id] -= 1
                            if self.remaining[exp_id] == 0:
                                self._append_result(self.by_id[exp_id], scores.pop(exp_id, {}))
                    self.progress.set_running(backend.running() + gate.waiting)
                    self.appender.flush_due()  # lines gathered in a burst, at most 0.2 s late
                    self._watch_state()
        finally:
            self.progress.close()
            self.appender.close()
            self.summary.notes.extend(backend.notes())

    def _grow(self, backend: Backend, todo: collections.deque[RunTask], free: int) -> None:
        """Fill ``free`` slots with the runs of experiments the feed adds now (one slot per
        run; an experiment of several repetitions takes as many)."""
        assert self.growth is not None
        per = max(1, self.settings.repetitions)
        while free > 0:
            found = self.growth.more(max(1, free // per))
            if found is None:
                return
            tasks, added = found
            prep = self.growth.prep
            self.prep = prep
            self.by_id = {e.exp_id: e for e in prep.experiments}
            backend.extend(prep.workflow)
            runs = sum(e.repetitions for e in added)
            self.summary.planned = len(self.growth.plan.runs)
            self.summary.skipped += runs - len(tasks)
            self.progress.grow(runs)
            for task in tasks:
                self.remaining[task.exp_id] += 1
                self.left[task.exp_id] += 1
            todo.extend(tasks)
            free -= len(tasks)
            for exp in added:  # nothing to run (done before, by content): ended already
                if not self.left[exp.exp_id]:
                    self.growth.feed.ended(exp)

    def _carrying(self, task: RunTask) -> RunTask:
        """``task`` with its experiment when that was planned after the backend started
        (every attempt carries it: a retry may go to a process that never saw it)."""
        if self.growth is None or task.adds is not None:
            return task
        added = self.growth.adds.get(task.exp_id)
        return task if added is None else replace(task, adds=added)

    def _run_ended(self, task: RunTask) -> None:
        """A run ended for good (done, pruned, or failed with no attempt left)."""
        self.left[task.exp_id] -= 1
        if self.growth is not None and self.left[task.exp_id] == 0:
            self.growth.feed.ended(self.by_id[task.exp_id])

    def _watch_state(self) -> None:
        """Say once, at once, when OUT/.dagrun vanishes while this driver runs (the lock on
        OUT itself still keeps other drivers out; the state is written again at the end)."""
        now = time.monotonic()
        if self.state_lost or now < self.next_state_check:
            return
        self.next_state_check = now + STATE_CHECK_EVERY
        if not os.path.isfile(self.prep.sweep.plan):
            self.state_lost = True
            self.progress.write(f"dagrun: warning: {self.prep.sweep.state} was deleted while "
                                "this driver runs; it is written again when the sweep ends "
                                "(no other driver can start meanwhile)")

    def _admit(self, gate: leases.Gate, task: RunTask, backend: Backend) -> RunTask | None:
        """``gate.admit``; a run folder that cannot be written (read-only, full) fails the
        run (kind ``engine``) instead of the sweep."""
        try:
            admitted: RunTask | None = gate.admit(task)
        except OSError as exc:
            stage = failures.running_stage(task)
            failure = Failure.from_exception(stage, exc, task.attempt, FailureKind.ENGINE)
            self._record(RunOutcome(task, failure), backend.running())
            return None
        return admitted

    def _taken_over(self, task: RunTask) -> None:
        """Say that a run this driver executed was claimed by another holder (a worker
        that took its lease over while this driver was stopped past the lease timeout):
        nothing more of it is written from here; the driver waits for it and counts it."""
        self.progress.write(f"dagrun: run {task.label} was claimed by another holder while "
                            "this driver had it (stopped past the lease timeout?); waiting "
                            "for it to finish there")

    def _record(self, outcome: RunOutcome, running: int) -> None:
        """Count an outcome; a failed run with attempts left is retried later."""
        task, summary, progress = outcome.task, self.summary, self.progress
        for warning in outcome.warnings:  # the first of each kind; the summary counts all
            line = summary.warn(task.label, warning)
            if line is not None:
                progress.write(line)
        failure = outcome.failure
        if failure is None:
            summary.done += 1
            progress.finished(True, running)
            self._run_ended(task)
            return
        retries = self.settings.retries
        if task.attempt <= retries:
            self._retry_later(task, failure.stage, failure.first_line)
            return
        summary.failed += 1
        missing = unrecorded.ensure_recorded(self.prep.sweep, task.exp_id, task.rep,
                                             task.path, failure)
        summary.failed_runs.append(FailedRun(task.label, task.path, failure.stage,
                                             failure.kind, failure.message, missing))
        progress.finished(False, running)
        self._run_ended(task)

    def _retry_later(self, task: RunTask, stage: str, first_line: str) -> None:
        """Schedule the next attempt after a backoff (``RETRY_DELAY`` doubling per attempt,
        at most ``RETRY_DELAY_MAX``): other runs go on meanwhile. Says so on every attempt,
        or once per run when quiet."""
        retries, attempt = self.settings.retries, task.attempt
        delay = min(RETRY_DELAY * 2 ** (attempt - 1), RETRY_DELAY_MAX)
        retry = RunTask(task.exp_id, task.rep, task.path, attempt + 1)
        heapq.heappush(self.delayed, (time.monotonic() + delay, next(self.order), retry))
        if self.settings.verbose:
            self.progress.write(f"dagrun: run {task.label} failed in {stage} ({first_line}); "
                                f"retrying in {delay:g} s ({attempt}/{retries})")
        elif attempt == 1:
            self.progress.write(f"dagrun: run {task.label} failed in {stage} ({first_line}); "
                                f"retrying (up to {retries} more attempts)")

    def _due_retries(self, idle: bool) -> list[RunTask]:
        """The delayed retries whose time has come; when ``idle`` (nothing else to wait
        for), first sleeps until the next one is due (at most ``POLL_IDLE`` s)."""
        if not self.delayed:
            return []
        if idle:
            time.sleep(min(max(self.delayed[0][0] - time.monotonic(), 0.0), POLL_IDLE))
        now, due = time.monotonic(), []
        while self.delayed and self.delayed[0][0] <= now:
            due.append(heapq.heappop(self.delayed)[2])
        return due

    def _append_result(self, exp: Experiment, known: dict[int, dict[str, Any]]) -> None:
        entry = reduce.experiment_entry(self.prep.sweep, exp, known)
        if entry is not None:
            line, text = entry
            self.appender.append(text)
            self.fresh.texts[exp.exp_id] = text
            self.fresh[exp.exp_id] = line


def _dry_run(prep: Prepared, options: Options) -> Summary:
    """Print what would run and why; write nothing. The plan is the one ``execute`` makes."""
    sweep = prep.sweep
    formatversion.check_readable(sweep)  # never plan over a newer dagrun's sweep
    plan = make_plan(sweep, prep.experiments, prep.fingerprints, options.rerun_changed,
                     orphans=prep.orphans)
    reasons = plan.reasons()
    lines = [f"  run {r.status.label}: {r.text}  ({r.status.run.path})"
             for r in plan.todo()[:DRY_RUN_LISTING]]
    summary = Summary(out_path=sweep.path, planned=len(plan.runs), dry_run=True,
                      skipped=reasons.get(Reason.DONE.value, 0))
    print(f"plan for {sweep.path} ({prep.settings.backend} backend):")
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {count:>7} {reason}")
    for line in lines:
        print(line)
    todo = len(plan.runs) - summary.skipped
    if todo > len(lines):
        print(f"  ... and {todo - len(lines)} more runs")
    if plan.code and not options.rerun_changed:
        print(f"  note: {'; '.join(plan.code.lines())}; kept as they are (recomputed with "
              "--rerun-changed)")
    for note in _notes(prep, plan):
        print(f"  note: {note}")
    return summary
