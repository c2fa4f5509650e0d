"""Send what a stage prints to ``RUN/<stage>.log``.

Two ways, chosen by where the stage runs:

* ``tee`` (in the driver's own process, the ``single`` backend): ``sys.stdout`` and
  ``sys.stderr`` write to the terminal *and* the log, so ``print`` and ``breakpoint()`` still
  work at the terminal.
* ``fd`` (in a worker process): file descriptors 1 and 2 point at the log, so output of C
  extensions and subprocesses, and a segfault's traceback (``faulthandler``), land there too.

A log that stays empty is removed; a log appended to by a later attempt gets a separator line.
"""

from __future__ import annotations

import contextlib
import enum
import faulthandler
import os
import sys
import time
from collections.abc import Iterator
from typing import IO, Any, TextIO


class CaptureMode(str, enum.Enum):
    TEE = "tee"
    FD = "fd"


def _separator(attempt: int, host: str) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"----- dagrun: attempt {attempt} on {host} at {when} -----\n"


class _Tee:
    """A text stream that writes to the terminal stream and (lazily opened) to the log."""

    def __init__(self, stream: TextIO, log: _LazyLog) -> None:
        self._stream = stream
        self._log = log

    def write(self, text: str) -> int:
        self._log.write(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()
        self._log.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _LazyLog:
    """Opens the log file on the first write, so silent stages leave no file."""

    def __init__(self, path: str, separator: str) -> None:
        self.path = path
        self.separator = separator
        self._file: IO[str] | None = None

    def write(self, text: str) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
            if self._file.tell() > 0:
                self._file.write(self.separator)
        self._file.write(text)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@contextlib.contextmanager
def _tee(path: str, separator: str) -> Iterator[None]:
    log = _LazyLog(path, separator)
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
        log.close()


@contextlib.contextmanager
def _fd(path: str, separator: str) -> Iterator[None]:
    had_content = os.path.exists(path) and os.path.getsize(path) > 0
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    if had_content:
        os.write(fd, separator.encode())
    start = os.lseek(fd, 0, os.SEEK_END)
    saved = (os.dup(1), os.dup(2))
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for d in saved:
            os.close(d)
        end = os.lseek(fd, 0, os.SEEK_END)
        os.close(fd)
        if end == start and not had_content:
            with contextlib.suppress(OSError):
                os.unlink(path)


def capture(mode: CaptureMode, path: str, attempt: int,
            host: str) -> contextlib.AbstractContextManager[None]:
    """Context manager that sends what the code inside prints to ``path``."""
    separator = _separator(attempt, host)
    return _tee(path, separator) if mode is CaptureMode.TEE else _fd(path, separator)


def tail(path: str, lines: int = 20, max_bytes: int = 16384) -> str:
    """The last ``lines`` lines of a log (empty when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
