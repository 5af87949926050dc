"""IP address management for one bridge: the subnet, who holds which address, and what each holder owns.

State lives in `<root>/network/<bridge>.json`, rewritten atomically (temp file, fsync, rename) while an
exclusive `fcntl.flock` on `<bridge>.lock` is held, so concurrent pydock processes never hand out one
address twice. Besides addresses the state remembers the iptables rules made for each container (port
publishing, links), so a release - even by another process after a crash - can remove exactly those.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydock.utils.errors import Conflict, InvalidArgument, NetworkError

# Docker 0.7's candidates for the bridge address, tried in order; the first that overlaps no host route wins.
CANDIDATE_BIPS = (
    "172.17.42.1/16", "10.0.42.1/16", "10.1.42.1/16", "10.42.42.1/16", "172.16.42.1/24", "172.16.43.1/24",
    "172.16.44.1/24", "10.0.42.1/24", "10.0.43.1/24", "192.168.42.1/24", "192.168.43.1/24", "192.168.44.1/24",
)


@dataclass
class Allocation:
    """What one container holds: its address and the rules to remove when it lets go."""

    ip: str
    veth: str = ""
    ports: list[dict[str, Any]] = field(default_factory=list)
    rules: list[list[str]] = field(default_factory=list)
    mac: str = ""  # `--mac-address`; "" derives one from the address


@dataclass
class NetState:
    """The mutable on-disk state of one bridge, edited only inside `IPAM.locked()`."""

    bridge: str
    bip: str = ""  # gateway/prefix, e.g. 172.17.42.1/16; "" until first chosen
    last: str = ""  # last address handed out (allocation continues after it, like Docker's allocator)
    setup_key: str = ""  # boot/netns/ifindex the shared bridge rules were made for
    allocations: dict[str, Allocation] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)  # {"parent": ip, "child": ip, "rules": [...]}

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.bip)

    @property
    def gateway(self) -> str:
        return str(self.interface.ip)

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return self.interface.network

    def to_json(self) -> dict[str, Any]:
        return {
            "Bridge": self.bridge, "Bip": self.bip, "Last": self.last, "SetupKey": self.setup_key,
            "Allocations": {cid: {"IP": a.ip, "Veth": a.veth, "Ports": a.ports, "Rules": a.rules,
                                  **({"Mac": a.mac} if a.mac else {})}
                            for cid, a in sorted(self.allocations.items())},
            "Links": self.links,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetState:
        allocs = {cid: Allocation(a["IP"], a.get("Veth", ""), list(a.get("Ports", [])), list(a.get("Rules", [])),
                                  a.get("Mac", ""))
                  for cid, a in data.get("Allocations", {}).items()}
        return cls(data["Bridge"], data.get("Bip", ""), data.get("Last", ""), data.get("SetupKey", ""),
                   allocs, list(data.get("Links", [])))

    def holder_of(self, ip: str) -> str | None:
        for cid, a in self.allocations.items():
            if a.ip == ip:
                return cid
        return None

    def allocate_ip(self, container_id: str, veth: str = "", requested: str = "") -> Allocation:
        """Give `container_id` the next free host address after the last one handed out (wrapping), or
        `requested` (`--ip`) when it is a free host address of the subnet."""
        if container_id in self.allocations:
            return self.allocations[container_id]
        net = self.subnet
        used = {a.ip for a in self.allocations.values()} | {self.gateway}
        if requested:
            want = host_address(net, requested, f"no configured subnet contains IP address {requested}")
            if str(want) in used:
                raise Conflict(f"Address already in use: {requested}")
            alloc = Allocation(str(want), veth)
            self.allocations[container_id] = alloc
            return alloc
        first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
        if last < first:
            raise NetworkError(f"Subnet {net} of bridge {self.bridge} has no host addresses")
        # like Docker, the first container gets network+2 (172.17.0.2); network+1 is only used after wrapping
        start = int(ipaddress.IPv4Address(self.last)) + 1 if self.last else first + 1
        size = last - first + 1
        for i in range(size):
            candidate = str(ipaddress.IPv4Address(first + (start - first + i) % size))
            if candidate not in used:
                self.last = candidate
                alloc = Allocation(candidate, veth)
                self.allocations[container_id] = alloc
                return alloc
        raise NetworkError(f"No more IP addresses available on bridge {self.bridge} ({net})")


def host_address(net: ipaddress.IPv4Network, text: str, outside: str) -> ipaddress.IPv4Address:
    """`text` as an address a host of `net` may have (not its network or broadcast address); `outside`
    is the error when it is not one."""
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidArgument(f"invalid IPv4 address: {text}") from None
    if ip not in net or ip in (net.network_address, net.broadcast_address):
        raise InvalidArgument(outside)
    return ip


def host_routes() -> list[ipaddress.IPv4Network]:
    """Networks this network namespace routes to (from /proc/net/route), the default route excluded."""
    routes = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError as err:  # choosing blind could put the bridge on a network the host already routes
        raise NetworkError(f"Cannot read this namespace's routes to choose a free IP range for the bridge "
                           f"(/proc/net/route: {err.strerror}); give one with --bip") from None
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = struct.pack("<I", int(fields[1], 16))
        mask = struct.pack("<I", int(fields[7], 16))
        if mask == b"\0\0\0\0":
            continue
        prefix = bin(int.from_bytes(mask, "big")).count("1")
        routes.append(ipaddress.IPv4Network(f"{ipaddress.IPv4Address(dest)}/{prefix}", strict=False))
    return routes


def parse_bip(bip: str) -> str:
    """`--bip 10.9.0.1/24` -> `10.9.0.1/24`: a host address with a prefix length of at most /30."""
    try:
        iface = ipaddress.IPv4Interface(bip)
    except ValueError:
        raise InvalidArgument(f"Invalid bridge address {bip!r} (expected e.g. 172.17.42.1/16)") from None
    if "/" not in bip or iface.network.prefixlen > 30 or iface.ip in (iface.network.network_address,
                                                                        iface.network.broadcast_address):
        raise InvalidArgument(f"Invalid bridge address {bip!r} (expected a host address and a prefix up to /30)")
    return str(iface)


def choose_bip(routes: list[ipaddress.IPv4Network] | None = None) -> str:
    """The first candidate subnet that overlaps no route of this namespace."""
    routes = host_routes() if routes is None else routes
    for cand in CANDIDATE_BIPS:
        net = ipaddress.IPv4Interface(cand).network
        if not any(net.overlaps(r) for r in routes):
            return cand
    raise NetworkError("Could not find a free IP range for the bridge; give one with --bip")


class IPAM:
    """Locked, persisted address allocation for one bridge under `state_dir`."""

    def __init__(self, state_dir: Path, bridge: str) -> None:
        self.state_dir = Path(state_dir)
        self.bridge = bridge
        self.path = self.state_dir / f"{bridge}.json"
        self.lock_path = self.state_dir / f"{bridge}.lock"

    @contextmanager
    def locked(self) -> Iterator[NetState]:
        """Hold the bridge's lock, yield its state, and write it back atomically if it changed."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = self._load()
            before = json.dumps(state.to_json(), sort_keys=True)  # a copy: records are edited in place
            yield state
            if json.dumps(state.to_json(), sort_keys=True) != before:
                self._save(state)
        finally:
            os.close(fd)  # closing drops the flock

    def read(self) -> NetState:
        """A snapshot of the state (shared lock, nothing written)."""
        if not self.path.exists():
            return NetState(self.bridge)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            return self._load()
        finally:
            os.close(fd)

    def _load(self) -> NetState:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return NetState(self.bridge)
        except (OSError, ValueError) as err:
            raise NetworkError(f"Corrupt network state {self.path}: {err}") from None
        return NetState.from_json(data)

    def _save(self, state: NetState) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        data = json.dumps(state.to_json(), indent=1, sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # -- conveniences (each one locked transaction) ---------------------------------------

    def allocate(self, container_id: str, bip: str | None = None) -> tuple[Allocation, NetState]:
        """Reserve an address for `container_id` (the same one again if it already holds one)."""
        with self.locked() as state:
            if not state.bip:
                state.bip = parse_bip(bip) if bip else choose_bip()
            alloc = state.allocate_ip(container_id)
            return alloc, state

    def release(self, container_id: str) -> Allocation | None:
        """Return `container_id`'s address to the pool; the released record (or None if it held none)."""
        with self.locked() as state:
            return state.allocations.pop(container_id, None)

    def list(self) -> dict[str, str]:
        """container id -> IP address."""
        return {cid: a.ip for cid, a in self.read().allocations.items()}
