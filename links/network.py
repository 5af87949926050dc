"""Container networking policy: one bridge, an address per running container, published ports and link holes.

`NetworkManager` glues the pieces: `ipam` (locked, persisted state), `bridge`/`veth` (kernel), `rules`
(iptables shapes) and `iptables` (the binary). Every change runs under the bridge's state lock and is
recorded there, so `release()` - from this process, another one, or `reconcile` after a crash - removes
exactly what was made. With bridge `none` networking is off: `allocate()` returns None.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydock.links import bridge as br
from pydock.links import iptables, isolation, rules
from pydock.links.ipam import IPAM, NetState, choose_bip, parse_bip
from pydock.links.ports import ADDRESS_TAKEN, Port, PortSpec, bind_address, in_use_on_host, parse_port, \
    parse_ports, parse_publish
from pydock.links.veth import delete_leftover_veth, host_veth_name
from pydock.utils.errors import Conflict, InvalidArgument, KernelFeatureMissing, NetworkError, NotFound
from pydock.utils.paths import RootLayout

log = logging.getLogger(__package__)
DISABLED = "none"
DEFAULT_BRIDGE = "pydock0"
EPHEMERAL_START = 49153  # Docker 0.7's first automatically chosen host port
EPHEMERAL_END = 65535
MTU = 1500


@dataclass(frozen=True, order=True)
class PortMapping:
    """A published port: `host_ip:host_port` on the host forwards to the container's `port`."""

    port: Port
    host_ip: str
    host_port: int

    def __str__(self) -> str:
        return f"{self.host_ip or '0.0.0.0'}:{self.host_port}->{self.port}"

    @property
    def host(self) -> str:
        """What `pydock port` prints: `0.0.0.0:49153`."""
        return f"{self.host_ip or '0.0.0.0'}:{self.host_port}"

    def to_json(self) -> dict[str, Any]:
        return {"PrivatePort": self.port.number, "Type": self.port.proto, "HostIp": self.host_ip or "0.0.0.0",
                "HostPort": self.host_port}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PortMapping:
        return cls(Port(int(data["PrivatePort"]), data.get("Type", "tcp")), data.get("HostIp", "0.0.0.0"),
                   int(data["HostPort"]))


@dataclass(frozen=True)
class NetworkSettings:
    """A container's network: what `inspect` shows and what the lxc config and dockerinit need."""

    ip_address: str
    ip_prefix_len: int
    gateway: str
    bridge: str
    mac_address: str = ""
    host_veth: str = ""
    ports: tuple[PortMapping, ...] = field(default_factory=tuple)

    def with_ports(self, mappings: Iterable[PortMapping]) -> NetworkSettings:
        return replace(self, ports=tuple(sorted(set(self.ports) | set(mappings))))

    def to_json(self) -> dict[str, Any]:
        """Docker's `NetworkSettings` shape (`Ports` = {"80/tcp": [{"HostIp", "HostPort"}]})."""
        ports: dict[str, list[dict[str, str]]] = {}
        for m in self.ports:
            ports.setdefault(str(m.port), []).append({"HostIp": m.host_ip or "0.0.0.0", "HostPort": str(m.host_port)})
        return {"IPAddress": self.ip_address, "IPPrefixLen": self.ip_prefix_len, "Gateway": self.gateway,
                "Bridge": self.bridge, "MacAddress": self.mac_address, "HostVeth": self.host_veth,
                "PortMapping": None, "Ports": ports}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> NetworkSettings | None:
        if not data or not data.get("IPAddress"):
            return None
        mappings = []
        for key, binds in (data.get("Ports") or {}).items():
            for b in binds or ():
                mappings.append(PortMapping(parse_port(key), b.get("HostIp", "0.0.0.0"), int(b["HostPort"])))
        return cls(data["IPAddress"], int(data.get("IPPrefixLen", 0)), data.get("Gateway", ""),
                   data.get("Bridge", ""), data.get("MacAddress", ""), data.get("HostVeth", ""),
                   tuple(sorted(mappings)))

    def lxc_config(self, *, gateway: bool = False, index: int = 0) -> list[tuple[str, str]]:
        """lxc 5 `lxc.net.0.*` keys for a veth on the bridge with a static address.

        With `gateway`, `lxc.net.0.ipv4.gateway` makes lxc add the container's default route via the
        bridge's address; the launcher always asks for it. Nothing else sets a route (dockerinit only
        isolates mounts), so without it the container reaches its subnet only.
        """
        key = f"lxc.net.{index}"
        lines = [(f"{key}.type", "veth"), (f"{key}.link", self.bridge), (f"{key}.flags", "up"),
                 (f"{key}.name", f"eth{index}"), (f"{key}.mtu", str(MTU))]
        if self.mac_address:
            lines.append((f"{key}.hwaddr", self.mac_address))
        if self.host_veth:
            lines.append((f"{key}.veth.pair", self.host_veth))
        # lxc derives a wrong broadcast (0.0.0.255) unless it is given after the address
        iface = ipaddress.IPv4Interface(f"{self.ip_address}/{self.ip_prefix_len}")
        lines.append((f"{key}.ipv4.address", f"{iface} {iface.network.broadcast_address}"))
        if gateway:
            lines.append((f"{key}.ipv4.gateway", self.gateway))
        return lines


def lxc_network_config(settings: NetworkSettings, *, gateway: bool = False,
                       extra: Iterable[NetworkSettings] = ()) -> list[tuple[str, str]]:
    """The lxc network keys for a container's veth on the bridge (eth0, the default route's), then one
    per further network it is connected to (eth1...); without any: lxcconf.EMPTY_NETWORK."""
    lines = settings.lxc_config(gateway=gateway)
    for index, more in enumerate(extra, start=1):
        lines += more.lxc_config(index=index)
    return lines


def check_mac(mac: str) -> str:
    """`--mac-address 02:42:ac:11:00:02`: six hex pairs, unicast, lower-cased."""
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
        raise InvalidArgument(f"invalid MAC address: {mac}")
    if int(parts[0], 16) & 1:
        raise InvalidArgument(f"invalid MAC address: {mac} is a multicast address")
    return mac.lower()


def mac_for_ip(ip: str) -> str:
    """A locally administered MAC derived from the address (02:42:a.b.c.d), so a reused IP keeps one MAC."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


def _setup_key(bridge: str, icc: bool) -> str:
    """Identifies the kernel state the shared rules were made in: boot, network namespace, bridge instance."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError as err:  # the key then changes only with the namespace or the bridge
        log.debug("no boot id (%s): a reboot goes unnoticed unless the bridge is new", err.strerror)
        boot = "?"
    return f"{boot}:{os.stat('/proc/self/ns/net').st_ino}:{br.ifindex(bridge)}:icc={int(icc)}"


def _port_free(proto: str, host_ip: str, port: int) -> bool:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC) as s:
        try:
            s.bind(bind_address(host_ip, port))
        except OSError as err:
            if err.errno in ADDRESS_TAKEN:
                return False
            raise
    return True


class NetworkManager:
    """Bridge networking for one pydock root (state in `RootLayout.network`)."""

    def __init__(self, layout: RootLayout, bridge: str = DEFAULT_BRIDGE, bip: str | None = None,
                 icc: bool = True, internal: bool = False) -> None:
        self.layout = layout
        self.bridge = bridge or DEFAULT_BRIDGE
        self.enabled = self.bridge != DISABLED
        if self.enabled:
            br.validate_ifname(self.bridge)
        self.bip = parse_bip(bip) if bip else None
        self.icc = icc
        self.internal = internal  # a user network without a way out: no NAT, no forwarding off the bridge
        self.ipam = IPAM(layout.network, self.bridge)

    @staticmethod
    def host_veth_name(container_id: str) -> str:
        return host_veth_name(container_id)

    # -- bridge ---------------------------------------------------------------------------

    def _ensure_bridge(self, state: NetState) -> None:
        """Inside the lock: pick the subnet, create the bridge if missing, install the shared rules once."""
        current = br.address(self.bridge) if br.link_exists(self.bridge) else None
        if not state.bip:
            state.bip = self.bip or current or choose_bip()
        elif self.bip and self.bip != state.bip:
            if state.allocations:
                raise NetworkError(f"Bridge {self.bridge} uses {state.bip} and has containers; cannot switch to {self.bip}")
            state.bip, state.setup_key = self.bip, ""
        if current is not None and current != state.bip:
            if state.allocations:
                raise NetworkError(f"Bridge {self.bridge} has address {current}, but its containers use {state.bip}")
            state.bip, state.setup_key = current, ""
        if current is None or not br.is_up(self.bridge):
            br.create_bridge(self.bridge, state.bip)
        key = _setup_key(self.bridge, self.icc)
        if state.setup_key != key:
            self._install_shared_rules(state)
            state.setup_key = key

    def _install_shared_rules(self, state: NetState) -> None:
        br.write_sysctl("net.ipv4.ip_forward", "1")
        if not self.icc:
            # bridged (container to container) traffic only meets FORWARD through br_netfilter
            nf = br.read_sysctl("net.bridge.bridge-nf-call-iptables")
            if nf is None:
                raise KernelFeatureMissing("icc=false needs br_netfilter (net.bridge.bridge-nf-call-iptables); "
                                           "load the br_netfilter module")
            if nf != "1":
                br.write_sysctl("net.bridge.bridge-nf-call-iptables", "1")
        # inserted on top like Docker 0.7, so a host firewall's later DROP does not shadow them
        if not self.internal:
            iptables.insert(rules.masquerade(str(state.subnet)))
            for rule in rules.forward(self.bridge):
                iptables.insert(rule)
        iptables.delete(rules.icc(self.bridge, not self.icc))
        iptables.insert(rules.icc(self.bridge, self.icc))
        # links made before (another process, other icc setting) must stay above the icc rule
        for entry in state.links:
            for data in entry.get("Rules", []):
                rule = iptables.Rule.from_json(data)
                iptables.delete(rule)
                iptables.insert(rule)
        isolation.keep_on_top()  # user networks' isolation comes before any bridge's ACCEPT

    def ensure_bridge(self) -> str | None:
        """Create the bridge and its rules if needed; its `ip/prefix`, or None when networking is off."""
        if not self.enabled:
            return None
        with self.ipam.locked() as state:
            self._ensure_bridge(state)
            return state.bip

    def teardown(self) -> None:
        """Undo everything: every container's rules and veths, the shared rules, the bridge, the state file."""
        if not self.enabled:
            return
        with self.ipam.locked() as state:
            for cid in list(state.allocations):
                self._release_locked(state, cid)
            for entry in state.links:
                self._delete_rules(entry.get("Rules", []))
            state.links.clear()
            if state.bip:
                iptables.delete(rules.masquerade(str(state.subnet)))
            for rule in [*rules.forward(self.bridge), rules.icc(self.bridge, True), rules.icc(self.bridge, False)]:
                iptables.delete(rule)
            br.delete_link(self.bridge)
            state.bip = state.last = state.setup_key = ""
        self.ipam.path.unlink(missing_ok=True)  # the lock file stays: another process may be waiting on it

    # -- addresses -------------------------------------------------------------------------

    def _settings(self, state: NetState, container_id: str) -> NetworkSettings:
        alloc = state.allocations[container_id]
        mappings = tuple(sorted(PortMapping.from_json(p) for p in alloc.ports))
        return NetworkSettings(alloc.ip, state.subnet.prefixlen, state.gateway, self.bridge,
                               alloc.mac or mac_for_ip(alloc.ip), alloc.veth, mappings)

    def allocate(self, container_id: str, *, ip: str = "", mac: str = "", veth: str = "") -> NetworkSettings | None:
        """An address on the bridge for `container_id` (the same one if it already holds one); None if disabled.
        `ip`/`mac`: the ones asked for (`--ip`, `--mac-address`); `veth`: the host end's name."""
        if not self.enabled:
            return None
        with self.ipam.locked() as state:
            self._ensure_bridge(state)
            fresh = container_id not in state.allocations
            alloc = state.allocate_ip(container_id, requested=ip)
            if fresh:
                alloc.mac = check_mac(mac) if mac else ""
                veth = veth or self.host_veth_name(container_id)
                if any(a.veth == veth for cid, a in state.allocations.items() if cid != container_id):
                    veth = f"veth{container_id[:11]}"  # 8-char prefix shared with a running container
                alloc.veth = veth
                # a veth left by a killed container with the same name would make lxc fail to start
                delete_leftover_veth(veth)
            return self._settings(state, container_id)

    def settings(self, container_id: str) -> NetworkSettings | None:
        """The current settings of an allocated container, or None."""
        state = self.ipam.read()
        if not state.bip or container_id not in state.allocations:
            return None
        return self._settings(state, container_id)

    def release(self, container_id: str) -> None:
        """Give the address back, remove the container's port and link rules, delete a leftover host veth."""
        if not self.enabled:
            return
        with self.ipam.locked() as state:
            self._release_locked(state, container_id)

    def _release_locked(self, state: NetState, container_id: str) -> None:
        alloc = state.allocations.pop(container_id, None)
        veth = alloc.veth if alloc and alloc.veth else self.host_veth_name(container_id)
        if alloc is not None:
            self._delete_rules(alloc.rules)
            keep = []
            for entry in state.links:
                if alloc.ip in (entry.get("Parent"), entry.get("Child")):
                    self._delete_rules(entry.get("Rules", []))
                else:
                    keep.append(entry)
            state.links[:] = keep
        delete_leftover_veth(veth)

    def reconcile(self, live_ids: Iterable[str]) -> list[str]:
        """Release every allocation whose container is not running any more (after a crash); the ids released."""
        if not self.enabled:
            return []
        live = set(live_ids)
        with self.ipam.locked() as state:
            dead = [cid for cid in state.allocations if cid not in live]
            for cid in dead:
                self._release_locked(state, cid)
        return dead

    def allocations(self) -> dict[str, str]:
        """container id -> IP address of every container holding one."""
        return self.ipam.list() if self.enabled else {}

    @staticmethod
    def _delete_rules(recorded: Iterable[list[str]]) -> None:
        """Delete each rule (a missing one is fine); one that fails is reported and the rest still go.

        Best effort, like Docker's Disable(): a release must not stop half-way. iptables.delete already
        treats an absent rule as done, so a NetworkError here means the rule may still be in the kernel.
        """
        for data in recorded:
            try:
                iptables.delete(iptables.Rule.from_json(data))
            except NetworkError as err:
                log.warning("iptables rule not removed, it may still be in place: %s", err)

    # -- published ports --------------------------------------------------------------------

    def publish(self, container_id: str, settings: NetworkSettings | None, port_specs: Iterable[str | PortSpec] = (),
                *, publish_all: bool = False,
                exposed: Iterable[str | int | Port] | Mapping[str, object] = ()) -> list[PortMapping]:
        """Forward host ports to the container (`-p`, and with `-P` every exposed port to an ephemeral one)."""
        specs = [s if isinstance(s, PortSpec) else parse_publish(s) for s in port_specs]
        # a bare port ("80/tcp", as -P lists exposed ports) adds nothing when the port is published explicitly
        bound = {s.port for s in specs if s.host_port or s.host_ip}
        specs = list(dict.fromkeys(s for s in specs if s.host_port or s.host_ip or s.port not in bound))
        if publish_all:
            explicit = {s.port for s in specs}
            specs += [PortSpec(p) for p in parse_ports(exposed) if p not in explicit]
        if not specs:
            return []
        if not self.enabled or settings is None:
            raise NetworkError("Cannot publish ports: networking is disabled for this container")
        with self.ipam.locked() as state:
            alloc = state.allocations.get(container_id)
            if alloc is None:
                raise NetworkError(f"Container {container_id[:12]} has no network address")
            made: list[iptables.Rule] = []
            wanted: list[iptables.Rule] = []
            mappings: list[PortMapping] = []
            try:
                for spec in specs:
                    host_port = spec.host_port or self._ephemeral(state, spec.port.proto, spec.host_ip)
                    self._check_free(state, spec.port.proto, spec.host_ip, host_port)
                    if spec.host_port and not _port_free(spec.port.proto, spec.host_ip, host_port):
                        # a host program listens there: DNAT would silently steal its traffic
                        raise in_use_on_host(spec.host_ip, host_port)
                    mapping = PortMapping(spec.port, spec.host_ip or "0.0.0.0", host_port)
                    for rule in rules.dnat(self.bridge, spec.host_ip, host_port, alloc.ip, spec.port):
                        added = iptables.insert(rule) if rule.chain == "FORWARD" else iptables.append(rule)
                        if added:
                            made.append(rule)
                        wanted.append(rule)
                    alloc.ports.append(mapping.to_json())
                    mappings.append(mapping)
            except BaseException:
                self._delete_rules([r.to_json() for r in made])
                raise
            alloc.rules.extend(r.to_json() for r in wanted)
        return mappings

    @staticmethod
    def _taken(state: NetState, proto: str) -> list[tuple[str, int]]:
        out = []
        for a in state.allocations.values():
            for p in a.ports:
                if p.get("Type", "tcp") == proto:
                    out.append((p.get("HostIp", "0.0.0.0"), int(p["HostPort"])))
        return out

    def _taken_elsewhere(self, proto: str) -> list[tuple[str, int]]:
        """Host ports published on this root's other bridges (the default one, user networks). Their
        state files are read without their locks - each is replaced whole, and taking a second bridge's
        lock while holding ours could deadlock with a publish there - so two publishes of one port on two
        bridges at the very same moment can still both pass."""
        out: list[tuple[str, int]] = []
        for path in self.ipam.state_dir.glob("*.json"):
            if path == self.ipam.path or path.name.startswith("."):
                continue
            try:
                data = json.loads(path.read_text())
                if "Allocations" in data:
                    out += self._taken(NetState.from_json(data), proto)
            except (OSError, ValueError, KeyError) as err:
                log.debug("published ports of %s not read (%s): not checked against", path.name, err)
        return out

    def _check_free(self, state: NetState, proto: str, host_ip: str, host_port: int) -> None:
        ip = host_ip or "0.0.0.0"
        for other_ip, other_port in [*self._taken(state, proto), *self._taken_elsewhere(proto)]:
            if other_port == host_port and "0.0.0.0" in (ip, other_ip) or (other_ip, other_port) == (ip, host_port):
                raise Conflict(f"Bind for {ip}:{host_port} failed: port is already allocated")

    def _ephemeral(self, state: NetState, proto: str, host_ip: str) -> int:
        used = {port for _, port in [*self._taken(state, proto), *self._taken_elsewhere(proto)]}
        for port in range(EPHEMERAL_START, EPHEMERAL_END + 1):
            if port not in used and _port_free(proto, host_ip, port):
                return port
        raise NetworkError(f"No free host port for {proto} in {EPHEMERAL_START}-{EPHEMERAL_END}")

    def port(self, container_id: str, private: str | int | Port) -> list[PortMapping]:
        """`pydock port`: where the container's private port is published (NotFound if nowhere)."""
        want = parse_port(private)
        settings = self.settings(container_id) if self.enabled else None
        found = [m for m in (settings.ports if settings else ()) if m.port == want]
        if not found:
            raise NotFound(f"No public port '{want}' published for {container_id[:12]}")
        return found

    # -- links ------------------------------------------------------------------------------

    def enable_link(self, parent_ip: str, child_ip: str, ports: Iterable[str | int | Port] | Mapping[str, object]) -> None:
        """Let the parent reach the child's exposed ports (and the replies back): matters with icc off."""
        if not self.enabled or not parent_ip or not child_ip:
            return
        port_list = parse_ports(ports)
        wanted = rules.link(self.bridge, parent_ip, child_ip, port_list)
        with self.ipam.locked() as state:
            made = []
            try:
                for rule in wanted:
                    if iptables.insert(rule):
                        made.append(rule)
            except BaseException:
                self._delete_rules([r.to_json() for r in made])
                raise
            entry = {"Parent": parent_ip, "Child": child_ip, "Ports": [str(p) for p in port_list],
                     "Rules": [r.to_json() for r in wanted]}
            if entry not in state.links:
                state.links.append(entry)

    def disable_link(self, parent_ip: str, child_ip: str,
                     ports: Iterable[str | int | Port] | Mapping[str, object] | None = None, *,
                     parent_id: str | None = None) -> None:
        """Remove the link's rules (every recorded link between the two when `ports` is None); idempotent.

        With `parent_id`, nothing happens unless that container still holds `parent_ip`: addresses of
        stopped containers are reused, and a stale IP must not cut another pair's link.
        """
        if not self.enabled or not parent_ip or not child_ip:
            return
        with self.ipam.locked() as state:
            if parent_id is not None:
                held = state.allocations.get(parent_id)
                if held is None or held.ip != parent_ip:
                    return
            keep = []
            for entry in state.links:
                if (entry.get("Parent"), entry.get("Child")) == (parent_ip, child_ip) and (
                        ports is None or entry.get("Ports") == [str(p) for p in parse_ports(ports)]):
                    self._delete_rules(entry.get("Rules", []))
                else:
                    keep.append(entry)
            state.links[:] = keep
            if ports is not None:
                self._delete_rules([r.to_json() for r in rules.link(self.bridge, parent_ip, child_ip,
                                                                    parse_ports(ports))])
