"""The Slurm command-line tools, called with argument lists (never through a shell).

Every call is bounded by ``CALL_TIMEOUT``; a tool that is missing, hangs or cannot reach the
controller is a ``BackendUnavailableError`` with Slurm's own words. Nothing here needs
accounting (``sacct``/slurmdbd): what became of an array task is read from ``squeue
--states=all``, which lists finished jobs for a while (Slurm's ``MinJobAge``).
"""

from __future__ import annotations

import enum
import shutil
import subprocess
from collections.abc import Sequence

from dagrun.errors import BackendUnavailableError
from dagrun.record import record

TOOLS = ("sbatch", "squeue", "scancel")
CALL_TIMEOUT = 60.0


def missing_tools() -> list[str]:
    """The Slurm tools dagrun needs that are not on PATH."""
    return [t for t in TOOLS if shutil.which(t) is None]


def require_tools() -> None:
    missing = missing_tools()
    if missing:
        raise BackendUnavailableError(
            f"backend 'slurm' needs the Slurm commands {', '.join(TOOLS)} on PATH; not "
            f"found: {', '.join(missing)} (run on a Slurm login node, or load Slurm's module)")


def _call(args: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(args), input=stdin, capture_output=True, text=True,
                              timeout=CALL_TIMEOUT, check=False)
    except FileNotFoundError:
        raise BackendUnavailableError(f"{args[0]} is not on PATH any more") from None
    except subprocess.TimeoutExpired:
        raise BackendUnavailableError(
            f"{args[0]} did not answer in {CALL_TIMEOUT:g} s: is slurmctld reachable?") from None


def _words(proc: subprocess.CompletedProcess[str]) -> str:
    """Slurm's complaint in one line."""
    lines = [line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
    text = "; ".join(lines) or f"exit code {proc.returncode}"
    return text.replace("sbatch: error: ", "")


def sbatch(args: Sequence[str], script: str | None = None) -> str:
    """Submit; returns the job id (``--parsable`` is added). ``script``: the batch script
    on stdin (``args`` then name no script file)."""
    proc = _call(["sbatch", "--parsable", *args], stdin=script)
    if proc.returncode != 0:
        raise SbatchRefused(_words(proc))
    return proc.stdout.strip().split(";")[0]


def test_only(args: Sequence[str], script: str) -> None:
    """``sbatch --test-only``: whether Slurm would accept the job (submits nothing)."""
    proc = _call(["sbatch", "--test-only", *args], stdin=script)
    if proc.returncode != 0:
        raise SbatchRefused(_words(proc))


class SbatchRefused(BackendUnavailableError):
    """sbatch refused the job (a bad partition, time or resources)."""


class TaskState(str, enum.Enum):
    """What Slurm says of one array task (the states of ``squeue --states=all``)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    SUSPENDED = "SUSPENDED"
    CONFIGURING = "CONFIGURING"
    REQUEUED = "REQUEUED"
    RESIZING = "RESIZING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    PREEMPTED = "PREEMPTED"
    NODE_FAIL = "NODE_FAIL"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    OTHER = "OTHER"  # a state this version of dagrun does not know

    @property
    def active(self) -> bool:
        return self in _ACTIVE

    @property
    def stopped(self) -> bool:
        """Slurm stopped the worker (its runs may be left undone), rather than it ending."""
        return not self.active and self not in (TaskState.COMPLETED, TaskState.FAILED)

    @classmethod
    def parse(cls, text: str) -> TaskState:
        word = text.strip().split()[0] if text.strip() else ""
        try:
            return cls(word)
        except ValueError:
            return cls.OTHER


_ACTIVE = frozenset({TaskState.PENDING, TaskState.RUNNING, TaskState.COMPLETING,
                     TaskState.SUSPENDED, TaskState.CONFIGURING, TaskState.REQUEUED,
                     TaskState.RESIZING})


@record(frozen=True)
class Task:
    """One array task as squeue lists it."""

    task_id: str  # JOB_TASK
    state: TaskState
    reason: str


def squeue(jobs: Sequence[str]) -> list[Task]:
    """Every task of ``jobs`` Slurm still knows (running, pending, or finished lately).
    Jobs Slurm has forgotten are left out (squeue refuses a list naming only those)."""
    if not jobs:
        return []
    proc = _call(["squeue", "--noheader", "--array", "--states=all",
                  "--jobs=" + ",".join(jobs), "--format=%i|%T|%r"])
    if proc.returncode != 0:
        if "Invalid job id" in (proc.stderr + proc.stdout):
            if len(jobs) > 1:  # one forgotten id spoils the list: ask one by one
                return [t for job in jobs for t in squeue([job])]
            return []
        raise BackendUnavailableError(f"squeue failed: {_words(proc)}")
    tasks = []
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            tasks.append(Task(parts[0], TaskState.parse(parts[1]), parts[2]))
    return tasks


def scancel(targets: Sequence[str]) -> None:
    """Cancel jobs or array tasks (Slurm sends SIGTERM, then SIGKILL after KillWait)."""
    if targets:
        proc = _call(["scancel", *targets])
        if proc.returncode != 0:
            raise BackendUnavailableError(f"scancel failed: {_words(proc)}")
