"""The image graph: `graph/<id>/{json,layersize}` on disk, layer content in the storage driver.

Register is atomic: the layer is applied into a fresh device snapshot of the parent, metadata is
written into a locked scratch dir under `graph/_tmp`, and one rename publishes `graph/<id>`. Any
failure removes the device and the scratch dir, so nothing half-registered is ever visible; a
crash leaves a scratch dir that the next `Graph` open cleans (see scratch.py).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from pydock.devmapper.driver import Driver
from pydock.utils.fileutil import atomic_write, flocked, fsync_dir, write_new
from pydock.graph.digest import HashingReader, chain_id, check_digest
from pydock.graph.image import Image, ImageRow, decode_json, utcnow
from pydock.graph.layerinfo import LAYER_FILE, SPLIT_FILE, LayerInfo
from pydock.graph.scratch import clean_stale, scratch_dir
from pydock.utils.errors import Conflict, NotFound, PydockError, StorageError
from pydock.utils.ids import generate_id, is_valid_id, resolve_prefix, truncate_id, validate_id
from pydock.utils.paths import RootLayout
from pydock.utils.statindex import StatIndex

log = logging.getLogger(__package__)

#: Docker 0.7.2's limit on an image chain (it counts the container's init and rw layers too).
MAX_IMAGE_DEPTH = 127

#: marker in a scratch dir naming the device a register/delete in progress owns.
_DEVICE_MARKER = "device"


class GraphIndex(StatIndex):
    """`graph.index` (Graph.rows): each image's row, kept while its json and layersize are unchanged."""

    def __init__(self, layout: RootLayout) -> None:
        super().__init__(layout.graph_index, layout.graph, b"pydock-graph-index 1", ("json", "layersize"))


class Graph:
    """Images of one root on one storage driver."""

    def __init__(self, layout: RootLayout, driver: Driver) -> None:
        self.layout = layout
        self.driver = driver
        self.root = layout.graph
        self.tmp = layout.graph_tmp
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.tmp.mkdir(exist_ok=True, mode=0o700)
        self._lock_path = self.tmp / ".graph.lock"
        clean_stale(self.tmp, self._undo_stale)

    # ---- lookup -------------------------------------------------------------------------

    def _dir(self, image_id: str) -> Path:
        return self.root / validate_id(image_id)

    def ids(self) -> list[str]:
        """Ids of registered images whose device exists on this driver (Docker 0.7's restore rule)."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names
                      if is_valid_id(n) and (self.root / n / "json").is_file() and self.driver.exists(n))

    def exists(self, image_id: str) -> bool:
        return (is_valid_id(image_id) and (self.root / image_id / "json").is_file()
                and self.driver.exists(image_id))

    def _load(self, image_id: str) -> Image:
        return self._read(image_id)[0]

    def _read(self, image_id: str) -> tuple[Image, tuple[os.stat_result, os.stat_result | None], bool]:
        """The image `image_id` (NotFound without its json), the stats of the json and layersize read
        (None: no layersize), and whether the json gives its creation time (else "now": never kept)."""
        d = f"{self.root}/{image_id}"  # not Path's `/`: listings read many
        try:
            with open(f"{d}/json", "rb") as f:
                st = os.fstat(f.fileno())
                raw = f.read()
        except FileNotFoundError:
            raise NotFound(f"No such image: {image_id}") from None
        size: int | None
        size_st: os.stat_result | None = None
        try:
            with open(f"{d}/layersize", "rb") as f:
                size_st = os.fstat(f.fileno())
                size = int(f.read().strip())
        except (FileNotFoundError, ValueError):
            size = None
        data = decode_json(raw)
        img = Image.from_dict(data, size=size)
        if img.id != image_id:
            raise StorageError(f"Image json in {d} names {img.id}, not {image_id}")
        return img, (st, size_st), bool(data.get("created"))

    def get(self, ref: str) -> Image:
        """The image with full id `ref` or the unique id prefix `ref`; NotFound otherwise."""
        if is_valid_id(ref):
            if not self.exists(ref):
                raise NotFound(f"No such image: {ref}")
            return self._load(ref)
        return self._load(resolve_prefix(ref, self.ids(), "image"))

    def list(self) -> list[Image]:
        """Every image, oldest first."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        out = []
        for image_id in names:  # as ids(), reading each json once instead of checking it is there first
            if not is_valid_id(image_id):
                continue
            try:
                image = self._load(image_id)
            except NotFound:  # deleted meanwhile by another process, or never published
                continue
            if self.driver.exists(image_id):
                out.append(image)
        return sorted(out, key=lambda i: (i.created, i.id))

    def rows(self) -> list[ImageRow]:
        """What `list` gives, as rows (id, parent, created, size), from the graph index (utils/statindex.py)
        while each image's json and layersize are the files an entry was read from: no json decoded."""
        index = GraphIndex(self.layout)
        out = []
        try:
            try:
                names = index.names(is_valid_id)
            except FileNotFoundError:
                return []
            for image_id in names:
                values = index.kept(image_id)
                if values is None:
                    started = time.time_ns()
                    try:
                        image, stats, dated = self._read(image_id)
                    except NotFound:  # deleted meanwhile by another process, or never published
                        index.keep(image_id, (), None, started)
                        continue
                    values = ImageRow.of(image).values()
                    index.keep(image_id, stats, values if dated else None, started)
                if self.driver.exists(image_id):
                    out.append(ImageRow.from_values(values))
        finally:
            index.save()
        return sorted(out, key=lambda i: (i.created, i.id))

    def children(self, image_id: str) -> list[Image]:
        """Images whose parent is `image_id`."""
        return [img for img in self.list() if img.parent == image_id]

    def parent_of(self, image: Image) -> Image | None:
        if not image.parent:
            return None
        try:
            return self._load(image.parent)
        except NotFound:
            raise NotFound(f"Parent image {truncate_id(image.parent)} of {image.short_id} is missing") from None

    def history(self, image: Image) -> list[Image]:
        """The image and its ancestors, from itself to the root."""
        chain = [image]
        seen = {image.id}
        parent = self.parent_of(image)
        while parent is not None:
            if parent.id in seen:
                raise StorageError(f"Image {image.short_id} has a parent cycle at {parent.short_id}")
            seen.add(parent.id)
            chain.append(parent)
            parent = self.parent_of(parent)
        return chain

    def depth(self, image: Image) -> int:
        """Layers in the chain, counting the image itself (Docker's Image.Depth)."""
        return len(self.history(image))

    def check_depth(self, image: Image, extra_layers: int = 2) -> None:
        """Refuse a container on `image` when its chain plus `extra_layers` (init + rw) reaches the limit."""
        if self.depth(image) + extra_layers >= MAX_IMAGE_DEPTH:
            raise Conflict(f"Cannot create container with more than {MAX_IMAGE_DEPTH} parents")

    def virtual_size(self, image: Image) -> int:
        """The image's own size plus all its ancestors' (what `images` shows)."""
        return sum(i.size for i in self.history(image))

    # ---- register -----------------------------------------------------------------------

    def register(self, stream: BinaryIO | None, *, parent: str | None = None, comment: str = "",
                 author: str = "", config: dict[str, Any] | None = None, container: str | None = None,
                 container_config: dict[str, Any] | None = None, image_id: str | None = None,
                 created: datetime | None = None, diff_id: str | None = None,
                 architecture: str | None = None, files: dict[str, bytes] | None = None) -> Image:
        """Apply the layer tar `stream` on top of `parent` as a new image; all-or-nothing.

        `stream` None makes an empty layer (an image that only adds a config). The layer's diff id is
        computed as it is applied (and must equal `diff_id` when given), its tar-split recorded, and
        `files` (e.g. the config blob) are published with the image's metadata.
        """
        from pydock.archive.apply import apply_layer  # lazy: the archive package, only when a layer is registered
        from pydock.archive.changes import changes, changes_size, tree_size  # lazy: the archive package, only when a layer is registered
        from pydock.archive.compression import decompress_stream  # lazy: the archive package, only when a layer is registered
        from pydock.graph.tarsplit import Recorder  # lazy: it imports the archive package (see above)

        image_id = validate_id(image_id) if image_id is not None else generate_id()
        parent_info: LayerInfo | None = None
        if parent:
            parent_img = self.get(validate_id(parent))
            parent = parent_img.id
            parent_info = self.layer_info(parent)
        else:
            parent = None
        if container:
            validate_id(container)
        parent_chain = parent_info.chain_id if parent_info is not None else None

        with scratch_dir(self.tmp) as work:
            with flocked(self._lock_path):
                if (self.root / image_id).exists():
                    raise Conflict(f"Image {image_id} already exists")
                if self.driver.exists(image_id):
                    raise Conflict(f"Image {image_id} is being registered or its device is left over")
                if parent is not None and not (self.root / parent / "json").is_file():
                    raise NotFound(f"Parent image {parent} was deleted meanwhile")
                write_new(work / _DEVICE_MARKER, image_id.encode())
                self.driver.create(image_id, parent)
            try:
                if stream is None:
                    size = 0
                    info = LayerInfo(diff_id=None, chain_id=parent_chain, empty=True)
                else:
                    with self.driver.mounted(image_id) as rootfs:
                        hashed = HashingReader(decompress_stream(stream))
                        recorder = Recorder(hashed, work / SPLIT_FILE)
                        try:
                            apply_layer(rootfs, recorder)  # type: ignore[arg-type]
                            while recorder.read(1 << 20):  # the padding after the end marker is part of the diff
                                pass
                        finally:
                            recorder.close()
                        if diff_id is not None:
                            check_digest(hashed.digest, diff_id, f"layer of image {truncate_id(image_id)}")
                        if parent is None:
                            size = tree_size(rootfs)
                        else:
                            with self.driver.mounted(parent, readonly=True) as parent_root:
                                size = changes_size(rootfs, changes(rootfs, parent_root))
                    known_chain = parent is None or parent_chain is not None
                    info = LayerInfo(diff_id=hashed.digest,
                                     chain_id=chain_id(parent_chain, hashed.digest) if known_chain else None,
                                     tar_size=hashed.size, reproducible=recorder.reproducible)
                self.driver.set_initialized(image_id)
                image = Image(
                    id=image_id, parent=parent, created=created or utcnow(), comment=comment,
                    author=author, container=container or "", container_config=container_config,
                    config=config, size=size, **({"architecture": architecture} if architecture else {}),
                )
                raw = image.to_json().encode()
                image = Image.from_json(raw, size=size)  # exactly what get() will return
                write_new(work / "json", raw)
                write_new(work / "layersize", str(size).encode())
                write_new(work / LAYER_FILE, info.to_json())
                for name, data in (files or {}).items():
                    write_new(work / name, data)
                (work / _DEVICE_MARKER).unlink()
                os.rename(work, self.root / image_id)
            except BaseException as err:
                self._discard_device(image_id)
                if isinstance(err, OSError):
                    raise StorageError(f"Registering image {truncate_id(image_id)} failed: {err}") from err
                raise
        fsync_dir(self.root)
        return image

    # ---- layer identity -----------------------------------------------------------------

    def layer_info(self, image_id: str) -> LayerInfo | None:
        """The image's layer record, or None for an image registered before pydock kept one."""
        path = self.root / validate_id(image_id) / LAYER_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        return LayerInfo.from_json(raw, str(path))

    def update_layer_info(self, image_id: str, change: Callable[[LayerInfo], LayerInfo]) -> None:
        """Rewrite an image's layer record (e.g. a blob it is now known under), under the graph lock."""
        with flocked(self._lock_path):
            info = self.layer_info(image_id)
            if info is not None:
                atomic_write(self.root / image_id / LAYER_FILE, change(info).to_json())

    def find_layer(self, chain: str) -> str | None:
        """The id of an image whose layer stack is `chain` (a non-empty layer), or None."""
        by_name = chain.split(":", 1)[1]
        candidates = [by_name] if self.exists(by_name) else []
        candidates += [i for i in self.ids() if i != by_name]
        for image_id in candidates:
            try:
                info = self.layer_info(image_id)
            except StorageError as err:
                log.debug("graph: skipping %s while looking for layer %s: %s", image_id, chain, err)
                continue
            if info is not None and not info.empty and info.chain_id == chain:
                return image_id
        return None

    def meta_file(self, image_id: str, name: str) -> bytes | None:
        """A metadata file published with the image (`config.json`, `repodigests.json`), or None."""
        try:
            return (self.root / validate_id(image_id) / name).read_bytes()
        except FileNotFoundError:
            return None

    def write_meta_file(self, image_id: str, name: str, data: bytes) -> None:
        """Replace a metadata file of an existing image atomically (under the graph lock)."""
        with flocked(self._lock_path):
            if not (self.root / validate_id(image_id) / "json").is_file():
                raise NotFound(f"No such image: {image_id}")
            atomic_write(self.root / image_id / name, data)

    def split_record(self, image_id: str) -> Path | None:
        path = self.root / validate_id(image_id) / SPLIT_FILE
        return path if path.is_file() else None

    def _discard_device(self, image_id: str) -> None:
        """Best-effort removal of a device no image owns (the driver unmounts it first, even one held
        by a process that died)."""
        try:
            self.driver.remove(image_id)
        except NotFound:
            log.debug("graph: no device %s to discard", image_id)
        except (PydockError, OSError) as err:
            log.warning("graph: could not remove the orphan device %s: %s", image_id, err)

    def _undo_stale(self, path: Path) -> None:
        """Finish what a crashed register/delete left in scratch dir `path`: drop its orphan device."""
        ids: set[str] = set()
        marker = path / _DEVICE_MARKER
        if marker.is_file():
            ids.add(marker.read_text().strip())
        for meta in (path / "json", path / "image" / "json"):
            try:
                ids.add(str(json.loads(meta.read_text()).get("id", "")))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, AttributeError) as err:
                log.debug("graph: leftover %s names no image: %s", meta, err)
        for image_id in ids:
            if is_valid_id(image_id) and not (self.root / image_id).exists():
                self._discard_device(image_id)

    # ---- delete -------------------------------------------------------------------------

    @staticmethod
    def derived_device(image_id: str, purpose: str) -> str:
        """The id of a device made from the image for the runtime's own use (`purpose`: a name of its own,
        e.g. the containers' shared init layer): `<image id>-<purpose>`, so it goes with the image."""
        return f"{image_id}-{purpose}"

    def derived_devices(self, image_id: str) -> list[str]:
        """The devices made from the image for the runtime's own use (derived_device)."""
        lead = self.derived_device(image_id, "")
        return [d for d in self.driver.list() if d.startswith(lead)]

    def delete(self, image_id: str, in_use: Callable[[str], str | None] | None = None) -> None:
        """Remove an image and the devices derived from it: refuses while child images exist or `in_use(id)`
        names a container using it."""
        image = self.get(image_id)
        if in_use is not None:
            holder = in_use(image.id)
            if holder:
                raise Conflict(f"Conflict, cannot delete {image.short_id} because the container "
                               f"{truncate_id(holder)} is using it")
        with scratch_dir(self.tmp) as work:
            with flocked(self._lock_path):  # no child can be registered between this check and the rename
                kids = self.children(image.id)
                if kids:
                    raise Conflict(f"Conflict, cannot delete {image.short_id} because it has "
                                   f"{len(kids)} child image{'s' if len(kids) != 1 else ''}")
                for derived in self.derived_devices(image.id):  # made again on demand if the delete fails
                    self.driver.remove(derived)
                try:
                    os.rename(self.root / image.id, work / "image")
                except FileNotFoundError:
                    raise NotFound(f"No such image: {image.id}") from None
            try:
                self.driver.remove(image.id)
            except NotFound:
                log.debug("graph: image %s had no device left to remove", image.id)
            except BaseException:
                # the device is still there (e.g. mounted outside the driver): put the metadata back
                # so nothing is orphaned
                os.rename(work / "image", self.root / image.id)
                raise
            write_new(work / _DEVICE_MARKER, image.id.encode())
            fsync_dir(self.root)
