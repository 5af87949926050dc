"""Images in and out of the graph as (config, layers): what `load`, `pull`, `save` and `push` share.

In: each layer becomes one graph image named by its chain id whose parent is the layer below (a layer
already here under that chain id, from any image, is reused and never fetched again), then the image
itself: an empty layer on top whose id is the config's digest and which keeps the config blob. Every
step is one `Graph.register`, all-or-nothing; a failure leaves the layers below it registered (they
are valid and a retry reuses them) and nothing half-written.

Out: a layer's tar is rebuilt byte for byte from its tar-split record and checked against its diff id;
a layer that cannot be (registered before pydock kept records, a tar that named a path twice) is
exported afresh from the storage driver and the config's diff ids are updated to match.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pydock.graph import imageconfig
from pydock.graph.digest import chain_id, hex_of, sha256_digest
from pydock.graph.image import Image
from pydock.graph.layerinfo import CONFIG_FILE, REPO_DIGESTS_FILE
from pydock.graph.tarsplit import NotReproducible, reassemble
from pydock.utils.errors import Conflict

if TYPE_CHECKING:
    from pydock.graph.graph import Graph

log = logging.getLogger(__package__)

#: how long to wait for another process registering the same layer before giving up.
CONCURRENT_REGISTER_WAIT = 300.0

LayerOpener = Callable[[int], AbstractContextManager[BinaryIO]]


@dataclass(frozen=True)
class BlobRecord:
    """The compressed blob a layer arrived as (recorded so a push to the same place can skip it)."""

    digest: str
    media_type: str
    size: int
    repo: str | None = None


def present_layers(graph: Graph, diff_ids: list[str]) -> list[str | None]:
    """For each layer (bottom first): the id of the graph image holding that stack, or None."""
    out: list[str | None] = []
    chain: str | None = None
    for diff in diff_ids:
        chain = chain_id(chain, diff)
        out.append(graph.find_layer(chain))
    return out


def _register_or_reuse(graph: Graph, chain: str, register: Callable[[], Image]) -> str:
    """Register a layer, or take the one another process registered meanwhile under the same chain."""
    deadline = time.monotonic() + CONCURRENT_REGISTER_WAIT
    while True:
        try:
            return register().id
        except Conflict:
            found = graph.find_layer(chain)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def register_image(graph: Graph, config_raw: bytes, open_layer: LayerOpener, *,
                   blobs: list[BlobRecord | None] | None = None,
                   on_layer: Callable[[int, str], None] | None = None) -> Image:
    """The image `config_raw` describes, registering the layers not here from `open_layer(i)` in order.

    `open_layer(i)` yields the (possibly compressed) tar of layer i; its bytes must hash to the config's
    diff id. `on_layer(i, 'exists'|'registered')` reports each layer as it is settled.
    """
    config = imageconfig.parse_config(config_raw)
    diffs = imageconfig.diff_ids(config)
    image_id = hex_of(sha256_digest(config_raw))
    present = present_layers(graph, diffs)
    hist = [h for h in imageconfig.history(config) if not h.empty_layer]
    parent: str | None = None
    chain: str | None = None
    for i, diff in enumerate(diffs):
        chain = chain_id(chain, diff)
        if present[i] is not None:
            parent = present[i]
            if on_layer:
                on_layer(i, "exists")
            continue
        entry = hist[i] if len(hist) == len(diffs) else None
        this_parent, this_chain = parent, chain

        def register(i: int = i, diff: str = diff, entry: imageconfig.HistoryEntry | None = entry) -> Image:
            with open_layer(i) as stream:
                return graph.register(
                    stream, parent=this_parent, image_id=hex_of(this_chain), diff_id=diff,
                    created=entry.created if entry else None, comment=entry.comment if entry else "",
                    container_config={"Cmd": [entry.created_by]} if entry and entry.created_by else None,
                    architecture=str(config.get("architecture") or "") or None)

        parent = _register_or_reuse(graph, chain, register)
        if blobs and blobs[i] is not None:
            b = blobs[i]
            graph.update_layer_info(parent, lambda info, b=b: info.with_blob(b.digest, b.media_type, b.size, b.repo))
        if on_layer:
            on_layer(i, "registered")
    if graph.exists(image_id):
        return graph.get(image_id)
    try:
        return graph.register(
            None, parent=parent, image_id=image_id, config=imageconfig.run_config(config),
            created=imageconfig.created_of(config), author=str(config.get("author") or ""),
            comment=str(config.get("comment") or ""),
            architecture=str(config.get("architecture") or "") or None, files={CONFIG_FILE: config_raw})
    except Conflict:
        if graph.exists(image_id):  # the same image, loaded or pulled by another process meanwhile
            return graph.get(image_id)
        raise


def repo_digests(graph: Graph, image_id: str) -> list[str]:
    raw = graph.meta_file(image_id, REPO_DIGESTS_FILE)
    if raw is None:
        return []
    try:
        return [str(d) for d in json.loads(raw)]
    except ValueError as err:
        log.debug("graph: unreadable repo digests of %s: %s", image_id, err)
        return []


def add_repo_digest(graph: Graph, image_id: str, repo_digest: str) -> None:
    """Remember that `repo@digest` (a manifest in a registry) is this image."""
    current = repo_digests(graph, image_id)
    if repo_digest not in current:
        graph.write_meta_file(image_id, REPO_DIGESTS_FILE, json.dumps(sorted(current + [repo_digest])).encode())


def find_by_repo_digest(graph: Graph, repo_digest: str) -> str | None:
    for image_id in graph.ids():
        if repo_digest in repo_digests(graph, image_id):
            return image_id
    return None


# ---- out ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportedLayer:
    """A layer's uncompressed tar, written to `path`."""

    image_id: str
    path: Path
    diff_id: str
    size: int


def export_layer(graph: Graph, layer: Image, dest: Path) -> ExportedLayer:
    """Write the layer tar of graph image `layer` to `dest`, byte-identical to what was applied when
    its record allows, else freshly exported (then with a new diff id)."""
    info = graph.layer_info(layer.id)
    record = graph.split_record(layer.id)
    if info is not None and info.diff_id and info.reproducible and record is not None:
        try:
            with open(dest, "wb") as raw, graph.driver.mounted(layer.id, readonly=True) as rootfs:
                out = _HashingWriter(raw)
                reassemble(record, rootfs, out)  # type: ignore[arg-type]
            if out.digest == info.diff_id:
                return ExportedLayer(layer.id, dest, info.diff_id, out.size)
            log.info("graph: layer %s rebuilt with digest %s, not %s: exporting it afresh",
                     layer.short_id, out.digest, info.diff_id)
        except NotReproducible as err:
            log.info("graph: layer %s cannot be rebuilt (%s): exporting it afresh", layer.short_id, err)
    return _export_fresh(graph, layer, dest)


def _export_fresh(graph: Graph, layer: Image, dest: Path) -> ExportedLayer:
    from pydock.archive.changes import changes  # lazy: the archive package, only for an export
    from pydock.archive.export import export_changes  # lazy: the archive package, only for an export
    from pydock.archive.tar import write_tar  # lazy: the archive package, only for an export

    with open(dest, "wb") as raw, graph.driver.mounted(layer.id, readonly=True) as rootfs:
        out = _HashingWriter(raw)
        if layer.parent:
            with graph.driver.mounted(layer.parent, readonly=True) as parent_root:
                export_changes(rootfs, changes(rootfs, parent_root), out)  # type: ignore[arg-type]
        else:
            write_tar(rootfs, out)  # type: ignore[arg-type]
    return ExportedLayer(layer.id, dest, out.digest, out.size)


class _HashingWriter:
    """A write-only stream that hashes and counts what passes to `raw`."""

    def __init__(self, raw: BinaryIO) -> None:
        import hashlib  # lazy: only exports hash what they write

        self.raw = raw
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        """The caller owns `raw`: closing the writer (as tar writers do) leaves it open."""

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


def export_image(graph: Graph, image: Image, workdir: Path) -> tuple[bytes, list[ExportedLayer]]:
    """(config blob, layer tars bottom first) of `image`, written under `workdir`.

    The stored config is returned verbatim when every layer rebuilt to its diff id; otherwise (and for
    images made here) a config with the actual diff ids is built.
    """
    layers = []
    for n, layer in enumerate(imageconfig.layer_chain(graph, image)):
        layers.append(export_layer(graph, layer, workdir / f"layer-{n}.tar"))
    return config_for(graph, image, [l.diff_id for l in layers]), layers


def config_for(graph: Graph, image: Image, diff_ids: list[str]) -> bytes:
    """The config blob to save or push `image` with: the stored one verbatim when its diff ids are
    `diff_ids`, else the stored one with them, else (an image made here) one built from its history."""
    stored = imageconfig.stored_config(graph, image)
    if stored is None:
        return imageconfig.build_config(graph, image, diff_ids)
    config = imageconfig.parse_config(stored)
    if imageconfig.diff_ids(config) == diff_ids:
        return stored
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    return json.dumps(config, separators=(",", ":")).encode()
