"""System routes: `/_ping` (HEAD and GET), `/version`, `/info`, `/system/df`."""

from __future__ import annotations

from pydock.runtime.api import models
from pydock.runtime.api.containers import image_name
from pydock.runtime.api.httpd import Handler, Request
from pydock.runtime.api.services import Services
from pydock.runtime.usage import disk_usage as measure

_NO_CACHE = (("Cache-Control", "no-cache, no-store, must-revalidate"), ("Pragma", "no-cache"))
#: the builder `POST /build` is: the classic one ("1"); the docker CLI picks its legacy builder by it
_BUILDER = (("Builder-Version", "1"),)


def ping(svc: Services, req: Request, h: Handler) -> None:
    """`OK`; the CLI reads the version headers every response carries (HEAD: headers only)."""
    h.send_bytes(200, b"OK", "text/plain; charset=utf-8", headers=_NO_CACHE + _BUILDER)


def version(svc: Services, req: Request, h: Handler) -> None:
    h.send_json(200, models.for_version("version", models.version_info(svc.git_commit), req.api_version))


def info(svc: Services, req: Request, h: Handler) -> None:
    with svc.pool.runtime() as rt:
        containers = rt.containers(all=True)
        images = len(rt.images.graph.list())
        data = models.system_info(containers=containers, images=images, driver=rt.driver.name,
                                  driver_status=list(rt.driver.status()), root=str(rt.layout.root),
                                  insecure_registries=svc.insecure_registries,
                                  paused=sum(1 for c in containers if c.state.running and rt.paused(c)))
    h.send_json(200, models.for_version("info", data, req.api_version))


def disk_usage(svc: Services, req: Request, h: Handler) -> None:
    """`GET /system/df`: images, containers (sizes measured) and volumes (sizes, users)."""
    with svc.pool.runtime() as rt:
        usage = measure(rt)
        names = rt.names.names_by_id()
        containers = [models.for_version("container_summary", {
            **models.container_summary(u.container, names.get(u.container.id, []), image_name(rt, u.container)),
            "SizeRw": u.size_rw, "SizeRootFs": u.size_root_fs}, req.api_version) for u in usage.containers]
        images = [models.for_version("df_image", {
            **models.image_summary(u.image, u.tags, u.virtual_size, rt.images.repo_digests(u.image.id)),
            "Containers": u.containers}, req.api_version) for u in usage.images]
    volumes = [{**u.volume.to_api(), "UsageData": {"Size": u.size, "RefCount": u.ref_count}} for u in usage.volumes]
    h.send_json(200, {"LayersSize": usage.layers_size, "Images": images, "Containers": containers,
                      "Volumes": volumes, "BuildCache": []})


ROUTES = [
    ("GET", r"/_ping", ping),
    ("GET", r"/system/df", disk_usage),
    ("HEAD", r"/_ping", ping),
    ("GET", r"/version", version),
    ("GET", r"/info", info),
]
