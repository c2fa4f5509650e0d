"""Where a sweep's results came from: a record per version of the code.

The record names the git commit of the workflow's repository and whether it was dirty — its
tracked files had uncommitted changes, or a file of the user's code the sweep imports is not
tracked at all (a workflow or helper never added to git is not "clean") — the host, user,
Python, the versions of key packages the workflow imported, and the command line. It is
written once per version of the code (``OUT/.dagrun/provenance/<code id>.json``, the code id
being the digest of the copy of the code, ``dagrun.code.snapshot``) when that code is first
planned, and every stage marker names the code id it was computed with (``Marker.origin``),
so rows computed with two versions of the code never pass for one. ``provenance.json`` is
the latest execute's record, with its code id. ``dagrun report``, ``status`` and ``show``
display them.

Git is asked with a timeout (OUT or the workflow may sit inside a very large repository) and
without taking git's index lock; a missing git, a folder outside any repository or a slow
``git status`` only leave the fields empty, never fail an execute.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from dagrun.disk import atomic
from dagrun.disk.layout import Stage, SweepDir
from dagrun.disk.records import Marker, hostname, iso

GIT_TIMEOUT = 5.0
# Packages whose version is recorded when the workflow (or dagrun) imported them.
KEY_PACKAGES = ("numpy", "pandas", "scipy", "sklearn", "torch", "jax", "tensorflow", "ray",
                "xgboost", "lightgbm", "cloudpickle", "pebble", "plotly")


def platform_terse() -> str:
    """``platform.platform(terse=True)`` ("Linux-6.1.0-18-amd64-x86_64-with-glibc2.36"), on
    Linux without the ``uname -p`` process it starts for a processor name that it leaves
    out when it is the machine's or "unknown" (~5 ms at every sweep's end), and without
    importing ``platform`` where the C library says its name and version itself (glibc:
    what ``platform.libc_ver`` asks first); elsewhere as ``platform`` makes it."""
    if sys.platform != "linux":
        import platform

        return platform.platform(terse=True)
    uname = os.uname()
    libc, version = _libc_ver()
    text = "-".join(part.strip() for part in (uname.sysname, uname.release, uname.machine,
                                              "with", libc + version) if part)
    for char in ' /\\:;"()':
        text = text.replace(char, "_" if char == " " else "-")
    text = text.replace("unknown", "")
    while "--" in text:
        text = text.replace("--", "-")
    return text.rstrip("-")


def _libc_ver() -> tuple[str, str]:
    """``platform.libc_ver()``: from ``confstr`` where the C library answers (glibc), else
    as ``platform`` finds it (it reads the Python executable)."""
    try:
        parts = (os.confstr("CS_GNU_LIBC_VERSION") or "").split(maxsplit=1)
    except (AttributeError, ValueError, OSError):
        parts = []
    if len(parts) == 2:
        return parts[0], parts[1]
    import platform

    return platform.libc_ver()


def python_version() -> str:
    """``platform.python_version()`` ("3.11.7"; "3.13.0rc1"): the first word of
    ``sys.version``, as ``platform`` reads it."""
    return sys.version.split()[0]


def user_name() -> str:
    """``getpass.getuser()`` (the login name from ``LOGNAME``, ``USER``, ``LNAME`` or
    ``USERNAME``, else the password database), without importing ``getpass`` (it imports
    ``termios`` for its prompts); the user id where neither says."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        user = os.environ.get(name)
        if user:
            return user
    try:
        import pwd

        return pwd.getpwuid(os.getuid())[0]
    except (ImportError, KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else ""


def _git_env() -> dict[str, str]:
    return {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}


def _git_start(folder: str, *args: str) -> subprocess.Popen[str] | None:
    """``git -C folder ARGS`` started (not waited for); ``None`` when git is missing."""
    try:
        return subprocess.Popen(["git", "-C", folder, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                text=True, env=_git_env())
    except OSError:
        return None


def _git_output(proc: subprocess.Popen[str] | None, deadline: float) -> str | None:
    """What a started git printed, or ``None`` when it failed or outlived ``deadline``
    (a ``time.monotonic`` time; it is then killed)."""
    if proc is None:
        return None
    try:
        out, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    return out if proc.returncode == 0 else None


def _git(folder: str, *args: str) -> str | None:
    """``git -C folder ARGS``'s stdout, or ``None`` when git is missing, fails or is slow."""
    return _git_output(_git_start(folder, *args), time.monotonic() + GIT_TIMEOUT)


def _repository_root(folder: str) -> str | None:
    """The nearest folder at or above ``folder`` holding ``.git`` (a folder, or a file in a
    worktree or submodule): where git itself starts looking; ``None`` when there is none."""
    here = os.path.realpath(folder)
    while True:
        if os.path.exists(os.path.join(here, ".git")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


class GitQuery:
    """git's three questions about a folder asked at once, as processes started now and read
    later (``result``): a sweep pays for starting them, not for waiting on them, and no
    thread of the driver competes with its runs. Outside a repository (no ``.git`` above
    the folder, no ``GIT_DIR``) nothing is started."""

    def __init__(self, folder: str, files: Sequence[str] = ()) -> None:
        self.folder = folder
        self.files = tuple(files)
        self.root = _repository_root(folder)
        self.started = time.monotonic()
        self.head = self.status = self.listed = None
        self.inside: list[str] = []
        if self.root is None and "GIT_DIR" not in os.environ:
            return
        self.head = _git_start(folder, "rev-parse", "--show-toplevel", "HEAD",
                               "--abbrev-ref", "HEAD")
        self.status = _git_start(folder, "status", "--porcelain", "--untracked-files=no")
        if self.root is not None:
            self.inside = _inside(self.root, self.files)
            if self.inside:
                self.listed = _git_start(self.root, "ls-files", "-z", "--", *self.inside)

    def result(self) -> dict[str, Any] | None:
        """Commit, branch, repository root and dirty flag of the repository holding the
        folder; ``None`` outside a repository. ``dirty`` is ``None`` when ``git status``
        timed out. A file of ``files`` (the user's code files the sweep imports) inside the
        repository that git does not track makes it dirty (listed under ``untracked``)."""
        deadline = self.started + GIT_TIMEOUT
        head = _git_output(self.head, deadline)
        status = _git_output(self.status, deadline)
        listed = _git_output(self.listed, deadline)
        if head is None:
            return None
        parts = head.splitlines()
        if len(parts) < 3:
            return None
        root = parts[0]
        info: dict[str, Any] = {"commit": parts[1], "branch": parts[2], "root": root,
                                "dirty": None if status is None else bool(status.strip())}
        if self.root is None or os.path.realpath(root) != self.root:  # git knows better
            untracked = _untracked(root, self.files)
        elif not self.inside:
            untracked = []
        else:
            untracked = None if listed is None else _not_listed(self.inside, listed)
        if untracked is None:
            info["dirty"] = None if not info["dirty"] else True
        elif untracked:
            info["dirty"] = True
            info["untracked"] = untracked[:10]
        return info


def _inside(root: str, files: Sequence[str]) -> list[str]:
    """``files`` inside ``root``, relative to it (sorted, each once)."""
    real_root = os.path.join(os.path.realpath(root), "")
    return sorted({os.path.relpath(os.path.realpath(f), real_root) for f in files
                   if os.path.realpath(f).startswith(real_root)})


def _not_listed(inside: list[str], listed: str) -> list[str]:
    tracked = set(listed.split("\0"))
    return [f for f in inside if f not in tracked]


def _untracked(root: str, files: Sequence[str]) -> list[str] | None:
    """Which of ``files`` inside ``root`` git does not track (``None``: git did not say)."""
    inside = _inside(root, files)
    if not inside:
        return []
    listed = _git(root, "ls-files", "-z", "--", *inside)
    return None if listed is None else _not_listed(inside, listed)


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


_ASK = object()  # ``git``: not given, ask git now


def collect(source: str | None, backend: str, files: Sequence[str] = (),
            cwd: str | None = None, command: str | None = None,
            git: Any = _ASK) -> dict[str, Any]:
    """The provenance of an execute started now; ``source`` is the workflow file, if any;
    ``files`` the user's code files the sweep imports; ``cwd`` and ``command``: the working
    folder and command line as they were when the execute started (default: now)."""
    cwd = os.getcwd() if cwd is None else cwd
    if git is _ASK:
        query = _git_query(source, cwd, files)
        git = query.result() if query is not None else None
    source = os.path.join(cwd, source) if source else None
    return {
        "time": iso(time.time()),
        "host": hostname(),
        "user": user_name(),
        "python": python_version(),
        "executable": sys.executable,
        "platform": platform_terse(),
        "packages": packages(),
        "command": command_line() if command is None else command,
        "cwd": cwd,
        "workflow": os.path.normpath(source) if source else None,
        "backend": backend,
        "git": git,
    }


def _git_query(source: str | None, cwd: str, files: Sequence[str]) -> GitQuery | None:
    """git's questions about the folder of the workflow file (``source``, relative to
    ``cwd``), else of ``cwd``; ``None`` when that folder is gone."""
    folder = os.path.dirname(os.path.join(cwd, source)) if source else cwd
    return GitQuery(folder, files) if os.path.isdir(folder) else None


def write(sweep: SweepDir, source: str | None, backend: str, code_id: str | None = None,
          files: Sequence[str] = (), cwd: str | None = None,
          command: str | None = None, git: Any = _ASK) -> dict[str, Any]:
    """Record the provenance of this execute in ``OUT/.dagrun/provenance.json``, and, the
    first time this version of the code (``code_id``) is planned, in its own record."""
    info = collect(source, backend, files, cwd, command, git)
    if code_id:
        info["code_id"] = code_id
        path = record_path(sweep, code_id)
        if not os.path.exists(path):
            atomic.makedirs(os.path.dirname(path))
            atomic.write_json(path, info)
    atomic.write_json(sweep.provenance, info)
    return info


class Writing:
    """``write`` in two halves: its ``git`` questions are started when the execute begins
    (``GitQuery``: processes, not a thread) and the record is written at ``join``, when the
    runs are over, so a short sweep does not wait ~10 ms for git before its first run. A
    driver that dies before ``join`` leaves no record for this execute; the next execute
    with the same code writes its code's record."""

    def __init__(self, sweep: SweepDir, source: str | None, backend: str,
                 code_id: str | None = None, files: Sequence[str] = ()) -> None:
        self._args = (sweep, source, backend, code_id, tuple(files))
        # what a stage running meanwhile in this process may change: taken now
        self._cwd, self._command = os.getcwd(), command_line()
        self._git = _git_query(source, self._cwd, files)

    def join(self) -> str | None:
        """Write the record; what went wrong writing it (``None``: it is written). A
        provenance that cannot be written (a full disk) is said, not a failed sweep."""
        sweep, source, backend, code_id, files = self._args
        git = self._git.result() if self._git is not None else None
        try:
            write(sweep, source, backend, code_id, files, self._cwd, self._command, git=git)
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None


def record_path(sweep: SweepDir, code_id: str) -> str:
    return os.path.join(sweep.state, "provenance", f"{code_id}.json")


def of_code(sweep: SweepDir, code_id: str) -> dict[str, Any] | None:
    """The record of the code ``code_id`` (``None``: none was kept, e.g. an older sweep)."""
    data = atomic.read_json_or_none(record_path(sweep, code_id))
    return data if isinstance(data, dict) else None


def older_code(sweep: SweepDir, experiments: Sequence[tuple[int, int]]
               ) -> dict[str, list[int]]:
    """Experiments (given as (id, repetitions)) whose done runs were computed with code other
    than the latest, by code id (``""``: an older dagrun's, unrecorded). Markers are read only
    when more than one version of the code was ever planned here."""
    try:
        versions = os.listdir(os.path.join(sweep.state, "provenance"))
    except OSError:
        return {}
    latest = read(sweep)
    current = latest.get("code_id") if latest is not None else None
    if len(versions) < 2 or not isinstance(current, str):
        return {}
    older: dict[str, list[int]] = {}
    for exp_id, repetitions in experiments:
        seen: set[str] = set()
        for rep in range(repetitions):
            marker = Marker.read(sweep.run_dir(exp_id, rep, repetitions), Stage.POST)
            if marker is not None and marker.origin != current:
                seen.add(marker.origin or "")
        for origin in sorted(seen):
            older.setdefault(origin, []).append(exp_id)
    return older


def code_line(sweep: SweepDir, code_id: str | None) -> str:
    """``code 3f2a… (git 1a2b3c4d (main, dirty), planned 2026-12-06T10:00:00; latest)``."""
    if not code_id:
        return "code: not recorded (computed by an older dagrun)"
    info = of_code(sweep, code_id)
    latest = read(sweep)
    now = " (the latest)" if latest is not None and latest.get("code_id") == code_id else \
        " (not the latest code)"
    if info is None:
        return f"code {code_id[:12]}{now}"
    return f"code {code_id[:12]}{now}: {git_text(info)}, first planned {info.get('time', '?')}"


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
    untracked = git.get("untracked")
    if isinstance(untracked, list) and untracked:
        more = f" and {len(untracked) - 2} more" if len(untracked) > 2 else ""
        state += f": untracked {', '.join(map(str, untracked[:2]))}{more}"
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
