"""The user's code: load a workflow file, and the pickled workflow kept for resume and workers.

A ``Workflow`` is what a worker needs to run any run of the sweep: the three stage functions
and the original cfgs (stage functions receive the original objects, not their JSON view).
It is cloudpickled once into ``OUT/.dagrun/workflow.pkl``; functions defined in a workflow
file or in ``__main__`` are pickled by value, so workers and ``dagrun resume`` need neither.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import cloudpickle

from dagrun import atomic
from dagrun.errors import ConfigError, UsageError
from dagrun.layout import Stage
from dagrun.safety import check_pickle


@dataclass
class Workflow:
    """Stage functions, original cfgs and the basecfg, as the driver was given them."""

    pre: Callable[..., Any]
    fit: Callable[..., Any]
    post: Callable[..., Any]
    cfgs: list[dict[str, Any]]
    basecfg: dict[str, Any] = field(default_factory=dict)
    sys_path: list[str] = field(default_factory=list)
    source: str | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)  # code of pre/fit/post

    def function(self, stage: Stage) -> Callable[..., Any]:
        fn: Callable[..., Any] = getattr(self, stage.value)
        return fn

    def run_cfg(self, exp_id: int, rep: int, run_path: str) -> dict[str, Any]:
        """The cfg a stage function receives: the original plus the three reserved keys."""
        return {**self.cfgs[exp_id], "experiment_id": exp_id, "run_id": rep,
                "out_path": run_path}

    def dumps(self) -> bytes:
        try:
            return bytes(cloudpickle.dumps(self))
        except Exception as exc:  # cloudpickle raises many types for unpicklable objects
            raise ConfigError(
                f"the workflow cannot be pickled for workers and resume: {exc} "
                "(keep cfg values to plain data; build objects in pre)"
            ) from exc

    def save(self, path: str) -> None:
        atomic.write_bytes(path, self.dumps())

    @staticmethod
    def load(path: str) -> Workflow:
        """Load ``workflow.pkl`` (after the ownership/permission check)."""
        check_pickle(path)
        with open(path, "rb") as f:
            data = f.read()
        return Workflow.loads(data)

    @staticmethod
    def loads(data: bytes) -> Workflow:
        wf = cloudpickle.loads(data)
        if not isinstance(wf, Workflow):
            raise UsageError("workflow.pkl does not hold a dagrun workflow")
        wf.activate()
        return wf

    def activate(self) -> None:
        """Make the workflow folder importable (for modules it imports by reference)."""
        for p in reversed(self.sys_path):
            if p not in sys.path:
                sys.path.insert(0, p)


def _module_name(path: str) -> str:
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    return f"dagrun_workflow_{stem}"


def import_workflow_file(path: str) -> ModuleType:
    """Import a workflow file as a module without running its ``__main__`` block.

    Every way it can fail becomes a one-line ``UsageError``.
    """
    path = os.path.abspath(path)
    if os.path.isdir(path):
        found = sorted(n for n in os.listdir(path) if n.endswith(".py"))[:3]
        hint = f" (e.g. {os.path.join(path, found[0])})" if found else ""
        raise UsageError(f"{path} is a folder; give the workflow file{hint}")
    if not os.path.isfile(path):
        raise UsageError(f"workflow file not found: {path}")
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UsageError(f"syntax error in {exc.filename}, line {exc.lineno}: {exc.msg}") from exc
    except Exception as exc:
        where = _user_frame(exc, path)
        raise UsageError(
            f"{os.path.basename(path)} raised {type(exc).__name__} while loading{where}: {exc}"
        ) from exc
    cloudpickle.register_pickle_by_value(module)
    return module


def _user_frame(exc: BaseException, path: str) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    return f" (line {frames[-1].lineno})" if frames else ""


def workflow_from_file(path: str) -> tuple[dict[str, Any], list[Any]]:
    """``(basecfg, cfgs)`` defined by a workflow file.

    ``pre``/``fit``/``post`` may be basecfg entries or module-level functions.
    """
    module = import_workflow_file(path)
    base = os.path.basename(path)
    if not hasattr(module, "basecfg"):
        raise UsageError(f"{base} defines no 'basecfg' (a dict with at least 'out_path')")
    if not hasattr(module, "cfgs"):
        raise UsageError(f"{base} defines no 'cfgs' (a list of config dicts)")
    basecfg = module.basecfg
    if not isinstance(basecfg, dict):
        raise UsageError(f"{base}: basecfg must be a dict, got {type(basecfg).__name__}")
    basecfg = dict(basecfg)
    for stage in Stage:
        if stage.value in basecfg:
            continue
        if not hasattr(module, stage.value):
            raise UsageError(f"{base} defines no stage {stage.value!r}: define a function "
                             f"{stage.value}(cfg{', ...' if stage is not Stage.PRE else ''}) "
                             f"or set basecfg[{stage.value!r}]")
        value = getattr(module, stage.value)
        if not callable(value):
            raise UsageError(f"{base}: {stage.value} must be a function, got "
                             f"{type(value).__name__}")
        basecfg[stage.value] = value
    return basecfg, module.cfgs


def sys_path_for(source: str | None) -> list[str]:
    return [os.path.dirname(os.path.abspath(source))] if source else []
