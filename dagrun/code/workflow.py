"""The user's code: load a workflow file, and the pickled workflow kept for resume and workers.

A ``Workflow`` is what a worker needs to run any run of the sweep: the three stage functions
and the original cfgs (stage functions receive the original objects, not their JSON view;
the cfgs always come from here, never from re-running the file). It is pickled once into
``OUT/.dagrun/workflow.pkl``.

When the sweep comes from a file (``dagrun execute wf.py``, or ``python wf.py`` calling
``run_experiments``), that file and the user's own modules are copied at plan time (see
``dagrun.code.snapshot``) and the stage functions are pickled as references into that copy:
loading the workflow imports the copy first, as a real module, in whichever process loads
it. Without a file (a notebook, ``python -`` from stdin) functions are pickled by value.

``workflow.pkl`` therefore has two layers: plain data naming the snapshot (readable before
any user class exists), then the cloudpickled ``Workflow``.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from dagrun.code import mainref
from dagrun.code import snapshot as snapshots
from dagrun.code.safety import check_pickle
from dagrun.code.snapshot import Snapshot
from dagrun.config import SEARCH_KEY
from dagrun.disk.layout import Stage
from dagrun.errors import ConfigError, UsageError
from dagrun.record import field, record, replace

_FORMAT = "dagrun-workflow-2"  # the first item of a two-layer workflow.pkl

# Where the modules of on-disk format 1 (dagrun 0.1.0, one flat package) live now: a
# workflow.pkl written then names dagrun's own classes (Workflow, FunctionRef, Snapshot, a
# Stage) by these paths. See dagrun.disk.formatversion.
MOVED_MODULES = {
    **{f"dagrun.{name}": f"dagrun.disk.{name}" for name in (
        "layout", "atomic", "lock", "planstore", "runs", "records", "leases", "unrecorded",
        "plan", "codecheck", "provenance")},
    **{f"dagrun.{name}": f"dagrun.code.{name}" for name in (
        "workflow", "snapshot", "fingerprint", "digest", "safety")},
    **{f"dagrun.{name}": f"dagrun.run.{name}" for name in (
        "stages", "capture", "proctree", "signals", "gpus", "failures", "summary")},
    "dagrun.reduce": "dagrun.results.reduce", "dagrun.results": "dagrun.results.read",
    "dagrun.columns": "dagrun.results.columns", "dagrun.resultscache":
    "dagrun.results.columnscache", "dagrun.resultstable": "dagrun.results.table",
    "dagrun.resultsformat": "dagrun.results.formats", "dagrun.htmlreport":
    "dagrun.results.html", "dagrun.htmlreport.data": "dagrun.results.html.data",
    "dagrun.report": "dagrun.status",
}


class _Unpickler(pickle.Unpickler):
    """An unpickler that finds dagrun's classes where they live now, also when a pickle
    names them by the paths of an older on-disk format (``MOVED_MODULES``)."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(MOVED_MODULES.get(module, module), name)


def _loads(data: bytes) -> Any:
    return _Unpickler(io.BytesIO(data)).load()


@record(frozen=True)
class FunctionRef:
    """A stage function of the workflow file, pickled by name: resolved in the imported
    snapshot (``module.qualname``) by whichever process loads the workflow."""

    qualname: str

    def resolve(self, module: ModuleType | None, source: str) -> Callable[..., Any]:
        obj: Any = module
        for part in self.qualname.split("."):
            obj = getattr(obj, part, None)
        if not callable(obj):
            raise UsageError(
                f"{os.path.basename(source)}: {self.qualname} is not defined at module level "
                "of the file (a function defined inside `if __name__ == \"__main__\":` does "
                "not exist where stages run); define it at module level")
        return obj  # type: ignore[no-any-return]


@record(frozen=True)
class Addition:
    """An experiment planned after a process loaded the workflow (a search's trial asked
    while the sweep runs): what that process needs to run it. A run of such an experiment
    carries it (``RunTask.adds``), so workers started before it was planned learn it."""

    exp_id: int
    cfg: dict[str, Any]  # as ``Workflow.cfgs`` holds it (big values as references)
    digest: str
    stored_values: bool = False  # ``cfg`` holds references into the values store


@record
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
    digests: list[str] = field(default_factory=list)  # content digest of each cfg
    snapshot: Snapshot | None = None  # the copy of the code, when the sweep has a file
    ids: list[int] = field(default_factory=list)  # the experiment id of each cfg
    stored_values: bool = False  # some cfgs hold ValueRefs (dagrun.code.values)
    code_id: str | None = None  # the version of the code (dagrun.disk.provenance)

    def position(self, exp_id: int) -> int:
        """Where experiment ``exp_id``'s cfg is in ``cfgs`` (ids are matched by content, not
        positions; a workflow pickled by an older dagrun has no ``ids``: they were)."""
        if not getattr(self, "ids", None):
            return exp_id
        try:
            return self._positions()[exp_id]
        except KeyError:
            raise UsageError(f"experiment {exp_id} is not in this sweep's plan (its cfgs "
                             "changed since this process loaded the workflow)") from None

    def _positions(self) -> dict[int, int]:
        """Experiment id -> its position in ``cfgs``; made once, kept up to date by
        ``learn``."""
        where: dict[int, int] | None = self.__dict__.get("_where")
        if where is None:
            where = self.__dict__["_where"] = {i: p for p, i in enumerate(self.ids)}
        return where

    def learn(self, added: Addition) -> None:
        """Know experiment ``added.exp_id`` from now on (its cfg replaces an earlier one
        of the same id: the driver's plan is the truth). Cheap when already known."""
        if not getattr(self, "ids", None):  # an older workflow: ids were positions
            self.ids = list(range(len(self.cfgs)))
        digests = list(getattr(self, "digests", None) or ())
        if len(digests) != len(self.cfgs):
            self.digests = [*digests, *[""] * len(self.cfgs)][:len(self.cfgs)]
        where = self._positions()
        position = where.get(added.exp_id)
        if position is None:
            where[added.exp_id] = len(self.cfgs)
            self.ids.append(added.exp_id)
            self.cfgs.append(added.cfg)
            self.digests.append(added.digest)
        elif self.digests[position] != added.digest:
            self.cfgs[position] = added.cfg
            self.digests[position] = added.digest
        self.stored_values = self.stored_values or added.stored_values

    def cfg(self, exp_id: int) -> dict[str, Any]:
        """The original cfg of experiment ``exp_id``."""
        return self.cfgs[self.position(exp_id)]

    def config_digest(self, exp_id: int) -> str | None:
        """The content digest of cfg ``exp_id``, as the driver computed it (markers keep it;
        ``None`` for a workflow pickled by an older dagrun)."""
        digests = getattr(self, "digests", None)
        if not digests:
            return None
        position = self.position(exp_id)
        return digests[position] if position < len(digests) else None

    def function(self, stage: Stage) -> Callable[..., Any]:
        fn: Callable[..., Any] = getattr(self, stage.value)
        return fn

    def run_cfg(self, exp_id: int, rep: int, run_path: str) -> dict[str, Any]:
        """The cfg a stage function receives: the original plus the three reserved keys."""
        return {**self.cfg(exp_id), "experiment_id": exp_id, "run_id": rep,
                "out_path": run_path}

    def dumps(self) -> bytes:
        """``workflow.pkl``'s bytes: the snapshot's description, then the pickled workflow
        with the workflow file's functions as references into the snapshot."""
        stored = self._with_refs() if self.snapshot is not None else self
        try:
            inner = mainref.dumps(stored)
        except Exception as exc:  # cloudpickle raises many types for unpicklable objects
            raise ConfigError(
                f"the workflow cannot be pickled for workers and resume: {exc} "
                "(keep cfg values to plain data; build objects in pre)"
            ) from exc
        header = None if self.snapshot is None else self.snapshot.as_dict()
        return pickle.dumps((_FORMAT, header, inner), protocol=pickle.HIGHEST_PROTOCOL)

    def _with_refs(self) -> Workflow:
        """A shallow copy whose stage functions from the workflow file are ``FunctionRef``s."""
        copy = replace(self)
        for stage in Stage:
            ref = self._ref(getattr(self, stage.value))
            if ref is not None:
                setattr(copy, stage.value, ref)
        return copy

    def _ref(self, fn: Any) -> FunctionRef | None:
        snap = self.snapshot
        module_name = getattr(fn, "__module__", None)
        qualname = getattr(fn, "__qualname__", "")
        if snap is None or "<" in qualname:
            return None
        module = sys.modules.get(module_name or "")
        from_file = os.path.abspath(getattr(module, "__file__", "") or "") == snap.source
        if module_name == snap.module or (module_name == "__main__" and from_file):
            return FunctionRef(qualname)
        return None

    @staticmethod
    def load(path: str) -> Workflow:
        """Load ``workflow.pkl`` (after the ownership/permission check); the snapshot is
        found beside it, wherever OUT is mounted."""
        check_pickle(path)
        with open(path, "rb") as f:
            data = f.read()
        try:
            return Workflow.loads(data, state_dir=os.path.dirname(os.path.abspath(path)))
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
                AttributeError) as exc:
            raise UsageError(
                f"{path} is damaged ({type(exc).__name__}: {exc}); run `dagrun execute "
                "WORKFLOW.py` again to write it anew (finished stages are kept)") from exc

    @staticmethod
    def loads(data: bytes, state_dir: str | None = None) -> Workflow:
        """The workflow of ``data``: imports its snapshot first (``state_dir`` = the
        ``OUT/.dagrun`` this process sees, when it may differ from the driver's)."""
        outer = _loads(data)
        snap = None
        module: ModuleType | None = None
        if isinstance(outer, tuple) and len(outer) == 3 and outer[0] == _FORMAT:
            _, header, inner = outer
            if header is not None:
                snap = Snapshot.from_dict(header)
                if state_dir is not None:
                    snap = snap.relocated(state_dir)
                module = snapshots.activate(snap)
            outer = _loads(inner)
        wf = outer
        if not isinstance(wf, Workflow):
            raise UsageError("workflow.pkl does not hold a dagrun workflow")
        wf.activate()
        if snap is not None:
            wf.snapshot = snap
            for stage in Stage:
                fn = getattr(wf, stage.value)
                if isinstance(fn, FunctionRef):
                    setattr(wf, stage.value, fn.resolve(module, snap.source))
        return wf

    def activate(self) -> None:
        """Make the workflow folder importable (for modules it imports by reference)."""
        for p in reversed(self.sys_path):
            if p not in sys.path:
                sys.path.insert(0, p)


def import_workflow_file(path: str) -> ModuleType:
    """Import a workflow file as a module (``dagrun_workflow_<stem>``) without running its
    ``__main__`` block. Every way it can fail becomes a one-line ``UsageError``."""
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
    return snapshots.import_file(path, snapshots.module_name(path), driver=True)


def workflow_from_file(path: str) -> tuple[dict[str, Any], list[Any]]:
    """``(basecfg, cfgs)`` defined by a workflow file.

    ``pre``/``fit``/``post`` may be basecfg entries or module-level functions.
    """
    module = import_workflow_file(path)
    base = os.path.basename(path)
    if not hasattr(module, "basecfg"):
        raise UsageError(f"{base} defines no 'basecfg' (a dict with at least 'out_path')")
    basecfg = module.basecfg
    if not isinstance(basecfg, dict):
        raise UsageError(f"{base}: basecfg must be a dict, got {type(basecfg).__name__}")
    basecfg = dict(basecfg)
    search = basecfg.get(SEARCH_KEY)
    if isinstance(search, dict):  # a search: the space instead of (or beside) cfgs
        if not hasattr(module, "space") and "space" not in search:
            raise UsageError(f"{base} has basecfg['search'] but defines no 'space' (a dict "
                             "of dagrun.Float/Int/Categorical, or a function space(trial))")
        basecfg[SEARCH_KEY] = {"space": getattr(module, "space", None), **search}
    elif not hasattr(module, "cfgs"):
        raise UsageError(f"{base} defines no 'cfgs' (a list of config dicts)")
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
    return basecfg, getattr(module, "cfgs", [])


def sys_path_for(source: str | None) -> list[str]:
    return [os.path.dirname(os.path.abspath(source))] if source else []
