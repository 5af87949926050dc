"""What the root's images, containers and volumes take on disk (`system df`), and the prune of stopped
containers (`container prune`): the two maintenance views over everything the Runtime holds."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydock.runtime import volumes as volume_ops
from pydock.runtime.container import Container
from pydock.utils.errors import NotFound, PydockError

if TYPE_CHECKING:
    from pydock.graph.image import Image
    from pydock.runtime.runtime import Runtime
    from pydock.runtime.volumes import VolumeInfo

log = logging.getLogger(__package__)


@dataclass(frozen=True)
class ImageUsage:
    image: Image
    tags: list[str]
    virtual_size: int
    containers: int          # how many containers (any state) use it


@dataclass(frozen=True)
class ContainerUsage:
    container: Container
    size_rw: int             # bytes its own layer adds
    size_root_fs: int        # that plus its image's virtual size


@dataclass(frozen=True)
class VolumeUsage:
    volume: VolumeInfo
    size: int
    ref_count: int           # containers that mount it


@dataclass(frozen=True)
class DiskUsage:
    layers_size: int         # every image layer once
    images: list[ImageUsage]
    containers: list[ContainerUsage]
    volumes: list[VolumeUsage]


def _size(rt: Runtime, c: Container) -> tuple[int, int]:
    try:
        return rt.size(c)
    except PydockError as err:
        log.debug("size of %s unknown (%s); counting 0", c.short_id, err)
        return 0, 0


def disk_usage(rt: Runtime) -> DiskUsage:
    """Sizes of everything under the root; containers' own layers are measured (each is mounted)."""
    from pydock.archive.changes import tree_size  # lazy: the archive package, only for df

    containers = rt.containers(all=True)
    by_image: dict[str, int] = {}
    for c in containers:
        by_image[c.image] = by_image.get(c.image, 0) + 1
    images = rt.images.graph.list()
    tags = rt.images.tags.by_image()
    image_rows = [ImageUsage(img, sorted(tags.get(img.id, [])), rt.graph.virtual_size(img), by_image.get(img.id, 0))
                  for img in images]
    container_rows = [ContainerUsage(c, *_size(rt, c)) for c in containers]
    users = volume_ops.users(rt)
    volume_rows = []
    for info in rt.volumes.list():
        try:
            size = tree_size(info.mountpoint)
        except PydockError as err:
            log.debug("volume %s: size unknown (%s)", info.name, err)
            size = 0
        volume_rows.append(VolumeUsage(info, size, len(users.get(info.name, []))))
    return DiskUsage(sum(img.size for img in images), image_rows, container_rows, volume_rows)


def prune_containers(rt: Runtime) -> tuple[list[str], int]:
    """`container prune`: remove every container that is not running; (their ids, bytes their own layers
    held). One that started meanwhile, or went, is skipped."""
    removed, freed = [], 0
    for c in rt.containers(all=True):
        if c.state.running:
            continue
        size = _size(rt, c)[0]
        try:
            rt.remove(c)
        except NotFound:
            continue  # removed meanwhile (its own --rm, another prune)
        except PydockError as err:
            log.info("container %s not pruned: %s", c.short_id, err)
            continue
        removed.append(c.id)
        freed += size
    return removed, freed


def summary_rows(usage: DiskUsage) -> list[list[Any]]:
    """`system df`'s table: TYPE, TOTAL, ACTIVE, SIZE (bytes), RECLAIMABLE (bytes)."""
    active_images = [u for u in usage.images if u.containers]
    by_id = {u.image.id: u.image for u in usage.images}
    used: set[str] = set()  # the layers under a container: its image and every parent
    for u in active_images:
        layer: Image | None = u.image
        while layer is not None and layer.id not in used:
            used.add(layer.id)
            layer = by_id.get(layer.parent) if layer.parent else None
    used_layers = sum(by_id[i].size for i in used)
    return [
        ["Images", len(usage.images), len(active_images), usage.layers_size, usage.layers_size - used_layers],
        ["Containers", len(usage.containers), sum(1 for u in usage.containers if u.container.state.running),
         sum(u.size_rw for u in usage.containers),
         sum(u.size_rw for u in usage.containers if not u.container.state.running)],
        ["Local Volumes", len(usage.volumes), sum(1 for u in usage.volumes if u.ref_count),
         sum(u.size for u in usage.volumes), sum(u.size for u in usage.volumes if not u.ref_count)],
    ]
