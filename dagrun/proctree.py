"""Processes of a run: tie a process's life to its parent's, find and kill a whole tree.

A stage may start its own processes (a data-loader pool, ``subprocess.Popen``, a grandchild
that calls ``setsid`` to leave the process group). Stopping a run means stopping all of them:
``signal_tree`` signals a process group and every descendant found through ``/proc``, also
those that left the group, plus pids seen in an earlier pass that have been orphaned since.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); exit at once if
    the parent is already gone (the race between fork and this call)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)



def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(root: int) -> set[int]:
    """``root`` and its descendants, also those that left its process group (Linux /proc)."""
    if not os.path.isdir("/proc"):
        return {root}
    kids, found, todo = children_map(), set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(kids.get(pid, ()))
    return found


def signal_tree(pgid: int, sig: int, known: set[int]) -> set[int]:
    """Signal the group and every descendant (plus pids seen before, orphaned since)."""
    known |= tree(pgid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for pid in known:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return known


def reap(pid: int, timeout: float) -> int | None:
    """Wait (bounded) for the child; its wait status, or None while it still runs."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return 0
        if done:
            return status
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
