"""Manifests: Docker schema 2 and OCI image manifests, manifest lists and OCI indexes, and the choice of
the platform to run (linux on this host's architecture; amd64 on x86_64).

Schema 1 manifests (signed, v1-compatible) are refused by name: registries converted them long ago.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

from pydock.graph.digest import is_digest
from pydock.graph.imageconfig import json_object
from pydock.utils.errors import InvalidArgument, NotFound

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
              "application/vnd.docker.distribution.manifest.v1+prettyjws")

MANIFEST_TYPES = (MT_DOCKER_MANIFEST, MT_OCI_MANIFEST)
INDEX_TYPES = (MT_DOCKER_LIST, MT_OCI_INDEX)
#: what a pull asks the registry for, in the Accept header.
ACCEPT = ", ".join((MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST))
LAYER_TYPES = (MT_DOCKER_LAYER, MT_OCI_LAYER, MT_OCI_LAYER_GZIP, "application/vnd.oci.image.layer.v1.tar+bzip2",
               "application/vnd.oci.image.layer.v1.tar+xz")
#: the biggest manifest or index read into memory.
MAX_MANIFEST = 4 << 20
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


def host_platform() -> tuple[str, str, str]:
    """(os, architecture, variant) of this host, in OCI's names."""
    machine = platform.machine()
    variant = "v7" if machine == "armv7l" else "v6" if machine == "armv6l" else ""
    return "linux", _ARCH.get(machine, machine), variant


def descriptor(data: Any, what: str) -> Descriptor:
    if not isinstance(data, dict):
        raise InvalidArgument(f"{what}: descriptor is not an object")
    digest, size = data.get("digest"), data.get("size")
    if not isinstance(digest, str) or not is_digest(digest):
        raise InvalidArgument(f"{what}: bad digest {digest!r}")
    if not isinstance(size, int) or size < 0:
        raise InvalidArgument(f"{what}: bad size {size!r}")
    urls = data.get("urls") or ()
    return Descriptor(str(data.get("mediaType") or ""), digest, size, tuple(str(u) for u in urls))


def parse_document(raw: bytes, content_type: str, what: str) -> tuple[str, dict[str, Any]]:
    """(media type, document) of a manifest or index; the type from the document when it names one."""
    doc = json_object(raw, f"{what}: the manifest")
    media = doc.get("mediaType") or content_type.split(";")[0].strip()
    if media in MT_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise InvalidArgument(f"{what}: schema 1 manifests are not supported")
    if not media:
        media = MT_OCI_INDEX if "manifests" in doc else MT_OCI_MANIFEST
    if media not in MANIFEST_TYPES + INDEX_TYPES:
        raise InvalidArgument(f"{what}: unsupported manifest type {media!r}")
    return media, doc


def image_manifest(media: str, doc: dict[str, Any], what: str) -> ImageManifest:
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise InvalidArgument(f"{what}: manifest has no layers list")
    config = descriptor(doc.get("config"), f"{what} config")
    out = []
    for n, layer in enumerate(layers):
        d = descriptor(layer, f"{what} layer {n}")
        if d.media_type == MT_OCI_LAYER_ZSTD or "zstd" in d.media_type:
            raise InvalidArgument(f"{what}: layer {d.digest} is zstd-compressed, which pydock cannot read")
        if d.media_type not in LAYER_TYPES and d.media_type != MT_DOCKER_FOREIGN:
            raise InvalidArgument(f"{what}: layer {d.digest} has unsupported media type {d.media_type!r}")
        out.append(d)
    return ImageManifest(media, config, tuple(out))


def choose_platform(index: dict[str, Any], what: str, want: tuple[str, str, str] | None = None) -> dict[str, Any]:
    """The index entry for `want` (default: this host), preferring an exact variant; NotFound naming the
    platforms on offer when none matches."""
    os_name, arch, variant = want or host_platform()
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise InvalidArgument(f"{what}: index has no manifests list")
    offered = []
    best: dict[str, Any] | None = None
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        plat = entry.get("platform") or {}
        offered.append("/".join(p for p in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if p))
        if plat.get("os") == os_name and plat.get("architecture") == arch:
            if not variant or plat.get("variant") in (None, "", variant):
                if best is None or plat.get("variant") == variant:
                    best = entry
    if best is None:
        have = ", ".join(sorted(set(o for o in offered if o))) or "none"
        raise NotFound(f"{what}: no manifest for platform {os_name}/{arch}{'/' + variant if variant else ''} "
                       f"(the index offers: {have})")
    descriptor(best, what)
    return best
