"""Port specs: `80`, `80/udp` (exposed ports) and `-p [ip:][hostPort:]containerPort[/proto]` (published ports)."""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydock.utils.errors import Conflict, InvalidArgument

PROTOCOLS = ("tcp", "udp")
#: a bind that fails with one of these finds the published address taken (or not the host's)
ADDRESS_TAKEN = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def bind_address(host_ip: str, port: int) -> tuple[str, int]:
    """Where a published `host_ip:port` binds ("" or 0.0.0.0: every address of the host)."""
    return (host_ip if host_ip and host_ip != "0.0.0.0" else "", port)


def in_use_on_host(host_ip: str, port: int) -> Conflict:
    """The error for a published address a host program holds."""
    return Conflict(f"Bind for {host_ip or '0.0.0.0'}:{port} failed: port is already in use on the host")


@dataclass(frozen=True, order=True)
class Port:
    """A container port and its protocol; `str()` is Docker's `80/tcp` key form."""

    number: int
    proto: str = "tcp"

    def __str__(self) -> str:
        return f"{self.number}/{self.proto}"


@dataclass(frozen=True)
class PortSpec:
    """One `-p` request: host address and port (0 = pick an ephemeral one) for a container port."""

    port: Port
    host_ip: str = ""
    host_port: int = 0


def _number(text: str, spec: str, allow_zero: bool = False) -> int:
    if not text.isdigit():
        raise InvalidArgument(f"Invalid port specification: {spec}")
    n = int(text)
    if not (0 if allow_zero else 1) <= n <= 65535:
        raise InvalidArgument(f"Invalid port specification: {spec} (port out of range)")
    return n


def parse_port(spec: str | int | Port) -> Port:
    """`80`, `80/tcp`, `53/udp` -> Port; tcp is the default protocol."""
    if isinstance(spec, Port):
        return spec
    text = str(spec).strip()
    number, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"Invalid port specification: {spec} (protocol must be tcp or udp)")
    return Port(_number(number, text), proto)


def parse_ports(specs: Iterable[str | int | Port] | Mapping[str, object] | None) -> list[Port]:
    """Exposed ports from a list or from an image's `ExposedPorts` dict, de-duplicated and sorted."""
    if not specs:
        return []
    return sorted({parse_port(s) for s in specs})


def parse_publish(spec: str) -> PortSpec:
    """`-p` forms: `80`, `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80`, each with an optional `/proto`."""
    body, slash, proto = spec.partition("/")
    parts = body.split(":")
    if len(parts) == 1:
        ip, host, ctr = "", "", parts[0]
    elif len(parts) == 2:
        ip, (host, ctr) = "", parts
    elif len(parts) == 3:
        ip, host, ctr = parts
    else:
        raise InvalidArgument(f"Invalid port specification: {spec}")
    loopback = False
    if ip:
        try:
            loopback = ipaddress.IPv4Address(ip).is_loopback
        except ValueError:
            raise InvalidArgument(f"Invalid port specification: {spec} (bad IPv4 address {ip})") from None
    port = parse_port(ctr + (slash + proto if slash else ""))
    if loopback and port.proto != "tcp":
        # loopback is reached through the userland proxy (links/proxy.py), which relays TCP only
        raise InvalidArgument(f"Invalid port specification: {spec} (pydock publishes {port.proto} on loopback "
                              f"{ip} nowhere: its proxy relays tcp only)")
    return PortSpec(port, ip, _number(host, spec) if host else 0)
