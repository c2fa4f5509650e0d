"""The lease keeper: a small process that renews a holder's leases while the holder lives
and runs, and stops renewing them the moment it is stopped or dead.

A heartbeat thread in the holder cannot be trusted with that: a stage holding the GIL (the
``single`` backend runs stages in the driver's own process) stops it while the holder is
perfectly alive, and a thread cannot tell that its own process was stopped. This process
can: before each renewal it reads the holder's state in ``/proc/<pid>/stat`` and renews
nothing while the holder is stopped (``T``: SIGSTOP, Ctrl-Z, ``scontrol suspend``; ``t``:
traced) and exits when the holder is gone (or its pid was reused: the start time differs)
or closes the pipe. A frozen holder therefore loses its leases after the timeout, exactly as
a dead one does, and a busy one never does. Without ``/proc`` (not Linux) the holder's own
thread renews instead (``dagrun.disk.leases.Heartbeat``).

Started as ``python -I -S keeper.py PID INTERVAL``: it imports only the standard library, so
starting it costs the holder one fork+exec. Commands arrive on stdin, one per line:
``+ DEV INO PATH`` (renew the lease at PATH while it is that inode) and ``- PATH`` (stop).
It renews through a descriptor of the lease's own inode, so a renewal racing a takeover
lands on the old, orphaned inode, never on the new lease.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time


def process_state(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of ``pid`` from ``/proc``; ``None`` when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def available() -> bool:
    """Whether a keeper can watch its holder here (Linux ``/proc``)."""
    return process_state(os.getpid()) is not None


class _Kept:
    def __init__(self, fd: int, data: dict[str, object]) -> None:
        self.fd = fd
        self.data = data
        self.beat = 0


def _open(dev: int, ino: int, path: str) -> _Kept | None:
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (dev, ino):
        os.close(fd)
        return None
    try:
        data = json.loads(os.pread(fd, 65536, 0))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        os.close(fd)
        return None
    return _Kept(fd, data)


def _renew(kept: _Kept, path: str) -> bool:
    """One heartbeat; ``False`` when the lease is no longer the one kept."""
    try:
        st, own = os.stat(path), os.fstat(kept.fd)
    except OSError:
        return False
    if (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino):
        return False
    kept.beat += 1
    kept.data["beat"] = f"k{kept.beat:011d}"
    blob = (json.dumps(kept.data) + "\n").encode()
    try:
        os.pwrite(kept.fd, blob, 0)
        os.ftruncate(kept.fd, len(blob))
        os.fsync(kept.fd)
    except OSError:
        pass  # a full disk does not make the lease someone else's
    return True


def _command(line: str, kept: dict[str, _Kept]) -> None:
    op, _, rest = line.partition(" ")
    if op == "+":
        dev, ino, path = rest.split(" ", 2)
        found = _open(int(dev), int(ino), path)
        if found is not None:
            old = kept.pop(path, None)
            if old is not None:
                os.close(old.fd)
            kept[path] = found
    elif op == "-":
        old = kept.pop(rest, None)
        if old is not None:
            os.close(old.fd)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the holder to handle
    pid, interval = int(argv[1]), float(argv[2])
    start = process_state(pid)
    if start is None:
        return 0
    kept: dict[str, _Kept] = {}
    pending = b""
    stdin = sys.stdin.fileno()
    next_beat = time.monotonic() + interval
    while True:
        wait = max(0.0, min(next_beat - time.monotonic(), 0.5))
        ready, _, _ = select.select([stdin], [], [], wait)
        if ready:
            chunk = os.read(stdin, 65536)
            if not chunk:
                return 0  # the holder closed the pipe (or died)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _command(line.decode(), kept)
        state = process_state(pid)
        if state is None or state[1] != start[1]:
            return 0  # the holder is gone: its leases go stale
        if time.monotonic() < next_beat:
            continue
        next_beat = time.monotonic() + interval
        if state[0] in ("T", "t"):
            continue  # stopped: its leases must go stale like a dead holder's
        for path in [p for p, k in kept.items() if not _renew(k, p)]:
            os.close(kept.pop(path).fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
