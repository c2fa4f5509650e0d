"""``single``: one run after another on this machine.

Without a timeout, stages run in the driver's own process so a user can debug with
``breakpoint()``; what they print goes to the terminal and to the stage's log. Each run is
announced before its stages are called and cleared after them (``dagrun.run.pending``), so
a stage that ends the process (``os._exit``, a segfault, SIGKILL) is still recorded as
``crashed``: by the ``dagrun`` command's own process, which then executes the rest of the
sweep in a new process (``dagrun.run.supervisor``), or by the driver's watchdog. A crash is
an attempt: a run whose last attempt ended the process is not executed again in this
invocation (its outcome is its crash record), one with attempts left goes on with its next
one.

With a timeout, each run goes to one child process that is killed when the run overstays,
so the timeout holds even against code that swallows exceptions or sits in C.
"""

from __future__ import annotations

import collections
import contextlib
import functools
from typing import TYPE_CHECKING

from dagrun.backends.base import Backend
from dagrun.record import replace
from dagrun.run import pending
from dagrun.run.capture import CaptureMode, held_output
from dagrun.run.stages import RunOutcome, RunTask, StageRunner

if TYPE_CHECKING:
    from dagrun.backends.process.driver import ProcessBackend


@functools.cache
def _one_child_backend() -> type[ProcessBackend]:
    """The process backend with one worker; imported only with a timeout (the process pool
    and its library cost ~40 ms to import, a sweep of quick runs in this process none)."""
    from dagrun.backends.process.driver import ProcessBackend

    class OneChildBackend(ProcessBackend):
        @property
        def workers(self) -> int:
            return 1

    return OneChildBackend


class SingleBackend(Backend):
    name = "single"

    def before_threads(self) -> None:
        if self.settings.timeout:  # the child is forked where it can be
            self.start()

    def start(self) -> None:
        if getattr(self, "_queue", None) is not None:  # started by ``before_threads``
            return
        self._queue: collections.deque[RunTask] = collections.deque()
        self._settled: collections.deque[RunOutcome] = collections.deque()
        self._child: ProcessBackend | None = None
        self._announcer: pending.Announcer | None = None
        self._held = contextlib.ExitStack()
        if self.settings.timeout:
            self._child = _one_child_backend()(self.settings, self.sweep, self.workflow,
                                           self.fingerprints)
            self._child.start()
        else:
            self._runner = StageRunner(self.workflow, CaptureMode.TEE, self.fingerprints)
            self._announcer = pending.announcer()
            # after the watchdog started (its own 1 and 2 are the terminal's): the stage
            # calls of this sweep find 1 and 2 on the tee's pipes (``capture.held_output``)
            self._held.enter_context(held_output())

    def submit(self, task: RunTask) -> None:
        if self._child is not None:
            self._child.submit(task)
            return
        crashed = pending.crashed_attempt(task)  # an earlier process of this command
        if crashed > self.settings.retries:  # that was its last attempt: not again here
            self._settled.append(pending.crashed_outcome(task, crashed))
        elif crashed and task.attempt == 1:  # it goes on with its next attempt
            self._queue.append(replace(task, attempt=crashed + 1))
        else:
            self._queue.append(task)

    def poll(self, timeout: float) -> list[RunOutcome]:
        if self._child is not None:
            return self._child.poll(timeout)
        if self._settled:
            return [self._settled.popleft()]
        if not self._queue:
            return []
        task = self._queue.popleft()
        announcer = self._announcer or pending.Announcer()
        settled = False
        try:
            announcer.begin(task)
            outcome = self._runner.run(task)
            # its post marker committed now: nothing would be left to record
            settled = outcome.ok and outcome.scores is not None
            return [outcome]
        finally:
            announcer.end(settled)

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
        held = getattr(self, "_held", None)
        if held is not None:
            held.close()  # 1 and 2 back, all output at the terminal
        announcer = getattr(self, "_announcer", None)
        if announcer is not None:
            self._announcer = None
            announcer.close()
