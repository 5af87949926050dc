"""What `network ls`/`inspect` and `GET /networks` show: the user networks and, as Docker lists them,
the predefined `bridge` (the default bridge, with its containers), `host` and `none`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydock.utils.errors import InvalidArgument, NotFound, PydockError

if TYPE_CHECKING:
    from pydock.runtime.runtime import Runtime

_DRIVERS = {"bridge": "bridge", "host": "host", "none": "null"}


def _predefined(rt: Runtime, name: str) -> dict[str, Any]:
    from pydock.links.networks import endpoint_id, predefined_id  # lazy: networking only

    nid = predefined_id(str(rt.layout.root), name)
    config: list[dict[str, str]] = []
    containers: dict[str, Any] = {}
    options: dict[str, str] = {}
    if name == "bridge":
        state = rt.network.ipam.read()
        options = {"com.docker.network.bridge.default_bridge": "true", "com.docker.network.bridge.name": rt.bridge}
        if state.bip:
            config = [{"Subnet": str(state.subnet), "Gateway": state.gateway}]
        for cid in sorted(state.allocations):
            settings = rt.network.settings(cid)
            try:
                cname = rt.load(cid).name.lstrip("/")
            except PydockError:
                continue  # removed meanwhile
            containers[cid] = {"Name": cname, "EndpointID": endpoint_id(cid, nid),
                               "MacAddress": settings.mac_address if settings else "",
                               "IPv4Address": f"{settings.ip_address}/{settings.ip_prefix_len}" if settings else "",
                               "IPv6Address": ""}
    return {"Name": name, "Id": nid, "Created": "0001-01-01T00:00:00Z", "Scope": "local", "Driver": _DRIVERS[name],
            "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": config},
            "Internal": False, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": containers, "Options": options, "Labels": {}}


def builtin_names(rt: Runtime) -> list[str]:
    return ["bridge", "host", "none"] if rt.networking else ["host", "none"]


def all_networks(rt: Runtime) -> list[dict[str, Any]]:
    """Every network's inspect JSON: the predefined ones, then the user networks by name."""
    nets = rt.user_networks
    return [*(_predefined(rt, n) for n in builtin_names(rt)), *(nets.to_api(rec) for rec in nets.list())]


def network_json(rt: Runtime, ref: str) -> dict[str, Any]:
    """One network by name, id or id prefix."""
    for name in builtin_names(rt):
        if ref == name:
            return _predefined(rt, name)
    try:
        return rt.user_networks.to_api(rt.user_networks.get(ref))
    except NotFound:
        for name in builtin_names(rt):
            pid = _predefined(rt, name)["Id"]
            if len(ref) >= 1 and pid.startswith(ref):
                return _predefined(rt, name)
        raise


def matching(rt: Runtime, filters: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The networks `network ls --filter` keeps (every filter must hold): name=SUBSTRING, id=PREFIX,
    label=K or K=V, driver=NAME, type=builtin|custom."""
    for key, value in filters:
        if key not in ("name", "id", "label", "driver", "type"):
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "type" and value not in ("builtin", "custom"):
            raise InvalidArgument(f"invalid filter 'type={value}'")
    out = []
    for net in all_networks(rt):
        keep = True
        for key, value in filters:
            if key == "name":
                keep &= value in net["Name"]
            elif key == "id":
                keep &= net["Id"].startswith(value)
            elif key == "driver":
                keep &= net["Driver"] == value
            elif key == "type":
                keep &= (net["Name"] in ("bridge", "host", "none")) == (value == "builtin")
            else:
                k, sep, v = value.partition("=")
                keep &= k in net["Labels"] and (not sep or net["Labels"][k] == v)
        if keep:
            out.append(net)
    return out

