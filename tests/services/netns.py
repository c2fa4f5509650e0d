"""A pool of fake SSH hosts, each one a Linux network namespace running its own sshd.

The namespaces share this machine's filesystem (same files, same python at the
same path), which is what dagrun's ssh backend assumes of a real host pool;
only the network stack is separate, so a host can be "dropped" by taking its
link down.

Addressing: each host gets a veth pair and a /30 carved from 198.18.0.0/15
(RFC 2544 "benchmarking" space: reserved for lab tests, never on the Internet,
and unlike 10/8, 172.16/12, 192.168/16 and 100.64/10 rarely used by docker,
VPNs or home networks). Documentation ranges are not safe either (this very
machine's eth0 is on 192.0.2.0/24), so any candidate /30 that overlaps an
existing route or address is rejected and another one drawn at random.

Isolation: the namespace side only has its /30 and no default route, so its
traffic can only reach this machine's end of the veth; nothing is routed elsewhere.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import ipaddress
import json
import os
import pwd
import random
import secrets
import shutil
import subprocess
from dataclasses import dataclass

import psutil

from . import Service
from .sshd import (
    ClientHost,
    SshdInstance,
    find_program,
    generate_key,
    short_tempdir,
    sshd_unavailable_reason,
    write_client_config,
)

ADDRESS_POOL = ipaddress.ip_network("198.18.0.0/15")
NETNS_PREFIX = "dagrun-"
BLACKHOLE_METRIC = 4242


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; raise with its stderr on failure when ``check``."""
    proc = subprocess.run(
        [find_program("ip") or "ip", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


@functools.lru_cache(maxsize=1)
def netns_unavailable_reason() -> str | None:
    """Why :class:`NetnsHosts` cannot work here (None if it can), found by trying it."""
    if reason := sshd_unavailable_reason():
        return reason
    if find_program("ip") is None:
        return "`ip` (iproute2) not found; run scripts/install-system-deps.sh as root"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN + CAP_NET_ADMIN)"
    name = f"{NETNS_PREFIX}probe-{secrets.token_hex(3)}"
    veth = f"dgp{secrets.token_hex(3)}"
    try:
        for args in (
            ["netns", "add", name],
            ["link", "add", veth, "type", "veth", "peer", "name", veth + "n", "netns", name],
        ):
            proc = _ip(*args, check=False)
            if proc.returncode != 0:
                return (
                    f"cannot create network namespace/veth: ip {' '.join(args)}: "
                    f"{proc.stderr.strip()}"
                )
        return None
    finally:
        _ip("link", "del", veth, check=False)
        _ip("netns", "del", name, check=False)


def _used_networks() -> list[ipaddress.IPv4Network]:
    """All IPv4 networks routed or assigned on this machine (default routes excluded)."""
    nets: list[ipaddress.IPv4Network] = []
    routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
    for r in routes:
        dst = r.get("dst", "default")
        if dst != "default":
            nets.append(ipaddress.IPv4Network(dst, strict=False))
    for link in json.loads(_ip("-j", "-4", "addr").stdout or "[]"):
        for a in link.get("addr_info", []):
            nets.append(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False))
    return nets


def pick_subnets(count: int, rng: random.Random | None = None) -> list[ipaddress.IPv4Network]:
    """``count`` random /30s from :data:`ADDRESS_POOL` overlapping nothing in use."""
    rng = rng or random.Random()
    used = _used_networks()
    chosen: list[ipaddress.IPv4Network] = []
    n_slots = ADDRESS_POOL.num_addresses // 4
    for _ in range(1000):
        if len(chosen) == count:
            return chosen
        base = int(ADDRESS_POOL.network_address) + 4 * rng.randrange(n_slots)
        net = ipaddress.IPv4Network((base, 30))
        if not any(net.overlaps(u) for u in used + chosen):
            chosen.append(net)
    raise RuntimeError(f"no free /30 left in {ADDRESS_POOL}")


def cleanup_stale_namespaces() -> list[str]:
    """Delete namespaces left by dead test processes (names carry the creator's pid)."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        parts = name.split("-")
        if (
            name.startswith(NETNS_PREFIX)
            and len(parts) >= 3
            and parts[1].isdigit()
            and not psutil.pid_exists(int(parts[1]))
        ):
            _delete_namespace(name)
            removed.append(name)
    return removed


def _delete_namespace(name: str) -> None:
    """Kill every process inside namespace ``name`` and delete it (its veths go with it)."""
    pids = _ip("netns", "pids", name, check=False).stdout.split()
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(int(pid))
            p.kill()
            procs.append(p)
    psutil.wait_procs(procs, timeout=5)
    _ip("netns", "del", name, check=False)


@dataclass
class NetnsHost:
    """One fake host: a namespace, the veth pair to it, and the sshd inside."""

    alias: str
    netns: str
    veth_host: str  # end in this machine's namespace
    veth_ns: str  # end inside the host's namespace
    host_addr: str  # this machine's address on the link
    addr: str  # the host's address (sshd listens here)
    subnet: str  # the /30 of the link
    sshd: SshdInstance | None = None


class NetnsHosts(Service):
    """N sshd hosts in N network namespaces, reachable as ``ssh -F config_path ALIAS``.

    Use as a context manager (cleanup also runs at interpreter exit)::

        with NetnsHosts(2) as pool:
            ssh -F pool.config_path pool.aliases[0] ...
            pool.take_down(pool.aliases[1])
    """

    def __init__(
        self, count: int = 2, alias_prefix: str = "nshost", start_timeout: float = 10.0
    ) -> None:
        self.count, self.alias_prefix, self.start_timeout = count, alias_prefix, start_timeout
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.tag = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.workdir = short_tempdir("dgns-")
        self.key_path = self.workdir / "client_key"
        self.config_path = self.workdir / "ssh_config"
        self.known_hosts_path = self.workdir / "known_hosts"
        self.hosts: dict[str, NetnsHost] = {}

    @property
    def aliases(self) -> list[str]:
        """Host aliases in creation order."""
        return list(self.hosts)

    def start(self) -> NetnsHosts:
        """Create namespaces, veths and sshds, and write the client config."""
        if reason := netns_unavailable_reason():
            raise RuntimeError(reason)
        atexit.register(self.close)
        try:
            cleanup_stale_namespaces()
            client_pub = generate_key(self.key_path, "dagrun-netns-client")
            short = self.tag.split("-")[1]
            for i, net in enumerate(pick_subnets(self.count)):
                host_ip, ns_ip = (str(a) for a in net.hosts())
                h = NetnsHost(
                    alias=f"{self.alias_prefix}{i}",
                    netns=f"{NETNS_PREFIX}{self.tag}-{i}",
                    veth_host=f"dg{short}h{i}",
                    veth_ns=f"dg{short}n{i}",
                    host_addr=host_ip,
                    addr=ns_ip,
                    subnet=str(net),
                )
                self.hosts[h.alias] = h
                self._create_link(h, net.prefixlen)
                h.sshd = SshdInstance(
                    self.workdir / h.alias, h.addr, 22, self.user, client_pub, netns=h.netns
                )
                h.sshd.start(self.start_timeout)
            self.known_hosts_path.write_text(
                "".join(
                    f"{h.alias} {h.sshd.host_public_key}\n" for h in self.hosts.values() if h.sshd
                )
            )
            write_client_config(
                self.config_path,
                [ClientHost(h.alias, h.addr, 22) for h in self.hosts.values()],
                self.user,
                self.key_path,
                self.known_hosts_path,
            )
        except BaseException:
            self.close()
            raise
        return self

    @staticmethod
    def _create_link(h: NetnsHost, prefixlen: int) -> None:
        _ip("netns", "add", h.netns)
        _ip("link", "add", h.veth_host, "type", "veth", "peer", "name", h.veth_ns, "netns", h.netns)
        _ip("addr", "add", f"{h.host_addr}/{prefixlen}", "dev", h.veth_host)
        _ip("link", "set", h.veth_host, "up")
        # Leak guard: if the link's own route vanishes (e.g. veth set admin-down), packets
        # for the host must be dropped here, not sent to the default gateway.
        _ip("route", "add", "blackhole", h.subnet, "metric", str(BLACKHOLE_METRIC))
        _ip("-n", h.netns, "link", "set", "lo", "up")
        _ip("-n", h.netns, "addr", "add", f"{h.addr}/{prefixlen}", "dev", h.veth_ns)
        _ip("-n", h.netns, "link", "set", h.veth_ns, "up")

    def take_down(self, alias: str, how: str = "link") -> None:
        """Make host ``alias`` disappear mid-sweep.

        ``how="link"``: set the namespace end of the veth down; this machine's end loses
        carrier but keeps its route, so packets are silently lost, like a crashed host
        or pulled cable (existing TCP connections hang until a keepalive fails).
        ``how="kill"``: kill every process in the namespace (sshd and the runs);
        peers see connection resets / refused connections immediately.
        """
        h = self.hosts[alias]
        if how == "link":
            _ip("-n", h.netns, "link", "set", h.veth_ns, "down")
        elif how == "kill":
            for pid in _ip("netns", "pids", h.netns, check=False).stdout.split():
                with contextlib.suppress(psutil.Error):
                    psutil.Process(int(pid)).kill()
        else:
            raise ValueError(f"unknown how={how!r}")

    def bring_up(self, alias: str) -> None:
        """Undo ``take_down(alias, "link")``."""
        h = self.hosts[alias]
        _ip("-n", h.netns, "link", "set", h.veth_ns, "up")

    def close(self) -> None:
        """Kill all processes in the namespaces, delete namespaces, veths and files."""
        for h in self.hosts.values():
            if h.sshd is not None:
                h.sshd.stop()
            _delete_namespace(h.netns)
            _ip("link", "del", h.veth_host, check=False)  # normally already gone
            _ip("route", "del", "blackhole", h.subnet, "metric", str(BLACKHOLE_METRIC), check=False)
        self.hosts.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.close)

    def stop(self) -> None:
        """The :class:`Service` name of :meth:`close`."""
        self.close()


__all__ = [
    "NetnsHost",
    "NetnsHosts",
    "cleanup_stale_namespaces",
    "netns_unavailable_reason",
    "pick_subnets",
]
