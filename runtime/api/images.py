"""Image routes: list, inspect, history, tag, delete; `POST /images/create` (import a tar body, or pull
from a registry), push, save (`get`), load, and the registry's view of a reference (`distribution`)."""

from __future__ import annotations

import json
from typing import Any

from pydock.graph.image import Image
from pydock.runtime.api import decode, models
from pydock.runtime.api.httpd import Handler, Request
from pydock.runtime.api.services import Services
from pydock.runtime.listfilters import ImageFilters
from pydock.runtime.runtime import Runtime
from pydock.runtime.usage import PruneFilters, prune_images
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


def list_images(svc: Services, req: Request, h: Handler) -> None:
    """Newest first; untagged parents only with `all`; Docker's filters (runtime/listfilters.py)."""
    out = []
    with svc.pool.runtime() as rt:
        chosen = ImageFilters.parse(rt, decode.filters(req.arg("filters")))
        every = rt.images.graph.list()
        parents = {img.parent for img in every if img.parent}
        by_image = rt.images.tags.by_image()
        for img in sorted(every, key=lambda i: i.created, reverse=True):
            if not chosen.keeps(img):
                continue
            tags = sorted(by_image.get(img.id, []))
            if chosen.references:
                tags = chosen.names(tags)
                if not tags:
                    continue
            if not tags and not req.flag("all") and img.id in parents:
                continue
            if not chosen.shows(bool(tags)):
                continue
            out.append(models.for_version("image_summary", models.image_summary(
                img, tags, rt.graph.virtual_size(img), rt.images.repo_digests(img.id)), req.api_version))
    h.send_json(200, out)


def inspect_document(rt: Runtime, img: Image) -> dict[str, Any]:
    """An image as `GET /images/{name}/json` shows it (and `pydock inspect -f` templates see it)."""
    tags = sorted(rt.images.tags.names_for(img.id))
    return models.image_inspect(img, tags, rt.graph.virtual_size(img), rt.driver.name,
                                rt.images.repo_digests(img.id), rt.images.diff_ids(img))


def inspect(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        data = inspect_document(rt, _image(rt, name))
    h.send_json(200, models.for_version("image", data, req.api_version))


def history(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        rows = rt.images.history(_image(rt, name))
        h.send_json(200, models.image_history(rows, rt.images.tags.names_for))


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
    """The tar body (chunked from the CLI), or an http(s) URL (`fromSrc=URL`), as a new image with the
    `changes=` instructions; errors go in the stream, as dockerd's do."""
    from pydock.graph.urlsource import is_url, open_url  # lazy: only imports need it

    src = req.arg("fromSrc") or "-"
    if src != "-" and not is_url(src):
        raise InvalidArgument(f"fromSrc must be - or an http(s) URL, not {src!r}")
    repo, tag_ = decode.repo_tag(req.arg("repo"), req.arg("tag"))
    changes = req.args("changes")
    try:
        with svc.pool.runtime() as rt:
            if src == "-":
                image = rt.images.import_(req.body, repo, tag_, source="-", changes=changes)
            else:
                with open_url(src) as (stream, _length):
                    image = rt.images.import_(stream, repo, tag_, source=src, changes=changes)
    except PydockError as err:
        h.close_connection = not req.body.done  # the rest of a bad body is not worth reading
        h.send_bytes(200, _progress({"errorDetail": {"message": str(err)}, "error": str(err)}))
        return
    h.send_bytes(200, _progress({"status": models.image_ref(image.id)}))


def _pull(svc: Services, req: Request, h: Handler) -> None:
    """A registry pull with Docker's JSON progress stream; `busybox:latest` is the embedded image, built
    here. Errors before the first layer (no such image, 401) are HTTP errors; later ones are in the stream."""
    from pydock.graph.distribution import manifest  # lazy: the distribution client, only for registry routes
    from pydock.graph.distribution.client import Unauthorized  # lazy: the distribution client, only for registry routes
    from pydock.graph.distribution.pull import pull  # lazy: the distribution client, only for registry routes

    text = _reference(req.arg("fromImage") or "", req.arg("tag"))
    platform = req.arg("platform")
    host = "/".join(p for p in manifest.host_platform() if p)
    if platform and platform not in (host, host.split("/", 1)[1]):
        raise InvalidArgument(f"platform {platform} is not supported: only {host} can be pulled")
    if decode.strip_registry(text) == BUSYBOX:
        with svc.pool.runtime() as rt:
            rt.images.resolve(BUSYBOX)
        h.send_bytes(200, _progress({"status": f"Status: Image is up to date for {BUSYBOX}"}))
        return
    creds = registry_auth(req)
    stream = _ProgressStream(h)
    try:
        with svc.pool.runtime() as rt:
            pull(rt.images, text, progress=stream, credentials=creds, insecure=svc.insecure_registries)
    except PydockError as err:
        if not stream.started:
            if isinstance(err, (NotFound, Unauthorized)):
                raise NotFound(f"pull access denied for {text}, repository does not exist or may require "
                               f"'docker login': {err}") from None
            raise
        stream.error(str(err))
    stream.close()


def _reference(name: str, tag: str | None) -> str:
    """`fromImage`/push name plus `tag=` (a tag, or a digest) as one reference."""
    if not name:
        raise InvalidArgument("an image name is required")
    if tag:
        return f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}"
    return name


def registry_auth(req: Request) -> Any:
    """The credentials of `X-Registry-Auth` (base64url JSON: username, password), or None."""
    import base64  # lazy: only registry routes decode auth
    from pydock.graph.distribution.auth import Credentials  # lazy: the distribution client, only for registry routes

    header = req.headers.get("X-Registry-Auth")
    if not header:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)) or b"{}")
    except (ValueError, TypeError) as err:
        raise InvalidArgument(f"X-Registry-Auth is not base64 JSON: {err}") from None
    if not isinstance(data, dict):
        raise InvalidArgument("X-Registry-Auth is not a JSON object")
    if data.get("identitytoken") or data.get("registrytoken"):
        raise InvalidArgument("X-Registry-Auth: identity and registry tokens are not supported, only username "
                              "and password")
    if not data.get("username"):
        return None
    return Credentials(str(data["username"]), str(data.get("password") or ""))


class _ProgressStream:
    """Docker's JSON progress messages, one per line; the response starts with the first message."""

    def __init__(self, h: Handler) -> None:
        import threading  # lazy: only registry routes stream progress from download threads

        self.h = h
        self.writer: Any = None
        self.lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self.writer is not None

    def _write(self, message: dict[str, object]) -> None:
        with self.lock:
            if self.writer is None:
                self.writer = self.h.start_stream("application/json")
            self.writer.write(_progress(message))

    def __call__(self, p: Any) -> None:
        if not p.id:
            self._write({"status": p.status})
            return
        message: dict[str, object] = {"status": p.status, "id": p.id}
        if p.total:
            message["progressDetail"] = {"current": p.current, "total": p.total}
        self._write(message)

    def error(self, text: str) -> None:
        self._write({"errorDetail": {"message": text}, "error": text})

    def close(self) -> None:
        with self.lock:
            if self.writer is None:
                self.writer = self.h.start_stream("application/json")
            self.writer.close()


def push(svc: Services, req: Request, h: Handler, name: str) -> None:
    """`POST /images/{name}/push?tag=`: push with Docker's JSON progress stream."""
    from pydock.graph.distribution.push import push as push_image  # lazy: the distribution client, only for registry routes

    text = _reference(name, req.arg("tag"))
    creds = registry_auth(req)
    with svc.pool.runtime() as rt:
        rt.images.get(text)  # a missing image is a 404, before the stream starts
        stream = _ProgressStream(h)
        try:
            result = push_image(rt.images, text, progress=stream, credentials=creds,
                                insecure=svc.insecure_registries)
            stream._write({"progressDetail": {}, "aux": {"Tag": result.reference.tag, "Digest": result.digest,
                                                          "Size": result.size}})
        except PydockError as err:
            stream.error(str(err))
    stream.close()


def _save(svc: Services, h: Handler, names: list[str]) -> None:
    from pydock.graph.archives import save  # lazy: archive writing, only for the export routes

    if not names:
        raise InvalidArgument("names is required")
    with svc.pool.runtime() as rt:
        for n in names:
            _image(rt, n)  # every name checked before the archive starts
        writer = h.start_stream("application/x-tar")
        save(rt.images, [decode.strip_registry(n) for n in names], writer)  # type: ignore[arg-type]
        writer.close()


def get_one(svc: Services, req: Request, h: Handler, name: str) -> None:
    """`GET /images/{name}/get`: docker save's archive of one image."""
    _save(svc, h, [name])


def get_many(svc: Services, req: Request, h: Handler) -> None:
    """`GET /images/get?names=a&names=b`."""
    _save(svc, h, req.args("names"))


def load(svc: Services, req: Request, h: Handler) -> None:
    """`POST /images/load`: the body is an archive (docker save, podman save, OCI; compressed or not)."""
    from pydock.graph.archives import load as load_archive  # lazy: archive reading, only for the load route

    with svc.pool.runtime() as rt:
        try:
            lines = load_archive(rt.images, req.body)  # type: ignore[arg-type]
        except PydockError:
            h.close_connection = not req.body.done
            raise
    body = b"".join(_progress({"stream": line + "\n"}) for line in lines)
    h.send_bytes(200, body)


def distribution(svc: Services, req: Request, h: Handler, name: str) -> None:
    """`GET /distribution/{name}/json`: the registry's descriptor of a reference and its platforms."""
    from pydock.graph.distribution.pull import describe  # lazy: the distribution client, only for registry routes

    d = describe(name, credentials=registry_auth(req), insecure=svc.insecure_registries)
    h.send_json(200, {"Descriptor": {"mediaType": d.media_type, "digest": d.digest, "size": d.size},
                      "Platforms": d.platforms})


def prune(svc: Services, req: Request, h: Handler) -> None:
    """`POST /images/prune`: dangling images; with `dangling=false` every image no container uses; only
    those `until`/`label`/`label!` filters match."""
    chosen = PruneFilters.parse(decode.filters(req.arg("filters")), images=True)
    with svc.pool.runtime() as rt:
        lines, freed = prune_images(rt, chosen)
    deleted = [{"Untagged": line.removeprefix("Untagged: ")} if line.startswith("Untagged: ")
               else {"Deleted": models.image_ref(line.removeprefix("Deleted: "))} for line in lines]
    h.send_json(200, {"ImagesDeleted": deleted or None, "SpaceReclaimed": freed})


ROUTES = [
    ("GET", r"/images/json", list_images),
    ("POST", r"/images/prune", prune),
    ("POST", r"/images/create", create),
    ("GET", r"/images/get", get_many),
    ("POST", r"/images/load", load),
    ("GET", r"/images/(?P<name>.+)/get", get_one),
    ("POST", r"/images/(?P<name>.+)/push", push),
    ("GET", r"/distribution/(?P<name>.+)/json", distribution),
    ("GET", r"/images/(?P<name>.+)/json", inspect),
    ("GET", r"/images/(?P<name>.+)/history", history),
    ("POST", r"/images/(?P<name>.+)/tag", tag),
    ("DELETE", r"/images/(?P<name>.+)", delete),
]
