"""System routes: `/_ping` (HEAD and GET), `/version`, `/info`."""

from __future__ import annotations

from pydock.runtime.api import models
from pydock.runtime.api.httpd import Handler, Request
from pydock.runtime.api.services import Services

_NO_CACHE = (("Cache-Control", "no-cache, no-store, must-revalidate"), ("Pragma", "no-cache"))
#: the builder `POST /build` is: the classic one ("1"); the docker CLI picks its legacy builder by it
_BUILDER = (("Builder-Version", "1"),)


def ping(svc: Services, req: Request, h: Handler) -> None:
    """`OK`; the CLI reads the version headers every response carries (HEAD: headers only)."""
    h.send_bytes(200, b"OK", "text/plain; charset=utf-8", headers=_NO_CACHE + _BUILDER)


def version(svc: Services, req: Request, h: Handler) -> None:
    h.send_json(200, models.version_info(svc.git_commit))


def info(svc: Services, req: Request, h: Handler) -> None:
    with svc.pool.runtime() as rt:
        containers = rt.containers(all=True)
        images = len(rt.images.graph.list())
        h.send_json(200, models.system_info(containers=containers, images=images, driver=rt.driver.name,
                                            driver_status=list(rt.driver.status()), root=str(rt.layout.root),
                                            insecure_registries=svc.insecure_registries,
                                            paused=sum(1 for c in containers if c.state.running and rt.paused(c))))


ROUTES = [
    ("GET", r"/_ping", ping),
    ("HEAD", r"/_ping", ping),
    ("GET", r"/version", version),
    ("GET", r"/info", info),
]
