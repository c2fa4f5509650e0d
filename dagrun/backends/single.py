"""``single``: one run after another on this machine.

Without a timeout, stages run in the driver's own process so a user can debug with
``breakpoint()``; what they print goes to the terminal and to the stage's log. With a
timeout, each run goes to one child process that is killed when the run overstays, so the
timeout holds even against code that swallows exceptions or sits in C.
"""

from __future__ import annotations

import collections

from dagrun.backends.base import Backend
from dagrun.backends.process.driver import ProcessBackend
from dagrun.run.capture import CaptureMode
from dagrun.run.stages import RunOutcome, RunTask, StageRunner


class _OneChildBackend(ProcessBackend):
    @property
    def workers(self) -> int:
        return 1


class SingleBackend(Backend):
    name = "single"

    def start(self) -> None:
        self._queue: collections.deque[RunTask] = collections.deque()
        self._child: ProcessBackend | None = None
        if self.settings.timeout:
            self._child = _OneChildBackend(self.settings, self.sweep, self.workflow,
                                           self.fingerprints)
            self._child.start()
        else:
            self._runner = StageRunner(self.workflow, CaptureMode.TEE, self.fingerprints)

    def submit(self, task: RunTask) -> None:
        if self._child is not None:
            self._child.submit(task)
        else:
            self._queue.append(task)

    def poll(self, timeout: float) -> list[RunOutcome]:
        if self._child is not None:
            return self._child.poll(timeout)
        if not self._queue:
            return []
        return [self._runner.run(self._queue.popleft())]

    def running(self) -> int:
        return self._child.running() if self._child is not None else 0

    @property
    def capacity(self) -> int:
        return 1

    def describe(self) -> str:
        if self.settings.timeout:
            return f"single (one child process, timeout {self.settings.timeout:g} s)"
        return "single (in this process)"

    def shutdown(self, *, kill: bool = False) -> None:
        if getattr(self, "_child", None) is not None and self._child is not None:
            self._child.shutdown(kill=kill)
