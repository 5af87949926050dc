"""The iptables rules pydock's network policy needs, built as plain `Rule` values (Docker 0.7's shapes).

Pure functions: nothing here runs iptables, so the shapes are testable anywhere and one place holds them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from pydock.links.iptables import Rule, Table
from pydock.links.ports import Port


def masquerade(subnet: str) -> Rule:
    """Containers reach the outside world with the host's address (Docker 0.7: `-s subnet ! -d subnet`)."""
    return Rule(Table.NAT, "POSTROUTING", ("-s", subnet, "!", "-d", subnet, "-j", "MASQUERADE"))


def icc(bridge: str, allow: bool) -> Rule:
    """Inter-container traffic on the bridge: ACCEPT (icc on) or DROP (icc off; links punch holes)."""
    return Rule(Table.FILTER, "FORWARD", ("-i", bridge, "-o", bridge, "-j", "ACCEPT" if allow else "DROP"))


def forward(bridge: str) -> list[Rule]:
    """Outgoing traffic from the bridge, and replies coming back, pass a FORWARD chain whose policy may be DROP."""
    return [
        Rule(Table.FILTER, "FORWARD", ("-i", bridge, "!", "-o", bridge, "-j", "ACCEPT")),
        Rule(Table.FILTER, "FORWARD", ("-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
                                       "-j", "ACCEPT")),
    ]


def dnat(bridge: str, host_ip: str, host_port: int, container_ip: str, port: Port) -> list[Rule]:
    """Publish `host_ip:host_port` -> `container_ip:port`: from outside (PREROUTING) and from this host (OUTPUT).
    None for a loopback `host_ip`: only the userland proxy reaches it (links/proxy.py)."""
    if host_ip and ipaddress.IPv4Address(host_ip).is_loopback:
        return []
    dest = ("-d", host_ip) if host_ip and host_ip != "0.0.0.0" else ()
    target = ("-j", "DNAT", "--to-destination", f"{container_ip}:{port.number}")
    match = ("-p", port.proto, *dest, "--dport", str(host_port))
    # from this host: loopback is left to the proxy (the kernel drops DNATed 127/8 packets leaving on the bridge)
    local = () if dest else ("!", "-d", "127.0.0.0/8")
    return [
        Rule(Table.NAT, "PREROUTING", ("-m", "addrtype", "--dst-type", "LOCAL", "!", "-i", bridge, *match, *target)),
        Rule(Table.NAT, "OUTPUT", ("-m", "addrtype", "--dst-type", "LOCAL", *local, *match, *target)),
        # with a FORWARD policy of DROP, the DNATed connection still has to be let in
        Rule(Table.FILTER, "FORWARD", ("!", "-i", bridge, "-o", bridge, "-p", port.proto, "-d", container_ip,
                                       "--dport", str(port.number), "-j", "ACCEPT")),
    ]


def link(bridge: str, parent_ip: str, child_ip: str, ports: Iterable[Port]) -> list[Rule]:
    """Docker 0.7's pair per exposed port: parent -> child:port and child:port -> parent."""
    rules = []
    for p in ports:
        rules.append(Rule(Table.FILTER, "FORWARD", ("-i", bridge, "-o", bridge, "-p", p.proto, "-s", parent_ip,
                                                    "--dport", str(p.number), "-d", child_ip, "-j", "ACCEPT")))
        rules.append(Rule(Table.FILTER, "FORWARD", ("-i", bridge, "-o", bridge, "-p", p.proto, "-s", child_ip,
                                                    "--sport", str(p.number), "-d", parent_ip, "-j", "ACCEPT")))
    return rules
