"""``single``: one run after another, in the driver's own process.

Stages run in-process so a user can debug with ``breakpoint()``; what they print goes to the
terminal and to the stage's log.
"""

from __future__ import annotations

import collections

from dagrun.backends.base import Backend
from dagrun.capture import CaptureMode
from dagrun.stages import RunOutcome, RunTask, StageRunner


class SingleBackend(Backend):
    name = "single"

    def start(self) -> None:
        self._queue: collections.deque[RunTask] = collections.deque()
        self._runner = StageRunner(self.workflow, CaptureMode.TEE, self.fingerprints)

    def submit(self, task: RunTask) -> None:
        self._queue.append(task)

    def poll(self, timeout: float) -> list[RunOutcome]:
        if not self._queue:
            return []
        return [self._runner.run(self._queue.popleft())]

    def running(self) -> int:
        return 0

    def describe(self) -> str:
        return "single (in this process)"
