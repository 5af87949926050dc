"""User-defined bridge networks (`network create|ls|inspect|rm|connect|disconnect|prune`): each one a
Linux bridge of its own (`br-<id>`) on a subnet that overlaps no other, run by a `NetworkManager` like
the default bridge, kept apart from the others by `isolation`, and its members' name/alias table for
their /etc/hosts. Records live in `netstore`; addresses, veths and rules in each bridge's IPAM state,
so a release - by the container's monitor, another process or `reconcile` - removes exactly those."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydock.links import isolation
from pydock.links.ipam import IPAM, host_address, host_routes
from pydock.links.netstore import Endpoint, NetStore, NetworkRecord
from pydock.links.network import NetworkManager, NetworkSettings
from pydock.utils.errors import Conflict, InvalidArgument, NotFound
from pydock.utils.ids import generate_id
from pydock.utils.paths import RootLayout

log = logging.getLogger(__package__)
PREDEFINED = ("bridge", "host", "none")
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_ALIAS_RE = re.compile(r"^[a-zA-Z0-9_]([a-zA-Z0-9_.-]{0,62})$")


def default_pools() -> Iterable[ipaddress.IPv4Network]:
    """Docker's default address pools for user networks: 172.18-31.0.0/16, then 192.168.x.0/20."""
    for b in range(18, 32):
        yield ipaddress.IPv4Network(f"172.{b}.0.0/16")
    for c in range(0, 256, 16):
        yield ipaddress.IPv4Network(f"192.168.{c}.0/20")


def veth_name(container_id: str, network_id: str) -> str:
    """The host end of a container's veth on a user network: one per (container, network), <= 15 bytes."""
    return f"ve{container_id[:7]}{network_id[:5]}"


def endpoint_id(container_id: str, network_id: str) -> str:
    return _sha256_hex(f"{container_id}:{network_id}")


def check_alias(alias: str) -> str:
    if not _ALIAS_RE.fullmatch(alias):
        raise InvalidArgument(f"invalid network alias {alias!r}")
    return alias


@dataclass(frozen=True)
class Member:
    """A running container on a network: its address there and the names others reach it by."""

    container_id: str
    name: str
    aliases: tuple[str, ...]
    settings: NetworkSettings


class Networks:
    """The user networks of one pydock root (`default_bridge`: the default bridge's name, None when off)."""

    def __init__(self, layout: RootLayout, default_bridge: str | None) -> None:
        self.layout = layout
        self.store = NetStore(layout.network)
        self.default_bridge = default_bridge

    def manager(self, rec: NetworkRecord) -> NetworkManager:
        return NetworkManager(self.layout, bridge=rec.bridge, bip=rec.bip, icc=True, internal=rec.internal)

    # -- records ---------------------------------------------------------------------------------

    def list(self) -> list[NetworkRecord]:
        return sorted(self.store.read().values(), key=lambda r: r.name)

    def get(self, ref: str) -> NetworkRecord:
        return self._find(self.store.read(), ref)

    @staticmethod
    def _find(nets: Mapping[str, NetworkRecord], ref: str) -> NetworkRecord:
        """By name, full id, or unambiguous id prefix (Docker's order)."""
        for rec in nets.values():
            if rec.name == ref:
                return rec
        if ref in nets:
            return nets[ref]
        found = [rec for nid, rec in nets.items() if ref and nid.startswith(ref)]
        if len(found) > 1:
            raise NotFound(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
        if not found:
            raise NotFound(f"network {ref} not found")
        return found[0]

    def _taken(self, nets: Mapping[str, NetworkRecord]) -> list[ipaddress.IPv4Network]:
        taken = [ipaddress.IPv4Network(rec.subnet) for rec in nets.values()]
        if self.default_bridge:
            bip = IPAM(self.layout.network, self.default_bridge).read().bip
            if bip:
                taken.append(ipaddress.IPv4Interface(bip).network)
        return taken

    def create(self, name: str, *, subnet: str = "", gateway: str = "", labels: Mapping[str, str] | None = None,
               internal: bool = False, attachable: bool = False) -> NetworkRecord:
        """Make the network: its record, bridge, NAT (unless internal) and isolation rules."""
        if name in PREDEFINED:
            raise Conflict(f"network with name {name} already exists")
        if not _NAME_RE.fullmatch(name):
            raise InvalidArgument(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        # the record first (its subnet is then taken), the kernel side after: a crash in between leaves
        # a network `network rm` takes apart, never a bridge or rule nothing records
        with self.store.locked() as nets:
            if any(rec.name == name for rec in nets.values()):
                raise Conflict(f"network with name {name} already exists")
            net, gw = self._choose_subnet(nets, subnet, gateway)
            rec = NetworkRecord(name=name, id=generate_id(),
                                created=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                                subnet=str(net), gateway=gw, internal=internal, attachable=attachable,
                                labels=dict(labels or {}))
            nets[rec.id] = rec
        with self.store.locked() as nets:
            try:
                self._bring_up(nets, rec)
            except BaseException:
                self._take_down(rec)
                nets.pop(rec.id, None)
                raise
        return rec

    def _choose_subnet(self, nets: Mapping[str, NetworkRecord], subnet: str,
                       gateway: str) -> tuple[ipaddress.IPv4Network, str]:
        taken = self._taken(nets)
        if subnet:
            try:
                net = ipaddress.IPv4Network(subnet, strict=True)
            except ValueError as err:
                raise InvalidArgument(f"invalid subnet {subnet}: {err}") from None
            if net.prefixlen > 30:
                raise InvalidArgument(f"invalid subnet {subnet}: at most /30 (it needs room for a gateway)")
            if any(net.overlaps(t) for t in taken):
                raise Conflict("Pool overlaps with other one on this address space")
        else:
            if gateway:
                raise InvalidArgument("a gateway needs a subnet (--subnet) to go with it")
            taken += host_routes()
            net = next((p for p in default_pools() if not any(p.overlaps(t) for t in taken)), None)
            if net is None:
                raise Conflict("could not find an available, non-overlapping IPv4 address pool among the "
                               "defaults to assign to the network")
        if gateway:
            gw = host_address(net, gateway, f"no matching subnet for gateway {gateway}")
        else:
            gw = net.network_address + 1
        return net, str(gw)

    def _bring_up(self, nets: Mapping[str, NetworkRecord], rec: NetworkRecord) -> None:
        self.manager(rec).ensure_bridge()
        others = [self.default_bridge or "", *(r.bridge for r in nets.values() if r.id != rec.id)]
        isolation.isolate(rec.bridge, others, rec.internal)

    def _take_down(self, rec: NetworkRecord) -> None:
        """Bridge, NAT and forward rules, isolation rules, state and lock files (every user of the lock
        holds the store's lock first, so nobody waits on it)."""
        mgr = self.manager(rec)
        mgr.teardown()
        isolation.forget(rec.bridge)
        mgr.ipam.lock_path.unlink(missing_ok=True)

    def remove(self, ref: str) -> NetworkRecord:
        """`network rm`: refused while a running container is on it (Docker's message)."""
        if ref in PREDEFINED:
            raise Conflict(f"{ref} is a pre-defined network and cannot be removed")
        with self.store.locked() as nets:
            rec = self._find(nets, ref)
            if self.manager(rec).allocations():
                raise Conflict(f"error while removing network: network {rec.name} id {rec.id} has active endpoints")
            self._take_down(rec)
            del nets[rec.id]
        return rec

    def prune(self) -> list[str]:
        """Remove every user network no running container is on; their names."""
        removed = []
        with self.store.locked() as nets:
            for nid, rec in sorted(nets.items(), key=lambda kv: kv[1].name):
                if not self.manager(rec).allocations():
                    self._take_down(rec)
                    del nets[nid]
                    removed.append(rec.name)
        return removed

    # -- membership ------------------------------------------------------------------------------

    def connect(self, ref: str, container_id: str, name: str, *, aliases: Iterable[str] = (), ip: str = "",
                mac: str = "") -> NetworkRecord:
        """Record `container_id` as a member (its address comes when it runs: `attach`)."""
        aliases = [check_alias(a) for a in aliases]
        with self.store.locked() as nets:
            rec = self._find(nets, ref)
            if container_id in rec.endpoints:
                raise Conflict(f"endpoint with name {name} already exists in network {rec.name}")
            if ip:
                host_address(ipaddress.IPv4Network(rec.subnet), ip, f"no configured subnet contains IP address {ip}")
            rec.endpoints[container_id] = Endpoint(name=name, aliases=aliases, ip=ip, mac=mac)
        return rec

    def disconnect(self, ref: str, container_id: str, name: str) -> NetworkRecord:
        """Forget the membership; the caller has released a running container's address first."""
        with self.store.locked() as nets:
            rec = self._find(nets, ref)
            if rec.endpoints.pop(container_id, None) is None:
                raise Conflict(f"container {name} is not connected to network {rec.name}")
        return rec

    def forget(self, container_id: str) -> None:
        """A removed container leaves every network (addresses were released when it stopped)."""
        if not self.store.path.exists():
            return
        with self.store.locked() as nets:
            for rec in nets.values():
                rec.endpoints.pop(container_id, None)

    def rename(self, container_id: str, name: str) -> list[str]:
        """A renamed container's endpoints carry its new name; the ids of its networks."""
        if not self.store.path.exists():
            return []
        with self.store.locked() as nets:
            for rec in nets.values():
                if container_id in rec.endpoints:
                    rec.endpoints[container_id].name = name
            return [rec.id for rec in nets.values() if container_id in rec.endpoints]

    def memberships(self, container_id: str) -> list[NetworkRecord]:
        """The networks `container_id` is configured on."""
        if not self.store.path.exists():
            return []
        return [rec for rec in self.list() if container_id in rec.endpoints]

    def attach(self, container_id: str, network_ids: Iterable[str]) -> list[tuple[NetworkRecord, NetworkSettings]]:
        """Addresses (and isolation, after a reboot) on the given networks for a starting container;
        all or nothing."""
        done: list[tuple[NetworkRecord, NetworkSettings]] = []
        with self.store.locked() as nets:
            try:
                for nid in network_ids:
                    rec = nets.get(nid)
                    if rec is None or container_id not in rec.endpoints:
                        raise NotFound(f"network {nid[:12]} not found")
                    ep = rec.endpoints[container_id]
                    settings = self.manager(rec).allocate(container_id, ip=ep.ip, mac=ep.mac,
                                                          veth=veth_name(container_id, rec.id))
                    assert settings is not None  # a user network's bridge is never `none`
                    done.append((rec, settings))
                    isolation.isolate(rec.bridge, [self.default_bridge or "",
                                                   *(r.bridge for r in nets.values() if r.id != rec.id)], rec.internal)
            except BaseException:
                for rec, _ in done:
                    self.manager(rec).release(container_id)
                raise
        return done

    def release(self, container_id: str, network_ids: Iterable[str] | None = None) -> list[str]:
        """Give back the container's addresses (all, or on `network_ids`); the ids of the networks it left."""
        if not self.store.path.exists():
            return []
        left = []
        with self.store.locked() as nets:
            for rec in nets.values():
                if network_ids is not None and rec.id not in network_ids:
                    continue
                mgr = self.manager(rec)
                if container_id in mgr.allocations():
                    mgr.release(container_id)
                    left.append(rec.id)
        return left

    def reconcile(self, live_ids: Iterable[str]) -> list[str]:
        """Release every address whose container is not running any more; the networks that changed."""
        if not self.store.path.exists():
            return []
        live = set(live_ids)
        changed = []
        with self.store.locked() as nets:
            for rec in nets.values():
                if self.manager(rec).reconcile(live):
                    changed.append(rec.id)
        return changed

    def members(self, rec: NetworkRecord) -> list[Member]:
        """The running containers on `rec`, with their addresses."""
        mgr = self.manager(rec)
        out = []
        for cid in sorted(mgr.allocations()):
            ep = rec.endpoints.get(cid)
            settings = mgr.settings(cid)
            if ep is not None and settings is not None:
                out.append(Member(cid, ep.name, tuple(ep.aliases), settings))
        return out

    def refresh_hosts(self, network_ids: Iterable[str], write: Callable[[str, list[str]], None]) -> None:
        """Under the store's lock, call `write(container_id, lines)` for every running member of those
        networks with the hosts lines of all its networks' members (so the last writer is current)."""
        if not self.store.path.exists():
            return
        with self.store.locked() as nets:
            members = {nid: self.members(rec) for nid, rec in nets.items()}
            wanted = {m.container_id for nid in network_ids for m in members.get(nid, [])}
            for cid in sorted(wanted):
                write(cid, hosts_lines(cid, [ms for ms in members.values()
                                             if any(m.container_id == cid for m in ms)]))

    # -- what inspect shows ----------------------------------------------------------------------

    def to_api(self, rec: NetworkRecord) -> dict[str, Any]:
        """Docker's network inspect shape."""
        containers = {m.container_id: {
            "Name": m.name, "EndpointID": endpoint_id(m.container_id, rec.id), "MacAddress": m.settings.mac_address,
            "IPv4Address": f"{m.settings.ip_address}/{m.settings.ip_prefix_len}", "IPv6Address": ""}
            for m in self.members(rec)}
        return {"Name": rec.name, "Id": rec.id, "Created": rec.created, "Scope": "local", "Driver": "bridge",
                "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": rec.subnet, "Gateway": rec.gateway}]},
                "Internal": rec.internal, "Attachable": rec.attachable, "Ingress": False, "ConfigFrom": {"Network": ""},
                "ConfigOnly": False, "Containers": containers,
                "Options": {"com.docker.network.bridge.name": rec.bridge, **rec.options}, "Labels": dict(rec.labels)}


def hosts_lines(container_id: str, networks: Iterable[Iterable[Member]]) -> list[str]:
    """/etc/hosts lines for a member: every member of its networks (itself too) by name and aliases."""
    lines: list[str] = []
    for members in networks:
        for m in members:
            names = " ".join(dict.fromkeys((m.name, *m.aliases)))
            line = f"{m.settings.ip_address}\t{names}"
            if line not in lines:
                lines.append(line)
    return lines


def predefined_id(root: str, name: str) -> str:
    """A stable id for `bridge`, `host` and `none` of one root."""
    return _sha256_hex(f"{root}:{name}")


def _sha256_hex(text: str) -> str:
    import hashlib  # lazy: it loads libcrypto, ~3.5 MiB resident in each monitor (cmdserver preloads this module)

    return hashlib.sha256(text.encode()).hexdigest()
