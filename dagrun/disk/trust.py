"""What each line of results.jsonl was reduced from, and which lines still stand.

Every rewrite of results.jsonl records, beside it (``OUT/.dagrun/results-index.json``), the
file's size and mtime and, per line, the experiment id and the key (config and repetitions) it
was reduced from. The planner trusts a line only while that record describes the file on
disk, was written in the current format of results lines (``LINE_FORMAT``) and the
experiment's key is unchanged; a results.jsonl appended to or edited by hand, or written by
an older dagrun, is not trusted, and its experiments are read from their runs again (so the
next rewrite recomputes every line in the current format).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from dagrun.disk import atomic
from dagrun.disk.layout import SweepDir
from dagrun.disk.runs import Experiment, scan

# The format of results.jsonl's lines; a record of another format (or none: before 2) is not
# trusted. 1: one repetition's scores as post returned them, no mean_M/std_M; several: lists
# plus mean_M/std_M (null when a value was NaN). 2: every metric a list for any number of
# repetitions, mean_M/std_M/n_M over the finite values.
LINE_FORMAT = 2


def write_record(sweep: SweepDir, listed: list[Experiment]) -> None:
    """Record what each line of the results.jsonl just written was reduced from."""
    st = os.stat(sweep.results)
    record = {"format": LINE_FORMAT, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
              "ids": [e.exp_id for e in listed], "keys": [e.key for e in listed]}
    atomic.write_json(sweep.results_index, record, indent=None)


def read_record(sweep: SweepDir) -> dict[int, str] | None:
    """Experiment id -> the key its results line was reduced from; ``None`` when there is
    no record or it does not describe the results.jsonl on disk (appended to, edited)."""
    data = atomic.read_json_or_none(sweep.results_index)
    try:
        st = os.stat(sweep.results)
    except OSError:
        return None
    if not isinstance(data, dict) or data.get("format") != LINE_FORMAT \
            or data.get("size") != st.st_size or data.get("mtime_ns") != st.st_mtime_ns:
        return None
    try:
        ids, keys = data["ids"], data["keys"]
        if not (all(type(i) is int for i in ids) and all(type(k) is str for k in keys)):
            return None  # not a record this version wrote
        return dict(zip(ids, keys, strict=True))
    except (KeyError, TypeError, ValueError):
        return None


def trusted_ids(sweep: SweepDir, experiments: Iterable[Experiment]) -> set[int]:
    """Ids whose results line was reduced from the config and repetitions they have now."""
    record = read_record(sweep)
    if not record:
        return set()
    return {e.exp_id for e in experiments if record.get(e.exp_id) == e.key}


def verified_ids(sweep: SweepDir, experiments: Sequence[Experiment]) -> list[int]:
    """Experiments whose results line stands as it is: the record says it was reduced from
    their current config and repetitions, and each run's post.json is unchanged since (two
    ``stat`` calls per run, ``runs.scan``'s check). Only those experiments' runs are looked
    at; the planner's ``Plan.standing`` is the same set, taken before the runs ran."""
    trusted = trusted_ids(sweep, experiments)
    if not trusted:
        return []
    listed = [e for e in experiments if e.exp_id in trusted]
    statuses = scan(sweep, listed, trusted, atomic.mtime_ns(sweep.results, -1))
    unverified = {s.exp_id for s in statuses if not s.verified}
    return [e.exp_id for e in listed if e.exp_id not in unverified]


def up_to_date(sweep: SweepDir, complete: Iterable[Experiment]) -> bool:
    """Whether ``results.jsonl`` has exactly one line per experiment of ``complete``, each
    reduced from its current config and repetitions (then nothing needs rewriting)."""
    record = read_record(sweep)
    return record is not None and record == {e.exp_id: e.key for e in complete}
