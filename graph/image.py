"""Image metadata: the `Image` record and its Docker 0.7 json form (`graph/<id>/json`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from pydock.utils.epoch import epoch_us, from_epoch_us
from pydock.utils.errors import StorageError
from pydock.utils.ids import is_valid_id
from pydock.utils.version import VERSION

#: Docker 0.7's Config struct: Go field names (no json tags) and their zero values, in Go order.
CONFIG_FIELDS: dict[str, Any] = {
    "Hostname": "",
    "Domainname": "",
    "User": "",
    "Memory": 0,
    "MemorySwap": 0,
    "CpuShares": 0,
    "AttachStdin": False,
    "AttachStdout": False,
    "AttachStderr": False,
    "PortSpecs": None,
    "ExposedPorts": None,
    "Tty": False,
    "OpenStdin": False,
    "StdinOnce": False,
    "Env": None,
    "Cmd": None,
    "Dns": None,
    "Image": "",
    "Volumes": None,
    "VolumesFrom": "",
    "WorkingDir": "",
    "Entrypoint": None,
    "NetworkDisabled": False,
}

DEFAULT_ARCHITECTURE = "x86_64"


def full_config(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """`config` with every Go Config field present (zero values filled in), as Docker writes it."""
    if config is None:
        return None
    out = {k: (config[k] if k in config else v) for k, v in CONFIG_FIELDS.items()}
    out.update({k: v for k, v in config.items() if k not in out})
    return out


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with nanosecond-style fraction, like Go's time.Time json (`...T12:00:00.123456Z`)."""
    value = value.astimezone(timezone.utc)
    frac = f".{value.microsecond:06d}".rstrip("0").rstrip(".")
    return value.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_time(text: str) -> datetime:
    """Parse Go's RFC 3339 (nanoseconds allowed, `Z` or `+hh:mm`) into an aware UTC datetime."""
    m = _TIME_RE.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = "+00:00" if zone == "Z" else zone
    parsed = datetime.fromisoformat(f"{base}{tz}").replace(microsecond=micro)
    return parsed.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Image:
    """One image layer's metadata; its content lives in the storage driver's device `<id>`."""

    id: str
    parent: str | None = None
    created: datetime = field(default_factory=utcnow)
    comment: str = ""
    author: str = ""
    container: str = ""
    container_config: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    size: int = 0
    architecture: str = DEFAULT_ARCHITECTURE
    docker_version: str = VERSION

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_dict(self) -> dict[str, Any]:
        """The json object with Docker 0.7's keys (`parent` omitted when empty, `Size` kept like Go)."""
        out: dict[str, Any] = {"id": self.id}
        if self.parent:
            out["parent"] = self.parent
        out.update({
            "comment": self.comment,
            "created": format_time(self.created),
            "container": self.container,
            "container_config": full_config(self.container_config) or full_config({}),
            "docker_version": self.docker_version,
            "author": self.author,
            "config": full_config(self.config),
            "architecture": self.architecture,
            "Size": self.size,
        })
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], size: int | None = None) -> Image:
        """Build from a json object; `size` (from `layersize`) overrides the json's `Size`."""
        image_id = data.get("id")
        if not isinstance(image_id, str) or not is_valid_id(image_id):
            raise StorageError(f"Invalid image json: bad id {image_id!r}")
        parent = data.get("parent") or None
        if parent is not None and (not isinstance(parent, str) or not is_valid_id(parent)):
            raise StorageError(f"Invalid image json for {image_id}: bad parent {parent!r}")
        try:
            created = parse_time(data["created"]) if data.get("created") else utcnow()
        except ValueError as err:
            raise StorageError(f"Invalid image json for {image_id}: {err}") from None
        return cls(
            id=image_id,
            parent=parent,
            created=created,
            comment=data.get("comment") or "",
            author=data.get("author") or "",
            container=data.get("container") or "",
            container_config=data.get("container_config"),
            config=data.get("config"),
            size=int(size if size is not None else (data.get("Size") or 0)),
            architecture=data.get("architecture") or DEFAULT_ARCHITECTURE,
            docker_version=data.get("docker_version") or "",
        )

    @classmethod
    def from_json(cls, text: str | bytes, size: int | None = None) -> Image:
        return cls.from_dict(decode_json(text), size=size)


def decode_json(text: str | bytes) -> dict[str, Any]:
    """An image json's object (StorageError if it is not one)."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise StorageError(f"Invalid image json: {err}") from None
    if not isinstance(data, dict):
        raise StorageError("Invalid image json: not an object")
    return data


class ImageRow(NamedTuple):
    """An image as `images` lists it (Graph.rows): what its rows, tree and sizes read of an Image,
    kept in the graph index without the configs."""

    id: str
    parent: str | None
    created: datetime
    size: int

    @classmethod
    def of(cls, image: Image) -> ImageRow:
        return cls(image.id, image.parent, image.created, image.size)

    def values(self) -> tuple[str, str | None, int, int]:
        """What the graph index keeps of it (`from_values` is the inverse)."""
        return self.id, self.parent, epoch_us(self.created), self.size

    @classmethod
    def from_values(cls, values: tuple[str, str | None, int, int]) -> ImageRow:
        image_id, parent, created, size = values
        return cls(image_id, parent, from_epoch_us(created), size)
