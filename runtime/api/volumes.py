"""The volume routes: `GET /volumes`, `POST /volumes/create`, `GET|DELETE /volumes/{name}`, `POST /volumes/prune`."""

from __future__ import annotations

from typing import Any

from pydock.runtime import volumes as volume_ops
from pydock.runtime.api import decode
from pydock.runtime.api.httpd import Handler, Request
from pydock.runtime.api.services import Services
from pydock.utils.errors import InvalidArgument


def _pairs(filters: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(key, value) for key, values in filters.items() for value in values]


def list_volumes(svc: Services, req: Request, h: Handler) -> None:
    filters = _pairs(decode.filters(req.arg("filters")))
    with svc.pool.runtime() as rt:
        found = volume_ops.matching(rt, filters)
    h.send_json(200, {"Volumes": [v.to_api() for v in found], "Warnings": None})


def create(svc: Services, req: Request, h: Handler) -> None:
    body: Any = req.json() or {}
    if not isinstance(body, dict):
        raise InvalidArgument("the volume create body must be an object")
    if (body.get("Driver") or "local") != "local":
        raise InvalidArgument(f"Driver {body['Driver']!r} is not supported: only local")
    for field in ("DriverOpts", "ClusterVolumeSpec"):
        if body.get(field):
            raise InvalidArgument(f"{field} is not supported by pydock's local volumes")
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidArgument("Labels must be an object of strings")
    with svc.pool.runtime() as rt:
        info, _made = rt.volumes.create(body.get("Name") or None, labels)
    h.send_json(201, info.to_api())


def inspect(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        h.send_json(200, rt.volumes.get(name).to_api())


def delete(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        volume_ops.remove(rt, name, force=req.flag("force"))
    h.send_empty(204)


def prune(svc: Services, req: Request, h: Handler) -> None:
    all_ = bool(decode.prune_flag(req.arg("filters"), "all"))
    with svc.pool.runtime() as rt:
        removed, freed = volume_ops.prune(rt, all_=all_)
    h.send_json(200, {"VolumesDeleted": removed or None, "SpaceReclaimed": freed})


ROUTES = [
    ("GET", r"/volumes", list_volumes),
    ("POST", r"/volumes/create", create),
    ("POST", r"/volumes/prune", prune),
    ("GET", r"/volumes/(?P<name>[^/]+)", inspect),
    ("DELETE", r"/volumes/(?P<name>[^/]+)", delete),
]
