"""The progress bar and the driver's messages on stderr."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """A tqdm bar over all runs of the sweep, showing done / failed / running.

    Disabled (a quiet sweep), it is counters only: tqdm is not even imported (its import
    costs ~15 ms, more than many short sweeps take) and a run costs no call into it."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str = "dagrun") -> None:
        self.done = 0
        self.failed = 0
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="run", desc=desc,
                             file=sys.stderr, dynamic_ncols=True, smoothing=0.05)

    def finished(self, ok: bool, running: int) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self._bar is not None:
            self._bar.set_postfix_str(
                f"done={self.done} failed={self.failed} running={running}", refresh=False)
            self._bar.update(1)

    def grow(self, runs: int) -> None:
        """``runs`` more runs in the sweep (a search's trials asked while it runs)."""
        if self._bar is not None and runs:
            self._bar.total = (self._bar.total or 0) + runs
            self._bar.refresh()

    def set_running(self, running: int) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(
                f"done={self.done} failed={self.failed} running={running}", refresh=False)

    def write(self, message: str) -> None:
        """A message line that does not break the bar."""
        if self._bar is None:
            say(message)
            return
        self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def say(message: str) -> None:
    """A driver message on stderr (outside a progress bar)."""
    print(message, file=sys.stderr, flush=True)


def note(message: str) -> None:
    """A driver message on stderr that does not break a progress bar another part of the
    process shows: through tqdm when it is loaded (a bar may be up), plainly otherwise
    (tqdm is then not imported for it: ~14 ms)."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is None:
        say(message)
        return
    tqdm_module.tqdm.write(message, file=sys.stderr)
