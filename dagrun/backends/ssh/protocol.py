"""What the ssh backend's driver and its remote entry point (``remote.py``) say to each other.

The driver starts ``python -m dagrun.backends.ssh.remote REQUEST`` over ssh, REQUEST being one JSON
argument (the run, OUT, the stage fingerprints). The remote side answers on stdout with lines
that start with ``DAGRUN-``: ``STARTED`` once the interpreter runs (so the driver can tell a
connection failure from a run failure), then ``OUTCOME`` with the run's ``RunOutcome`` as JSON,
or ``STOPPED`` with a reason when the remote watchdog stopped the run because the driver's
heartbeat stopped (the driver re-queues it: dagrun stopped it, not the user's code).
Anything else on stdout (a chatty remote ``.bashrc``) is ignored. JSON, not pickle: the driver
never unpickles what a remote host sends.

The driver writes one byte to the session's stdin every ``HEARTBEAT_EVERY`` seconds; the remote
side kills its run when stdin closes or stays silent for ``heartbeat_timeout`` seconds.
"""

from __future__ import annotations

import json
from typing import Any

from dagrun.disk.records import Failure
from dagrun.record import asdict, field, fields, record
from dagrun.run.runwarning import RunWarning
from dagrun.run.stages import RunOutcome, RunTask

STARTED = "DAGRUN-STARTED"
OUTCOME = "DAGRUN-OUTCOME"
STOPPED = "DAGRUN-STOPPED"
HEARTBEAT = b"."
HEARTBEAT_EVERY = 1.0


def task_json(task: RunTask) -> dict[str, Any]:
    """The run as JSON, without what it ``adds`` (a host loads the workflow from the disk
    for each run, and the driver wrote it before submitting the run)."""
    return {f.name: getattr(task, f.name) for f in fields(task) if f.name != "adds"}


@record(frozen=True)
class Request:
    """Everything the remote entry point needs to run one run (sent as one JSON argument)."""

    task: RunTask
    out_path: str
    fingerprints: dict[str, str] = field(default_factory=dict)
    heartbeat_timeout: float = 15.0
    trust_group: bool = False
    cwd: str = ""  # the driver's working folder and import path, as a spawned worker
    sys_path: tuple[str, ...] = ()  # process would inherit them (shared filesystem)

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.dumps({**data, "task": task_json(self.task)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Request:
        data = json.loads(text)
        return cls(RunTask(**data["task"]), str(data["out_path"]),
                   {str(k): str(v) for k, v in data.get("fingerprints", {}).items()},
                   float(data.get("heartbeat_timeout", 15.0)), bool(data.get("trust_group")),
                   str(data.get("cwd", "")), tuple(str(p) for p in data.get("sys_path", ())))


def outcome_to_json(outcome: RunOutcome, recorded: bool = True) -> str:
    """One line of JSON; ``recorded`` says whether the failure is already on disk."""
    failure = asdict(outcome.failure) if outcome.failure is not None else None
    return json.dumps({"task": task_json(outcome.task), "failure": failure,
                       "ran": list(outcome.ran),
                       "warnings": [w.to_json() for w in outcome.warnings],
                       "recorded": recorded, "superseded": outcome.superseded},
                      separators=(",", ":"))


def outcome_from_json(text: str) -> tuple[RunOutcome, bool]:
    """The ``RunOutcome`` and whether its failure record was written by the remote side."""
    data: dict[str, Any] = json.loads(text)
    failure = Failure(**data["failure"]) if data.get("failure") else None
    outcome = RunOutcome(RunTask(**data["task"]), failure,
                         tuple(str(s) for s in data.get("ran", ())),
                         tuple(RunWarning.from_json(w) for w in data.get("warnings", ())),
                         superseded=bool(data.get("superseded")))
    return outcome, bool(data.get("recorded", True))
