"""`pull`: a registry image into the graph.

The manifest (an index is resolved to this host's platform) and the config come first; layers the graph
already holds (by chain id) are skipped, the others are downloaded concurrently into a private scratch
dir, each checked against its digest as it streams, and registered bottom-up as soon as the ones below
are in. Whatever stops a pull (a bad digest, an error, Ctrl-C) leaves the layers registered so far
(complete and valid: a retry reuses them), no image, and no partial download.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

from pydock.graph import assemble, imageconfig
from pydock.graph.digest import check_digest, hex_of, sha256_digest
from pydock.graph.distribution import auth, manifest
from pydock.graph.distribution.client import Registry, pull_scope
from pydock.graph.distribution.reference import Reference, parse
from pydock.graph.image import Image
from pydock.graph.scratch import scratch_dir
from pydock.utils.errors import InvalidArgument, PydockError

if TYPE_CHECKING:
    from pydock.graph.lookup import ImageStore

log = logging.getLogger(__package__)

#: layers downloaded at once (Docker's default max-concurrent-downloads is 3).
CONCURRENT_DOWNLOADS = 3
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Progress:
    """One progress message: `id` is a layer's short digest ('' for the image as a whole)."""

    id: str
    status: str
    current: int = 0
    total: int = 0


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class PullResult:
    image: Image
    reference: Reference
    digest: str
    downloaded: int  # layers fetched; 0 when everything was here


def short(digest: str) -> str:
    return hex_of(digest)[:12]


class Cancelled(PydockError):
    """A download stopped because the pull was interrupted or another layer failed."""


def registry_for(ref: Reference, insecure: tuple[str, ...] = (), credentials: auth.Credentials | None = None
                 ) -> Registry:
    """A client for `ref`'s registry with `credentials`, else those stored by `login` for it."""
    host = ref.api_host
    return Registry(host, credentials or auth.lookup(ref.domain), insecure=ref.domain in insecure or host in insecure)


def fetch_manifest(reg: Registry, ref: Reference, name: str | None = None) -> tuple[str, str, dict]:
    """(digest, media type, document) of `ref`'s manifest; an index is resolved to this host's platform."""
    name = name or ref.path
    wanted = ref.ref
    top_digest = None
    for _ in range(2):
        resp = reg.request("GET", f"/v2/{name}/manifests/{wanted}", scope=pull_scope(name),
                           headers={"Accept": manifest.ACCEPT}, what=f"manifest for {ref}")
        raw: bytes = resp.body  # type: ignore[attr-defined]
        if len(raw) > manifest.MAX_MANIFEST:
            raise InvalidArgument(f"manifest for {ref} is larger than {manifest.MAX_MANIFEST} bytes")
        digest = sha256_digest(raw)
        if wanted.startswith("sha256:"):
            check_digest(digest, wanted, f"manifest for {ref}")
        else:
            header = resp.getheader("Docker-Content-Digest")
            if header and header.startswith("sha256:"):
                check_digest(digest, header, f"manifest for {ref}")
        top_digest = top_digest or digest
        media, doc = manifest.parse_document(raw, resp.getheader("Content-Type") or "", f"manifest for {ref}")
        if media in manifest.INDEX_TYPES:
            wanted = manifest.choose_platform(doc, f"{ref}")["digest"]
            continue
        return top_digest, media, doc
    raise InvalidArgument(f"manifest for {ref}: an index pointing at another index")


class _Downloads:
    """Concurrent layer downloads into `work`; `open(i)` waits for layer i and yields its file."""

    def __init__(self, reg: Registry, name: str, layers: list[manifest.Descriptor], wanted: list[int],
                 work: Path, progress: ProgressFn) -> None:
        self.reg, self.name, self.layers, self.work, self.progress = reg, name, layers, work, progress
        self.cancel = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=CONCURRENT_DOWNLOADS, thread_name_prefix="pull")
        self.futures: dict[int, Future[Path]] = {i: self.pool.submit(self._fetch, i) for i in wanted}

    def _fetch(self, i: int) -> Path:
        desc = self.layers[i]
        sid = short(desc.digest)
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        path = self.work / f"layer-{i}"
        hasher = hashlib.sha256()
        done = 0
        last = 0
        with self.reg.get_blob(self.name, desc.digest) as resp, open(path, "wb") as f:
            while True:
                if self.cancel.is_set():
                    raise Cancelled("cancelled")
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                hasher.update(chunk)
                f.write(chunk)
                done += len(chunk)
                if done > desc.size:
                    raise InvalidArgument(f"layer {desc.digest}: the registry sent more than its {desc.size} bytes")
                if done - last >= 512 * 1024 or done == desc.size:
                    last = done
                    self.progress(Progress(sid, "Downloading", done, desc.size))
        self.progress(Progress(sid, "Verifying Checksum"))
        if done != desc.size:
            raise InvalidArgument(f"layer {desc.digest}: got {done} bytes, the manifest says {desc.size}")
        check_digest("sha256:" + hasher.hexdigest(), desc.digest, f"layer {short(desc.digest)}")
        self.progress(Progress(sid, "Download complete"))
        return path

    @contextmanager
    def open(self, i: int) -> Iterator[BinaryIO]:
        path = self.futures[i].result()
        sid = short(self.layers[i].digest)
        self.progress(Progress(sid, "Extracting", 0, self.layers[i].size))
        with open(path, "rb") as f:
            yield f
        path.unlink()

    def close(self) -> None:
        self.cancel.set()
        for fut in self.futures.values():
            fut.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


def pull(store: ImageStore, text: str, *, progress: ProgressFn | None = None,
         insecure: tuple[str, ...] = (), credentials: auth.Credentials | None = None) -> PullResult:
    """Pull `text` (Docker's reference grammar) into the store, tag it, and record its repo digest."""
    say = progress or (lambda p: None)
    ref = parse(text)
    reg = registry_for(ref, insecure, credentials)
    try:
        result = _pull(store, ref, reg, say)
    finally:
        reg.close()
    store.event("pull", result.image.id, name=str(result.reference))
    return result


def _pull(store: ImageStore, ref: Reference, reg: Registry, say: ProgressFn) -> PullResult:
    graph = store.graph
    digest, _media, doc = fetch_manifest(reg, ref)  # before any progress: a missing image fails plainly
    say(Progress("", f"{ref.tag or ref.digest}: Pulling from {ref.path}"))
    m = manifest.image_manifest(_media, doc, f"manifest for {ref}")
    image_id = hex_of(m.config.digest)
    if graph.exists(image_id):
        image = graph.get(image_id)
        _finish(store, ref, image, digest)
        say(Progress("", f"Digest: {digest}"))
        say(Progress("", f"Status: Image is up to date for {ref}"))
        return PullResult(image, ref, digest, 0)
    if m.config.size > manifest.MAX_MANIFEST:
        raise InvalidArgument(f"config of {ref} is larger than {manifest.MAX_MANIFEST} bytes")
    with reg.get_blob(ref.path, m.config.digest) as resp:
        config_raw = resp.read(manifest.MAX_MANIFEST + 1)
    check_digest(sha256_digest(config_raw), m.config.digest, f"config of {ref}")
    config = imageconfig.parse_config(config_raw, f"config of {ref}")
    diffs = imageconfig.diff_ids(config)
    if len(diffs) != len(m.layers):
        raise InvalidArgument(f"{ref}: the manifest has {len(m.layers)} layers, the config {len(diffs)}")
    for layer in m.layers:
        if layer.media_type == manifest.MT_DOCKER_FOREIGN:
            raise InvalidArgument(f"{ref}: layer {layer.digest} is a foreign layer, not for linux")
    present = assemble.present_layers(graph, diffs)
    wanted = [i for i, p in enumerate(present) if p is None]
    for i, layer in enumerate(m.layers):
        say(Progress(short(layer.digest), "Already exists" if present[i] else "Pulling fs layer"))
    blobs: list[assemble.BlobRecord | None] = [assemble.BlobRecord(l.digest, l.media_type, l.size, ref.name)
                                               for l in m.layers]

    def on_layer(i: int, state: str) -> None:
        if state == "registered":
            say(Progress(short(m.layers[i].digest), "Pull complete"))

    with scratch_dir(graph.tmp) as work:
        downloads = _Downloads(reg, ref.path, list(m.layers), wanted, work, say)
        try:
            image = assemble.register_image(graph, config_raw, downloads.open, blobs=blobs, on_layer=on_layer)
        finally:
            downloads.close()
    _finish(store, ref, image, digest)
    say(Progress("", f"Digest: {digest}"))
    say(Progress("", f"Status: Downloaded newer image for {ref}"))
    return PullResult(image, ref, digest, len(wanted))


@dataclass(frozen=True)
class Description:
    """What `GET /distribution/{name}/json` tells: the top manifest's descriptor and its platforms."""

    media_type: str
    digest: str
    size: int
    platforms: list[dict[str, str]]


def describe(text: str, *, insecure: tuple[str, ...] = (), credentials: auth.Credentials | None = None
             ) -> Description:
    ref = parse(text)
    reg = registry_for(ref, insecure, credentials)
    try:
        resp = reg.request("GET", f"/v2/{ref.path}/manifests/{ref.ref}", scope=pull_scope(ref.path),
                           headers={"Accept": manifest.ACCEPT}, what=f"manifest for {ref}")
        raw: bytes = resp.body  # type: ignore[attr-defined]
        digest = sha256_digest(raw)
        if ref.digest:
            check_digest(digest, ref.digest, f"manifest for {ref}")
        media, doc = manifest.parse_document(raw, resp.getheader("Content-Type") or "", f"manifest for {ref}")
        if media in manifest.INDEX_TYPES:
            platforms = [{k: str(v) for k, v in (e.get("platform") or {}).items() if isinstance(v, str)}
                         for e in doc.get("manifests") or [] if isinstance(e, dict)]
        else:
            m = manifest.image_manifest(media, doc, f"manifest for {ref}")
            with reg.get_blob(ref.path, m.config.digest) as blob:
                config = imageconfig.parse_config(blob.read(manifest.MAX_MANIFEST + 1), f"config of {ref}")
            platforms = [{"architecture": str(config.get("architecture") or ""), "os": str(config.get("os") or "")}]
        return Description(media, digest, len(raw), platforms)
    finally:
        reg.close()


def _finish(store: ImageStore, ref: Reference, image: Image, digest: str) -> None:
    if ref.tag and not ref.digest:
        store.tags.set(ref.familiar, ref.tag, image.id, force=True)
    assemble.add_repo_digest(store.graph, image.id, f"{ref.familiar}@{digest}")

