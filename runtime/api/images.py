"""Image routes: list, inspect, history, tag, delete, and `POST /images/create` (import a tar body; a
pull, with no registry, only finds what is here or builds the embedded busybox)."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase

from pydock.graph.image import Image
from pydock.graph.tags import split_reference
from pydock.runtime.api import decode, models
from pydock.runtime.api.httpd import Handler, Request, bool_value
from pydock.runtime.api.services import Services
from pydock.runtime.runtime import Runtime
from pydock.utils.errors import InvalidArgument, NotFound, PydockError

BUSYBOX = "busybox:latest"


def _image(rt: Runtime, ref: str) -> Image:
    """The image a path names (`sha256:<hex>`, bare hex, `docker.io/library/x:t` or `x:t`)."""
    try:
        return rt.images.get(decode.image_ref(ref))
    except NotFound:
        raise NotFound(f"No such image: {ref}") from None


def _progress(message: dict[str, object]) -> bytes:
    """One message of the JSON stream `POST /images/create` answers with."""
    return json.dumps(message).encode() + b"\r\n"


def _listed(tags: list[str], patterns: list[str]) -> list[str]:
    """The tags matching a `reference=` filter (`name`, `name:tag`, shell patterns)."""
    return [t for t in tags if any(fnmatchcase(t, p) or fnmatchcase(t.rsplit(":", 1)[0], p) for p in patterns)]


def list_images(svc: Services, req: Request, h: Handler) -> None:
    """Newest first; untagged parents only with `all`; `reference=` and `dangling=` filters."""
    filters = decode.filters(req.arg("filters"))
    patterns, dangling = filters.get("reference", []), filters.get("dangling", [])
    out = []
    with svc.pool.runtime() as rt:
        images = rt.images.graph.list()
        by_image = rt.images.tags.by_image()
        parents = {img.parent for img in images if img.parent}
        for img in sorted(images, key=lambda i: i.created, reverse=True):
            tags = sorted(by_image.get(img.id, []))
            if patterns:
                tags = _listed(tags, patterns)
                if not tags:
                    continue
            if not tags and not req.flag("all") and img.id in parents:
                continue
            if dangling and bool_value(dangling[-1]) == bool(tags):
                continue
            out.append(models.image_summary(img, tags, rt.graph.virtual_size(img)))
    h.send_json(200, out)


def inspect(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        img = _image(rt, name)
        tags = sorted(rt.images.tags.names_for(img.id))
        h.send_json(200, models.image_inspect(img, tags, rt.graph.virtual_size(img), rt.driver.name))


def history(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        layers = rt.graph.history(_image(rt, name))
        h.send_json(200, models.image_history(layers, rt.images.tags.names_for))


def tag(svc: Services, req: Request, h: Handler, name: str) -> None:
    repo = decode.strip_registry(req.arg("repo") or "")
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    with svc.pool.runtime() as rt:
        rt.images.tag(_image(rt, name).id, repo, req.arg("tag") or None, force=True)
    h.send_empty(201)


def delete(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        try:
            lines = rt.images.remove(decode.image_ref(name))
        except NotFound:
            raise NotFound(f"No such image: {name}") from None
    h.send_json(200, models.image_deleted(lines))


def create(svc: Services, req: Request, h: Handler) -> None:
    """`fromSrc=-`: import the body; `fromImage=`: pull."""
    if req.arg("fromSrc") is not None:
        _import(svc, req, h)
    elif req.arg("fromImage"):
        _pull(svc, req, h)
    else:
        raise InvalidArgument("fromImage or fromSrc is required")


def _import(svc: Services, req: Request, h: Handler) -> None:
    """The tar body (chunked from the CLI) as a new image; errors go in the stream, as dockerd's do."""
    src = req.arg("fromSrc") or "-"
    if src != "-":
        raise InvalidArgument(f"Importing from a URL is not supported: download {src} and import the file")
    repo, tag_ = decode.repo_tag(req.arg("repo"), req.arg("tag"))
    try:
        with svc.pool.runtime() as rt:
            image = rt.images.import_(req.body, repo, tag_, source="-")
    except PydockError as err:
        h.close_connection = not req.body.done  # the rest of a bad body is not worth reading
        h.send_bytes(200, _progress({"errorDetail": {"message": str(err)}, "error": str(err)}))
        return
    h.send_bytes(200, _progress({"status": models.image_ref(image.id)}))


def _pull(svc: Services, req: Request, h: Handler) -> None:
    """No registry: the embedded busybox is built; an image already here is 'up to date'; else 404."""
    repo, tag_ = split_reference(decode.strip_registry(req.arg("fromImage") or ""))
    ref = f"{repo}:{req.arg('tag') or tag_ or 'latest'}"
    with svc.pool.runtime() as rt:
        found = rt.images.resolve(ref) if ref == BUSYBOX else rt.images.lookup(ref)
    if found is None:
        raise NotFound(f"pull access denied for {repo}, repository does not exist or may require "
                       "'docker login': pydock has no registry (import the image instead)")
    h.send_bytes(200, _progress({"status": f"Status: Image is up to date for {ref}"}))


ROUTES = [
    ("GET", r"/images/json", list_images),
    ("POST", r"/images/create", create),
    ("GET", r"/images/(?P<name>.+)/json", inspect),
    ("GET", r"/images/(?P<name>.+)/history", history),
    ("POST", r"/images/(?P<name>.+)/tag", tag),
    ("DELETE", r"/images/(?P<name>.+)", delete),
]
