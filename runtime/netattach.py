"""A container's user networks over its life: addresses when it starts, /etc/hosts of every member kept
current as members come and go, release when it stops, connect/disconnect (hot-plugged when running),
and the `NetworkSettings.Networks` its inspect shows."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydock.runtime import etcfiles
from pydock.runtime.container import Container
from pydock.utils.errors import Conflict, InvalidArgument, PydockError

if TYPE_CHECKING:
    from pydock.links.netstore import NetworkRecord
    from pydock.links.network import NetworkSettings
    from pydock.runtime.runtime import Runtime

log = logging.getLogger(__package__)
BUILTIN = ("default", "bridge", "none", "host")


def user_mode(mode: str | None) -> bool:
    """Whether HostConfig.NetworkMode names a user network (not default/bridge/none/host/container:X)."""
    return bool(mode) and mode not in BUILTIN and not str(mode).startswith("container:")


def has_networks(rt: Runtime) -> bool:
    """Cheap: no user network was ever made under this root (the default `run` pays nothing)."""
    return (rt.layout.network / "networks.json").exists()


def endpoint_json(rec_id: str, cid: str, settings: NetworkSettings, aliases: list[str], ip: str) -> dict[str, Any]:
    """Docker's `NetworkSettings.Networks[name]` entry."""
    from pydock.links.networks import endpoint_id  # lazy: networking only

    return {"IPAMConfig": {"IPv4Address": ip} if ip else None, "Links": None, "Aliases": aliases or None,
            "NetworkID": rec_id, "EndpointID": endpoint_id(cid, rec_id), "Gateway": settings.gateway,
            "IPAddress": settings.ip_address, "IPPrefixLen": settings.ip_prefix_len, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": settings.mac_address,
            "DriverOpts": None}


def bridge_endpoint(rt: Runtime, cid: str, settings: NetworkSettings) -> dict[str, Any]:
    """The `bridge` entry of a container on the default bridge (its id as `network ls` shows it)."""
    from pydock.links.networks import predefined_id  # lazy: networking only

    return endpoint_json(predefined_id(str(rt.layout.root), "bridge"), cid, settings, [], "")


def attach(rt: Runtime, c: Container) -> list[tuple[NetworkRecord, NetworkSettings]]:
    """Addresses on every user network `c` is a member of, its NetworkMode's first."""
    if not has_networks(rt):
        if user_mode(c.hostconfig.get("NetworkMode")):
            raise InvalidArgument(f"network {c.hostconfig['NetworkMode']} not found")
        return []
    nets = rt.user_networks.memberships(c.id)
    mode = c.hostconfig.get("NetworkMode")
    if user_mode(mode) and not any(rec.name == mode for rec in nets):
        raise InvalidArgument(f"network {mode} not found")
    nets.sort(key=lambda rec: rec.name != mode)
    return rt.user_networks.attach(c.id, [rec.id for rec in nets])


def networks_json(joined: list[tuple[NetworkRecord, NetworkSettings]], cid: str) -> dict[str, Any]:
    return {rec.name: endpoint_json(rec.id, cid, s, list(rec.endpoints[cid].aliases), rec.endpoints[cid].ip)
            for rec, s in joined}


def refresh_hosts(rt: Runtime, network_ids: list[str]) -> None:
    """Rewrite the member lines of every running member's /etc/hosts on those networks."""
    if not network_ids:
        return

    def write(cid: str, lines: list[str]) -> None:
        if not etcfiles.set_hosts_section(rt.layout.container(cid) / "hosts", lines):
            log.debug("container %s: no hosts file to update (removed meanwhile)", cid[:12])

    rt.user_networks.refresh_hosts(network_ids, write)


def release(rt: Runtime, c: Container) -> None:
    """Give back `c`'s addresses on user networks and tell the members left behind; idempotent."""
    if not has_networks(rt):
        return
    left = rt.user_networks.release(c.id)
    try:
        refresh_hosts(rt, left)
    except (PydockError, OSError) as err:
        log.warning("container %s left its networks, but their members' hosts files were not updated: %s",
                    c.short_id, err)


def renamed(rt: Runtime, c: Container) -> None:
    """Members reach a renamed container by its new name (its old one goes from their hosts files)."""
    if has_networks(rt):
        refresh_hosts(rt, rt.user_networks.rename(c.id, c.name.lstrip("/")))


def connect(rt: Runtime, c: Container, ref: str, aliases: list[str], ip: str = "") -> None:
    """`network connect`: a member from now on; a running container gets its interface at once."""
    from pydock.links import hotplug  # lazy: only connect hot-plugs
    from pydock.runtime.launcher import wait_for_command  # lazy: only a running container needs its init

    if ref in ("bridge", "host", "none"):
        raise InvalidArgument(f"pydock connects containers to user networks only; {ref} is chosen when the "
                              "container is created (--net)")
    mode = c.hostconfig.get("NetworkMode") or "default"
    if mode == "host" or mode.startswith("container:") or c.config.get("NetworkDisabled"):
        raise Conflict(f"container {c.name or c.short_id} cannot be connected to a network: it does not have a "
                       "network namespace of its own (--net host, none or container:)")
    rec = rt.user_networks.connect(ref, c.id, c.name.lstrip("/"), aliases=aliases, ip=ip)
    c.reload()
    if not c.state.running:
        return
    try:
        pid = wait_for_command(c.state.pid, c.state.pid_start)  # right after a start: once set up
        if pid is None:
            raise Conflict(f"Container {c.short_id} is not running")
        (joined,) = rt.user_networks.attach(c.id, [rec.id])
        hotplug.plug(pid, joined[1])
    except BaseException:
        rt.user_networks.release(c.id, [rec.id])
        rt.user_networks.disconnect(rec.id, c.id, c.name)
        raise
    _record(c, lambda nets: nets.update(networks_json([joined], c.id)))
    refresh_hosts(rt, [rec.id])


def disconnect(rt: Runtime, c: Container, ref: str) -> None:
    """`network disconnect`: a running container loses its interface there, its members their line."""
    if ref in ("bridge", "host", "none"):
        raise InvalidArgument(f"pydock disconnects containers from user networks only, not from {ref}")
    rec = rt.user_networks.get(ref)
    if c.id not in rec.endpoints:
        raise Conflict(f"container {c.name.lstrip('/') or c.short_id} is not connected to network {rec.name}")
    left = rt.user_networks.release(c.id, [rec.id])  # deleting the host veth takes the container's end too
    rt.user_networks.disconnect(rec.id, c.id, c.name)
    if c.state.running:
        _record(c, lambda nets: nets.pop(rec.name, None))
    refresh_hosts(rt, left)


def _record(c: Container, change: Any) -> None:
    with c.locked():
        c.reload()
        if c.network is not None:
            nets = dict(c.network.get("Networks") or {})
            change(nets)
            c.network = {**c.network, "Networks": nets}
            c.save_state(c.state)
