"""The progress bar and the driver's messages on stderr."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    """A tqdm bar over all runs of the sweep, showing done / failed / running."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str = "dagrun") -> None:
        self.done = 0
        self.failed = 0
        self._bar = tqdm(total=total, initial=initial, disable=not enabled, unit="run",
                         desc=desc, file=sys.stderr, dynamic_ncols=True, smoothing=0.05)

    def finished(self, ok: bool, running: int) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        self._bar.set_postfix_str(
            f"done={self.done} failed={self.failed} running={running}", refresh=False)
        self._bar.update(1)

    def set_running(self, running: int) -> None:
        self._bar.set_postfix_str(
            f"done={self.done} failed={self.failed} running={running}", refresh=False)

    def write(self, message: str) -> None:
        """A message line that does not break the bar."""
        tqdm.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()


def say(message: str) -> None:
    """A driver message on stderr (outside a progress bar)."""
    print(message, file=sys.stderr, flush=True)
