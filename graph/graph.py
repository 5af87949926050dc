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
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from pydock.devmapper.driver import Driver
from pydock.utils.fileutil import flocked, fsync_dir, write_new
from pydock.graph.image import Image, utcnow
from pydock.graph.scratch import clean_stale, scratch_dir
from pydock.utils.errors import Conflict, NotFound, PydockError, StorageError
from pydock.utils.ids import generate_id, is_valid_id, resolve_prefix, truncate_id, validate_id
from pydock.utils.paths import RootLayout

log = logging.getLogger(__package__)

#: Docker 0.7.2's limit on an image chain (it counts the container's init and rw layers too).
MAX_IMAGE_DEPTH = 127

#: marker in a scratch dir naming the device a register/delete in progress owns.
_DEVICE_MARKER = "device"


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
        d = self.root / image_id
        try:
            raw = (d / "json").read_bytes()
        except FileNotFoundError:
            raise NotFound(f"No such image: {image_id}") from None
        size: int | None
        try:
            size = int((d / "layersize").read_text().strip())
        except (FileNotFoundError, ValueError):
            size = None
        img = Image.from_json(raw, size=size)
        if img.id != image_id:
            raise StorageError(f"Image json in {d} names {img.id}, not {image_id}")
        return img

    def get(self, ref: str) -> Image:
        """The image with full id `ref` or the unique id prefix `ref`; NotFound otherwise."""
        if is_valid_id(ref):
            if not self.exists(ref):
                raise NotFound(f"No such image: {ref}")
            return self._load(ref)
        return self._load(resolve_prefix(ref, self.ids(), "image"))

    def list(self) -> list[Image]:
        """Every image, oldest first."""
        out = []
        for image_id in self.ids():
            try:
                out.append(self._load(image_id))
            except NotFound:  # deleted meanwhile by another process
                continue
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

    def register(self, stream: BinaryIO, *, parent: str | None = None, comment: str = "",
                 author: str = "", config: dict[str, Any] | None = None, container: str | None = None,
                 container_config: dict[str, Any] | None = None, image_id: str | None = None,
                 created: datetime | None = None) -> Image:
        """Apply the layer tar `stream` on top of `parent` as a new image; all-or-nothing."""
        from pydock.archive.apply import apply_layer  # lazy: the archive package, only when a layer is registered
        from pydock.archive.changes import changes, changes_size, tree_size  # lazy: the archive package, only when a layer is registered
        from pydock.archive.compression import decompress_stream  # lazy: the archive package, only when a layer is registered

        image_id = validate_id(image_id) if image_id is not None else generate_id()
        if parent:
            parent_img = self.get(validate_id(parent))
            parent = parent_img.id
        else:
            parent = None
        if container:
            validate_id(container)

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
                with self.driver.mounted(image_id) as rootfs:
                    apply_layer(rootfs, decompress_stream(stream))
                    if parent is None:
                        size = tree_size(rootfs)
                    else:
                        with self.driver.mounted(parent, readonly=True) as parent_root:
                            size = changes_size(rootfs, changes(rootfs, parent_root))
                self.driver.set_initialized(image_id)
                image = Image(
                    id=image_id, parent=parent, created=created or utcnow(), comment=comment,
                    author=author, container=container or "", container_config=container_config,
                    config=config, size=size,
                )
                raw = image.to_json().encode()
                image = Image.from_json(raw, size=size)  # exactly what get() will return
                write_new(work / "json", raw)
                write_new(work / "layersize", str(size).encode())
                (work / _DEVICE_MARKER).unlink()
                os.rename(work, self.root / image_id)
            except BaseException as err:
                self._discard_device(image_id)
                if isinstance(err, OSError):
                    raise StorageError(f"Registering image {truncate_id(image_id)} failed: {err}") from err
                raise
        fsync_dir(self.root)
        return image

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

    def delete(self, image_id: str, in_use: Callable[[str], str | None] | None = None) -> None:
        """Remove an image: refuses while child images exist or `in_use(id)` names a container using it."""
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
