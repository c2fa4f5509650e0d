"""Warnings about a run, and how a sweep reports them: the first of each kind in full, the
others counted.

A run gets a ``RunWarning`` when something did not go as asked but the run goes on: an
output that cannot be pickled (so it is not checkpointed), an artifact on disk that cannot
be loaded (recomputed), a cfg value that cannot be copied, a metric name dagrun sets itself.
Such a cause is usually shared by every run of a sweep (every ``pre`` returns the same kind
of object), so a driver prints the first warning of each kind with its full text, which
names its run, and counts the others (``WarningTally``); the end-of-sweep summary says how
many runs had each::

    warnings: 150 × pre output cannot be pickled (first: run 0/0)

Warnings of one kind are told apart by ``kind``, ``stage`` and ``topic`` (the words of the
summary line, which never name a run). ``RunWarning`` is plain data: it is pickled back from
worker processes and Ray tasks, and ``to_json``/``from_json`` carry it in the ssh protocol,
where a bare string (an older dagrun) is read as a warning of kind ``other``.
"""

from __future__ import annotations

import enum
from typing import Any

from dagrun.record import field, record


class WarningKind(str, enum.Enum):
    """What a warning is about."""

    UNPICKLABLE_OUTPUT = "unpicklable_output"  # a stage's output is not checkpointed
    UNREADABLE_ARTIFACT = "unreadable_artifact"  # a finished stage's artifact: recomputed
    UNCOPYABLE_CFG = "uncopyable_cfg"  # a cfg value every stage receives as is
    RESERVED_METRIC = "reserved_metric"  # post returned a metric dagrun sets itself
    DRIVER_FOLDER = "driver_folder"  # stages ran outside the driver's folder
    OTHER = "other"  # anything else (its topic is its whole text)


@record(frozen=True)
class RunWarning:
    """One warning about one run: ``message`` is the full text (naming the run's folder
    where it helps), ``topic`` the same without the run, for the summary."""

    kind: WarningKind
    topic: str
    message: str
    stage: str = ""  # "pre", "fit", "post", or "" when no stage in particular

    def __str__(self) -> str:
        return self.message

    @classmethod
    def other(cls, message: str) -> RunWarning:
        """A warning without a kind: shown in full for every run, like each other one."""
        return cls(WarningKind.OTHER, message, message)

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "topic": self.topic, "message": self.message,
                "stage": self.stage}

    @classmethod
    def from_json(cls, data: Any) -> RunWarning:
        """What ``to_json`` gave; a string, or a kind this dagrun does not know, is
        ``other``."""
        if not isinstance(data, dict):
            return cls.other(str(data))
        message = str(data.get("message", ""))
        try:
            kind = WarningKind(data.get("kind"))
        except ValueError:
            return cls.other(message)
        return cls(kind, str(data.get("topic", message)), message, str(data.get("stage", "")))

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two warnings the same warning (about different runs)."""
        return self.kind.value, self.stage, self.topic


@record
class _Count:
    first: str  # the label of the first run that had it
    count: int = 1


@record
class WarningTally:
    """The warnings of one sweep (or one worker's part of it), counted by ``key``."""

    counts: dict[tuple[str, str, str], tuple[RunWarning, _Count]] = field(default_factory=dict)

    def add(self, label: str, warning: RunWarning) -> bool:
        """Count ``warning`` of run ``label``; whether it is the first of its key (the one
        to print in full)."""
        seen = self.counts.get(warning.key)
        if seen is None:
            self.counts[warning.key] = (warning, _Count(label))
            return True
        seen[1].count += 1
        return False

    def lines(self) -> list[str]:
        """One line per kind of warning, in the order they first came (for the summary)."""
        return [f"warnings: {seen.count} × {warning.topic} (first: run {seen.first})"
                for warning, seen in self.counts.values()]

    def __bool__(self) -> bool:
        return bool(self.counts)
