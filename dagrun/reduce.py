"""``OUT/results.jsonl``: one line per experiment whose repetitions are all done.

Lines are appended as experiments complete (so a long sweep can be peeked at); the final
reduce rewrites the whole file atomically from the runs on disk, sorted by experiment id,
without duplicates. Non-finite metrics are written as ``null`` (strict JSON).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from typing import Any

from dagrun import atomic
from dagrun.layout import Stage, SweepDir
from dagrun.plan import Experiment, run_dirs
from dagrun.records import read_scores


def _is_numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def aggregate(per_rep: list[dict[str, Any]]) -> dict[str, Any]:
    """Scores of several repetitions: lists per metric plus ``mean_M``/``std_M`` (ddof=0)."""
    import numpy as np  # imported here: most commands never aggregate, and numpy is slow to load

    names: dict[str, None] = {}
    for scores in per_rep:
        names.update(dict.fromkeys(scores))
    out: dict[str, Any] = {}
    for name in names:
        values = [scores.get(name) for scores in per_rep]
        out[name] = values
        if all(_is_numeric(v) for v in values):
            arr = np.asarray(values, dtype=float)
            out[f"mean_{name}"] = float(np.mean(arr))
            out[f"std_{name}"] = float(np.std(arr))
    return out


def experiment_line(sweep: SweepDir, exp: Experiment,
                    known: dict[int, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The results line of one experiment, or ``None`` while a repetition is not done.

    ``known`` maps repetitions to the scores their run has just written to post.json (the
    run reported them with its outcome); the others are read from disk.
    """
    per_rep = []
    for rep, run in run_dirs(sweep, exp):
        if known and rep in known:
            per_rep.append(known[rep])
            continue
        if not os.path.exists(run.marker(Stage.POST)):
            return None
        scores = read_scores(run)
        if scores is None:
            warnings.warn(f"{run.artifact(Stage.POST)} cannot be read: experiment {exp.exp_id} "
                          "is left out of results.jsonl until an execute recomputes it",
                          UserWarning, stacklevel=2)
            return None
        per_rep.append(scores)
    scores_out = per_rep[0] if exp.repetitions == 1 else aggregate(per_rep)
    line = {**exp.config, "experiment_id": exp.exp_id,
            "out_path": sweep.experiment_path(exp.exp_id), "scores": scores_out}
    return dict(atomic.strict_json(line))


def _dumps(line: dict[str, Any]) -> str:
    return json.dumps(line, allow_nan=False) + "\n"


class Appender:
    """Appends lines to ``results.jsonl`` as experiments complete (a peek for long sweeps;
    the final rewrite replaces the file). One descriptor for the whole execution, and each
    line is a single ``write`` so concurrent readers never see half a line."""

    def __init__(self, sweep: SweepDir) -> None:
        self.path = sweep.results
        self._fd: int | None = None

    def append(self, line: dict[str, Any]) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(self._fd, _dumps(line).encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def rewrite(sweep: SweepDir, experiments: Iterable[Experiment],
            known: dict[int, dict[str, Any]] | None = None) -> int:
    """Rebuild ``results.jsonl`` from disk; returns the number of lines written.

    ``known`` holds lines computed from the disk moments ago (during this execution); they
    are reused instead of reading those runs' metrics again.
    """
    known = known or {}
    lines = []
    for exp in sorted(experiments, key=lambda e: e.exp_id):
        line = known.get(exp.exp_id) or experiment_line(sweep, exp)
        if line is not None:
            lines.append(_dumps(line))
    atomic.write_text(sweep.results, "".join(lines))
    return len(lines)


_ids_cache: dict[tuple[str, int, int], list[int] | None] = {}


def _line_ids(sweep: SweepDir) -> list[int] | None:
    """The experiment ids of ``results.jsonl`` in file order; ``None`` if it is unreadable.
    Cached by (path, mtime, size): an execution asks twice, and parsing is its largest cost
    when nothing is left to run."""
    try:
        st = os.stat(sweep.results)
    except OSError:
        return None
    key = (sweep.results, st.st_mtime_ns, st.st_size)
    if key not in _ids_cache:
        _ids_cache.clear()
        try:
            with open(sweep.results, encoding="utf-8") as f:
                lines = f.read().rstrip("\n")
            # one decode call for the whole file (a raw newline only ever ends a line)
            rows = json.loads(f"[{lines.replace(chr(10), ',')}]")
            _ids_cache[key] = [int(row["experiment_id"]) for row in rows]
        except (OSError, ValueError, KeyError, TypeError):
            _ids_cache[key] = None
    return _ids_cache[key]


def listed_ids(sweep: SweepDir) -> set[int]:
    """Ids that ``results.jsonl`` has a line for (empty when it is missing or unreadable)."""
    return set(_line_ids(sweep) or ())


def lists_exactly(sweep: SweepDir, exp_ids: Iterable[int]) -> bool:
    """Whether ``results.jsonl`` is well-formed, sorted, and has one line per id, no other."""
    return _line_ids(sweep) == sorted(exp_ids)
