"""Where a sweep came from: recorded in ``OUT/.dagrun/provenance.json`` at every execute.

The record names the git commit of the workflow's repository and whether its tracked files
had uncommitted changes, the host, user, Python, the versions of key packages the workflow
imported, and the command line. ``dagrun report``, ``status`` and ``show`` display it.

Git is asked with a timeout (OUT or the workflow may sit inside a very large repository) and
without taking git's index lock; a missing git, a folder outside any repository or a slow
``git status`` only leave the fields empty, never fail an execute.
"""

from __future__ import annotations

import getpass
import os
import platform
import shlex
import subprocess
import sys
import time
from typing import Any

from dagrun.disk import atomic
from dagrun.disk.layout import SweepDir
from dagrun.disk.records import hostname, iso

GIT_TIMEOUT = 5.0
# Packages whose version is recorded when the workflow (or dagrun) imported them.
KEY_PACKAGES = ("numpy", "pandas", "scipy", "sklearn", "torch", "jax", "tensorflow", "ray",
                "xgboost", "lightgbm", "cloudpickle", "pebble", "plotly")


def _git(folder: str, *args: str) -> str | None:
    """``git -C folder ARGS``'s stdout, or ``None`` when git is missing, fails or is slow."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        proc = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL, env=env,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_info(folder: str) -> dict[str, Any] | None:
    """Commit, branch, repository root and dirty flag of the repository holding ``folder``;
    ``None`` outside a repository. ``dirty`` is ``None`` when ``git status`` timed out."""
    head = _git(folder, "rev-parse", "--show-toplevel", "HEAD", "--abbrev-ref", "HEAD")
    if head is None:
        return None
    parts = head.splitlines()
    if len(parts) < 3:
        return None
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return {"commit": parts[1], "branch": parts[2], "root": parts[0],
            "dirty": None if status is None else bool(status.strip())}


def packages() -> dict[str, str]:
    """Versions of dagrun and of the key packages already imported (no import is done)."""
    from dagrun.version import __version__

    found = {"dagrun": __version__}
    for name in KEY_PACKAGES:
        version = getattr(sys.modules.get(name), "__version__", None)
        if isinstance(version, str):
            found[name] = version
    return found


def command_line() -> str:
    """The command as typed (``python -m dagrun ...`` for a run through ``-m``)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("dagrun", "__main__.py")):
        argv[:1] = ["python", "-m", "dagrun"]
    return shlex.join(argv)


def collect(source: str | None, backend: str) -> dict[str, Any]:
    """The provenance of an execute started now; ``source`` is the workflow file, if any."""
    folder = os.path.dirname(os.path.abspath(source)) if source else os.getcwd()
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = str(os.getuid()) if hasattr(os, "getuid") else ""
    return {
        "time": iso(time.time()),
        "host": hostname(),
        "user": user,
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(terse=True),
        "packages": packages(),
        "command": command_line(),
        "cwd": os.getcwd(),
        "workflow": os.path.abspath(source) if source else None,
        "backend": backend,
        "git": git_info(folder) if os.path.isdir(folder) else None,
    }


def write(sweep: SweepDir, source: str | None, backend: str) -> dict[str, Any]:
    """Record the provenance of this execute in ``OUT/.dagrun/provenance.json``."""
    info = collect(source, backend)
    atomic.write_json(sweep.provenance, info)
    return info


def read(sweep: SweepDir) -> dict[str, Any] | None:
    """The last execute's provenance, or ``None`` (older sweeps, unreadable file)."""
    data = atomic.read_json_or_none(sweep.provenance)
    return data if isinstance(data, dict) else None


def git_text(info: dict[str, Any]) -> str:
    """``git 1a2b3c4d (main, dirty)``, or ``no git repository``."""
    git = info.get("git")
    if not isinstance(git, dict):
        return "no git repository"
    dirty = git.get("dirty")
    state = "dirty" if dirty else "clean" if dirty is False else "dirty: unknown (timed out)"
    return f"git {str(git.get('commit', ''))[:10]} ({git.get('branch', '?')}, {state})"


def summary_line(sweep: SweepDir) -> str | None:
    """One line for ``dagrun status`` and ``show``; ``None`` when nothing was recorded."""
    info = read(sweep)
    if info is None:
        return None
    pkgs = info.get("packages")
    versions = ", ".join(f"{k} {v}" for k, v in pkgs.items()) if isinstance(pkgs, dict) else ""
    return (f"last executed {info.get('time', '?')} by {info.get('user', '?')}@"
            f"{info.get('host', '?')}: {git_text(info)}; Python {info.get('python', '?')}"
            f"{'; ' + versions if versions else ''}; command: {info.get('command', '?')}")
