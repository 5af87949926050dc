"""Host-side veth cleanup: lxc normally destroys the pair when a container exits, but a killed monitor can leave it."""

from __future__ import annotations

from pydock.links.bridge import delete_link, link_exists, validate_ifname

VETH_PREFIX = "veth"


def host_veth_name(container_id: str) -> str:
    """The deterministic host end of a container's veth pair (`lxc.net.0.veth.pair`): `veth<first 8 of id>`."""
    return validate_ifname(f"{VETH_PREFIX}{container_id[:8]}")


def delete_leftover_veth(name: str) -> bool:
    """Delete the host veth `name` if it still exists; True if one was deleted, a missing one is not an error."""
    return delete_link(name)


def veth_exists(name: str) -> bool:
    return link_exists(name)
