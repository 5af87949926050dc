"""`save` and `load`: image archives as `docker save` and `podman save` write them.

save writes Docker >= 25's archive: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`)
that also carries the classic `manifest.json` and `repositories`, so old and new readers (docker,
podman, skopeo) all load it; `--format oci` writes the OCI layout alone. Layers are uncompressed tars.

load reads either kind (classic `manifest.json` archives from docker and podman, OCI layouts), plain or
gzip/bzip2/xz compressed, from a pipe: the members are spooled to a private scratch dir first (a
classic archive lists its layers only at its end), addressed by index, never by their names on disk.
Every layer goes through the graph's safe apply path and must hash to its diff id.
"""

from __future__ import annotations

import io
import json
import logging
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pydock.archive.apply import clean_name
from pydock.graph import assemble, imageconfig
from pydock.graph.digest import HashingReader, check_digest, hex_of, is_digest, sha256_digest
from pydock.graph.distribution import reference
from pydock.graph.distribution.manifest import (MT_DOCKER_LIST, MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER,
                                               MT_OCI_MANIFEST, choose_platform)
from pydock.graph.scratch import scratch_dir
from pydock.utils.errors import ArchiveError, InvalidArgument, UnsafeArchive

if TYPE_CHECKING:
    from pydock.graph.lookup import ImageStore

log = logging.getLogger(__package__)

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
ANNOTATION_REF = "org.opencontainers.image.ref.name"
ANNOTATION_NAME = "io.containerd.image.name"
#: the most manifests one archive may name (a bound on work for a hostile index).
MAX_MANIFESTS = 1000
_MAX_LINK_HOPS = 16
_METADATA_LIMIT = 16 << 20


# ---- save ---------------------------------------------------------------------------------------

@dataclass
class _Saved:
    config_digest: str
    manifest_digest: str
    manifest_size: int
    layers: list[str]
    tags: list[str] = field(default_factory=list)


def _tags_for(store: ImageStore, ref: str) -> list[str]:
    """The `name:tag` a saved image carries: the one asked for, none when asked for by id."""
    found = store.tag_named(ref)
    return [found] if found else []


def save(store: ImageStore, refs: list[str], out: BinaryIO, fmt: str = "docker") -> None:
    """Write the images `refs` name as one archive to `out` (see the module docstring)."""
    if fmt not in ("docker", "oci"):
        raise InvalidArgument(f"unknown archive format {fmt!r}: docker or oci")
    if not refs:
        raise InvalidArgument("save needs at least one image")
    images = [(ref, store.get(ref)) for ref in refs]
    graph = store.graph
    written: set[str] = set()
    saved: dict[str, _Saved] = {}
    with scratch_dir(graph.tmp) as work, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", OCI_LAYOUT)
        for n, (ref, image) in enumerate(images):
            tags = _tags_for(store, ref)
            if image.id in saved:
                saved[image.id].tags.extend(t for t in tags if t not in saved[image.id].tags)
                continue
            imgdir = work / str(n)
            imgdir.mkdir()
            config_raw, layers = assemble.export_image(graph, image, imgdir)
            config_digest = sha256_digest(config_raw)
            _add_blob(tar, config_digest, config_raw, written)
            for layer in layers:
                if layer.diff_id not in written:
                    tar.add(str(layer.path), arcname=_blob_path(layer.diff_id), recursive=False,
                            filter=_plain_member)
                    written.add(layer.diff_id)
                layer.path.unlink()
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest, "size": len(config_raw)},
                "layers": [{"mediaType": MT_OCI_LAYER, "digest": l.diff_id, "size": l.size} for l in layers],
            }, separators=(",", ":")).encode()
            manifest_digest = sha256_digest(manifest)
            _add_blob(tar, manifest_digest, manifest, written)
            saved[image.id] = _Saved(config_digest, manifest_digest, len(manifest), [l.diff_id for l in layers], tags)
        index_entries = []
        for s in saved.values():
            for tag in s.tags or [None]:
                entry: dict[str, Any] = {"mediaType": MT_OCI_MANIFEST, "digest": s.manifest_digest,
                                         "size": s.manifest_size}
                if tag:
                    ref = reference.parse(tag)
                    entry["annotations"] = {ANNOTATION_NAME: f"{ref.name}:{ref.tag}", ANNOTATION_REF: ref.tag}
                index_entries.append(entry)
        _add_bytes(tar, "index.json", json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                                                  "manifests": index_entries}, separators=(",", ":")).encode())
        if fmt == "docker":
            manifest_json = [{"Config": _blob_path(s.config_digest), "RepoTags": s.tags or None,
                              "Layers": [_blob_path(d) for d in s.layers]} for s in saved.values()]
            _add_bytes(tar, "manifest.json", json.dumps(manifest_json, separators=(",", ":")).encode())
            repositories: dict[str, dict[str, str]] = {}
            for s in saved.values():
                for tag in s.tags:
                    name, _, t = tag.rpartition(":")
                    if s.layers:
                        repositories.setdefault(name, {})[t] = hex_of(s.layers[-1])
            if repositories:
                _add_bytes(tar, "repositories", json.dumps(repositories, separators=(",", ":")).encode())
    for ref, image in images:
        store.event("save", image.id, name=ref)


def _blob_path(digest: str) -> str:
    return f"blobs/sha256/{hex_of(digest)}"


def _plain_member(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Archive members are owned by root with fixed times, as docker writes them."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o444
    info.mtime = 0
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _plain_member(tarfile.TarInfo(name))
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _add_blob(tar: tarfile.TarFile, digest: str, data: bytes, written: set[str]) -> None:
    if digest not in written:
        _add_bytes(tar, _blob_path(digest), data)
        written.add(digest)


# ---- load ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Member:
    """Where a member's bytes are: a file and a byte range in it."""

    path: Path
    offset: int
    size: int


class _Slice(io.RawIOBase):
    """A read-only stream over `size` bytes at `offset` of an open file (pread: no shared position)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self.fd, self.pos, self.end = fd, offset, offset + size

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self.end - self.pos)
        if n <= 0:
            return 0
        got = os.preadv(self.fd, [memoryview(buf)[:n]], self.pos)
        if not got:
            raise ArchiveError("invalid image archive: it is truncated")
        self.pos += got
        return got


class _Spool:
    """The archive's members, addressed by name (symlinks resolved), never by their names on disk: an
    uncompressed archive file is read in place; a pipe or a compressed archive is spooled to private
    files named by index first."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, _Member] = {}
        self.links: dict[str, str] = {}

    def fill(self, stream: BinaryIO) -> None:
        from pydock.archive.compression import Compression, codec_errors, decompress_stream, detect, read_head  # lazy: only a load reads archives

        try:
            in_place = _seekable_path(stream)
            if in_place is not None:
                head, _ = read_head(stream)
                stream.seek(0)
                if detect(head) is Compression.NONE:
                    self._index(stream, in_place)
                    return
            with tarfile.open(fileobj=decompress_stream(stream), mode="r|") as tar:
                for n, member in enumerate(tar):
                    name = _norm(member.name)
                    if name and member.isfile():
                        path = self.root / f"m{n}"
                        src = tar.extractfile(member)
                        assert src is not None
                        with open(path, "wb") as f:
                            _copy_exact(src, f, member.size, name)
                        self.files[name] = _Member(path, 0, member.size)
                    elif name:
                        self._link(name, member)
        except (tarfile.TarError, EOFError, OSError, ValueError) + codec_errors() as err:  # type: ignore[operator]
            raise ArchiveError(f"invalid image archive: {err}") from None

    def _index(self, stream: BinaryIO, path: Path) -> None:
        size = os.fstat(stream.fileno()).st_size
        with tarfile.open(fileobj=stream, mode="r:") as tar:
            for member in tar:
                name = _norm(member.name)
                if name and member.isfile():
                    if member.offset_data + member.size > size:
                        raise ArchiveError(f"invalid image archive: {name} is truncated")
                    self.files[name] = _Member(path, member.offset_data, member.size)
                elif name:
                    self._link(name, member)

    def _link(self, name: str, member: tarfile.TarInfo) -> None:
        if member.issym() or member.islnk():
            target = member.linkname
            if member.issym():
                target = posixpath.join(posixpath.dirname(name), target)
            self.links[name] = _norm(target)

    def member(self, name: str) -> _Member:
        name = _norm(name)
        for _ in range(_MAX_LINK_HOPS):
            if name in self.files:
                return self.files[name]
            if name not in self.links:
                break
            name = self.links[name]
        raise ArchiveError(f"invalid image archive: it names {name!r} but has no such file")

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        m = self.member(name)
        fd = os.open(m.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield io.BufferedReader(_Slice(fd, m.offset, m.size), 1 << 20)  # type: ignore[misc]
        finally:
            os.close(fd)

    def has(self, name: str) -> bool:
        return _norm(name) in self.files or _norm(name) in self.links

    def read(self, name: str, limit: int = _METADATA_LIMIT) -> bytes:
        m = self.member(name)
        if m.size > limit:
            raise ArchiveError(f"invalid image archive: {name} is larger than {limit} bytes")
        with self.open(name) as f:
            return f.read()

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError as err:
            raise ArchiveError(f"invalid image archive: {name} is not JSON: {err}") from None


def _seekable_path(stream: BinaryIO) -> Path | None:
    """The path of `stream` when it is a regular file opened for reading (read in place), else None."""
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode) or stream.tell() != 0:
            return None
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
    return Path(f"/proc/self/fd/{fd}")


def _norm(name: str) -> str:
    """A member name as a clean relative key (`./a//b` -> `a/b`); names that escape become ''."""
    try:
        return "/".join(clean_name(name))
    except UnsafeArchive:
        return ""


def _copy_exact(src: BinaryIO, dst: BinaryIO, size: int, name: str) -> None:
    left = size
    while left:
        chunk = src.read(min(left, 1 << 20))
        if not chunk:
            raise ArchiveError(f"invalid image archive: {name} is truncated")
        dst.write(chunk)
        left -= len(chunk)


@dataclass
class _ToLoad:
    config_name: str
    layer_names: list[str]
    tags: list[str]
    layer_digests: list[str | None]  # the blob digest (OCI) each layer file must hash to
    layer_media_types: list[str]


def _docker_entries(spool: _Spool) -> list[_ToLoad]:
    data = spool.json("manifest.json")
    if not isinstance(data, list):
        raise ArchiveError("invalid image archive: manifest.json is not a list")
    out = []
    for entry in data[:MAX_MANIFESTS]:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise ArchiveError("invalid image archive: a manifest.json entry lacks Config or Layers")
        layers = [str(l) for l in entry["Layers"]]
        out.append(_ToLoad(entry["Config"], layers, [str(t) for t in entry.get("RepoTags") or []],
                           [None] * len(layers), [""] * len(layers)))
    return out


def _oci_entries(spool: _Spool) -> list[_ToLoad]:
    index = spool.json("index.json")
    out: list[_ToLoad] = []
    pending: list[tuple[dict[str, Any], str | None]] = [(d, None) for d in _descriptors(index, "index.json")]
    seen = 0
    while pending:
        desc, tag = pending.pop(0)
        seen += 1
        if seen > MAX_MANIFESTS:
            raise ArchiveError(f"invalid image archive: more than {MAX_MANIFESTS} manifests")
        annotations = desc.get("annotations") or {}
        tag = tag or _tag_from_annotations(annotations)
        raw = _blob(spool, desc)
        media = desc.get("mediaType") or ""
        doc = _json_doc(raw, desc["digest"])
        media = media or doc.get("mediaType") or ""
        if media in (MT_OCI_INDEX, MT_DOCKER_LIST) or "manifests" in doc:
            pending.append((choose_platform(doc, desc["digest"]), tag))
            continue
        config = doc.get("config")
        layers = doc.get("layers")
        if not isinstance(config, dict) or not isinstance(layers, list):
            raise ArchiveError(f"invalid image archive: manifest {desc['digest']} lacks config or layers")
        _check_desc(config)
        for l in layers:
            _check_desc(l)
        out.append(_ToLoad(_blob_path(config["digest"]), [_blob_path(l["digest"]) for l in layers],
                           [tag] if tag else [], [l["digest"] for l in layers],
                           [str(l.get("mediaType") or "") for l in layers]))
    return out


def _descriptors(doc: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise ArchiveError(f"invalid image archive: {what} has no manifests list")
    for d in doc["manifests"]:
        _check_desc(d)
    return list(doc["manifests"])


def _check_desc(desc: Any) -> None:
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str) or not is_digest(desc["digest"]):
        raise ArchiveError(f"invalid image archive: bad descriptor {json.dumps(desc)[:200]}")


def _blob(spool: _Spool, desc: dict[str, Any]) -> bytes:
    raw = spool.read(_blob_path(desc["digest"]))
    check_digest(sha256_digest(raw), desc["digest"], "image archive blob")
    return raw


def _json_doc(raw: bytes, digest: str) -> dict[str, Any]:
    return imageconfig.json_object(raw, f"invalid image archive: blob {digest}", ArchiveError)


def _tag_from_annotations(annotations: dict[str, Any]) -> str | None:
    """The image name an index entry carries: containerd's full name, else the OCI ref name (a bare
    tag is not a name, and is left out)."""
    for key in (ANNOTATION_NAME, ANNOTATION_REF):
        value = annotations.get(key)
        if isinstance(value, str) and value:
            try:
                ref = reference.parse(value)
            except InvalidArgument:
                continue
            if key == ANNOTATION_REF and "/" not in value and ":" not in value:
                continue  # `latest` alone names no repository
            return f"{ref.familiar}:{ref.tag}" if ref.tag else None
    return None


@contextmanager
def _open_layer_file(spool: _Spool, todo: _ToLoad, i: int) -> Iterator[BinaryIO]:
    media = todo.layer_media_types[i]
    if "zstd" in media:
        raise ArchiveError(f"layer {todo.layer_names[i]} is zstd-compressed ({media}): not supported")
    with spool.open(todo.layer_names[i]) as f:
        expected = todo.layer_digests[i]
        if expected is None:
            yield f
            return
        hashed = HashingReader(f)  # type: ignore[arg-type]
        yield hashed  # type: ignore[misc]
        hashed.drain()
        check_digest(hashed.digest, expected, f"layer {todo.layer_names[i]}")


def load(store: ImageStore, stream: BinaryIO) -> list[str]:
    """Load every image of the archive `stream`; returns `Loaded image: name:tag` / `Loaded image ID:` lines."""
    graph = store.graph
    lines: list[str] = []
    with scratch_dir(graph.tmp) as work:
        spool = _Spool(work)
        spool.fill(stream)
        if spool.has("manifest.json"):
            todo = _docker_entries(spool)
        elif spool.has("index.json"):
            todo = _oci_entries(spool)
        elif spool.has("repositories"):
            raise ArchiveError("invalid image archive: a legacy (Docker < 1.10) archive without manifest.json "
                               "is not supported")
        else:
            raise ArchiveError("invalid image archive: no manifest.json or index.json in it")
        if not todo:
            raise ArchiveError("invalid image archive: it holds no image")
        for entry in todo:
            config_raw = spool.read(entry.config_name)
            config = _parse_config(config_raw, entry.config_name)
            if len(config) != len(entry.layer_names):
                raise ArchiveError(f"invalid image archive: {entry.config_name} lists {len(config)} layers, "
                                   f"the manifest {len(entry.layer_names)}")
            image = assemble.register_image(graph, config_raw,
                                            lambda i, e=entry: _open_layer_file(spool, e, i))  # type: ignore[misc]
            for tag in entry.tags:
                ref = reference.parse(tag)
                store.tags.set(ref.familiar, ref.tag, image.id, force=True)
                lines.append(f"Loaded image: {ref.familiar}:{ref.tag}")
            if not entry.tags:
                lines.append(f"Loaded image ID: sha256:{image.id}")
            store.event("load", image.id, name=", ".join(entry.tags) or image.id)
    return lines


def _parse_config(raw: bytes, name: str) -> list[str]:
    try:
        return imageconfig.diff_ids(imageconfig.parse_config(raw, f"image config {name}"))
    except InvalidArgument as err:
        raise ArchiveError(f"invalid image archive: {err}") from None
