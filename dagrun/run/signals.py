"""SIGTERM and SIGHUP stop a driver the way Ctrl-C does.

A batch system stopping the job (SIGTERM) or a closed terminal (SIGHUP) would otherwise end
the driver on the spot: runs left running, ``driver.json`` stale, results.jsonl not
rewritten. While a sweep executes, both signals raise ``Terminated`` (a ``KeyboardInterrupt``),
so every path that handles Ctrl-C — backends stopping their runs, the final rewrite of
results.jsonl, the summary — handles them too; the CLI then exits 143 or 129.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from dagrun.errors import Terminated

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
FORWARDED = (signal.SIGINT, *STOP_SIGNALS)  # what a supervisor passes on to its child
DUPLICATE_WINDOW = 1.0  # seconds within which a repeated stop signal is one (once_per_burst)


_received: int | None = None  # the last stop signal, for interrupts that lost their type


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    global _received
    _received = signum
    raise Terminated(signum)


def received() -> int | None:
    """The stop signal received during the sweep, if any. Some libraries re-raise an
    exception raised in a signal handler as a plain ``KeyboardInterrupt`` (Ray's core does),
    so the CLI asks here which signal it really was."""
    return _received


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise ``Terminated`` in the main thread; the previous
    handlers are restored after. Outside the main thread (signals cannot be caught there) and
    where the program installed its own handler, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[signal.Signals, Any] = {}
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            previous[sig] = signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def once_per_burst(window: float = DUPLICATE_WINDOW) -> None:
    """For a process whose supervisor forwards it the stop signals the supervisor receives
    (the sweep's process under the ``dagrun`` command, ``dagrun.run.supervisor``): SIGINT
    raises ``KeyboardInterrupt`` and SIGTERM/SIGHUP raise ``Terminated``, as ever, but a
    second signal of the same number within ``window`` seconds is dropped. A terminal's
    Ctrl-C (or a hang-up) reaches the whole process group, so this process gets it twice:
    once from the terminal, once forwarded; it must act once. Main thread only."""
    last: dict[int, float] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if now - last.get(signum, -math.inf) < window:
            return
        last[signum] = now
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        _raise_terminated(signum, frame)

    for sig in FORWARDED:
        signal.signal(sig, handler)


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number (143 for SIGTERM, 129 for SIGHUP)."""
    return 128 + signum
