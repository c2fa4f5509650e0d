"""The Python API: ``run_experiments``, ``read_results`` and ``resume``.

The engine (``dagrun.scheduler`` and the backends it imports) is imported when a sweep
starts, not with this module: a workflow file's ``from dagrun import run_experiments`` is
executed again in every worker process that loads the file's stage functions, and a worker
never plans a sweep (~20 ms of every worker's start).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dagrun.code.snapshot import check_not_importing
from dagrun.code.workflow import Workflow
from dagrun.config import SEARCH_KEY
from dagrun.disk.layout import SweepDir
from dagrun.disk.planstore import require_sweep
from dagrun.errors import ConfigError, UsageError
from dagrun.run.summary import Summary

if TYPE_CHECKING:
    import pandas


def run_experiments(basecfg: Mapping[str, Any],
                    cfgs: Sequence[Mapping[str, Any]] | None = None, *,
                    space: Any = None, rerun_changed: bool = False,
                    dry_run: bool = False) -> Summary:
    """Run every (experiment, repetition) of ``cfgs`` that is not done yet, then reduce.

    Returns a ``Summary`` (done / skipped / failed counts, out path). A failing run never
    raises; a bad ``basecfg``/``cfgs`` raises ``ConfigError`` before any run starts. With
    basecfg ``search``, ``space`` is searched (``dagrun.optimize``; ``cfgs``, if any, are
    its first trials).
    """
    check_not_importing()  # a workflow file being imported does not start a sweep
    from dagrun.scheduler import Options, execute

    options = Options(dry_run=dry_run, rerun_changed=rerun_changed)
    if isinstance(basecfg, Mapping) and basecfg.get(SEARCH_KEY) is not None:
        from dagrun.optimize import run_search

        return run_search(basecfg, cfgs or (), space, options)
    if cfgs is None:
        raise ConfigError("run_experiments needs cfgs (a list of config dicts), or basecfg "
                          "['search'] and a space")
    return execute(basecfg, cfgs, options)


def stored_workflow(out_path: str | os.PathLike[str]) -> Workflow:
    """The workflow a sweep was last executed with (for ``resume``)."""
    sweep = require_sweep(os.fspath(out_path))
    if not os.path.isfile(sweep.workflow):
        raise UsageError(f"{sweep.path} keeps no pickled workflow (it could not be pickled); "
                         "run `dagrun execute WORKFLOW.py` again instead")
    return Workflow.load(sweep.workflow)


def resume(out_path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None,
           *, rerun_changed: bool = False, dry_run: bool = False) -> Summary:
    """Continue a sweep from what ``out_path`` stores; no workflow file needed."""
    from dagrun.scheduler import Options, execute

    wf = stored_workflow(out_path)
    basecfg = {**wf.basecfg, "pre": wf.pre, "fit": wf.fit, "post": wf.post,
               "out_path": os.fspath(out_path), **(overrides or {})}
    stored = getattr(wf, "fingerprints", None) or {}  # absent in older workflow.pkl files
    known = {k: v for k, v in stored.items() if k not in (overrides or {})}
    if basecfg.get(SEARCH_KEY) is not None:  # the study goes on from the disk
        from dagrun.optimize import run_search

        return run_search(basecfg, (), None, Options(
            dry_run=dry_run, rerun_changed=rerun_changed, source=wf.source,
            fingerprints=known or None, snapshot=wf.snapshot))
    return execute(basecfg, wf.cfgs, Options(dry_run=dry_run, rerun_changed=rerun_changed,
                                             source=wf.source, fingerprints=known or None,
                                             snapshot=wf.snapshot,
                                             digests=getattr(wf, "digests", None) or None))


def read_results(out_path: str | os.PathLike[str]) -> pandas.DataFrame:
    """``OUT/results.jsonl`` as a flat pandas DataFrame, one row per complete experiment,
    as ``pandas.json_normalize`` flattens it: config keys, ``experiment_id``, ``out_path`` and
    ``scores.M`` (the list of the repetitions' values), ``scores.mean_M``, ``scores.std_M``
    and ``scores.n_M`` per numeric metric. Lines an older dagrun wrote (one repetition's
    values alone, a mean of null because one repetition was NaN) read in the current format,
    so their values are the ones ``results_table`` shows: the two are views of one row
    definition (``dagrun.results.read.Collected``)."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(
            "read_results needs pandas: pip install 'dagrun[pandas]' (or pip install pandas)"
        ) from exc
    import json

    from dagrun.results.columns import current_scores

    path = SweepDir.at(out_path).results
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}, line {number} is not JSON ({exc}); rebuild it with "
                                 f"`dagrun reduce {os.fspath(out_path)}`") from exc
            if isinstance(row, dict) and isinstance(row.get("scores"), dict):
                row["scores"] = current_scores(row["scores"])
            rows.append(row)
    return pd.json_normalize(rows)
