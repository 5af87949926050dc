"""The network routes: `GET /networks`, `GET|DELETE /networks/{id}`, `POST /networks/create`,
`POST /networks/{id}/connect|disconnect`, `POST /networks/prune` (local bridge networks only)."""

from __future__ import annotations

from typing import Any

from pydock.runtime import netattach
from pydock.runtime.api import decode
from pydock.runtime.api.httpd import Handler, Request
from pydock.runtime.api.services import Services
from pydock.runtime.netview import matching, network_json
from pydock.utils.errors import InvalidArgument


def _object(req: Request, what: str) -> dict[str, Any]:
    body: Any = req.json() or {}
    if not isinstance(body, dict):
        raise InvalidArgument(f"the {what} body must be an object")
    return body


def list_networks(svc: Services, req: Request, h: Handler) -> None:
    filters = [(key, value) for key, values in decode.filters(req.arg("filters")).items() for value in values]
    with svc.pool.runtime() as rt:
        h.send_json(200, matching(rt, filters))


def inspect(svc: Services, req: Request, h: Handler, ref: str) -> None:
    with svc.pool.runtime() as rt:
        h.send_json(200, network_json(rt, ref))


def _ipam(value: Any) -> tuple[str, str]:
    """`IPAM`: the default driver and at most one Config of Subnet (and Gateway)."""
    ipam = value or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("IPAM must be an object")
    if ipam.get("Driver") not in (None, "", "default"):
        raise InvalidArgument(f"IPAM.Driver {ipam['Driver']!r} is not supported: only default")
    if ipam.get("Options"):
        raise InvalidArgument("IPAM.Options is not supported by pydock")
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or len(configs) > 1:
        raise InvalidArgument("IPAM.Config: pydock takes one IPv4 subnet per network")
    conf = configs[0] if configs else {}
    for field in ("IPRange", "AuxiliaryAddresses"):
        if conf.get(field):
            raise InvalidArgument(f"IPAM.Config.{field} is not supported by pydock")
    return str(conf.get("Subnet") or ""), str(conf.get("Gateway") or "")


def create(svc: Services, req: Request, h: Handler) -> None:
    body = _object(req, "network create")
    name = body.get("Name")
    if not name or not isinstance(name, str):
        raise InvalidArgument("network create: Name is required")
    if body.get("Driver") not in (None, "", "bridge"):
        raise InvalidArgument(f"network driver {body['Driver']!r} is not supported: only bridge")
    for field in ("EnableIPv6", "Ingress", "ConfigOnly", "Options", "ConfigFrom"):
        if body.get(field):
            raise InvalidArgument(f"{field} is not supported by pydock's bridge networks")
    if body.get("Scope") not in (None, "", "local"):
        raise InvalidArgument(f"Scope {body['Scope']!r} is not supported: only local")
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidArgument("Labels must be an object of strings")
    subnet, gateway = _ipam(body.get("IPAM"))
    with svc.pool.runtime() as rt:
        rec = rt.user_networks.create(name, subnet=subnet, gateway=gateway, labels=labels,
                                      internal=bool(body.get("Internal")), attachable=bool(body.get("Attachable")))
    h.send_json(201, {"Id": rec.id, "Warning": ""})


def delete(svc: Services, req: Request, h: Handler, ref: str) -> None:
    with svc.pool.runtime() as rt:
        rt.user_networks.remove(ref)
    h.send_empty(204)


def connect(svc: Services, req: Request, h: Handler, ref: str) -> None:
    body = _object(req, "network connect")
    ep = body.get("EndpointConfig") or {}
    if not isinstance(ep, dict):
        raise InvalidArgument("EndpointConfig must be an object")
    for field in ("Links", "DriverOpts", "MacAddress", "IPAddress", "NetworkID", "EndpointID"):
        if ep.get(field):
            raise InvalidArgument(f"EndpointConfig.{field} is not supported by pydock's network connect")
    ipam = ep.get("IPAMConfig") or {}
    if ipam.get("IPv6Address") or ipam.get("LinkLocalIPs"):
        raise InvalidArgument("EndpointConfig.IPAMConfig: only IPv4Address is supported")
    aliases = ep.get("Aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise InvalidArgument("EndpointConfig.Aliases must be a list of strings")
    with svc.pool.runtime() as rt:
        netattach.connect(rt, rt.get(str(body.get("Container") or "")), ref, aliases,
                          str(ipam.get("IPv4Address") or ""))
    h.send_empty(200)


def disconnect(svc: Services, req: Request, h: Handler, ref: str) -> None:
    body = _object(req, "network disconnect")
    with svc.pool.runtime() as rt:
        netattach.disconnect(rt, rt.get(str(body.get("Container") or "")), ref)
    h.send_empty(200)


def prune(svc: Services, req: Request, h: Handler) -> None:
    if decode.filters(req.arg("filters")):
        raise InvalidArgument("network prune: filters (until, label) are not supported by pydock")
    with svc.pool.runtime() as rt:
        removed = rt.user_networks.prune()
    h.send_json(200, {"NetworksDeleted": removed or None})


ROUTES = [
    ("GET", r"/networks", list_networks),
    ("POST", r"/networks/create", create),
    ("POST", r"/networks/prune", prune),
    ("GET", r"/networks/(?P<ref>[^/]+)", inspect),
    ("DELETE", r"/networks/(?P<ref>[^/]+)", delete),
    ("POST", r"/networks/(?P<ref>[^/]+)/connect", connect),
    ("POST", r"/networks/(?P<ref>[^/]+)/disconnect", disconnect),
]
