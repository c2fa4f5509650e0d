"""The stage runner: executes one run from its first stage that is not done.

This is the only code that calls the user's functions, and it is shared by every backend.
It loads the output of the last done stage from disk, runs the remaining stages, writes each
artifact and then its marker (atomically), and turns anything that goes wrong into a
``Failure`` record instead of an exception: the sweep goes on.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from dagrun import atomic
from dagrun.capture import CaptureMode, capture
from dagrun.config import json_view
from dagrun.errors import FailureKind, UnsafePickleError
from dagrun.layout import CONFIG, RunDir, Stage, error_name
from dagrun.records import Failure, Marker, hostname, read_scores
from dagrun.safety import check_pickle
from dagrun.workflow import Workflow


@dataclass(frozen=True)
class RunTask:
    """One run to execute: which experiment and repetition, where, which attempt."""

    exp_id: int
    rep: int
    path: str
    attempt: int = 1
    reason: str = ""

    @property
    def label(self) -> str:
        return f"{self.exp_id}/{self.rep}"


@dataclass(frozen=True)
class RunOutcome:
    """What happened to a run; ``failure`` is ``None`` when every stage is done."""

    task: RunTask
    failure: Failure | None = None
    ran: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    scores: dict[str, Any] | None = None  # what post.json now holds, when post ran just now

    @property
    def ok(self) -> bool:
        return self.failure is None


class _StageFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class _InputRefused(Exception):
    """The input of ``stage`` is a pickle that may not be loaded (see ``dagrun.safety``)."""

    def __init__(self, stage: Stage, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass
class _Resume:
    """Where a run picks up: the first stage to run and the value it takes as input."""

    start: Stage | None  # None: the run is complete
    value: Any = None
    fit_time: float | None = None
    warnings: list[str] = field(default_factory=list)
    names: frozenset[str] = frozenset()  # what the run folder held before the attempt


def _load_pickle(path: str) -> Any:
    check_pickle(path)
    with open(path, "rb") as f:
        return pickle.load(f)


def find_resume_point(run: RunDir) -> _Resume:
    """Decide from the disk where the run continues, loading the input it needs.

    A marker whose artifact cannot be read (missing, truncated, corrupt) is dropped with a
    warning and its stage recomputed. A refused pickle (unsafe permissions) is not dropped:
    ``_InputRefused`` propagates and the run is recorded as failed in the stage that needed
    it (so ``dagrun status`` lists it as failed, not as incomplete).
    """
    try:
        names = set(os.listdir(run.path))
    except FileNotFoundError:
        names = set()
    res = _Resume(Stage.PRE, names=frozenset(names))
    if "post.done" in names:
        if read_scores(run) is not None:
            return _Resume(None)
        res.warnings.append(f"{run.artifact(Stage.POST)} cannot be read; recomputing post")
        atomic.remove(run.marker(Stage.POST))
    for stage, nxt in ((Stage.FIT, Stage.POST), (Stage.PRE, Stage.FIT)):
        if f"{stage.value}.done" not in names:
            continue
        marker = Marker.read(run, stage)
        try:
            if marker is None:
                raise ValueError(f"{run.marker(stage)} is unreadable")
            value = _load_pickle(run.artifact(stage))
        except UnsafePickleError as exc:
            raise _InputRefused(nxt, str(exc)) from exc
        except Exception as exc:  # any unpickling error means: not usable
            res.warnings.append(
                f"{run.artifact(stage)} cannot be loaded ({type(exc).__name__}: {exc}); "
                f"recomputing {stage.value}"
            )
            atomic.remove(run.marker(stage))
            continue
        fit_time = marker.seconds if stage is Stage.FIT else None
        return _Resume(nxt, value, fit_time, res.warnings, res.names)
    return res


def _save_output(run: RunDir, stage: Stage, value: Any, warnings: list[str]) -> bool:
    """Pickle a pre/fit output; returns False (with a warning) when it cannot be pickled."""
    try:
        data = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # cloudpickle raises many types for unpicklable objects
        warnings.append(
            f"{stage.value} output of {run.path} cannot be pickled ({type(exc).__name__}: "
            f"{exc}); {stage.value} is not checkpointed and reruns on resume"
        )
        return False
    atomic.write_bytes(run.artifact(stage), data)
    return True


def _metrics(value: Any, fit_time: float | None, attempt: int, warnings: list[str]) -> dict[
    str, Any
]:
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
    if "fit_time" in value:
        warnings.append("post returned 'fit_time', which dagrun sets itself; it was replaced")
    scores = {k: json_view(v) for k, v in value.items()}
    scores["fit_time"] = fit_time
    return scores


class StageRunner:
    """Runs runs of one workflow; one instance per process, reused across runs."""

    def __init__(self, workflow: Workflow, mode: CaptureMode,
                 fingerprints: dict[str, str] | None = None) -> None:
        self.workflow = workflow
        self.mode = mode
        self.fingerprints = fingerprints or {}
        self.on_stage_start: Callable[[RunTask, Stage], None] | None = None

    def run(self, task: RunTask) -> RunOutcome:
        """Execute ``task`` from its first stage not done; never raises for user errors."""
        run = RunDir(task.path)
        warnings: list[str] = []
        ran: list[str] = []
        scores: dict[str, Any] | None = None
        try:
            atomic.makedirs(run.path)
            resume = find_resume_point(run)
            warnings.extend(resume.warnings)
            if resume.start is not None:
                if CONFIG not in resume.names:
                    self._write_config(task, run)
                scores = self._run_from(task, run, resume.start, resume, warnings, ran)
        except _StageFailed as failed:
            return self._failed(task, run, failed.failure, ran, warnings)
        except _InputRefused as exc:
            failure = Failure.make(exc.stage, FailureKind.ENGINE, str(exc), task.attempt)
            return self._failed(task, run, failure, ran, warnings)
        except UnsafePickleError as exc:
            failure = Failure.make(Stage.PRE, FailureKind.ENGINE, str(exc), task.attempt)
            return self._failed(task, run, failure, ran, warnings)
        except OSError as exc:
            failure = Failure.from_exception(Stage.PRE, exc, task.attempt, FailureKind.ENGINE)
            return self._failed(task, run, failure, ran, warnings)
        return RunOutcome(task, None, tuple(ran), tuple(warnings), scores)

    def _failed(self, task: RunTask, run: RunDir, failure: Failure, ran: list[str],
                warnings: list[str]) -> RunOutcome:
        with contextlib.suppress(OSError):  # e.g. disk full: the driver still reports it
            failure.write(run)
        return RunOutcome(task, failure, tuple(ran), tuple(warnings))

    def _write_config(self, task: RunTask, run: RunDir) -> None:
        """Write ``config.json``: the JSON view of the cfg the stages receive."""
        cfg = self.workflow.run_cfg(task.exp_id, task.rep, run.path)
        atomic.write_json(run.config, json_view(cfg))

    def _run_from(self, task: RunTask, run: RunDir, start: Stage, resume: _Resume,
                  warnings: list[str], ran: list[str]) -> dict[str, Any] | None:
        """Run ``start`` and the stages after it; returns the scores post wrote."""
        cfg = self.workflow.run_cfg(task.exp_id, task.rep, run.path)
        value, fit_time = resume.value, resume.fit_time
        scores = None
        for stage in start.and_after():
            if self.on_stage_start is not None:
                self.on_stage_start(task, stage)
            started = time.time()
            value = self._call(stage, task, run, cfg, value)
            finished = time.time()
            ran.append(stage.value)
            if stage is Stage.FIT:
                fit_time = finished - started
            try:
                scores = self._persist(stage, task, run, value, fit_time, started, finished,
                                       warnings)
                if error_name(stage) in resume.names:  # a failure record of an earlier attempt
                    atomic.remove(run.error(stage))
            except OSError as exc:
                raise _StageFailed(Failure.from_exception(
                    stage, exc, task.attempt, FailureKind.ENGINE)) from exc
        return scores

    def _call(self, stage: Stage, task: RunTask, run: RunDir, cfg: dict[str, Any],
              value: Any) -> Any:
        fn = self.workflow.function(stage)
        args = (cfg,) if stage is Stage.PRE else (cfg, value)
        try:
            with capture(self.mode, run.log(stage), task.attempt, hostname()):
                return fn(*args)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # the worker boundary: whatever user code raises
            raise _StageFailed(Failure.from_exception(stage, exc, task.attempt)) from exc

    def _persist(self, stage: Stage, task: RunTask, run: RunDir, value: Any,
                 fit_time: float | None, started: float, finished: float,
                 warnings: list[str]) -> dict[str, Any] | None:
        """Write the stage's artifact, then its marker; returns post's scores."""
        scores = None
        if stage is Stage.POST:
            scores = _metrics(value, fit_time, task.attempt, warnings)
            atomic.write_json(run.artifact(stage), scores, indent=None)
        elif not _save_output(run, stage, value, warnings):
            return None
        Marker.now(stage, started, finished, task.attempt,
                   self.fingerprints.get(stage.value)).write(run)
        return scores
