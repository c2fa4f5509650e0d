"""Leases: a run being executed is claimed on disk, so any number of workers can share OUT.

A lease is ``RUN/lease.json`` (``RunDir.lease``), naming its holder (host, pid, worker id,
Slurm job), the number of times the run was taken over, the lease timeout its holder renews
it for (``timeout``, and ``every``: the heartbeat interval), and a heartbeat counter.

* **Claim by link.** The holder writes its lease to a private temporary name, then
  ``link()``s it to ``lease.json``: the link fails when a lease exists, so of two claimers
  exactly one wins, and the lease appears complete (never an empty file a reader could
  misread). ``link`` is atomic on every NFS version (``O_EXCL`` create was not, before NFSv3,
  and still leaves a moment where the file exists but is empty); a link whose reply was lost
  on the network (the client retries and gets "exists") is recognised by the temporary
  file's link count of 2.
* **Heartbeat through a kept descriptor.** The holder keeps the lease's inode open and
  rewrites the counter through that descriptor (then ``fsync``, so it reaches an NFS
  server). A lease taken over by another worker is a new inode at the name, so a slow
  holder's late heartbeat lands on its own, orphaned inode and never clobbers the new one;
  it sees that the name no longer points to its inode and stops its run.
* **Staleness on the observer's clock.** An observer never compares timestamps written by
  another host. It remembers what it last saw of a lease (inode, size, mtime, content) and
  when, by its own monotonic clock; a lease unchanged for ``lease_timeout`` seconds of that
  clock, and for the holder's own timeout if that is longer, is stale. Reading opens the
  file, which makes an NFS client revalidate it.
* **Takeover by rename.** A stale lease is renamed to a private name (of several observers
  only one rename finds it), checked to be the very lease judged stale (if not, it is put
  back), and replaced by a new claim counting one more takeover. A run taken over
  ``MAX_TAKEOVERS`` times keeps killing whatever runs it: it is recorded as ``crashed``.
* **Release** renames the lease away the same way, so a holder never removes a lease that is
  no longer its own.

``Heartbeat`` renews a process's leases from a thread of the process that claimed them (the
worker or driver, never the process running user code: a stage stuck in C keeps its lease).
``Gate`` is the driver's side: ``execute`` holds a lease on each run it executes and leaves
runs leased by live workers alone until their lease ends.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from dagrun.disk import fence, keeper
from dagrun.disk.layout import LOG_SPARE, RunDir, SweepDir
from dagrun.disk.records import hostname, iso
from dagrun.record import record, replace

LEASE_FORMAT = 2  # lease.json's layout: 2 adds the token and the fenced attempt folders
MAX_TAKEOVERS = 3  # a run whose lease was taken over this often is recorded as crashed
BEATS_PER_TIMEOUT = 5  # heartbeats per lease timeout
WATCH_EVERY = 0.5  # seconds between a driver's looks for workers (``Gate``)
# a worker claims nothing for this long after announcing itself: time for a driver that did
# not lease (no worker was there) to see it and lease the runs it already executes
WORKER_GRACE = 4 * WATCH_EVERY
_SLURM_VARS = ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID")


def slurm_job() -> str | None:
    """``JOB_TASK`` of a Slurm array task, ``JOB`` of a plain job, ``None`` outside Slurm."""
    array, task, job = (os.environ.get(v) for v in _SLURM_VARS)
    if array and task:
        return f"{array}_{task}"
    return job or None


@record(frozen=True)
class Holder:
    """Who holds leases: this process, named once, with the lease timeout it renews its
    leases for (a lease says it, so that observers with a shorter timeout of their own wait
    as long as its holder promised, not as long as they would)."""

    host: str
    pid: int
    worker: str
    slurm: str | None
    timeout: float = 60.0
    role: str = "worker"  # or "driver": an ``execute`` that leases (``Gate``)

    @classmethod
    def here(cls, timeout: float = 60.0, role: str = "worker") -> Holder:
        return cls(hostname(), os.getpid(), _random_hex(12), slurm_job(), timeout,
                   role)

    def content(self, takeovers: int, beat: int, token: int = 0) -> bytes:
        data = {"format": LEASE_FORMAT, "token": token,
                "host": self.host, "pid": self.pid, "worker": self.worker,
                "slurm": self.slurm, "takeovers": takeovers, "since": iso(time.time()),
                "timeout": self.timeout, "every": self.timeout / BEATS_PER_TIMEOUT,
                "role": self.role,
                "beat": f"{beat:012d}"}
        return (json.dumps(data) + "\n").encode()


class LeaseIndex:
    """``OUT/.dagrun/leases/``: one empty file per claim, ``<run>@<token>@<worker>``
    (``<run>``: the run folder relative to OUT, ``/`` written ``~``), made by the claimer
    after its claim and removed at its release. Finding the live holders of a sweep
    (``dagrun plan``, ``status``) lists this folder instead of reading the lease of every
    run: at 100,000 runs, a handful of files instead of 100,000 opens. An entry is only a
    pointer: the run's ``lease.json`` decides (a claim's own name is unique, so removing a
    leftover entry never removes a newer holder's)."""

    def __init__(self, sweep: SweepDir) -> None:
        self.sweep = sweep
        self.root = sweep.path.rstrip(os.sep) + os.sep

    def name(self, run: RunDir, token: int, worker: str) -> str | None:
        if not run.path.startswith(self.root):
            return None
        return f"{run.path[len(self.root):].replace(os.sep, '~')}@{token}@{worker}"

    def add(self, run: RunDir, token: int, worker: str) -> None:
        name = self.name(run, token, worker)
        if name is None:
            return
        path = os.path.join(self.sweep.lease_index, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        except FileNotFoundError:
            os.makedirs(self.sweep.lease_index, mode=0o755, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)

    def remove(self, run: RunDir, token: int, worker: str) -> None:
        name = self.name(run, token, worker)
        if name is not None:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.sweep.lease_index, name))

    def held(self) -> list[tuple[RunDir, Seen]]:
        """The runs held now, with their lease as read (stale or live: telling takes
        watching); entries whose claim is over are removed on the way."""
        try:
            names = sorted(os.listdir(self.sweep.lease_index))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for name in names:
            key, _, rest = name.partition("@")
            token, _, worker = rest.partition("@")
            run = RunDir(self.root + key.replace("~", os.sep))
            lease = read_lease(run)
            if lease is not None and str(lease[1].get("token")) == token \
                    and lease[1].get("worker") == worker:
                found.append((run, Seen(lease[0], time.monotonic(), lease[1])))
            elif lease is None or _over(lease[1], token):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.sweep.lease_index, name))
        return found


def _over(info: dict[str, Any], token: str) -> bool:
    """Whether the claim ``token`` of a run is over: its lease has a newer token."""
    current = info.get("token")
    return isinstance(current, int) and token.isdigit() and current > int(token)


class Lease:
    """A lease this process holds: the open descriptor of its inode, its token and the
    name of its attempt folder (``dagrun.disk.fence``), through which its run is written."""

    def __init__(self, run: RunDir, fd: int, holder: Holder, takeovers: int, token: int,
                 folder: str, index: LeaseIndex | None = None) -> None:
        self.run = run
        self.index = index
        self.fd = fd
        self.holder = holder
        self.takeovers = takeovers
        self.token = token
        self.folder = folder
        self.beat = 0
        st = os.fstat(fd)
        self.inode = (st.st_dev, st.st_ino)

    def owned(self) -> bool:
        """Whether ``lease.json`` is still this lease (not taken over, not removed)."""
        try:
            st = os.stat(self.run.lease)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self.inode

    def renew(self) -> bool:
        """One heartbeat; returns whether the lease is still ours (if not, its run must stop)."""
        if self.fd < 0 or not self.owned():
            return False
        self.beat += 1
        data = self.holder.content(self.takeovers, self.beat, self.token)
        try:
            os.pwrite(self.fd, data, 0)
            os.ftruncate(self.fd, len(data))
            os.fsync(self.fd)
        except OSError:
            return self.owned()  # a full disk does not make the lease someone else's
        return True

    def close(self) -> None:
        """Forget a lease that is no longer ours: close its descriptor, touch no file."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def release(self) -> None:
        """Remove the lease if it is still ours, its attempt folder first; close its
        descriptor. Idempotent."""
        if self.fd < 0:
            return
        if self.owned():
            with contextlib.suppress(OSError):
                fence.destroy(self.run.entry(self.folder))
        with contextlib.suppress(OSError):
            _remove_if(self.run, self.inode)
        if self.index is not None:
            self.index.remove(self.run, self.token, self.holder.worker)
        os.close(self.fd)
        self.fd = -1


def _random_hex(digits: int) -> str:
    """``digits`` random hex digits (what ``uuid.uuid4().hex`` gave, without importing
    ``uuid``, which imports ``platform``: ~3 ms a sweep)."""
    return os.urandom((digits + 1) // 2).hex()[:digits]


def _tag() -> str:
    return f"{os.getpid()}-{_random_hex(8)}"


def _remove_if(run: RunDir, inode: tuple[int, int]) -> bool:
    """Remove ``lease.json`` if it is ``inode``: renamed to a private name first, so a lease
    that replaced it meanwhile is put back instead of removed. Returns whether it was."""
    private = run.lease_temp(_tag())
    try:
        os.rename(run.lease, private)
    except FileNotFoundError:
        return False
    try:
        st = os.stat(private)
        if (st.st_dev, st.st_ino) == inode:
            return True
        with contextlib.suppress(FileExistsError):
            os.link(private, run.lease)  # not ours: put it back (unless a claim came first)
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(private)


def claim(run: RunDir, holder: Holder, takeovers: int = 0, taken: int = 0,
          keep: str | None = None, index: LeaseIndex | None = None) -> Lease | None:
    """Claim ``run`` with a new lease; ``None`` when one exists (someone else holds it).

    The winner fences every other attempt folder of the run (``dagrun.disk.fence``) before
    returning, so nothing a former holder writes from now on can land: the run's state may
    be read after this. ``taken``: the token of the lease taken over; ``keep``: an attempt
    folder of this holder's to write through (a driver that starts leasing a run it already
    executes), instead of a new one. ``index``: the sweep's ``LeaseIndex``, which gets an
    entry for this claim."""
    token = fence.next_token(run, taken)
    private = run.lease_temp(_tag())
    fd = os.open(private, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, holder.content(takeovers, 0, token))
        try:
            os.link(private, run.lease)
        except FileExistsError:
            os.close(fd)
            return None
        except OSError as exc:  # a lost reply on NFS: the link may exist all the same
            if exc.errno in (errno.ENOENT, errno.ENOTDIR) or os.fstat(fd).st_nlink != 2:
                raise
        folder = keep or fence.folder_name(token, holder.worker)
        try:
            if keep is None:
                fence.create(run, folder)
            fence.fence_others(run, folder)
            if index is not None:
                index.add(run, token, holder.worker)
        except BaseException:  # e.g. a full disk: give the claim back, not a stale lease
            st = os.fstat(fd)
            with contextlib.suppress(OSError):
                _remove_if(run, (st.st_dev, st.st_ino))
            raise
        return Lease(run, fd, holder, takeovers, token, folder, index)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(private)


@record(frozen=True)
class Seen:
    """A lease as an observer saw it: what it looked like, since when (observer's clock)."""

    signature: tuple[Any, ...]
    since: float  # time.monotonic() when this signature was first seen
    info: dict[str, Any]

    @property
    def takeovers(self) -> int:
        value = self.info.get("takeovers", 0)
        return value if isinstance(value, int) else 0

    @property
    def token(self) -> int:
        value = self.info.get("token", 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    @property
    def timeout(self) -> float:
        """The lease timeout its holder renews it for (0 when the lease does not say)."""
        value = self.info.get("timeout", 0)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        return float(value) if ok and value < float("inf") else 0.0

    def describe(self) -> str:
        """``host H pid P (Slurm job J)``: the holder in a status line."""
        return describe(self.info)


def describe(info: dict[str, Any]) -> str:
    """``host H pid P (Slurm job J)``: a lease's holder, from the lease's content."""
    job = f" (Slurm job {info['slurm']})" if info.get("slurm") else ""
    return f"host {info.get('host', '?')} pid {info.get('pid', '?')}{job}"


def read_lease(run: RunDir) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """``(signature, content)`` of a run's lease, ``None`` when there is none."""
    return _read_watched(run.lease)


def _read_watched(path: str) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """``(signature, content)`` of a lease or an announcement, ``None`` when it is gone.
    Opening the file (rather than ``stat`` alone) makes an NFS client fetch its current
    attributes."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read(4096)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        info = json.loads(data)
    except ValueError:  # caught mid-rewrite: the signature changed, so it is alive
        info = {}
    signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, data)
    return signature, info if isinstance(info, dict) else {}


class Observer:
    """Tells live leases from stale ones by watching them on this process's own clock."""

    def __init__(self, lease_timeout: float) -> None:
        self.lease_timeout = lease_timeout
        self._seen: dict[str, Seen] = {}

    def look(self, run: RunDir) -> Seen | None:
        """The run's lease as last seen (``None``: no lease)."""
        return self.look_at(run.path, run.lease)

    def look_at(self, key: str, path: str) -> Seen | None:
        """The file ``path`` (a lease, or a worker's announcement) as last seen under
        ``key``; ``None`` when it is gone."""
        found = _read_watched(path)
        if found is None:
            self._seen.pop(key, None)
            return None
        signature, info = found
        old = self._seen.get(key)
        if old is not None and old.signature == signature:
            return old
        seen = Seen(signature, time.monotonic(), info)
        self._seen[key] = seen
        return seen

    def stale(self, seen: Seen) -> bool:
        """Unchanged for this observer's lease timeout, and for the one its holder renews it
        for (whichever is longer): a holder renewing every 12 s for a 60 s timeout is not
        stale after 2 s to a worker started with ``--lease-timeout 2``."""
        return time.monotonic() - seen.since >= max(self.lease_timeout, seen.timeout)

    def last(self, key: str) -> Seen | None:
        """What ``look_at`` last saw under ``key`` (``None``: nothing yet)."""
        return self._seen.get(key)

    def forget(self, run: RunDir) -> None:
        self._seen.pop(run.path, None)


def take_over(run: RunDir, seen: Seen, holder: Holder,
              index: LeaseIndex | None = None) -> Lease | None:
    """Replace the stale lease ``seen`` by a lease of ``holder`` counting one more takeover;
    ``None`` when another worker was faster (or the lease changed meanwhile)."""
    private = run.lease_temp(_tag())
    try:
        os.rename(run.lease, private)
    except FileNotFoundError:
        return None
    try:
        current = _signature_of(private)
        if current != seen.signature[:4]:
            with contextlib.suppress(FileExistsError):
                os.link(private, run.lease)  # it came alive, or is another's: put it back
            return None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(private)
    return claim(run, holder, seen.takeovers + 1, seen.token, index=index)


def _signature_of(path: str) -> tuple[Any, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def heartbeat_age(run: RunDir) -> float | None:
    """Seconds since the lease file last changed, by its mtime: for display only (the
    file server's clock against this host's), never to decide staleness."""
    try:
        return max(0.0, time.time() - os.stat(run.lease).st_mtime)
    except OSError:
        return None


def heartbeat_text(age: float | None) -> str:
    """``heartbeat N s ago`` (``heartbeat_age``) as status and clean print it."""
    return f"heartbeat {age:.0f} s ago" if age is not None else "heartbeat unknown"


class Presence:
    """A worker's announcement ``OUT/.dagrun/workers/<worker>.json``, made before its first
    claim and removed after its last release: a driver that sees one leases its runs."""

    def __init__(self, path: str, fd: int, holder: Holder) -> None:
        self.path = path
        self.fd = fd
        self.holder = holder
        self.beat = 0

    @classmethod
    def announce(cls, sweep: SweepDir, holder: Holder) -> Presence:
        """Write the announcement (its name is unique to the worker: created with
        ``O_EXCL``, only its presence matters to a driver)."""
        os.makedirs(sweep.workers, mode=0o755, exist_ok=True)
        path = sweep.worker_file(holder.worker)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        presence = cls(path, fd, holder)
        presence.renew()
        return presence

    def renew(self) -> None:
        """Keep it fresh (for ``status``-like readers; a driver only looks for it)."""
        if self.fd < 0:
            return
        data = self.holder.content(0, self.beat)
        self.beat += 1
        with contextlib.suppress(OSError):
            os.pwrite(self.fd, data, 0)
            os.ftruncate(self.fd, len(data))
            os.fsync(self.fd)

    def standing(self) -> bool:
        """Whether the announcement is still on disk (someone may delete
        ``OUT/.dagrun/workers/``, as after a ``kill -9`` the docs say one may)."""
        if self.fd < 0:
            return False
        try:
            on_disk, ours = os.stat(self.path), os.fstat(self.fd)
        except OSError:
            return False
        return (on_disk.st_dev, on_disk.st_ino) == (ours.st_dev, ours.st_ino)

    def withdraw(self) -> None:
        """Remove the announcement. Idempotent."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = -1


def announced_workers(sweep: SweepDir) -> list[str]:
    """``host H pid P (Slurm job J)`` of every worker announced in ``sweep`` (live, or
    left behind by one killed with -9), with its announcement's path."""
    found = []
    try:
        entries = sorted(os.scandir(sweep.workers), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        try:
            with open(entry.path, "rb") as f:
                info = json.loads(f.read(4096))
        except (OSError, ValueError):
            info = {}
        found.append(f"{describe(info if isinstance(info, dict) else {})} ({entry.path})")
    return found


class WorkerWatch:
    """Which announced workers are alive, judged like leases: an announcement this watch
    saw renewed (changed since it first looked), and not unchanged since for its worker's
    timeout (and this observer's) by this process's clock. One not seen renewed yet does
    not count: a dead or frozen worker must never be taken for a live one. Used by
    ``--idle-exit``: a worker leaves only when a live worker stays behind to take over
    leases that may still go stale."""

    def __init__(self, sweep: SweepDir, lease_timeout: float) -> None:
        self.sweep = sweep
        self.observer = Observer(lease_timeout)  # announcements are watched like leases
        self._renewed: set[str] = set()  # announcements seen to change

    def live(self) -> list[tuple[str, str]]:
        """``(worker id, role)`` of the announcements seen alive (renewed, and
        recently)."""
        try:
            names = sorted(e.name for e in os.scandir(self.sweep.workers))
        except (FileNotFoundError, NotADirectoryError):
            names = []
        found = []
        for name in names:
            path = os.path.join(self.sweep.workers, name)
            before = self.observer.last(path)
            seen = self.observer.look_at(path, path)
            if seen is None:
                continue
            if before is not None and seen is not before:
                self._renewed.add(path)
            if path in self._renewed and not self.observer.stale(seen):
                role = seen.info.get("role")
                found.append((name.removesuffix(".json"),
                              role if isinstance(role, str) else "worker"))
        return found


def workers_present(sweep: SweepDir) -> bool:
    """Whether a worker has announced itself in ``sweep`` (opening the folder to list it
    makes an NFS client revalidate it)."""
    try:
        with os.scandir(sweep.workers) as entries:
            return any(True for _ in entries)
    except (FileNotFoundError, NotADirectoryError):
        return False


class _Keeper:
    """The holder's side of ``dagrun.disk.keeper``: starts the process, sends it commands."""

    def __init__(self, interval: float) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", keeper.__file__, str(os.getpid()), repr(interval)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def send(self, line: str) -> bool:
        """Send one command; ``False`` when the keeper is gone (the thread renews then)."""
        stdin = self._proc.stdin
        if stdin is None or self._proc.poll() is not None:
            return False
        try:
            stdin.write(line.encode() + b"\n")
            stdin.flush()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class Heartbeat:
    """Keeps this holder's leases alive and notices the ones taken over.

    The renewals (every ``lease_timeout / BEATS_PER_TIMEOUT`` seconds) come from a keeper
    process (``dagrun.disk.keeper``) that renews while this process runs and stops while it
    is stopped or dead, so a stage holding the GIL cannot starve a lease and a frozen holder
    cannot keep one. A thread of this process looks, as often, whether each lease is still
    this holder's (leases taken over are handed out by ``take_lost``) and renews the
    worker's announcement; it renews the leases itself only where no keeper can run.
    """

    def __init__(self, lease_timeout: float) -> None:
        self.interval = lease_timeout / BEATS_PER_TIMEOUT
        self._keeper: _Keeper | None = None
        self._leases: dict[str, Lease] = {}
        self._lost: list[Lease] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dagrun-heartbeat",
                                        daemon=True)
        self._presence: Presence | None = None
        self._announced: tuple[SweepDir, Holder] | None = None
        self.announced_at = 0.0  # time.monotonic() of the last (re)announcement

    def start(self) -> None:
        if keeper.available():
            try:
                self._keeper = _Keeper(self.interval)
            except OSError:
                self._keeper = None
        self._thread.start()

    def announce(self, sweep: SweepDir, holder: Holder) -> None:
        """Announce ``holder`` as a worker of ``sweep`` (``Presence``) until ``stop``: a
        worker does so before its first claim and waits ``WORKER_GRACE`` before claiming."""
        self._presence = Presence.announce(sweep, holder)
        self._announced = (sweep, holder)
        self.announced_at = time.monotonic()

    def ensure_announced(self) -> None:
        """Announce again when the announcement was deleted; the worker then waits
        ``WORKER_GRACE`` from ``announced_at`` before its next claim, as at its start, so a
        driver that never saw it leases its runs before the worker can claim one of them."""
        with self._lock:
            self._ensure_announced()

    def _ensure_announced(self) -> None:
        if self._presence is None or self._announced is None or self._presence.standing():
            return
        self._presence.withdraw()  # closes the descriptor of the deleted file
        try:
            self.announce(*self._announced)
        except OSError:  # OUT/.dagrun unwritable now: the next beat tries again
            self._presence = Presence("", -1, self._announced[1])

    def add(self, lease: Lease) -> None:
        with self._lock:
            self._leases[lease.run.path] = lease
            if self._keeper is not None:
                dev, ino = lease.inode
                if not self._keeper.send(f"+ {dev} {ino} {lease.run.lease}"):
                    self._keeper = None

    def _unkeep(self, run: RunDir) -> None:
        if self._keeper is not None and not self._keeper.send(f"- {run.lease}"):
            self._keeper = None

    def release(self, run: RunDir) -> None:
        """Stop renewing the run's lease and remove it if it is still ours (one taken
        over is left to its new holder: ``Lease.release``)."""
        with self._lock:
            lease = self._leases.pop(run.path, None)
            if lease is not None:
                self._unkeep(run)
                lease.release()

    def take_lost(self) -> list[Lease]:
        """Leases found taken over (or removed) since the last call."""
        with self._lock:
            lost, self._lost = self._lost, []
        return lost

    def held(self) -> int:
        return len(self._leases)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """Look at every lease once (renew it too when no keeper does); those no longer
        ours move to the lost list."""
        with self._lock:
            for path, lease in list(self._leases.items()):
                if not (lease.owned() if self._keeper is not None else lease.renew()):
                    del self._leases[path]
                    self._unkeep(lease.run)
                    self._lost.append(lease)
            if self._presence is not None:
                self._ensure_announced()
                self._presence.renew()

    def stop(self) -> None:
        """Stop the thread and release every lease still held, then the announcement."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with self._lock:
            if self._keeper is not None:
                self._keeper.stop()
                self._keeper = None
            for lease in self._leases.values():
                lease.release()
            for lease in self._lost:
                lease.close()
            self._leases.clear()
            self._lost.clear()
            if self._presence is not None:
                self._presence.withdraw()


SPARES_IN_RUNS = "attempts-in-runs"  # OUT/.dagrun/spares/<this>: see ``Gate._keep``


def _fence_unleased(sweep: SweepDir, keep: str) -> int:
    """Fence every attempt folder of token 0 in OUT's run folders but ``keep``: those of
    drivers that are gone (only a driver writes through token 0, and the caller holds the
    driver lock). One listing of each experiment's and run's folder: called only after a
    driver was killed. Returns how many were fenced."""
    fenced = 0
    pending = [(sweep.path, 0)]
    while pending:
        path, depth = pending.pop()
        try:
            with os.scandir(path) as entries:
                names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
        except OSError:
            continue
        if depth:
            fenced += fence.fence_others(RunDir(path), keep, token=0) if any(
                fence.token_of(n) == 0 for n, _ in names) else 0
        if depth < 2:  # OUT/<id>, then OUT/<id>/<rep>
            pending += [(os.path.join(path, n), depth + 1) for n, is_dir in names
                        if is_dir and n.isdigit()]
    return fenced


class Gate:
    """The driver's leases: ``execute`` claims each run it executes and parks runs that a
    live worker holds until that lease ends (released, or stale: then it is taken over).

    Leases cost nothing while no worker shares OUT: the gate leases only once it has seen a
    worker's announcement (``Presence``), at the start or by a look every ``WATCH_EVERY``
    seconds from its own thread, and then leases for good, the runs already in flight
    included. Why that duplicates nothing, in either order:

    * a worker announces itself before its first claim, so a driver starting after it sees
      the announcement before its first run and leases everything;
    * a worker announcing itself while the driver runs claims nothing for ``WORKER_GRACE``
      (several looks of the driver), so by then the driver holds the lease of every run it
      executes: the worker's claims fail on them.

    And when the driver stalls longer than that (Ctrl-Z, a stopped job), fencing holds:
    every run the driver executes writes through an attempt folder the driver made before
    it looked for a lease (``dagrun.disk.fence``), so a worker's claim fences it, the
    driver's run commits nothing more and comes back ``superseded``; the driver then waits
    for that worker (``park``) and counts the run when it is done, as for a run it lost by a
    takeover. It never stops for a lost run.
    """

    RECHECK = 0.5  # seconds between looks at parked runs

    def __init__(self, sweep: SweepDir, lease_timeout: float) -> None:
        self.sweep = sweep
        self.holder = Holder.here(lease_timeout, role="driver")
        self.observer = Observer(lease_timeout)
        self.heartbeat = Heartbeat(lease_timeout)
        self.index = LeaseIndex(sweep)
        self._parked: dict[str, Any] = {}  # run path -> the task waiting for it
        self._next_look = 0.0
        self._lock = threading.Lock()  # admit/release against the switch to leasing
        self._leasing = False
        self._unleased: dict[str, str] = {}  # run path -> attempt folder, before leasing
        self._unleased_name = fence.folder_name(0, self.holder.worker)
        # empty attempt folders of runs that ended well, each still in its run's folder,
        # moved into the next run admitted instead of a new one (``_reuse``)
        self._spare: list[str] = []
        self._spares = sweep.spares
        self._mark = os.path.join(self._spares, SPARES_IN_RUNS)  # see ``_keep``
        self._marked = False
        self.taken: list[str] = []  # runs claimed by others while this driver executed them
        self._closed = False
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="dagrun-workers-watch",
                                         daemon=True)

    def __enter__(self) -> Gate:
        self._remove_dead_spares()
        if workers_present(self.sweep):
            self._start_leasing()
        else:
            self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=10)
        with self._lock:  # a switch to leasing still under way ends first, or never begins
            self._closed = True
            for path, name in self._unleased.items():
                fence.destroy(RunDir(path).entry(name))
            self._unleased.clear()
            self._drop_spares()
            self._remove_dead_spares()
        self.heartbeat.stop()

    @property
    def leasing(self) -> bool:
        """Whether this driver leases its runs (a worker was seen)."""
        return self._leasing

    @property
    def waiting(self) -> int:
        """Runs held by others that this driver waits for."""
        return len(self._parked)

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_EVERY):
            if self._leasing:
                return
            if workers_present(self.sweep):
                self._start_leasing()
                return

    def _start_leasing(self) -> None:
        """Lease from now on, beginning with the runs in flight (see the class docstring)."""
        with self._lock:
            if self._closed or self._leasing:
                return
            with contextlib.suppress(OSError):  # workers see a live driver that stays
                self.heartbeat.announce(self.sweep, self.holder)
            self.heartbeat.start()
            for path, name in self._unleased.items():
                run = RunDir(path)
                if not os.path.isdir(run.entry(name)):  # fenced by a worker's claim
                    self.taken.append(path)  # (it may have finished and released it since)
                    continue
                try:
                    lease = claim(run, self.holder, keep=name, index=self.index)
                except OSError:  # an unwritable run folder: no worker can claim it either
                    continue
                if lease is None:  # a worker claimed it: its claim fenced our attempt
                    self.taken.append(path)
                else:
                    self.heartbeat.add(lease)
            self._unleased.clear()
            self._drop_spares()  # a lease's attempt folder is named by its token
            self._leasing = True

    def admit(self, task: Any) -> Any | None:
        """Claim the run of ``task`` (a ``RunTask``) for this driver: the task to execute,
        writing through this driver's attempt folder; ``None`` (the task is parked) when a
        live lease of someone else holds it."""
        run = RunDir(task.path)
        with self._lock:
            if not self._leasing:  # alone on OUT: an attempt folder, no lease
                name = self._unleased_name
                made = False  # the run's folder is new: empty but for the attempt folder
                try:  # a new run usually: two mkdir calls
                    os.mkdir(run.path, 0o755)
                    made = True
                except FileExistsError:
                    pass
                except FileNotFoundError:  # OUT/<id> of a run of several repetitions
                    os.makedirs(run.path, mode=0o755, exist_ok=True)
                if not made:  # a run resumed: a killed driver's attempt folder is fenced
                    fence.fence_others(run, name, token=0)
                if not self._reuse(run, name):
                    try:  # noqa: SIM105 - cheaper than suppress (once per run)
                        fence.create(run, name)
                    except FileExistsError:
                        pass
                # a lease here: a worker shares OUT without an announcement (deleted), and
                # claimed the run maybe before our folder was there (so without fencing it)
                if not os.path.lexists(run.lease):
                    self._unleased[run.path] = name
                    return task.claimed(name, made)
                fence.destroy(run.entry(name))
        if not self._leasing:
            self._start_leasing()
        with self._lock:
            os.makedirs(run.path, mode=0o755, exist_ok=True)
            lease = self._claim(run)
            if lease is None:
                self._parked[run.path] = task
                return None
            self.heartbeat.add(lease)
            return replace(task, folder=lease.folder)

    def _claim(self, run: RunDir) -> Lease | None:
        lease = claim(run, self.holder, index=self.index)
        if lease is not None:
            return lease
        seen = self.observer.look(run)
        if seen is None:
            return claim(run, self.holder, index=self.index)
        if self.observer.stale(seen):
            return take_over(run, seen, self.holder, self.index)
        return None

    def release(self, task: Any, ended_well: bool = False) -> None:
        """The run of ``task`` ended here: remove its lease (or, unleased, its attempt
        folder). ``ended_well``: every write of the attempt was committed (its outcome is
        done), so its attempt folder is empty: kept for the next run (``_reuse``)."""
        with self._lock:
            name = self._unleased.pop(task.path, None)
            if name is None:
                self.heartbeat.release(RunDir(task.path))
                return
            folder = RunDir(task.path).entry(name)
            if not (ended_well and len(self._spare) < self.SPARES and self._keep(folder)):
                fence.destroy(folder)

    SPARES = 8  # empty attempt folders kept at most: a run reuses one as soon as it is
    # admitted, so a few do; runs admitted ahead that end together (a sweep's tail) make more

    def _keep(self, folder: str) -> bool:
        """Keep the empty attempt folder of a run that ended well where it is, in its
        finished run, for ``_reuse``. A driver killed meanwhile would leave it there, where
        nothing lists it again (a finished run is read by two ``stat`` calls), so the first
        spare kept puts up a mark in OUT/.dagrun/spares, taken down when the spares are
        dropped; the next driver that finds the mark looks through OUT for them
        (``_remove_dead_spares``). ``False``: no mark could be made (the folder is removed)."""
        if not self._marked:
            try:
                os.makedirs(self._mark, 0o755, exist_ok=True)
            except OSError:
                return False
            self._marked = True
        self._spare.append(folder)
        return True

    def _reuse(self, run: RunDir, name: str) -> bool:
        """Move a spare attempt folder (empty, in a finished run) into ``run`` as its
        attempt folder ``name``: one ``rename``, where a new folder costs a ``mkdir`` and
        the spare's removal an ``rmdir``; on ext4 those two take ~0.3-0.4 ms of CPU a run
        (a directory block allocated and freed), the rename ~12 us. The folder appears in
        the run at once, as a ``mkdir`` makes it, so the fencing is the same. A spare gone
        meanwhile (fenced by a claim of its run) fails its rename and the next is tried;
        ``False`` (the caller makes a new folder) when none is left or ``run`` cannot take
        one: its folder is gone, or it holds a folder of that name with files in it (the
        caller uses that one, as it would without spares)."""
        while self._spare:
            spare = self._spare.pop()
            try:
                os.rename(spare, run.entry(name))
                return True
            except FileNotFoundError:
                if os.path.isdir(spare):  # it is ``run``'s folder that is gone
                    self._spare.append(spare)
                    return False
                continue  # fenced and removed by a claimer of its run: take another
            except OSError:
                self._spare.append(spare)
                return False
        return False

    def _drop_spares(self) -> None:
        for spare in self._spare:
            fence.destroy(spare)
        self._spare.clear()
        if self._marked:
            with contextlib.suppress(OSError):
                os.rmdir(self._mark)
            self._marked = False
        with contextlib.suppress(OSError):
            os.rmdir(self._spares)

    def _remove_dead_spares(self) -> None:
        """Empty the spares folder: at the start what a killed driver or worker left (a
        killed driver's mark: its spare attempt folders, sought in OUT), at the end the log
        spares of this driver's workers, which ended first. This driver holds the driver
        lock; a ``dagrun worker`` alive elsewhere whose log spare goes makes another."""
        try:
            names = os.listdir(self._spares)
        except OSError:
            return
        for name in names:
            path = os.path.join(self._spares, name)
            if name.startswith(LOG_SPARE):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            elif path == self._mark and not self._marked:  # a killed driver's
                _fence_unleased(self.sweep, keep=self._unleased_name)
                with contextlib.suppress(OSError):
                    os.rmdir(path)
            # (anything else is not dagrun's: an NFS client's ``.nfs*`` file of a spare
            # removed while open, say; it is left, and so is the folder then)
        with contextlib.suppress(OSError):
            os.rmdir(self._spares)

    def park(self, task: Any) -> None:
        """The run of ``task`` came back ``superseded``: another holder claimed it. Wait for
        that holder's lease to end (then the run is admitted again: done, it is counted)."""
        with self._lock:
            self._unleased.pop(task.path, None)
            self.heartbeat.release(RunDir(task.path))  # removes it only if still ours
            self._parked[task.path] = replace(task, folder=None)
            self._next_look = min(self._next_look, time.monotonic() + self.RECHECK)

    def ready(self, idle: bool) -> list[Any]:
        """Parked tasks whose lease ended or went stale (to be admitted again). ``idle``:
        nothing else to wait for, so wait a little here instead of spinning."""
        if idle:
            time.sleep(min(0.2, max(0.0, self._next_look - time.monotonic())))
        if not self._parked or time.monotonic() < self._next_look:
            return []
        self._next_look = time.monotonic() + self.RECHECK
        back = []
        for path in list(self._parked):
            seen = self.observer.look(RunDir(path))
            if seen is None or self.observer.stale(seen):
                back.append(self._parked.pop(path))
        return back
