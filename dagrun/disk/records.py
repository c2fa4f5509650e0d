"""The JSON records a run leaves: stage markers (``<stage>.done``) and failures (``<stage>.error``).

A marker is written only after its artifact is completely in place; it says when, where and by
which attempt the stage was computed, with which code (the stage's fingerprint) and for which
config (its content digest, ``dagrun.code.digest``): a run is done only when its markers agree
with the plan, whatever folder it was found in.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from dagrun.disk import atomic, jsontext
from dagrun.disk.fence import Attempt
from dagrun.disk.layout import STAGE_NAMED, RunDir, Stage
from dagrun.errors import FailureKind
from dagrun.record import field_names, record, replace


@lru_cache(maxsize=1)
def hostname() -> str:
    """This machine's name, as ``socket.gethostname()`` says it (which reads the same
    field of ``uname``), without importing ``socket`` (~2 ms)."""
    uname = getattr(os, "uname", None)
    if uname is not None:
        return str(uname().nodename)
    import socket

    return socket.gethostname()


_pid = [os.getpid()]  # this process's, kept (three markers a run); a forked child resets it
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


_last_second: tuple[int, str, str] = (-1, "", "")  # a whole second, its stamp's halves


def iso(t: float) -> str:
    """Local time with offset, to the millisecond. The formatted second is kept (replaced
    whole, so threads never see half of it): markers are written three times per run, many
    runs a second, and ``localtime`` + ``strftime`` are most of the cost."""
    global _last_second
    second = int(t // 1)
    cached = _last_second
    if cached[0] != second:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(second))
        cached = _last_second = (second, stamp[:19], stamp[19:])  # the zone may change
    return f"{cached[1]}{_MILLIS[int((t % 1) * 1000)]}{cached[2]}"


# the milliseconds' text by their number; (t % 1) * 1000 rounds up to 1000 only for a
# fraction within 2**-53 of a whole second (a t below 1): still the second's last millisecond
_MILLIS = [*(f".{ms:03d}" for ms in range(1000)), ".999"]


def stage_seconds(started: float, finished: float) -> float:
    """A stage's duration as its marker records it (to the microsecond); ``fit_time`` is
    this same number, so a run resumed after fit reports what an uninterrupted one does."""
    return round(finished - started, 6)


@record(frozen=True)
class Marker:
    """The content of ``<stage>.done``."""

    stage: str
    started: str
    finished: str
    seconds: float
    host: str
    pid: int
    attempt: int
    code: str | None = None
    config: str | None = None  # the content digest of the run's config
    token: int | None = None  # the lease token it was committed under (dagrun.disk.fence)
    origin: str | None = None  # the code id of its provenance record (dagrun.disk.provenance)

    @classmethod
    def now(cls, stage: Stage, started: float, finished: float, attempt: int,
            code: str | None, config: str | None = None, token: int | None = None,
            origin: str | None = None) -> Marker:
        return cls(*_marker_values(stage, started, finished, attempt, code, config, token,
                                   origin))

    @staticmethod
    def content_now(stage: Stage, started: float, finished: float, attempt: int,
                    code: str | None, config: str | None, token: int | None,
                    origin: str | None) -> bytes:
        """The bytes ``now(...).write`` commits, without the object (three markers a run:
        a frozen record's ``__init__`` and ``vars`` cost more than the JSON)."""
        if type(started) is float and type(finished) is float and type(attempt) is int \
                and (token is None or type(token) is int) \
                and _text_or_none(code) and _text_or_none(config) and _text_or_none(origin):
            return _marker_text(stage, started, finished, attempt, code, config, token,
                                origin)
        values = _marker_values(stage, started, finished, attempt, code, config, token, origin)
        return (jsontext.compact(dict(zip(_MARKER_FIELDS, values, strict=True)))
                + "\n").encode()

    def write(self, run: RunDir, via: Attempt | None = None) -> None:
        """Write the marker; ``via``: the holder's attempt (``dagrun.disk.fence``)."""
        (via or Attempt(run, None)).write_json(run.marker(STAGE_NAMED[self.stage]),
                                               dict(vars(self)), indent=None)

    @classmethod
    def read(cls, run: RunDir, stage: Stage) -> Marker | None:
        """The marker, or ``None`` when it is missing or unreadable."""
        data = atomic.read_json_or_none(run.marker(stage))
        if not isinstance(data, dict):
            return None
        try:
            return cls(**{k: data[k] for k in field_names(cls) if k in data})
        except TypeError:
            return None


_MARKER_FIELDS = field_names(Marker)  # the marker's keys, in its order


def _marker_values(stage: Stage, started: float, finished: float, attempt: int,
                   code: str | None, config: str | None, token: int | None,
                   origin: str | None) -> tuple[Any, ...]:
    """A marker's fields, in ``Marker``'s order (``Marker.now`` and ``content_now``)."""
    return (stage._value_, iso(started), iso(finished), stage_seconds(started, finished),
            hostname(), _pid[0], attempt, code, config, token, origin)


def _text_or_none(value: object) -> bool:
    return value is None or type(value) is str


def _json_text(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _marker_text(stage: Stage, started: float, finished: float, attempt: int,
                 code: str | None, config: str | None, token: int | None,
                 origin: str | None) -> bytes:
    """``content_now``'s bytes for fields of the usual types, by one format string: what
    ``json.dumps`` writes for the marker's dict (a test compares them over random values),
    at a third of its cost. The stamps are ASCII digits and signs, the seconds a finite
    float (its ``repr``, as ``json`` writes it), the strings quoted by ``json``'s own C
    quoting."""
    return (f'{{"stage": "{stage._value_}", "started": "{iso(started)}", "finished": '
            f'"{iso(finished)}", "seconds": {float.__repr__(stage_seconds(started, finished))}'
            f', "host": {_quote(hostname())}, "pid": {_pid[0]}, "attempt": {attempt}, '
            f'"code": {_json_text(code)}, "config": {_json_text(config)}, "token": '
            f'{"null" if token is None else int.__repr__(token)}, "origin": '
            f'{_json_text(origin)}}}\n').encode()


def read_scores(run: RunDir) -> dict[str, Any] | None:
    """The metrics in ``post.json``, or ``None`` when it is missing or not a JSON object."""
    scores = atomic.read_json_or_none(run.artifact(Stage.POST))
    return scores if isinstance(scores, dict) else None


@record(frozen=True)
class Failure:
    """The content of ``<stage>.error``: the last failed attempt of a stage."""

    stage: str
    kind: str
    message: str
    traceback: str
    attempt: int
    host: str
    time: str
    pid: int = 0

    @classmethod
    def from_exception(cls, stage: Stage, exc: BaseException, attempt: int,
                       kind: FailureKind = FailureKind.EXCEPTION) -> Failure:
        import traceback  # (a failure's: ~3 ms of import a sweep without one does not pay)

        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return cls.make(stage, kind, message, attempt, tb)

    @classmethod
    def make(cls, stage: Stage, kind: FailureKind, message: str, attempt: int,
             tb: str = "", host: str | None = None) -> Failure:
        return cls(stage.value, kind.value, message, tb, attempt, host or hostname(),
                   iso(time.time()), os.getpid())

    def content(self) -> bytes:
        """The bytes of ``<stage>.error`` holding this record."""
        return (json.dumps(dict(vars(self)), indent=2) + "\n").encode("utf-8")

    def write(self, run: RunDir, via: Attempt | None = None) -> None:
        """Write the record; ``via``: the holder's attempt (``dagrun.disk.fence``)."""
        (via or Attempt(run, None)).write_bytes(run.error(Stage(self.stage)), self.content())

    @classmethod
    def read(cls, run: RunDir, stage: Stage) -> Failure | None:
        data = atomic.read_json_or_none(run.error(stage))
        if not isinstance(data, dict):
            return None
        fields: dict[str, Any] = {k: data.get(k, "") for k in field_names(cls)}
        fields["attempt"] = int(data.get("attempt", 0) or 0)
        fields["pid"] = int(data.get("pid", 0) or 0)
        return cls(**fields)

    def noted(self, note: str | None) -> Failure:
        """This failure with ``note`` (why it happened, when dagrun knows) added to its
        message, on the same line so summaries show it."""
        if not note:
            return self
        return replace(self, message=f"{self.message}; {note}")

    @property
    def first_line(self) -> str:
        lines = self.message.strip().splitlines()
        return lines[0] if lines else self.kind


def failure_signature(folder: str, names: Iterable[str]) -> tuple[Any, ...]:
    """What the failure records ``names`` in ``folder`` look like now (name, inode, size,
    mtime): it changes when another process records a failure there again."""
    out = []
    for name in sorted(names):
        with contextlib.suppress(OSError):
            st = os.stat(os.path.join(folder, name))
            out.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)
