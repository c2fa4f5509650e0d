"""The stage runner: executes one run from its first stage that is not done.

This is the only code that calls the user's functions, and it is shared by every backend.
It loads the output of the last done stage from disk, runs the remaining stages, writes each
artifact and then its marker (atomically), and turns anything that goes wrong into a
``Failure`` record instead of an exception: the sweep goes on.

Data travels between stages through return values only: ``pre(cfg)`` returns what
``fit(cfg, pre_out)`` receives, and ``fit`` returns what ``post(cfg, fit_out)`` receives.
Every stage call gets its own deep copy of its run's cfg (``RunCfg``), so whatever a stage
does to the dict it receives (pop a key, edit a nested dict) reaches neither a later stage
of the same run nor another run executed by the same process; that is what makes a run
resumed at ``fit`` (its ``pre`` ran in another process, or days ago) behave exactly like one
that never stopped. The cfg is pickled once per run (protocol 5, NumPy buffers left out of
band) and unpickled for each stage call, arrays copied with one ``memcpy`` each: for large
graphs of Python objects this is several times faster than ``copy.deepcopy``
(``bench/cfg_copy.py``); a small JSON-like cfg (the usual sweep's) is rebuilt by a plain
walk instead, cheaper again than a pickle round trip. A value that does not pickle (a
lambda, a class that cannot be imported here) is copied with ``copy.deepcopy``; one that
cannot be copied at all (a lock, an open file) is passed as is, with one warning per key
and process. The copy keeps the
cfg's shape: values shared between keys, cycles, and attribute dicts (a ``dict`` whose
``__dict__`` is itself) stay what they are (``dagrun.code.pickling``); only a value shared
between a key that pickles and one that does not becomes two. Likewise, the working
folder, environment, ``sys.path`` and logging configuration a stage call changes are put
back after it (``dagrun.run.capture.isolated``).
"""

from __future__ import annotations

import copy
import os
import pickle
import sys
import time
from typing import Any

from dagrun.code import mainref, pickling, values
from dagrun.code.safety import check_pickle
from dagrun.code.workflow import Addition, Workflow
from dagrun.config import json_view, repetitions_of
from dagrun.disk import atomic
from dagrun.disk.fence import Attempt, Superseded
from dagrun.disk.layout import CONFIG, RunDir, Stage, SweepDir, error_name, marker_name
from dagrun.disk.records import Failure, Marker, hostname, read_scores, stage_seconds
from dagrun.errors import FailureKind, UnsafePickleError, UsageError
from dagrun.record import field, record, replace
from dagrun.run.capture import CaptureMode, ProcessState, capture, isolated
from dagrun.run.runwarning import RunWarning, WarningKind
from dagrun.search import pruning


@record(frozen=True)
class RunTask:
    """One run to execute: which experiment and repetition, where, which attempt."""

    exp_id: int
    rep: int
    path: str
    attempt: int = 1
    # the holder's attempt folder in the run (``dagrun.disk.fence``), made by whoever
    # claimed the run; every write goes through it. ``None``: unfenced (tests, tools)
    folder: str | None = None
    # the experiment, when it was planned after the workflow was loaded (a search's trial
    # asked while the sweep runs): the process running this learns it first. Not part of
    # the run's identity (equality, hash); the ssh protocol leaves it out (its hosts load
    # the workflow from the disk for every run, written before the run was submitted)
    adds: Addition | None = field(default=None, compare=False, repr=False)
    # whoever admitted this attempt created the run's folder for it (``Gate.admit``): it
    # holds nothing but ``folder``, and the runner does not list it. Not part of the
    # identity; an attempt after this one (a retry) never has it
    new_folder: bool = field(default=False, compare=False, repr=False)

    def claimed(self, folder: str, new_folder: bool) -> RunTask:
        """This task, to write through the attempt folder ``folder`` (``replace``'s result,
        made directly: once per run)."""
        return RunTask(self.exp_id, self.rep, self.path, self.attempt, folder, self.adds,
                       new_folder)

    def retry(self) -> RunTask:
        """The next attempt of this run, by the same holder (same attempt folder)."""
        return replace(self, attempt=self.attempt + 1, new_folder=False)

    @property
    def label(self) -> str:
        return f"{self.exp_id}/{self.rep}"


@record(frozen=True)
class RunOutcome:
    """What happened to a run; ``failure`` is ``None`` when every stage is done."""

    task: RunTask
    failure: Failure | None = None
    ran: tuple[str, ...] = ()
    warnings: tuple[RunWarning, ...] = ()
    scores: dict[str, Any] | None = None  # what post.json now holds, when post ran just now
    # another holder claimed the run meanwhile (its lease was taken over): nothing of this
    # attempt was committed after that, nothing is recorded, the run is the other's now
    superseded: bool = False

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.superseded


class _StageFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class _InputRefused(Exception):
    """The input of ``stage`` is a pickle that may not be loaded (see ``dagrun.code.safety``)."""

    def __init__(self, stage: Stage, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@record
class _Resume:
    """Where a run picks up: the first stage to run and the value it takes as input."""

    start: Stage | None  # None: the run is complete
    value: Any = None
    fit_time: float | None = None
    warnings: list[RunWarning] = field(default_factory=list)
    names: frozenset[str] = frozenset()  # what the run folder held before the attempt


def _load_pickle(path: str) -> Any:
    check_pickle(path)
    with open(path, "rb") as f:
        return pickle.load(f)


def find_resume_point(run: RunDir, via: Attempt | None = None,
                      new_folder: bool = False) -> _Resume:
    """Decide from the disk where the run continues, loading the input it needs.

    A marker whose artifact cannot be read (missing, truncated, corrupt) is dropped with a
    warning and its stage recomputed. A refused pickle (unsafe permissions) is not dropped:
    ``_InputRefused`` propagates and the run is recorded as failed in the stage that needed
    it (so ``dagrun status`` lists it as failed, not as incomplete). ``new_folder``: the
    folder was made for this attempt (``RunTask.new_folder``), so it is not listed.
    """
    if new_folder:  # made for this attempt a moment ago: nothing of the run in it
        return _Resume(Stage.PRE, names=frozenset(
            () if via is None or via.name is None else (via.name,)))
    try:
        names = set(os.listdir(run.path))
    except FileNotFoundError:
        names = set()
    res = _Resume(Stage.PRE, names=frozenset(names))
    if marker_name(Stage.POST) in names:
        if read_scores(run) is not None:
            return _Resume(None)
        res.warnings.append(_unreadable(
            Stage.POST, f"{run.artifact(Stage.POST)} cannot be read; recomputing post"))
        (via or Attempt(run, None)).remove(run.marker(Stage.POST))
    for stage, nxt in ((Stage.FIT, Stage.POST), (Stage.PRE, Stage.FIT)):
        if marker_name(stage) not in names:
            continue
        marker = Marker.read(run, stage)
        try:
            if marker is None:
                raise ValueError(f"{run.marker(stage)} is unreadable")
            value = _load_pickle(run.artifact(stage))
        except UnsafePickleError as exc:
            raise _InputRefused(nxt, str(exc)) from exc
        except Exception as exc:  # any unpickling error means: not usable
            res.warnings.append(_unreadable(
                stage, f"{run.artifact(stage)} cannot be loaded ({type(exc).__name__}: "
                f"{exc}); recomputing {stage.value}"))
            (via or Attempt(run, None)).remove(run.marker(stage))
            continue
        fit_time = marker.seconds if stage is Stage.FIT else None
        return _Resume(nxt, value, fit_time, res.warnings, res.names)
    return res


def _unreadable(stage: Stage, message: str) -> RunWarning:
    return RunWarning(WarningKind.UNREADABLE_ARTIFACT,
                      f"{stage.value} output on disk cannot be loaded; recomputed", message,
                      stage.value)


def _save_output(run: RunDir, via: Attempt, stage: Stage, value: Any,
                 warnings: list[RunWarning]) -> bool:
    """Pickle a pre/fit output; returns False (with a warning) when it cannot be pickled."""
    try:
        data = mainref.dumps(value)
    except Exception as exc:  # cloudpickle raises many types for unpicklable objects
        warnings.append(RunWarning(
            WarningKind.UNPICKLABLE_OUTPUT, f"{stage.value} output cannot be pickled",
            f"{stage.value} output of {run.path} cannot be pickled ({type(exc).__name__}: "
            f"{exc}); {stage.value} is not checkpointed and reruns on resume", stage.value))
        return False
    via.write_bytes(run.artifact(stage), data)
    return True


def _metrics(value: Any, fit_time: float | None, attempt: int, repetitions: int,
             warnings: list[RunWarning]) -> dict[str, Any]:
    """post's dict as ``post.json`` holds it, or ``_StageFailed`` (kind ``bad_output``)."""
    if not isinstance(value, dict):
        raise _StageFailed(Failure.make(
            Stage.POST, FailureKind.BAD_OUTPUT,
            f"post must return a dict of metrics, got {type(value).__name__} "
            "(return {} when there are none)", attempt,
        ))
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise _StageFailed(Failure.make(
            Stage.POST, FailureKind.BAD_OUTPUT,
            f"post returned a dict with non-string keys {bad[:3]!r}; metric names must be str",
            attempt,
        ))
    _check_statistic_names(value, attempt)
    if "fit_time" in value:
        warnings.append(RunWarning(
            WarningKind.RESERVED_METRIC, "post returned 'fit_time' (replaced by dagrun's)",
            "post returned 'fit_time', which dagrun sets itself; it was replaced",
            Stage.POST.value))
    scores = {k: _metric_value(v) for k, v in value.items()}
    scores["fit_time"] = fit_time
    return scores


def _check_statistic_names(value: dict[str, Any], attempt: int) -> None:
    """results.jsonl adds ``mean_M``, ``std_M`` and ``n_M`` for each metric ``M`` (for any
    number of repetitions): a post that returns both ``M`` and one of those would have its
    own value lost."""
    names = {*value, "fit_time"}
    for key in value:
        for prefix in ("mean_", "std_", "n_"):
            if key.startswith(prefix) and key[len(prefix):] in names:
                metric = key[len(prefix):]
                raise _StageFailed(Failure.make(
                    Stage.POST, FailureKind.BAD_OUTPUT,
                    f"post returned both {metric!r} and {key!r}: results.jsonl computes "
                    f"{key!r} from the values of {metric!r} itself; rename {key!r}", attempt,
                ))


def _metric_value(value: Any) -> Any:
    """A metric as JSON: ``Decimal`` and ``Fraction`` become floats (so they get a mean
    and a std), everything else its JSON view."""
    if type(value) in _JSON_LEAVES:
        return value
    # a Decimal or a Fraction exists only where its module was imported (not imported
    # here: most sweeps have neither, and decimal costs milliseconds to import)
    decimal, numbers = sys.modules.get("decimal"), sys.modules.get("numbers")
    if (decimal is not None and isinstance(value, decimal.Decimal)) or (
            numbers is not None and isinstance(value, numbers.Rational)
            and not isinstance(value, numbers.Integral)):
        return float(value)
    return json_view(value)


_JSON_LEAVES = frozenset({float, int, str, bool, type(None)})  # metrics json_view keeps


_Blob = tuple[bytes, list[pickle.PickleBuffer]]


def _dumps(value: Any) -> _Blob:
    """Pickle ``value`` keeping its shape (``dagrun.code.pickling``), leaving large buffers
    (NumPy arrays) out of band, uncopied."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickling.dumps(value, buffer_callback=buffers.append)
    return data, buffers


def _loads(blob: _Blob) -> Any:
    """A new object from ``blob``; each out-of-band buffer is copied (writable, unshared)."""
    data, buffers = blob
    return pickling.loads(data, [bytearray(b.raw()) for b in buffers])


@record
class CopyMemory:
    """What a process learnt about copying cfg keys; kept across the runs it executes.

    ``unpicklable``: keys whose value did not pickle once, copied with ``copy.deepcopy``
    from then on without trying pickle again. ``warned``: keys whose value cannot be copied
    at all and that were already reported (one warning per key and process, not per run).
    """

    unpicklable: set[str] = field(default_factory=set)
    warned: set[str] = field(default_factory=set)

    def uncopyable(self, key: str, exc: Exception, warnings: list[RunWarning]) -> None:
        """Report (once) that ``key`` is shared between stages instead of copied."""
        if key in self.warned:
            return
        self.warned.add(key)
        warnings.append(RunWarning(
            WarningKind.UNCOPYABLE_CFG, f"cfg key {key!r} cannot be copied (shared as is)",
            f"cfg key {key!r} cannot be copied ({type(exc).__name__}: {exc}); every stage "
            "receives the same object, so in-place changes to it are not isolated"))


class RunCfg:
    """Hands out independent deep copies of one run's cfg, one per stage call.

    The way each key is copied is settled once per run, on the first copy: a small plain
    cfg (``_plain``: JSON-like values, nothing shared) by a walk that rebuilds it; else
    the whole cfg as one pickle when it pickles (shared references between keys survive);
    otherwise the keys that pickle as one pickle, the others with one ``copy.deepcopy``,
    and keys that neither can copy are passed as is (``CopyMemory.uncopyable`` warns); a
    reference shared between a key of the pickle and one of the deep copy is then two. The
    original is never handed out, so later runs of the same experiment start from it
    unchanged.
    """

    def __init__(self, cfg: dict[str, Any], memory: CopyMemory,
                 warnings: list[RunWarning]) -> None:
        self._cfg = cfg
        self._blob: _Blob | None = None
        self._deep: list[str] = []
        self._shared: list[str] = []
        # flat (text keys, plain leaves only, the usual sweep's cfg): a copy of the dict
        self._flat = _STR.issuperset(map(type, cfg)) \
            and _PLAIN_LEAVES.issuperset(map(type, cfg.values()))
        self._plain = self._flat or _plain(cfg)
        self._first: dict[str, Any] | None = None if self._plain else self._plan(memory,
                                                                                  warnings)

    def fresh(self) -> dict[str, Any]:
        """A copy of the cfg that no other stage call receives."""
        if self._flat:
            return self._cfg.copy()
        if self._plain:
            copied: dict[str, Any] = _copy_plain(self._cfg)
            return copied
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return self._assemble(_loads(self._blob) if self._blob is not None else {})

    def _plan(self, memory: CopyMemory, warnings: list[RunWarning]) -> dict[str, Any]:
        """Settle how each key is copied; returns the first copy, made on the way."""
        cfg = self._cfg
        if not memory.unpicklable.intersection(cfg):
            whole = self._pickle_part(cfg)
            if whole is not None:
                return whole
        part = {k: v for k, v in cfg.items() if _pickles(k, v, memory)}
        picked = (self._pickle_part(part) if part else None) or {}
        rest = self._deepcopy_rest([k for k in cfg if k not in picked], memory, warnings)
        return {k: picked[k] if k in picked else rest[k] for k in cfg}

    def _deepcopy_rest(self, keys: list[str], memory: CopyMemory,
                       warnings: list[RunWarning]) -> dict[str, Any]:
        """First copies of ``keys`` by ``copy.deepcopy``; those it cannot copy are shared."""
        rest: dict[str, Any] = {}
        memo: dict[int, Any] = {}  # one memo: references shared between these keys survive
        for key in keys:
            try:
                rest[key] = copy.deepcopy(self._cfg[key], memo)
                self._deep.append(key)
            except Exception as exc:  # deepcopy raises many types for what it cannot copy
                memory.uncopyable(key, exc, warnings)
                rest[key] = self._cfg[key]
                self._shared.append(key)
        pickling.repair(memo)  # attribute dicts among the copies (dagrun.code.pickling)
        return rest

    def _pickle_part(self, part: dict[str, Any]) -> dict[str, Any] | None:
        """Pickle ``part`` as one blob (kept for later copies); its first copy or None."""
        try:
            blob = _dumps(part)
            first: dict[str, Any] = _loads(blob)
        except Exception:  # pickle raises many types for objects it cannot handle
            return None
        self._blob = blob
        return first

    def _assemble(self, picked: dict[str, Any]) -> dict[str, Any]:
        """The full cfg, in its original key order, from the pickled part and the rest."""
        if not self._deep and not self._shared:
            return picked
        rest: dict[str, Any] = pickling.deepcopy({k: self._cfg[k] for k in self._deep})
        rest.update({k: self._cfg[k] for k in self._shared})
        return {k: picked[k] if k in picked else rest[k] for k in self._cfg}


_PLAIN_LEAVES = frozenset({str, int, float, bool, type(None)})
_STR = frozenset({str})
_PLAIN_MAX = 256  # values a plain cfg may hold: beyond, one pickle copies faster


def _plain(cfg: dict[str, Any]) -> bool:
    """Whether ``cfg`` is small and plain: ``dict``/``list``/``tuple`` (exactly those
    types, ``str`` keys) of ``str``/``int``/``float``/``bool``/``None``, no container
    reached twice (a shared list must stay shared: that needs the pickle). Such a cfg is
    copied by ``_copy_plain`` in a fraction of a pickle round trip; the copy is the same."""
    seen: set[int] = set()
    stack: list[Any] = [cfg]
    count = 0
    while stack:
        value = stack.pop()
        kind = type(value)
        count += 1
        if count > _PLAIN_MAX:
            return False
        if kind in _PLAIN_LEAVES:
            continue
        if kind is not dict and kind is not list and kind is not tuple:
            return False
        if id(value) in seen:
            return False
        seen.add(id(value))
        if kind is dict:
            if any(type(k) is not str for k in value):
                return False
            stack.extend(value.values())
        else:
            stack.extend(value)
    return True


def _copy_plain(value: Any) -> Any:
    """A deep copy of a value ``_plain`` accepted (leaves kept, not walked into: three
    copies a run)."""
    kind = type(value)
    leaves = _PLAIN_LEAVES
    if kind is dict:
        return {k: v if type(v) in leaves else _copy_plain(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in leaves else _copy_plain(v) for v in value]
    if kind is tuple:
        return tuple(v if type(v) in leaves else _copy_plain(v) for v in value)
    return value


def _pickles(key: str, value: Any, memory: CopyMemory) -> bool:
    """Whether ``value`` pickles; a key that does not is remembered in ``memory``."""
    if key in memory.unpicklable:
        return False
    try:
        _dumps(value)
    except Exception:  # pickle raises many types for objects it cannot handle
        memory.unpicklable.add(key)
        return False
    return True


class StageRunner:
    """Runs runs of one workflow; one instance per process, reused across runs.

    ``mode`` says where it runs: ``CaptureMode.TEE`` in the driver's own process (the
    ``single`` backend), where a ``KeyboardInterrupt`` cannot be told from Ctrl-C and stops
    the sweep; ``CaptureMode.FD`` in a worker, where Ctrl-C never arrives (runs have their
    own sessions), so a ``KeyboardInterrupt`` raised by a stage is that run's failure.
    """

    def __init__(self, workflow: Workflow, mode: CaptureMode,
                 fingerprints: dict[str, str] | None = None) -> None:
        self.workflow = workflow
        self.mode = mode
        self.fingerprints = fingerprints or {}
        self.copy_memory = CopyMemory()  # per process: runs share what it learnt
        self.values = values.Loader()  # per process: each stored array's header read once
        self._spares: str | None = None  # OUT/.dagrun/spares, found at the first FD run

    def run(self, task: RunTask) -> RunOutcome:
        """Execute ``task`` from its first stage not done; never raises for user errors."""
        if task.adds is not None:
            self.workflow.learn(task.adds)
        run = RunDir(task.path)
        via = Attempt(run, task.folder)
        warnings: list[RunWarning] = []
        ran: list[str] = []
        scores: dict[str, Any] | None = None
        try:
            if task.folder is None:
                atomic.makedirs(run.path)
            elif not task.new_folder:  # claimed by another before this attempt began?
                via.check()
            # (a new folder holds nothing to read: its first write, config.json, commits
            # through the attempt folder and fails as ``Superseded`` when it was fenced)
            resume = find_resume_point(run, via, task.new_folder)
            warnings.extend(resume.warnings)
            if resume.start is not None:
                cfg = self.workflow.run_cfg(task.exp_id, task.rep, run.path)
                if CONFIG not in resume.names:
                    via.write_json(run.config, json_view(cfg))  # the cfg the stages get
                with pruning.scope(self.workflow, task.exp_id, run, via,
                                   self._repetitions):  # what dagrun.report needs
                    scores = self._run_from(task, cfg, run, via, resume.start, resume,
                                            warnings, ran)
        except pruning.Pruned as exc:  # the search's pruner stopped it: done (dagrun.search)
            superseded = not pruning.record_pruned(run, via, exc)
            return RunOutcome(task, None, tuple(ran), tuple(warnings), superseded=superseded)
        except Superseded:
            return RunOutcome(task, None, tuple(ran), tuple(warnings), superseded=True)
        except _StageFailed as failed:
            return self._failed(task, run, via, failed.failure, ran, warnings)
        except _InputRefused as exc:
            failure = Failure.make(exc.stage, FailureKind.ENGINE, str(exc), task.attempt)
            return self._failed(task, run, via, failure, ran, warnings)
        except UnsafePickleError as exc:
            failure = Failure.make(Stage.PRE, FailureKind.ENGINE, str(exc), task.attempt)
            return self._failed(task, run, via, failure, ran, warnings)
        except OSError as exc:
            failure = Failure.from_exception(Stage.PRE, exc, task.attempt, FailureKind.ENGINE)
            return self._failed(task, run, via, failure, ran, warnings)
        return RunOutcome(task, None, tuple(ran), tuple(warnings), scores)

    def _failed(self, task: RunTask, run: RunDir, via: Attempt, failure: Failure,
                ran: list[str], warnings: list[RunWarning]) -> RunOutcome:
        try:
            failure.write(run, via)
        except Superseded:  # another holder has the run: its failure is not ours to record
            return RunOutcome(task, None, tuple(ran), tuple(warnings), superseded=True)
        except OSError:  # e.g. disk full: the driver still reports it
            pass
        return RunOutcome(task, failure, tuple(ran), tuple(warnings))

    def _run_from(self, task: RunTask, run_cfg: dict[str, Any], run: RunDir, via: Attempt,
                  start: Stage, resume: _Resume, warnings: list[RunWarning],
                  ran: list[str]) -> dict[str, Any] | None:
        """Run ``start`` and the stages after it (each given a copy of ``run_cfg``);
        returns the scores post wrote."""
        cfgs = RunCfg(run_cfg, self.copy_memory, warnings)
        workflow = self.workflow
        stored = getattr(workflow, "stored_values", False)  # False: an older workflow
        value, fit_time = resume.value, resume.fit_time
        scores = None
        # what each marker of this run says besides its stage and times
        about = (workflow.config_digest(task.exp_id), via.token,
                 getattr(workflow, "code_id", None))
        # the attempt folder stood a moment ago (a commit out of it, or ``run``'s look with
        # nothing loaded since, as for a run from its start): the next stage needs no look
        standing = start is Stage.PRE
        state: ProcessState | None = None  # as restored after each call (see there)
        for stage in start.and_after():
            if not standing:  # a holder that lost the run starts no further stage
                via.check()
            cfg = cfgs.fresh()  # before the clock starts: copying is not fit time
            if stored:  # big values from the store: a fresh copy-on-write map per call
                cfg = self._stored_values(stage, task, run, cfg)
            if state is None or not state.current():
                state = isolated()
            started = time.time()
            value = self._call(stage, task, run, cfg, value, state)
            finished = time.time()
            ran.append(stage._value_)
            if stage is Stage.FIT:
                fit_time = stage_seconds(started, finished)
            try:
                standing, scores = self._persist(stage, task, run, via, value, fit_time,
                                                 started, finished, warnings, about)
                if error_name(stage) in resume.names:  # a failure record of an earlier attempt
                    via.remove(run.error(stage))
            except OSError as exc:
                raise _StageFailed(Failure.from_exception(
                    stage, exc, task.attempt, FailureKind.ENGINE)) from exc
        return scores

    def _stored_values(self, stage: Stage, task: RunTask, run: RunDir,
                       cfg: dict[str, Any]) -> dict[str, Any]:
        """``cfg`` with the values kept in OUT's values store loaded (``dagrun.code.values``);
        OUT is where this process sees the run's folder. A value missing from the store
        fails the run with a line that says how to write it again."""
        try:
            resolved: dict[str, Any] = values.resolve(cfg, self._sweep(task, run),
                                                      loader=self.values)
        except UsageError as exc:
            raise _InputRefused(stage, str(exc)) from exc
        return resolved

    def _call(self, stage: Stage, task: RunTask, run: RunDir, cfg: dict[str, Any],
              value: Any, state: ProcessState) -> Any:
        """Call the user's function of ``stage`` with ``cfg`` (this call's own copy), its
        output captured and the process state it changes put back to ``state``
        (``dagrun.run.capture``: taken before the run's first call, and again only when a
        restore could not make it the process's state once more)."""
        fn = self.workflow.function(stage)
        args = (cfg,) if stage is Stage.PRE else (cfg, value)
        spares = self._spares
        if spares is None and self.mode is CaptureMode.FD:
            spares = self._spares = self._sweep(task, run).spares
        try:
            with state, capture(self.mode, run.log(stage), task.attempt, hostname(), spares):
                return fn(*args)
        except pruning.Pruned:
            raise
        except KeyboardInterrupt as exc:
            if self.mode is CaptureMode.TEE:  # the driver's own process: it may be Ctrl-C
                raise
            raise self._stage_failed(stage, exc, task.attempt) from exc
        except BaseException as exc:  # the worker boundary: whatever user code raises
            raise self._stage_failed(stage, exc, task.attempt) from exc

    def _stage_failed(self, stage: Stage, exc: BaseException, attempt: int) -> _StageFailed:
        """The failure of a stage that raised, explained when the snapshot knows why (a
        name bound only under ``if __name__ == "__main__":``)."""
        failure = Failure.from_exception(stage, exc, attempt)
        snapshot = getattr(self.workflow, "snapshot", None)  # None: pickled by older dagrun
        return _StageFailed(failure.noted(snapshot.explain(exc) if snapshot else None))

    def _sweep(self, task: RunTask, run: RunDir) -> SweepDir:
        """The sweep ``run`` belongs to, as this process sees its folder."""
        experiment = os.path.dirname(run.path) if self._repetitions(task.exp_id) > 1 \
            else run.path
        return SweepDir(os.path.dirname(experiment))

    def _repetitions(self, exp_id: int) -> int:
        """The experiment's repetitions, as the scheduler planned them."""
        workflow = self.workflow
        return repetitions_of(workflow.cfg(exp_id), workflow.basecfg.get("repetitions", 1))

    def _persist(self, stage: Stage, task: RunTask, run: RunDir, via: Attempt, value: Any,
                 fit_time: float | None, started: float, finished: float,
                 warnings: list[RunWarning],
                 about: tuple[str | None, int | None, str | None]
                 ) -> tuple[bool, dict[str, Any] | None]:
        """Write the stage's artifact, then its marker; returns whether the marker was
        committed (renamed out of the attempt folder: it stood then, so the next stage
        needs no check of its own) and post's scores. ``about``: the run's config digest,
        lease token and code id, as its markers record them."""
        scores = None
        if stage is Stage.POST:
            scores = _metrics(value, fit_time, task.attempt, self._repetitions(task.exp_id),
                              warnings)
            via.write_json(run.artifact(stage), scores, indent=None)
        elif not _save_output(run, via, stage, value, warnings):
            return False, None
        digest, token, code_id = about
        via.write_bytes(run.marker(stage), Marker.content_now(
            stage, started, finished, task.attempt, self.fingerprints.get(stage._value_),
            digest, token, code_id))
        return True, scores
