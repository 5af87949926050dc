"""`push`: an image from the graph to a registry, as a Docker schema 2 manifest with gzip layers.

Each layer's tar is rebuilt byte for byte (see assemble.export_layer) and gzip-compressed
deterministically (no name, no time), so the same layer always has the same blob digest. A blob the
registry already has (a HEAD answers 200) is not uploaded; the others go up monolithically, or in
chunks when larger than CHUNK; then the config, then the manifest. The blob each layer is known
under in this repository is recorded, so the next push of an image sharing it does not even rebuild it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pydock.graph import assemble, imageconfig
from pydock.graph.digest import hex_of, sha256_digest
from pydock.graph.distribution import auth, manifest
from pydock.graph.distribution.client import Registry, RegistryError, push_scope
from pydock.graph.distribution.pull import Progress, ProgressFn, registry_for, short
from pydock.graph.distribution.reference import Reference, parse
from pydock.graph.scratch import scratch_dir
from pydock.utils.errors import InvalidArgument

if TYPE_CHECKING:
    from pydock.graph.lookup import ImageStore

log = logging.getLogger(__package__)

#: blobs larger than this are uploaded in PATCH chunks of this size.
CHUNK = 32 << 20
GZIP_LEVEL = 6


@dataclass(frozen=True)
class PushResult:
    reference: Reference
    digest: str
    size: int
    uploaded: int  # blobs sent; 0 when the registry had everything


@dataclass(frozen=True)
class _Blob:
    digest: str
    size: int
    path: Path | None  # None: already in the registry, not rebuilt


def _gzip(src: Path, dest: Path) -> tuple[str, int]:
    """Compress `src` to `dest` reproducibly; (digest, size) of the result."""
    hasher = hashlib.sha256()

    class _Sink:
        def __init__(self, f: BinaryIO) -> None:
            self.f, self.size = f, 0

        def write(self, data: bytes) -> int:
            hasher.update(data)
            self.size += len(data)
            return self.f.write(data)

        def flush(self) -> None:
            self.f.flush()

    with open(src, "rb") as fin, open(dest, "wb") as fout:
        sink = _Sink(fout)
        with gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=GZIP_LEVEL, mtime=0) as gz:  # type: ignore[arg-type]
            while chunk := fin.read(1 << 20):
                gz.write(chunk)
    return "sha256:" + hasher.hexdigest(), sink.size


def upload(reg: Registry, name: str, digest: str, path: Path | None, data: bytes | None,
           progress: Callable[[int], None] | None = None) -> None:
    """POST an upload session, then PUT the blob (PATCH chunks first for a big one)."""
    scope = push_scope(name)
    size = path.stat().st_size if path is not None else len(data or b"")
    resp = reg.request("POST", f"/v2/{name}/blobs/uploads/", scope=scope, ok=(202,), body=b"",
                       headers={"Content-Length": "0"}, what=f"upload of {digest[:19]} to {name}")
    location = _location(reg, name, resp.getheader("Location"))
    if path is not None and size > CHUNK:
        with open(path, "rb") as f:
            offset = 0
            while chunk := f.read(CHUNK):
                resp = reg.request("PATCH", location, scope=scope, ok=(202,), body=chunk,
                                   headers={"Content-Type": "application/octet-stream",
                                            "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                                            "Content-Length": str(len(chunk))},
                                   what=f"upload of {digest[:19]} to {name}")
                offset += len(chunk)
                location = _location(reg, name, resp.getheader("Location"))
                if progress:
                    progress(offset)
        _put(reg, name, location, digest, b"", scope)
        return
    body: bytes | BinaryIO = data if data is not None else open(path, "rb")  # type: ignore[arg-type]
    try:
        _put(reg, name, location, digest, body, scope, size)
    finally:
        if not isinstance(body, bytes):
            body.close()
    if progress:
        progress(size)


def _put(reg: Registry, name: str, location: str, digest: str, body: bytes | BinaryIO, scope: str,
         size: int | None = None) -> None:
    sep = "&" if "?" in location else "?"
    length = len(body) if isinstance(body, bytes) else size
    reg.request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", scope=scope, ok=(201,), body=body,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
                what=f"upload of {digest[:19]} to {name}")


def _location(reg: Registry, name: str, header: str | None) -> str:
    """The path (and query) of an upload session's Location, which may be absolute or relative."""
    if not header:
        raise RegistryError(f"registry {reg.host}: upload to {name} answered without a Location")
    url = urllib.parse.urlsplit(header)
    if url.netloc and url.netloc != reg.host:
        raise RegistryError(f"registry {reg.host}: upload location on another host ({url.netloc})")
    return url.path + (f"?{url.query}" if url.query else "")


def push(store: ImageStore, text: str, *, progress: ProgressFn | None = None,
         insecure: tuple[str, ...] = (), credentials: auth.Credentials | None = None) -> PushResult:
    """Push the local image `text` names to the registry its name says (tag defaults to latest)."""
    say = progress or (lambda p: None)
    ref = parse(text)
    if ref.digest:
        raise InvalidArgument(f"cannot push by digest ({text}): push a tag")
    image = store.get(text)
    reg = registry_for(ref, insecure, credentials)
    try:
        return _push(store, ref, image, reg, say)
    finally:
        reg.close()


def _push(store: ImageStore, ref: Reference, image, reg: Registry, say: ProgressFn) -> PushResult:  # noqa: ANN001
    graph = store.graph
    name = ref.path
    say(Progress("", f"The push refers to repository [{ref.name}]"))
    chain = imageconfig.layer_chain(graph, image)
    uploaded = 0
    blobs: list[_Blob] = []
    with scratch_dir(graph.tmp) as work:
        known: list[str | None] = []
        for layer in chain:
            info = graph.layer_info(layer.id)
            known.append(next((d for d, b in (info.blobs.items() if info else ()) if ref.name in b.repos
                               and b.media_type in (manifest.MT_DOCKER_LAYER, manifest.MT_OCI_LAYER_GZIP)), None))
        # a layer already in this repository (recorded and confirmed) needs no rebuild
        rebuilt: dict[int, assemble.ExportedLayer] = {}
        for i, layer in enumerate(chain):
            if known[i] is not None and reg.blob_exists(name, known[i], scope=_scope(ref)):
                continue
            known[i] = None
            rebuilt[i] = assemble.export_layer(graph, layer, work / f"layer-{i}.tar")
        diff_ids = []
        for i, layer in enumerate(chain):
            if i in rebuilt:
                diff_ids.append(rebuilt[i].diff_id)
            else:
                info = graph.layer_info(layer.id)
                assert info is not None and info.diff_id
                diff_ids.append(info.diff_id)
        config_raw = assemble.config_for(graph, image, diff_ids)
        for i, layer in enumerate(chain):
            if i not in rebuilt:
                digest = known[i]
                assert digest is not None
                size = graph.layer_info(layer.id).blobs[digest].size  # type: ignore[union-attr]
                say(Progress(short(digest), "Layer already exists"))
                blobs.append(_Blob(digest, size, None))
                continue
            gz = work / f"layer-{i}.tar.gz"
            digest, size = _gzip(rebuilt[i].path, gz)
            rebuilt[i].path.unlink()
            sid = short(digest)
            say(Progress(sid, "Preparing"))
            if reg.blob_exists(name, digest, scope=_scope(ref)):
                say(Progress(sid, "Layer already exists"))
            else:
                upload(reg, name, digest, gz, None, lambda n, sid=sid, size=size: say(Progress(sid, "Pushing", n, size)))
                uploaded += 1
                say(Progress(sid, "Pushed"))
            gz.unlink()
            graph.update_layer_info(layer.id, lambda info, d=digest, s=size: info.with_blob(
                d, manifest.MT_DOCKER_LAYER, s, ref.name))
            blobs.append(_Blob(digest, size, None))
    config_digest = sha256_digest(config_raw)
    if not reg.blob_exists(name, config_digest, scope=_scope(ref)):
        upload(reg, name, config_digest, None, config_raw)
        uploaded += 1
    doc = {
        "schemaVersion": 2, "mediaType": manifest.MT_DOCKER_MANIFEST,
        "config": {"mediaType": manifest.MT_DOCKER_CONFIG, "size": len(config_raw), "digest": config_digest},
        "layers": [{"mediaType": manifest.MT_DOCKER_LAYER, "size": b.size, "digest": b.digest} for b in blobs],
    }
    raw = json.dumps(doc, indent=3).encode()
    reg.request("PUT", f"/v2/{name}/manifests/{ref.tag}", scope=_scope(ref), ok=(201,), body=raw,
                headers={"Content-Type": manifest.MT_DOCKER_MANIFEST, "Content-Length": str(len(raw))},
                what=f"manifest {ref}")
    digest = sha256_digest(raw)
    if hex_of(config_digest) == image.id:
        assemble.add_repo_digest(graph, image.id, f"{ref.familiar}@{digest}")
    say(Progress("", f"{ref.tag}: digest: {digest} size: {len(raw)}"))
    store.event("push", image.id, name=str(ref))
    return PushResult(ref, digest, len(raw), uploaded)


def _scope(ref: Reference) -> str:
    return push_scope(ref.path)
