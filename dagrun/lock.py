"""The one-driver lock of a sweep: at most one driver plans, executes or reduces OUT.

The lock is an OS file lock, released by the kernel when its holder dies (even by
``kill -9``); ``driver.json`` beside it names the holder for the message a second driver gets.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import filelock

from dagrun import atomic
from dagrun.errors import SweepBusyError
from dagrun.layout import SweepDir
from dagrun.records import hostname, iso


@contextlib.contextmanager
def driver_lock(sweep: SweepDir) -> Iterator[None]:
    """Hold the sweep's lock for one driver; a second one gets ``SweepBusyError`` at once.

    The lock is an OS file lock, so it is released when the holder dies, even by ``kill -9``.
    """
    atomic.makedirs(sweep.state)
    lock = filelock.FileLock(sweep.lock, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise SweepBusyError(_holder_message(sweep)) from None
    try:
        atomic.write_json(sweep.driver, {"host": hostname(), "pid": os.getpid(),
                                         "since": iso(time.time())})
        yield
    finally:
        atomic.remove(sweep.driver)
        lock.release()


def holder(sweep: SweepDir) -> str:
    """Who holds the sweep's lock, as its driver recorded it: ``pid P on HOST, since T``."""
    info = atomic.read_json_or_none(sweep.driver) or {}
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"since {info.get('since', '?')}")


def _holder_message(sweep: SweepDir) -> str:
    return (f"{sweep.path} is already being executed by another dagrun driver "
            f"({holder(sweep)}); wait for it to finish or stop it first")
