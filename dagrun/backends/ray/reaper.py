"""``python -m dagrun.backends.ray.reaper VAR PREFIX PID``: a watchdog that outlives the
process it watches, then kills every process tagged ``VAR=PREFIX...``.

Ray keeps processes that dagrun cannot reach through a process tree: the agents and workers
of a local instance started by the driver, and whatever a stage starts inside a Ray worker
(a double-forked daemon, ``setsid -f``). Each of them inherits an environment tag, and this
small process, started in its own session, waits for the watched process to end however it
ends (``kill -9`` included: its stdin pipe closes, or ``PID`` disappears), then stops every
process carrying the tag (``dagrun.proctree.kill_tagged``).
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys

from dagrun.proctree import kill_tagged

CHECK_EVERY = 1.0  # seconds between looks at PID (a forked child may hold our stdin open)


def start(var: str, prefix: str) -> subprocess.Popen[bytes]:
    """Start a reaper watching this process; it kills ``var=prefix...`` when we are gone.
    Closing its stdin (``stop``) makes it clean up at once and exit."""
    env = {k: v for k, v in os.environ.items() if k != var}  # never reap itself
    return subprocess.Popen(
        [sys.executable, "-m", "dagrun.backends.ray.reaper", var, prefix, str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, start_new_session=True)  # Ctrl-C and a hang-up reach the driver only


def stop(reaper: subprocess.Popen[bytes] | None) -> None:
    """Tell the reaper that the watched process is done (it cleans up, then exits)."""
    if reaper is not None and reaper.stdin is not None:
        with contextlib.suppress(OSError):
            reaper.stdin.close()


def _alive(pid: int) -> bool:
    """Whether our parent (the watched process) still lives: once it is gone, whatever
    ended it, we are re-parented (no pid reuse can fool this)."""
    return os.getppid() == pid


def wait_for_end(pid: int) -> None:
    """Return once stdin is closed or ``pid`` is gone (whichever comes first)."""
    while _alive(pid):
        if select.select([0], [], [], CHECK_EVERY)[0]:
            try:
                if not os.read(0, 4096):
                    return
            except OSError:
                return


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m dagrun.backends.ray.reaper VAR PREFIX PID", file=sys.stderr)
        return 2
    var, prefix, pid = argv
    wait_for_end(int(pid))
    kill_tagged(var, prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
