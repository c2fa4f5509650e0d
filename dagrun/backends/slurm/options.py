"""basecfg ``slurm`` -> sbatch arguments, and the batch script every array task runs.

The batch script is plain ``bash``: the user's ``setup`` lines, then ``exec``-ing
``python -m dagrun worker OUT -j 1``. Every path in it is quoted with ``shlex.quote``, so an
OUT with spaces, quotes or ``$(...)`` stays data. Paths given to sbatch itself travel as
separate arguments (no shell); in the log file name ``%`` is doubled, since sbatch reads
``%A``/``%a`` there as patterns.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from dagrun.config import Settings
from dagrun.disk.layout import SweepDir
from dagrun.errors import ConfigError
from dagrun.record import record

DEFAULT_WORKERS = 100  # array tasks when neither -j nor basecfg workers says

# key -> sbatch flag; every value is a string or a positive integer
_FLAGS = {"partition": "--partition", "time": "--time", "cpus_per_task": "--cpus-per-task",
          "mem": "--mem", "gpus": "--gpus", "account": "--account", "qos": "--qos",
          "constraint": "--constraint"}
_INTS = frozenset({"cpus_per_task"})  # integers only
_NUMBERS = frozenset({"cpus_per_task", "time", "gpus"})  # integers or strings
KEYS = (*_FLAGS, "extra", "setup")


def _bad(key: str, what: str, value: Any) -> ConfigError:
    return ConfigError(f"basecfg['slurm'][{key!r}] must be {what}, got {value!r}")


def _strings(key: str, value: Any) -> tuple[str, ...]:
    """``extra`` and ``setup``: a list of strings (``setup`` may be one string)."""
    if key == "setup" and isinstance(value, str):
        return (value,)
    if isinstance(value, str) or not isinstance(value, Sequence) \
            or not all(isinstance(v, str) for v in value):
        raise _bad(key, "a list of strings", value)
    return tuple(value)


def _checked(key: str, value: Any) -> Any:
    """A flag's value: a positive integer (``cpus_per_task``; ``time`` and ``gpus`` may be
    one too) or a one-line string."""
    if isinstance(value, int) and not isinstance(value, bool) and key in _NUMBERS:
        if value >= 1:
            return value
        raise _bad(key, "a positive integer", value)
    if key in _INTS or not isinstance(value, str) or not value.strip() or "\n" in value:
        raise _bad(key, "a positive integer" if key in _INTS else "a non-empty string", value)
    return value


@record(frozen=True)
class SlurmOptions:
    """The checked ``slurm`` dict."""

    flags: tuple[str, ...] = ()  # --partition=..., in a fixed order
    extra: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> SlurmOptions:
        """Check every key; ``ConfigError`` names the first bad one."""
        unknown = [key for key in raw if key not in KEYS]
        if unknown:
            raise ConfigError(f"basecfg['slurm'] has unknown key {unknown[0]!r} (known: "
                              f"{', '.join(KEYS)}; anything else goes in 'extra')")
        flags = [f"{flag}={_checked(key, raw[key])}" for key, flag in _FLAGS.items()
                 if raw.get(key) is not None]
        return cls(tuple(flags), _strings("extra", raw.get("extra", [])),
                   _strings("setup", raw.get("setup", [])))

    @classmethod
    def of(cls, settings: Settings) -> SlurmOptions:
        return cls.parse(settings.slurm)

    def sbatch_args(self, tasks: int, log: str) -> list[str]:
        """The sbatch arguments of an array of ``tasks`` workers logging to ``log``
        (a file name pattern: ``%A`` the array's id, ``%a`` the task)."""
        return [f"--array=0-{tasks - 1}", "--job-name=dagrun", f"--output={log}",
                *self.flags, *self.extra]


def workers(settings: Settings, todo: int) -> int:
    """How many array tasks: ``-j`` / basecfg ``workers``, at most one per run to do."""
    wanted = settings.workers or DEFAULT_WORKERS
    return max(1, min(wanted, todo))


def log_pattern(sweep: SweepDir) -> str:
    """The ``--output`` of the array: ``worker-%A_%a.log`` in the sweep's slurm folder,
    the folder's own ``%`` doubled (sbatch would read it as a pattern)."""
    name = sweep.slurm_log("%A_%a")
    folder, base = os.path.split(name)
    return os.path.join(folder.replace("%", "%%"), base)


def python_of(settings: Settings) -> str:
    """The interpreter the workers run: basecfg ``python``, else this one (a cluster
    shares it through the file system, like OUT)."""
    return settings.python or sys.executable


SETUP_FAILED = "dagrun: slurm setup line"  # how a worker's log says a setup line failed


def setup_failure(log: str, options: SlurmOptions) -> str | None:
    """The failed setup line a worker's log reports, with what it printed last, as one line;
    ``None`` when the log reports none."""
    lines = log.splitlines()
    for i, text in enumerate(lines):
        if not text.startswith(SETUP_FAILED):
            continue
        words = text[len(SETUP_FAILED):].split()
        number = int(words[0]) if words and words[0].isdigit() else 0
        what = options.setup[number - 1] if 0 < number <= len(options.setup) else "?"
        said = next((t.strip() for t in reversed(lines[:i]) if t.strip()), "")
        status = text.rpartition("(")[2].rstrip(")")
        printed = f": {said}" if said else " (it printed nothing)"
        return f"slurm setup line {number} ({what!r}) failed on the node ({status}){printed}"
    return None


def batch_script(sweep: SweepDir, settings: Settings, options: SlurmOptions) -> str:
    """The script each array task runs."""
    q = shlex.quote
    lines = ["#!/bin/bash",
             f"# dagrun: one worker of the sweep in {sweep.path!r}",
             "set -e"]
    if options.setup:  # a failing line says which it was (the driver reports it)
        lines.append("trap 'status=$?; echo \"" + SETUP_FAILED
                     + " $DAGRUN_SETUP_LINE failed (exit $status)\" >&2; exit 97' ERR")
        for number, line in enumerate(options.setup, 1):
            lines += [f"DAGRUN_SETUP_LINE={number}", line]
        lines.append("trap - ERR")
    # a task leaves as soon as nothing is left for it to claim (its allocation is freed);
    # the last live worker stays while runs are held, to take over leases that go stale
    worker = [python_of(settings), "-m", "dagrun", "worker", sweep.path, "-j", "1",
              "--idle-exit", "0"]
    lines.append("exec " + " ".join(q(a) for a in worker))
    return "\n".join(lines) + "\n"


TEST_SCRIPT = "#!/bin/sh\ntrue\n"


def check_args(options: SlurmOptions, tasks: int) -> list[str]:
    """What ``sbatch --test-only`` is asked (nothing is written anywhere)."""
    return [f"--array=0-{tasks - 1}", "--output=/dev/null", *options.flags, *options.extra]
