"""What the root's images, containers and volumes take on disk (`system df`), and the prunes of stopped
containers and unused images with Docker's filters (`until`, `label`, `label!`, images' `dangling`): the
maintenance views over everything the Runtime holds."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydock.runtime import volumes as volume_ops
from pydock.runtime.container import Container
from pydock.runtime.listfilters import has_label
from pydock.runtime.state import parse_time
from pydock.utils.errors import InvalidArgument, NotFound, PydockError

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


_DURATION_RE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_until(text: str, now: float | None = None) -> float:
    """`until=`: seconds since the epoch, from a Go duration before now (`10m`, `1h30m`), a Unix time
    (`1700000000.5`) or an RFC 3339 date (`2024-05-06`, `2024-05-06T07:08:09Z`), as Docker reads it."""
    now = time.time() if now is None else now
    text = text.strip()
    if _DURATION_RE.match(text):
        return now - sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = parse_time(text)
    except (ValueError, IndexError):
        when = None
    if when is None:
        raise InvalidArgument(f"invalid until filter {text!r}: a duration (10m, 24h), a Unix time or an RFC 3339 date")
    return when.timestamp()


@dataclass(frozen=True)
class PruneFilters:
    """Which of the candidates a prune removes: created before `until`, with every label of `labels`
    (`key` or `key=value`), with none of `without`, and (images) dangling or not."""

    until: float | None = None
    labels: tuple[str, ...] = ()
    without: tuple[str, ...] = ()
    dangling: bool | None = None

    @classmethod
    def parse(cls, given: Mapping[str, Iterable[str]], *, images: bool = False) -> PruneFilters:
        """From `{"until": [...], "label": [...], "label!": [...]}` (the API's filters, or the CLI's
        `--filter key=value`); any other key is refused with Docker's message."""
        allowed = {"until", "label", "label!"} | ({"dangling"} if images else set())
        values = {key: [str(v) for v in vs] for key, vs in given.items()}
        for key in values:
            if key not in allowed:
                raise InvalidArgument(f"invalid filter '{key}'")
        until = values.get("until") or []
        if len(until) > 1:
            raise InvalidArgument("more than one until filter specified")
        dangling = None
        for text in values.get("dangling") or []:
            if text.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={text}'")
            dangling = text.lower() in ("true", "1")
        return cls(parse_until(until[0]) if until else None, tuple(values.get("label") or ()),
                   tuple(values.get("label!") or ()), dangling)

    def match(self, created: datetime | None, labels: Mapping[str, str] | None) -> bool:
        if self.until is not None and (created is None or created.timestamp() >= self.until):
            return False
        labels = labels or {}
        return all(has_label(labels, spec) for spec in self.labels) and \
            not any(has_label(labels, spec) for spec in self.without)


def parse_filter_flags(specs: Iterable[str]) -> dict[str, list[str]]:
    """The CLI's `--filter key=value` (repeatable; `label!=k` is key `label!`) as the API's filters map."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"bad format of filter (expected name=value): {spec!r}")
        out.setdefault(key, []).append(value)
    return out


def prune_containers(rt: Runtime, filters: PruneFilters | None = None) -> tuple[list[str], int]:
    """`container prune`: remove every container that is not running (and matches `filters`); (their ids,
    bytes their own layers held). One that started meanwhile, or went, is skipped."""
    filters = filters or PruneFilters()
    removed, freed = [], 0
    for c in rt.containers(all=True):
        if c.state.running or not filters.match(c.created, c.config.get("Labels")):
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


def prune_images(rt: Runtime, filters: PruneFilters | None = None) -> tuple[list[str], int]:
    """`image prune`: the dangling images (with `dangling=false` filter, every image no container uses)
    that match `filters`; (the Untagged/Deleted lines, bytes freed)."""
    filters = filters or PruneFilters()
    return rt.images.prune(every_unused=filters.dangling is False,
                           match=lambda img: filters.match(img.created, (img.config or {}).get("Labels")))


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
