"""A throw-away one-node Slurm cluster for testing dagrun's ``slurm`` backend.

:class:`SlurmCluster` starts, under one short temp folder, a ``munged`` with its own key and
socket, and ``slurmctld -D`` and ``slurmd -D`` with a generated ``slurm.conf`` (ports picked
free, state, spool, pid files and logs all in the folder). Clients (``sbatch``, ``squeue``,
``dagrun``) find it through ``SLURM_CONF``: run them with
``env={**os.environ, **cluster.client_env()}``.

Facts this relies on (checked against Slurm 22.05 and munge 0.5.15, as root):

* the cluster comes up in about a second; ``scontrol ping`` and ``sinfo`` say when the
  controller answers and the node is idle;
* what works without cgroups or accounting: ``ProctrackType=proctrack/linuxproc``,
  ``TaskPlugin=task/none``, ``SelectType=select/cons_tres``,
  ``AccountingStorageType=accounting_storage/none``; a ``cgroup.conf`` with
  ``CgroupPlugin=disabled`` is *not* accepted (slurmd refuses to start), so none is written;
* ``AuthInfo=socket=PATH`` points Slurm at our munged instead of the system one;
* ``MinJobAge`` is raised so finished jobs stay visible to ``scontrol show job``;
* Slurm enforces time limits when it looks at them, about every 30 s (``--time=1`` is one
  minute): tests that hit a time limit are slow by nature, keep them few.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from . import Service

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")


def find_program(name: str) -> str | None:
    """Absolute path of ``name`` on PATH or in the sbin dirs (often not on a user's PATH)."""
    path = os.environ.get("PATH", os.defpath) + os.pathsep + os.pathsep.join(SBIN_DIRS)
    return shutil.which(name, path=path)


def slurm_unavailable_reason() -> str | None:
    """Why a :class:`SlurmCluster` cannot be started here, or None if it can."""
    missing = [p for p in (*DAEMONS, *CLIENTS) if find_program(p) is None]
    if missing:
        return (f"missing Slurm/munge programs: {', '.join(missing)} "
                "(run scripts/install-system-deps.sh as root)")
    if os.getuid() != 0:
        return "a test Slurm cluster needs root (slurmd starts jobs as their user)"
    return None


def free_port() -> int:
    """A TCP port free right now (racy; good enough for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _memory_mb() -> int:
    """The node's RealMemory: a little below what the machine has, so slurmd agrees."""
    return max(256, int(psutil.virtual_memory().total / 2**20 * 0.9))


SLURM_CONF = """\
ClusterName=dagruntest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
Waittime=0
SchedulerParameters=sched_interval=1
MaxArraySize=10001
SlurmdParameters=config_overrides
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


class SlurmCluster(Service):
    """munged + slurmctld + slurmd on this machine; use as a context manager.

    After :meth:`start`: :attr:`root` (the temp folder), :attr:`conf` (slurm.conf),
    :attr:`host` (the node's name), :attr:`cpus`, and :meth:`client_env`.
    """

    def __init__(self, *, cpus: int | None = None, start_timeout: float = 60.0) -> None:
        self.cpus = cpus or max(2, os.cpu_count() or 2)
        self.start_timeout = start_timeout
        self.root = Path()
        self.conf = Path()
        self.host = socket.gethostname().split(".")[0]
        self._procs: list[subprocess.Popen[bytes]] = []
        self._names: list[str] = []

    def client_env(self) -> dict[str, str]:
        """Variables a client (``sbatch``, ``dagrun``) needs to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
        env.update(self.client_env())
        return env

    def start(self) -> SlurmCluster:
        """Start the three daemons; return once a job could be scheduled (or raise,
        leaving nothing running)."""
        self.root = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
        try:
            self._write_files()
            self._start_munge()
            self._spawn("slurmctld", "-D", "-f", str(self.conf))
            self._spawn("slurmd", "-D", "-f", str(self.conf), "-N", self.host)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _write_files(self) -> None:
        for sub in ("state", "spool", "munge"):
            (self.root / sub).mkdir(mode=0o700)
        os.chmod(self.root, 0o755)  # jobs (and slurmstepd) read the conf
        self.munge_socket = self.root / "munge" / "munge.socket"
        subprocess.run([find_program("mungekey") or "mungekey", "--create",
                        "--keyfile", str(self.root / "munge" / "munge.key")],
                       check=True, capture_output=True)
        self.conf = self.root / "slurm.conf"
        self.conf.write_text(SLURM_CONF.format(
            host=self.host, ctld_port=free_port(), slurmd_port=free_port(),
            munge_socket=self.munge_socket, root=self.root, cpus=self.cpus,
            memory=_memory_mb()))

    def _start_munge(self) -> None:
        munge = self.root / "munge"
        self._spawn("munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                    f"--key-file={munge / 'munge.key'}", f"--pid-file={munge / 'munged.pid'}",
                    f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'seed'}")
        self._wait(lambda: self.munge_socket.exists(), "munged's socket")

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name}.out", "wb")  # noqa: SIM115 - the daemon keeps it
        try:
            self._procs.append(subprocess.Popen(
                [find_program(name) or name, *args], env=self._env(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
            self._names.append(name)
        finally:
            log.close()

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not ready():
            for name, proc in zip(self._names, self._procs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited {proc.returncode} while "
                                       f"waiting for {what}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready after {self.start_timeout} s:\n"
                                   f"{self.logs()}")
            time.sleep(0.1)

    def _node_idle(self) -> bool:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], env=self._env(),
                              capture_output=True, text=True, timeout=30, check=False)
        return proc.returncode == 0 and proc.stdout.strip() == "idle"

    def _wait_ready(self) -> None:
        self._wait(self._node_idle, "the Slurm node")

    def logs(self) -> str:
        """The daemons' logs (for error messages)."""
        parts = []
        for name in ("munged.out", "slurmctld.out", "slurmctld.log", "slurmd.out", "slurmd.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def jobs(self) -> list[str]:
        """``JOBID STATE`` of every job squeue still lists (running or pending)."""
        proc = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=self._env(),
                              capture_output=True, text=True, timeout=30, check=True)
        return [line for line in proc.stdout.splitlines() if line.strip()]

    def stop(self) -> None:
        """Cancel every job, stop the daemons (SIGTERM, then SIGKILL), remove the folder."""
        if self._procs and all(p.poll() is None for p in self._procs[1:]):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(["scancel", "--full", "--quiet", "-u", "root"], env=self._env(),
                               capture_output=True, timeout=30, check=False)
        for proc in reversed(self._procs):  # slurmd (and its job steps), slurmctld, munged
            self._stop_tree(proc)
        self._procs.clear()
        self._names.clear()
        if self.root != Path():
            shutil.rmtree(self.root, ignore_errors=True)

    def _stop_tree(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the daemon, then SIGKILL it and whatever it started (job steps run in
        sessions of their own: found as descendants, or by naming our folder)."""
        try:
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(True)]
        except psutil.Error:
            family = []
        family += [p for p in psutil.process_iter(["cmdline"])
                   if p.pid != os.getpid() and p not in family
                   and any(str(self.root) in a for a in (p.info["cmdline"] or []))]
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(family, timeout=10)
