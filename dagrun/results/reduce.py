"""``OUT/results.jsonl``: one line per experiment whose repetitions are all done.

Lines are appended as experiments complete (so a long sweep can be peeked at); the final
reduce rewrites the whole file atomically from the runs on disk, sorted by experiment id,
without duplicates. Every line has the original tool's format for any number of repetitions
(``aggregate``): each metric a list of its repetitions' values, plus ``mean_M``, ``std_M`` and
``n_M`` over its finite values. Non-finite values are written as ``null`` (strict JSON).

Each rewrite also records, in ``OUT/.dagrun/results-index.json``, the format of its lines
(``trust.LINE_FORMAT``), which config digest and repetitions every line was reduced from and
the size and mtime of the file it wrote. A planner may trust a line (and skip reading its
runs) only while that record describes the file on disk, is of the current line format and
names the plan's digest for that experiment: the lines themselves keep the fixed format of
the contract. An experiment's runs count only when their post marker was written for the
experiment's config (``Marker.matches``).

A rewrite copies the current line of each experiment whose runs the planner verified
against it and which ran nothing since (retrying one run of a 100,000-run sweep reads one
post.json, not 100,000); lines of an older format are never verified, so the first rewrite
after an upgrade recomputes every line from the runs. It keeps the columns of the file it
wrote for ``dagrun results`` (``dagrun.results.columnscache``).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from dagrun.disk import atomic, jsontext, trust
from dagrun.disk.layout import Stage, SweepDir
from dagrun.disk.records import Marker, read_scores
from dagrun.disk.runs import Experiment
from dagrun.errors import DagrunWarning
from dagrun.results import columnscache
from dagrun.results.columns import stats


def aggregate(per_rep: list[dict[str, Any]]) -> dict[str, Any]:
    """Scores of an experiment's repetitions (any number, also one) as results.jsonl holds
    them: every metric as the list of its values per repetition, plus, for each numeric
    metric, ``mean_M``/``std_M`` (numpy, ddof=0) over the values that are finite numbers and
    ``n_M``, how many those are (``dagrun.results.columns.stats``). A value that is not a
    finite number (NaN, inf, null) stays in the list (as null) and does not enter."""
    names: Mapping[str, Any]
    if len(per_rep) == 1:  # (one repetition, the usual sweep's: each name's list of one)
        names = per_rep[0]
        out: dict[str, Any] = {name: [value] for name, value in names.items()}
    else:
        names = {}
        for scores in per_rep:
            names.update(dict.fromkeys(scores))
        out = {name: [scores.get(name) for scores in per_rep] for name in names}
    for name in names:
        found = stats(out[name])
        if found is None:
            continue
        mean, std, count = f"mean_{name}", f"std_{name}", f"n_{name}"
        # (a name taken by a metric is not written over: post refuses such names; an
        # older run may have one)
        if mean not in names:
            out[mean] = found[0]
        if std not in names:
            out[std] = found[1]
        if count not in names:
            out[count] = found[2]
    return out


def experiment_line(sweep: SweepDir, exp: Experiment,
                    known: dict[int, dict[str, Any]] | None = None,
                    checked: bool = True) -> dict[str, Any] | None:
    """The results line of one experiment, or ``None`` while a repetition is not done.

    ``known`` maps repetitions to the scores their run has just written to post.json (the
    run reported them with its outcome); the others are read from disk. Unless ``checked``
    (the planner has just verified them), a run read from disk counts only when its post
    marker was written for this experiment's config.
    """
    line = _line(sweep, exp, known, checked)
    return None if line is None else dict(atomic.strict_json(line))


def experiment_entry(sweep: SweepDir, exp: Experiment,
                     known: dict[int, dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
    """``experiment_line`` (``checked``) and its text in results.jsonl, or ``None``. A
    line that encodes as strict JSON has no non-finite float (the encoder refuses every
    one, in tuples too), so it is already what ``strict_json`` would make of it: only a
    line the encoder refuses is copied by ``strict_json`` first."""
    line = _line(sweep, exp, known, True)
    if line is None:
        return None
    try:
        return line, _dumps(line)
    except ValueError:
        line = dict(atomic.strict_json(line))
        return line, _dumps(line)


def _line(sweep: SweepDir, exp: Experiment, known: dict[int, dict[str, Any]] | None,
          checked: bool) -> dict[str, Any] | None:
    """``experiment_line`` before ``strict_json``."""
    per_rep = []
    for rep in range(exp.repetitions):
        if known and rep in known:  # (a run that just reported: its folder is not looked at)
            per_rep.append(known[rep])
            continue
        run = sweep.run_dir(exp.exp_id, rep, exp.repetitions)
        if checked:
            if not os.path.exists(run.marker(Stage.POST)):
                return None
        else:
            marker = Marker.read(run, Stage.POST)
            if marker is None or not exp.holds(marker.config):
                return None
        scores = read_scores(run)
        if scores is None:
            warnings.warn(f"{run.artifact(Stage.POST)} cannot be read: experiment {exp.exp_id} "
                          "is left out of results.jsonl until an execute recomputes it",
                          UserWarning, stacklevel=3)
            return None
        per_rep.append(scores)
    return {**exp.config, "experiment_id": exp.exp_id,
            "out_path": sweep.experiment_path(exp.exp_id), "scores": aggregate(per_rep)}


def _dumps(line: dict[str, Any]) -> str:
    return jsontext.compact_strict(line) + "\n"


class Fresh(dict[int, dict[str, Any]]):
    """The results lines computed during one execution, by experiment id; ``texts``: each
    line's text as it was appended (the final rewrite writes it again, not re-encoded)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[int, str] = {}


class Appender:
    """Appends lines to ``results.jsonl`` as experiments complete (a peek for long sweeps;
    the final rewrite replaces the file). One descriptor for the whole execution; lines that
    complete within ``EVERY`` seconds of the last write are gathered and written together
    (at most ``EVERY`` s late, one ``write`` of whole lines, so concurrent readers never see
    half a line): one system call per burst of experiments instead of one per experiment."""

    EVERY = 0.2  # seconds a completed line may wait for others before it is written
    MOST = 1 << 16  # bytes gathered at most before they are written

    def __init__(self, sweep: SweepDir) -> None:
        self.path = sweep.results
        self._fd: int | None = None
        self._failed = False
        self._pending: list[bytes] = []
        self._size = 0
        self._written_at = 0.0

    def append(self, text: str) -> None:
        """Queue one line (its text, as ``_dumps`` writes it); written at once unless a
        write happened less than ``EVERY`` s ago (then by the next ``append``,
        ``flush_due`` or ``close``)."""
        if self._failed:
            return
        data = text.encode()
        self._pending.append(data)
        self._size += len(data)
        if self._size >= self.MOST:
            self.flush()
        else:
            self.flush_due()

    def flush_due(self) -> None:
        """Write the gathered lines when ``EVERY`` s have passed since the last write."""
        if self._pending and time.monotonic() - self._written_at >= self.EVERY:
            self.flush()

    def flush(self) -> None:
        """Write the gathered lines now; a write that fails (a full disk) ends the
        appending, not the sweep: the final rewrite decides the file, and says so when it
        fails too."""
        pending, self._pending, self._size = self._pending, [], 0
        if self._failed or not pending:
            return
        self._written_at = time.monotonic()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.write(self._fd, b"".join(pending))
        except OSError:
            self._failed = True
            self.close()

    def close(self) -> None:
        """Write what is gathered, then close the descriptor."""
        if self._pending and not self._failed:
            self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def rewrite(sweep: SweepDir, experiments: Iterable[Experiment],
            known: dict[int, dict[str, Any]] | None = None,
            checked: Collection[int] = (), reuse: Collection[int] = (),
            texts: Mapping[int, str] | None = None) -> int:
    """Rebuild ``results.jsonl`` from disk, and its record; returns the number of lines.

    ``known`` holds lines computed from the disk moments ago (during this execution); they
    are reused instead of reading those runs' metrics again. ``checked``: ids whose runs the
    planner has just verified against their config (their markers are not read again).
    ``reuse``: ids whose current line stands as it is (every run verified by the planner
    against that line, none run since): their line is copied, not recomputed from 100,000
    post.json files when one run of a large sweep was retried. ``texts``: the text (with
    its newline) of lines of ``known`` as they were appended, not encoded again.
    """
    known, texts = known or {}, texts or {}
    kept = current_lines(sweep, reuse)
    lines: list[str] = []
    rows: dict[int, dict[str, Any] | None] = {}  # the lines decoded, where known already
    listed: list[Experiment] = []
    for exp in sorted(experiments, key=lambda e: e.exp_id):
        text, row = kept.get(exp.exp_id, (None, None))
        if text is None:
            line = known.get(exp.exp_id)
            if line is not None:
                text = texts.get(exp.exp_id) or _dumps(line)
            else:
                line = experiment_line(sweep, exp, checked=exp.exp_id in checked)
                text = None if line is None else _dumps(line)
        if text is not None:
            lines.append(text)
            rows[exp.exp_id] = row
            listed.append(exp)
    data = "".join(lines).encode("utf-8")
    atomic.write_bytes(sweep.results, data)
    trust.write_record(sweep, listed)
    # new lines are decoded from their text, not taken as built: their dicts may hold numpy
    # floats or tuples, and the kept columns must be what a reader decodes
    # (as one JSON array: one call, not one per line)
    new = iter(json.loads("[" + ",".join(text for row, text in zip(rows.values(), lines,
                                                                  strict=True)
                                         if row is None) + "]"))
    decoded = {i: row if row is not None else next(new) for i, row in rows.items()}
    try:
        columnscache.keep(sweep, data, decoded, {e.exp_id: e.repetitions for e in experiments})
    except Exception as exc:  # a shortcut for readers: it never fails the writer
        warnings.warn(f"the columns of {sweep.results} were not kept ({type(exc).__name__}: "
                      f"{exc}); dagrun results decodes the file instead", DagrunWarning,
                      stacklevel=2)
    return len(lines)


def current_lines(sweep: SweepDir, ids: Collection[int]
                  ) -> dict[int, tuple[str, dict[str, Any]]]:
    """The lines of ``ids`` in results.jsonl as they are (with their newline) and decoded,
    those that parse, hold scores and name this sweep's folder (a moved sweep's lines are
    recomputed)."""
    if not ids:
        return {}
    try:
        with open(sweep.results, encoding="utf-8") as f:
            lines = columnscache.split_lines(f.read())
    except (OSError, UnicodeDecodeError):
        return {}
    wanted = set(ids)
    out = {}
    for text, row in lines:
        exp_id = columnscache.line_id(row)
        if (exp_id is not None and exp_id in wanted
                and row.get("out_path") == sweep.experiment_path(exp_id)):
            out[exp_id] = (text + "\n", row)
    return out
