"""Work on a large text of lines in several processes at once: the text cut at line ends
into parts, each part's result computed by a forked child and sent back through a pipe as
bytes, the first part in this process meanwhile.

Decoding results.jsonl is most of a first ``dagrun results`` on a large sweep (50 MB of
JSON at 100,000 experiments of three repetitions), and JSON decoding holds the GIL: only
processes run it side by side. Forking needs nothing pickled or imported anew (the child
has the text and the code already) and returns as soon as the child is started.

Only where it is safe and pays: a POSIX ``fork``, one Python thread (forking beside other
threads may deadlock the child), more than one CPU to run on, and at least ``part_size``
bytes per part. A child that fails, or whose result does not arrive, costs its part being
computed here: never a wrong or missing result. The child leaves by ``os._exit`` (no
buffers flushed, no exit handlers run); a parent interrupted meanwhile kills and reaps its
children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

MOST_PARTS = 8


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def split(data: bytes, parts: int) -> list[bytes]:
    """``data`` (whole lines) cut into about ``parts`` parts of whole lines, in order."""
    out, start = [], 0
    for k in range(1, parts):
        end = data.find(b"\n", len(data) * k // parts) + 1
        if end <= start:
            continue
        out.append(data[start:end])
        start = end
    out.append(data[start:])
    return [part for part in out if part]


def map_parts(data: bytes, work: Callable[[bytes], T], dump: Callable[[T], bytes],
              load: Callable[[bytes], T], part_size: int) -> list[T]:
    """``work`` of each part of ``data`` (whole lines), in order: in forked children
    (``dump`` turns a result into bytes there, ``load`` back here) where that is possible
    and ``data`` holds at least two parts of ``part_size`` bytes; else ``[work(data)]``."""
    count = min(cpus(), MOST_PARTS, len(data) // max(part_size, 1))
    if count < 2 or not hasattr(os, "fork") or threading.active_count() > 1:
        return [work(data)]
    parts = split(data, count)
    children: list[tuple[int, int]] = []  # (pid, read end of its pipe)
    try:
        for part in parts[1:]:
            children.append(_start(part, work, dump))
        results = [work(parts[0])]
        for k, part in enumerate(parts[1:]):
            pid, fd = children[k]
            children[k] = (pid, -1)  # (_read_all closes it)
            payload = _read_all(fd)
            _, status = os.waitpid(pid, 0)
            children[k] = (0, -1)
            result = None
            if status == 0 and payload:
                with contextlib.suppress(ValueError, EOFError, TypeError, KeyError, IndexError,
                                         AttributeError):
                    result = load(payload)
            results.append(work(part) if result is None else result)
        return results
    finally:
        for pid, fd in children:
            if fd >= 0:
                os.close(fd)
            if pid:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)


def _start(part: bytes, work: Callable[[bytes], T], dump: Callable[[T], bytes]
           ) -> tuple[int, int]:
    """Fork a child that writes ``dump(work(part))`` to a pipe; its pid and the read end."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(read_end)
            data = memoryview(dump(work(part)))
            while data:
                data = data[os.write(write_end, data):]
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
