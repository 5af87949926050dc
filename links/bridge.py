"""Kernel side of the bridge: does it exist, what address does it have, create/delete it (no iptables policy here).

Reading uses socket ioctls (cheap, on the `run` path, and right in any network namespace even when /sys
was mounted elsewhere); changing uses pyroute2's netlink, imported only when something must be created or
deleted (the import costs ~150-220 ms).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import struct
from pathlib import Path

from pydock.utils.errors import NetworkError

SIOCGIFADDR = 0x8915  # <linux/sockios.h>: get PA address
SIOCGIFNETMASK = 0x891B  # get network PA mask
SIOCGIFFLAGS = 0x8913  # get flags
IFF_UP = 0x1
IFNAMSIZ = 16


def link_exists(name: str) -> bool:
    """Whether interface `name` exists in this process's network namespace (ioctl, so a stale /sys does not lie)."""
    return ifindex(name) != 0


def ifindex(name: str) -> int:
    """The interface index, 0 if there is no such interface."""
    try:
        return socket.if_nametoindex(name)
    except OSError:  # ENODEV: the answer to "is there one?", not a failure
        return 0


def validate_ifname(name: str) -> str:
    """Interface names: 1-15 bytes, no `/`, whitespace or `:`."""
    if not name or len(name.encode()) >= IFNAMSIZ or any(c in name for c in "/: \t\n") or name in (".", ".."):
        raise NetworkError(f"Invalid interface name {name!r}")
    return name


def _ifreq_addr(sock: socket.socket, request: int, name: str) -> str | None:
    ifreq = struct.pack("16s16x", name.encode())
    try:
        res = fcntl.ioctl(sock.fileno(), request, ifreq)
    except OSError as err:
        if err.errno in (errno.EADDRNOTAVAIL, errno.ENODEV):
            return None
        raise
    return socket.inet_ntoa(res[20:24])  # struct sockaddr_in.sin_addr inside ifr_addr


def address(name: str) -> str | None:
    """The interface's (first) IPv4 address as `ip/prefix`, or None if it has none or does not exist."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        ip = _ifreq_addr(sock, SIOCGIFADDR, name)
        mask = _ifreq_addr(sock, SIOCGIFNETMASK, name)
    if ip is None or mask is None:
        return None
    return str(ipaddress.IPv4Interface(f"{ip}/{mask}"))


def is_up(name: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            res = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, struct.pack("16s16x", name.encode()))
        except OSError:  # no such interface (ENODEV): not up
            return False
    return bool(struct.unpack_from("H", res, 16)[0] & IFF_UP)


def _kind(ipr: object, index: int) -> str | None:
    """IFLA_INFO_KIND of a link (`bridge`, `veth`...), via pyroute2."""
    link = ipr.get_links(index)[0]  # type: ignore[attr-defined]
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def create_bridge(name: str, bip: str) -> None:
    """Make sure bridge `name` exists, carries `bip` (e.g. 172.17.42.1/16) and is up."""
    from pyroute2 import IPRoute  # lazy: pyroute2 is heavy; only creating or deleting a link needs it
    from pyroute2.netlink.exceptions import NetlinkError  # lazy: pyroute2 is heavy; only creating or deleting a link needs it

    validate_ifname(name)
    iface = ipaddress.IPv4Interface(bip)
    try:
        with IPRoute() as ipr:
            if not link_exists(name):
                try:
                    ipr.link("add", ifname=name, kind="bridge")
                except NetlinkError as err:
                    if err.code != errno.EEXIST:  # another process won the race
                        raise
            idx = ipr.link_lookup(ifname=name)[0]
            if _kind(ipr, idx) != "bridge":
                raise NetworkError(f"{name} exists and is not a bridge")
            if address(name) != str(iface):
                try:
                    ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
                except NetlinkError as err:
                    if err.code != errno.EEXIST:
                        raise
            ipr.link("set", index=idx, state="up")
    except NetlinkError as err:
        raise NetworkError(f"Cannot create bridge {name} ({bip}): {os.strerror(err.code)}") from None


def delete_link(name: str) -> bool:
    """Delete interface `name` (bridge or veth); True if it was there, a missing one is not an error."""
    if not link_exists(name):
        return False
    from pyroute2 import IPRoute  # lazy: pyroute2 is heavy; only creating or deleting a link needs it
    from pyroute2.netlink.exceptions import NetlinkError  # lazy: pyroute2 is heavy; only creating or deleting a link needs it

    try:
        with IPRoute() as ipr:
            ipr.link("del", ifname=name)
    except NetlinkError as err:
        if err.code == errno.ENODEV:
            return False  # gone in between (lxc removed it, or a concurrent release)
        raise NetworkError(f"Cannot delete interface {name}: {os.strerror(err.code)}") from None
    return True


def write_sysctl(key: str, value: str) -> None:
    """Set `net.ipv4.ip_forward`-style keys through /proc/sys (per network namespace for net.*)."""
    path = Path("/proc/sys") / key.replace(".", "/")
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as err:
        raise NetworkError(f"Cannot set {key}={value}: {err.strerror}") from None


def read_sysctl(key: str) -> str | None:
    """The value of `key`, or None when this kernel has no such key (e.g. br_netfilter not loaded)."""
    try:
        return (Path("/proc/sys") / key.replace(".", "/")).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise NetworkError(f"Cannot read {key}: {err.strerror}") from None
