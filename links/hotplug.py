"""Connecting a running container to one more bridge: a veth pair made here, its host end on the bridge,
the other moved into the container's network namespace and configured there (`nsenter` + `ip`, the
host's binaries: only the network namespace is entered). Used by `network connect` on a running container."""

from __future__ import annotations

import ipaddress
import subprocess

from pydock.links.network import MTU, NetworkSettings
from pydock.links.veth import delete_leftover_veth
from pydock.utils.errors import NetworkError


def _ip(*args: str, netns_pid: int | None = None) -> str:
    argv = ["ip", *args] if netns_pid is None else ["nsenter", f"--net=/proc/{netns_pid}/ns/net", "ip", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, close_fds=True)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NetworkError(f"{' '.join(argv)}: {err}") from None
    if proc.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def next_ifname(pid: int) -> str:
    """The first ethN the container does not have yet."""
    names = {line.split(":")[1].strip().split("@")[0] for line in _ip("-o", "link", netns_pid=pid).splitlines()
             if line.count(":") >= 2}
    return next(f"eth{i}" for i in range(1, 1000) if f"eth{i}" not in names)


def plug(pid: int, settings: NetworkSettings) -> str:
    """Give the container whose init is `pid` an interface on `settings.bridge`; its name inside."""
    host, peer = settings.host_veth, f"{settings.host_veth}p"[:15]
    delete_leftover_veth(host)
    try:
        _ip("link", "add", host, "mtu", str(MTU), "type", "veth", "peer", "name", peer, "mtu", str(MTU))
        _ip("link", "set", host, "master", settings.bridge, "up")
        _ip("link", "set", peer, "netns", str(pid))
        name = next_ifname(pid)
        iface = ipaddress.IPv4Interface(f"{settings.ip_address}/{settings.ip_prefix_len}")
        _ip("link", "set", peer, "name", name, "address", settings.mac_address, netns_pid=pid)
        _ip("addr", "add", str(iface), "broadcast", str(iface.network.broadcast_address), "dev", name,
            netns_pid=pid)
        _ip("link", "set", name, "up", netns_pid=pid)
    except BaseException:
        delete_leftover_veth(host)  # its peer, wherever it went, goes with it
        raise
    return name
