"""Adaptive search: ask a trial, run it as an experiment, tell the study; the disk decides.

A search is a sweep whose cfgs are its trials. Under the search lock
(``OUT/.dagrun/search/lock``) the study is rebuilt from the disk (``dagrun.search``), new
trials are asked, and each is recorded before it is planned, so a killed driver loses
none and asks none twice. The driver asks as many trials as the backend runs at once and
executes them; while that execution runs, a new trial is asked whenever a slot frees and
planned into the running sweep (``dagrun.scheduler.Feed``), and each trial is told as
soon as its experiment's runs have ended (failed trials of earlier starts are not
retried: ``only``). A backend whose workers pull runs (slurm) executes in rounds instead.
``dagrun worker``s of a search sweep ask one trial at a time under the same lock, plan
it, and execute what is there to claim.

    lock: rebuild from disk -> ask (record) -> execute(first trials, feed) -- a slot
    frees --> outcome from the run folders -> tell -> ask (record) -> plan -> run ...
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dagrun.backends import backend_class
from dagrun.backends.base import Backend
from dagrun.code.digest import config_digest
from dagrun.code.workflow import Workflow
from dagrun.config import SEARCH_KEY, parse_basecfg
from dagrun.disk import atomic, formatversion
from dagrun.disk.layout import SweepDir
from dagrun.disk.plan import Experiment
from dagrun.disk.records import hostname
from dagrun.errors import ConfigError
from dagrun.progress import say
from dagrun.record import record, replace
from dagrun.results import html as htmlreport
from dagrun.run.summary import Summary
from dagrun.scheduler import Options, execute
from dagrun.search import space as spaces
from dagrun.search import study as studies
from dagrun.search import trials as records
from dagrun.search.settings import (
    SearchSettings,
    make_pruner,
    make_sampler,
    parse,
    require_optuna,
)
from dagrun.search.trials import Outcome, TrialRecord, TrialState

if TYPE_CHECKING:
    from dagrun.worker import WorkerOptions

LOCK_WAIT = 0.05  # seconds between tries of a busy search lock


@record
class Trial:
    """A trial of the study now: its record, its cfg, its number in the in-memory study."""

    record: TrialRecord
    cfg: dict[str, Any]
    number: int
    outcome: Outcome | None = None  # once told


DRIVER = "driver"  # what the search lock's file says while a driver asks the trials
WORKERS_GONE_WAIT = 120.0  # seconds a round waits for the last round's workers to leave


@contextlib.contextmanager
def asking_lock(sweep: SweepDir, wait: float | None = None, driver: bool = False,
                yield_to_driver: bool = False) -> Iterator[bool]:
    """Hold the search lock (who may ask trials and plan them); yields whether it was
    got (``wait`` seconds at most; ``None``: as long as it takes). A ``driver`` that asks
    every trial of its execute says so in the lock's file while it holds it; a worker
    that would ``yield_to_driver`` gives up at once when it finds the lock held so (the
    driver plans the trials; the worker runs what is planned)."""
    atomic.makedirs(sweep.search)
    fd = os.open(sweep.search_lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
            if (deadline is not None and time.monotonic() >= deadline) or \
                    (yield_to_driver and _held_by_driver(fd)):
                yield False
                return
            time.sleep(LOCK_WAIT)
        os.ftruncate(fd, 0)  # what a driver that died holding it wrote is not true now
        if driver:
            os.pwrite(fd, f"{DRIVER} {hostname()} {os.getpid()}\n".encode(), 0)
        try:
            yield True
        finally:
            if driver:
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _held_by_driver(fd: int) -> bool:
    """Whether the search lock's holder is a driver (its file says so; a driver that died
    released the lock with its process, so a busy lock saying so is a live driver's)."""
    try:
        return os.pread(fd, 64, 0).startswith(DRIVER.encode())
    except OSError:
        return False


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def capacity(basecfg: Mapping[str, Any]) -> int:
    """How many runs the backend executes at once: the trials of one round."""
    settings = parse_basecfg(basecfg).settings
    backend = settings.backend
    if backend == "multiprocessing":
        return settings.num_cpus
    if backend in ("ssh", "malocher"):
        return sum(int(h.rpartition(":")[2]) if ":" in h else 1 for h in settings.hosts) or 1
    if backend == "slurm":
        return settings.workers or 1
    if backend == "ray":
        return max(1, (os.cpu_count() or 1) // settings.num_cpus)
    return 1


class Study:
    """The study of one sweep, as the disk shows it, and the asking of new trials."""

    def __init__(self, basecfg: Mapping[str, Any], cfgs: Sequence[Mapping[str, Any]],
                 space: Any = None) -> None:
        search = basecfg.get(SEARCH_KEY)
        self.settings: SearchSettings = parse(search, space)
        given = list(cfgs) if cfgs else list(search.get("cfgs", ()))  # type: ignore[union-attr]
        for i, cfg in enumerate(given):
            if not isinstance(cfg, Mapping):
                raise ConfigError(f"cfgs[{i}] must be a dict, got {type(cfg).__name__}")
        self.cfgs = [dict(c) for c in given]
        inner = {**search, "space": self.settings.space, "cfgs": self.cfgs}  # type: ignore[dict-item]
        self.basecfg = {**basecfg, SEARCH_KEY: inner}
        self.sweep = SweepDir.at(basecfg["out_path"])
        self.optuna = require_optuna()
        self.trials: list[Trial] = []
        self.asked = 0  # records on disk (also those the space no longer holds)
        self.study: Any = None

    # -- the study from the disk ---------------------------------------------------------
    def load(self, quiet: bool = False, failed_final: bool = False) -> None:
        """Rebuild the study from the records and the runs (under the lock); a failed
        trial is still to run unless ``failed_final``."""
        found = records.read_records(self.sweep)
        self.asked = len(found)
        kept: list[tuple[TrialRecord, dict[str, Any], dict[str, Any]]] = []
        for trial in found:
            made = self._replayed(trial)
            if made is not None:
                kept.append((trial, *made))
        ignored = len(found) - len(kept)
        by_digest = records.experiments_by_digest(self.sweep)
        outcomes = [records.outcome(self.sweep, by_digest.get(r.digest), self.settings.metric,
                                    failed_final) for r, _, _ in kept]
        key = studies.sampler_key(self.settings)
        sampler = None
        if found and not ignored and found[-1].sampler_key == key:
            sampler = records.load_sampler(self.sweep, found[-1])
        self.study = studies.rebuild(
            self.settings, sampler if sampler is not None else make_sampler(self.settings),
            make_pruner(self.settings, self.sweep.path),
            [(r, o, d) for (r, _, d), o in zip(kept, outcomes, strict=True)])
        self.trials = [Trial(r, cfg, i, o if o.state is not TrialState.RUNNING else None)
                       for i, ((r, cfg, _), o) in enumerate(zip(kept, outcomes, strict=True))]
        if ignored and not quiet:
            say(f"dagrun: the search space changed: {len(kept)} trial(s) kept as the study's "
                f"history, {ignored} ignored (outside the new space)")
        enqueued = {r.cfg_index for r, _, _ in kept if r.cfg_index is not None} | \
            {r.cfg_index for r in found if r.cfg_index is not None}
        for i, cfg in enumerate(self.cfgs):
            if i not in enqueued:
                self.study.enqueue_trial(spaces.flat_params(cfg), user_attrs={"cfg_index": i})

    def _replayed(self, record: TrialRecord) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The record's cfg and distributions in the space now; ``None`` when outside."""
        assert self.settings.space is not None
        try:
            cfg, trial = spaces.replay(self.settings.space, record.params, record.number)
        except spaces.OutsideSpace:
            return None
        if record.cfg_index is not None and record.cfg_index < len(self.cfgs):
            cfg = _merge(cfg, self.cfgs[record.cfg_index])
        if config_digest(cfg) != record.digest:
            return None  # the space's fixed values changed: another experiment now
        return cfg, trial.asked

    def refresh(self) -> None:
        """Rebuild when another process asked trials since (a worker)."""
        if len(records.read_records(self.sweep)) != self.asked:
            self.load(quiet=True)

    # -- asking ----------------------------------------------------------------------------
    def ask(self) -> Trial:
        """Ask one trial and record it (the caller holds the lock)."""
        from optuna.distributions import distribution_to_json

        assert self.settings.space is not None
        trial = self.study.ask()
        cfg = spaces.suggest(self.settings.space, trial)
        index = trial.user_attrs.get("cfg_index")
        if index is not None:
            cfg = _merge(cfg, self.cfgs[index])
        digest = config_digest(cfg)
        same = next((t.record.number for t in self.trials if t.record.digest == digest), None)
        record = TrialRecord(self.asked, digest, dict(trial.params),
                             {k: distribution_to_json(d) for k, d in
                              trial.distributions.items()}, index, same,
                             records.dump_sampler(self.study.sampler),
                             studies.sampler_key(self.settings))
        records.write_record(self.sweep, record)
        self.asked += 1
        made = Trial(record, cfg, trial.number)
        self.trials.append(made)
        return made

    def unfinished(self) -> list[Trial]:
        return [t for t in self.trials if t.outcome is None]

    def answered(self, trial: Trial) -> Outcome | None:
        """A repeated suggestion's outcome: that of the earlier trial with its cfg."""
        for other in self.trials:
            if other is not trial and other.record.digest == trial.record.digest \
                    and other.outcome is not None:
                return other.outcome
        return None

    def tell(self, trial: Trial, found: Outcome) -> None:
        trial.outcome = found
        studies.tell(self.study, trial.number, found)

    def trial_cfgs(self) -> list[dict[str, Any]]:
        """The cfgs to plan: one per distinct trial config, in asking order."""
        seen: set[str] = set()
        out = []
        for t in self.trials:
            if t.record.digest not in seen:
                seen.add(t.record.digest)
                out.append(t.cfg)
        return out

    def read_outcome(self, trial: Trial, exp: Experiment | None = None) -> Outcome:
        """The trial's outcome from its run folders (``exp``: its experiment, when the
        caller knows it; else found in the stored plan)."""
        if exp is None:
            exp = records.experiments_by_digest(self.sweep).get(trial.record.digest)
        return records.outcome(self.sweep, exp, self.settings.metric)

    def best(self) -> Trial | None:
        done = [t for t in self.trials if t.outcome is not None and
                t.outcome.state is TrialState.COMPLETE and t.outcome.value is not None]
        return min(done, key=lambda t: self.settings.sign * _value(t), default=None)

    def describe(self, trial: Trial) -> str:
        found = trial.outcome
        metric = self.settings.metric
        if found is None:
            return f"trial {trial.record.number}: running"
        if found.state is TrialState.COMPLETE:
            text = f"{metric}={found.value:.6g}"
        elif found.state is TrialState.PRUNED:
            step = max(found.intermediate) if found.intermediate else "?"
            text = f"pruned at step {step}"
        else:
            text = "failed"
        best = self.best()
        shown = f"; best {metric}={best.outcome.value:.6g} (trial {best.record.number})" \
            if best is not None and best.outcome is not None and best.outcome.value is not None \
            else ""
        same = f" (answered by trial {trial.record.same_as})" \
            if trial.record.same_as is not None else ""
        return f"dagrun: trial {trial.record.number}{same}: {text}{shown}"


def _value(trial: Trial) -> float:
    found = trial.outcome
    return found.value if found is not None and found.value is not None else math.nan


def run_search(basecfg: Mapping[str, Any], cfgs: Sequence[Mapping[str, Any]] = (),
               space: Any = None, options: Options | None = None) -> Summary:
    """The driver: ask trials and run them round after round until ``n_trials`` are asked
    and every one is finished; returns the counts over all rounds."""
    options = options or Options()
    study = Study(basecfg, cfgs, space)
    verbose = bool(basecfg.get("verbose", True))
    width = capacity(study.basecfg)
    rounds = {**study.basecfg, "verbose": False, "report": False}
    total = Summary(study.sweep.path)
    started = time.time()
    atomic.makedirs(study.sweep.path)
    with asking_lock(study.sweep, wait=0.0, driver=not options.detach) as got:
        if not got:
            from dagrun.errors import SweepBusyError

            raise SweepBusyError(f"{study.sweep.path}: another process is asking trials of "
                                 "this search now (a dagrun driver or worker)")
        study.load()
        if options.dry_run:
            return _dry_run(study, rounds, options)
        if options.detach:  # the workers started ask the rest (the lock is free then)
            return _detach(study, rounds, options, width, verbose)
        if study.trials:  # what an earlier start left: every run not done (failed, code
            _add(total, execute(rounds, study.trial_cfgs(), Options(  # changed) runs first
                rerun_changed=options.rerun_changed, source=options.source,
                fingerprints=options.fingerprints, snapshot=options.snapshot, grows=True)))
            study.load(quiet=True, failed_final=True)  # their outcomes, as the disk says
        backend = backend_class(parse_basecfg(study.basecfg).settings.backend)
        feed = None if backend.pulls_runs else _Asking(study, verbose)
        while True:  # one execute asking as slots free; rounds where workers pull runs
            batch = _next_round(study, width, verbose)
            if not batch:
                break
            if backend.pulls_runs:  # the last round's workers left (they plan nothing)
                _workers_gone(backend, study.sweep)
            only = frozenset(t.record.digest for t in batch)
            done = execute(rounds, study.trial_cfgs(),
                           Options(source=options.source, fingerprints=options.fingerprints,
                                   snapshot=options.snapshot, only=only, grows=True,
                                   feed=feed))
            _add(total, done)
            for trial in study.unfinished():  # what no end was told of: as the disk says
                _finish(study, trial, verbose)
    # runs, not trials (a trial has its repetitions): as the last execute planned them
    total.planned = max(total.planned, total.done + total.failed)
    total.skipped = max(total.planned - total.done - total.failed, 0)
    total.seconds = time.time() - started
    if verbose:
        best = study.best()
        say(f"dagrun: search done: {study.asked} trial(s) asked of n_trials="
            f"{study.settings.n_trials}; " + (f"best {study.settings.metric}="
                                              f"{best.outcome.value:.6g} (trial "
                                              f"{best.record.number})"
                                              if best is not None and best.outcome is not None
                                              and best.outcome.value is not None else
                                              "no trial complete"))
    if total.done or total.failed:
        htmlreport.after_execute(study.sweep, bool(basecfg.get("report", True)), verbose)
    return total


def _workers_gone(backend: type[Backend], sweep: SweepDir) -> None:
    """Wait (``WORKERS_GONE_WAIT`` s at most) until the workers an earlier round started
    have left: they know only the trials planned before them, and a round must start its
    own."""
    deadline = time.monotonic() + WORKERS_GONE_WAIT
    while backend.workers_alive(sweep) and time.monotonic() < deadline:
        time.sleep(0.5)


def _detach(study: Study, rounds: Mapping[str, Any], options: Options, width: int,
            verbose: bool) -> Summary:
    """``--detach``: ask the first trials, plan them and start the workers (slurm), who
    ask the rest of the study themselves once this driver has let go of the lock."""
    batch = _next_round(study, width, verbose)
    if not batch:
        if verbose:
            say(f"dagrun: search done: {study.asked} trial(s) asked of n_trials="
                f"{study.settings.n_trials}; nothing to start")
        return Summary(study.sweep.path, len(study.trial_cfgs()))
    return execute(rounds, study.trial_cfgs(),
                   Options(source=options.source, fingerprints=options.fingerprints,
                           snapshot=options.snapshot, detach=True, grows=True))


def _next_round(study: Study, width: int, verbose: bool) -> list[Trial]:
    """The trials to run now: the unfinished ones, then new ones up to ``width``; repeated
    suggestions whose answer is known are told at once."""
    batch = [t for t in study.unfinished() if study.answered(t) is None]
    seen = {t.record.digest for t in batch}
    while len(seen) < width and study.asked < study.settings.n_trials:
        trial = study.ask()
        answer = study.answered(trial)
        if answer is not None:  # equal to a finished experiment: answered from the disk
            study.tell(trial, answer)
            if verbose:
                say(study.describe(trial))
            continue
        batch.append(trial)
        seen.add(trial.record.digest)
    return batch


class _Asking:
    """The search as a ``dagrun.scheduler.Feed``: a new trial whenever a slot frees (the
    trials running meanwhile are running trials of the study: TPE's constant liar), and
    each trial told as soon as its experiment's runs have ended."""

    def __init__(self, study: Study, verbose: bool) -> None:
        self.study = study
        self.verbose = verbose

    def more(self, count: int) -> list[Any]:
        """Ask until ``count`` trials need runs, or ``n_trials`` are asked; a suggestion
        equal to a finished trial is told from the disk, one equal to a running trial
        waits for that trial's end."""
        study = self.study
        out: list[Any] = []
        while len(out) < count and study.asked < study.settings.n_trials:
            trial = study.ask()
            answer = study.answered(trial)
            if answer is not None:
                study.tell(trial, answer)
                if self.verbose:
                    say(study.describe(trial))
                continue
            if any(t is not trial and t.outcome is None and
                   t.record.digest == trial.record.digest for t in study.trials):
                continue
            out.append(trial.cfg)
        return out

    def ended(self, exp: Experiment) -> None:
        """Tell the study the outcome of every trial whose config is ``exp``'s."""
        for trial in self.study.trials:
            if trial.outcome is None and trial.record.digest == exp.digest:
                _finish(self.study, trial, self.verbose, exp)


def _finish(study: Study, trial: Trial, verbose: bool, exp: Experiment | None = None
            ) -> None:
    """Tell the study the trial's outcome as the disk says (``exp``: its experiment, when
    known) unless it was told; running there (a repetition held elsewhere) is failed."""
    if trial.outcome is not None:
        return
    found = study.answered(trial) or study.read_outcome(trial, exp)
    if found.state is TrialState.RUNNING:  # not run here (held by a worker): failed for now
        found = Outcome(TrialState.FAILED)
    study.tell(trial, found)
    if verbose:
        say(study.describe(trial))


def _add(total: Summary, part: Summary) -> None:
    total.planned = part.planned  # each execute plans every trial asked so far
    total.done += part.done
    total.failed += part.failed
    total.failed_runs.extend(part.failed_runs)
    total.notes.extend(part.notes)
    total.interrupted = total.interrupted or part.interrupted
    total.results_lines = part.results_lines


def _dry_run(study: Study, rounds: Mapping[str, Any], options: Options) -> Summary:
    cfgs = study.trial_cfgs()
    print(f"search in {study.sweep.path}: {study.asked} of {study.settings.n_trials} "
          f"trial(s) asked, {len(study.unfinished())} not finished")
    if not cfgs:
        return Summary(study.sweep.path, dry_run=True)
    return execute(rounds, cfgs, Options(dry_run=True, rerun_changed=options.rerun_changed,
                                         source=options.source))


def plan_search(basecfg: Mapping[str, Any], cfgs: Sequence[Mapping[str, Any]] = (),
                space: Any = None, options: Options | None = None) -> Summary:
    """``dagrun plan`` of a search: ask the first trial (or the enqueued cfgs) and write the
    plan and the workflow; ``dagrun worker``s extend the study from there."""
    options = options or Options()
    study = Study(basecfg, cfgs, space)
    atomic.makedirs(study.sweep.path)
    with asking_lock(study.sweep):
        study.load()
        while study.asked < min(max(len(study.cfgs), 1), study.settings.n_trials):
            study.ask()
        return _plan(study, options)


def _plan(study: Study, options: Options) -> Summary:
    return execute({**study.basecfg, "verbose": False, "report": False}, study.trial_cfgs(),
                   Options(source=options.source, fingerprints=options.fingerprints,
                           snapshot=options.snapshot, plan_only=True, grows=True))


def stored_search(out: str) -> Workflow | None:
    """The pickled workflow of the sweep in ``out`` when it is a search, else ``None``."""
    from dagrun.disk.planstore import require_sweep

    sweep = require_sweep(out)
    formatversion.check_joinable(sweep)  # before any user code is loaded from the sweep
    if not os.path.isdir(sweep.search) or not os.path.isfile(sweep.workflow):
        return None  # not a search (its trials' records would be there): the plain worker
    wf = Workflow.load(sweep.workflow)
    return wf if wf.basecfg.get(SEARCH_KEY) is not None else None


def run_search_worker(out: str, options: WorkerOptions) -> int:
    """``dagrun worker`` of a search: ask a trial when none is left to claim, plan it, run
    what there is to claim; until ``n_trials`` are asked and none is left."""
    from dagrun.worker import run_worker

    while True:
        wf = stored_search(out)
        if wf is None:
            return run_worker(out, options)
        basecfg = {**wf.basecfg, "pre": wf.pre, "fit": wf.fit, "post": wf.post,
                   "out_path": out}
        asked = False
        with asking_lock(SweepDir.at(out), yield_to_driver=True) as got:
            if not got:  # a driver asks this search's trials: run what it planned
                return run_worker(out, options)
            study = Study(basecfg, ())
            # a failed trial is failed for the study (a worker retries a run within its
            # attempts; a trial still "to run" would be claimable for ever: nothing asked)
            study.load(quiet=True, failed_final=True)
            if study.asked < study.settings.n_trials and not _claimable(study):
                trial = study.ask()
                asked = True
                print(f"dagrun worker: asked trial {trial.record.number}", file=sys.stderr,
                      flush=True)
                _plan(study, Options(source=wf.source, fingerprints=wf.fingerprints or None,
                                     snapshot=wf.snapshot))
        by_digest = records.experiments_by_digest(SweepDir.at(out))
        unfinished = frozenset(by_digest[t.record.digest].exp_id for t in study.unfinished()
                               if t.record.digest in by_digest)
        code = run_worker(out, replace(
            options, experiments=unfinished,
            leave_idle=study.asked < study.settings.n_trials))  # else: asks, not waits
        if not asked and study.asked >= study.settings.n_trials:
            # (a run left to the next plan is no failure: the disk says what failed)
            study.load(quiet=True, failed_final=True)
            failed = any(t.outcome is None or t.outcome.state is TrialState.FAILED
                         for t in study.trials)
            return 1 if failed or (code != 0 and not study.trials) else 0


def _claimable(study: Study) -> bool:
    """Whether some trial's runs are not finished and not started by anyone."""
    by_digest = records.experiments_by_digest(study.sweep)
    for trial in study.trials:
        if trial.outcome is None:
            exp = by_digest.get(trial.record.digest)
            if exp is None:
                return True
            from dagrun.disk.runs import run_dirs

            for _rep, run in run_dirs(study.sweep, exp):
                if not os.path.exists(run.lease):
                    return True
    return False

