"""The OCI / Docker image config (`application/vnd.oci.image.config.v1+json`) and pydock's images.

An image that came with a config (pulled, loaded) keeps the blob verbatim in `graph/<id>/config.json`:
its id is the blob's digest, so `images` shows the id every other tool shows. For an image made here
(import, commit, the busybox image) a config is built from the Docker 0.7 json of its layer chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydock.graph.image import Image, format_time, parse_time
from pydock.graph.layerinfo import CONFIG_FILE
from pydock.utils.errors import InvalidArgument, PydockError

if TYPE_CHECKING:
    from pydock.graph.graph import Graph

#: the config keys `run`/`create` honour, as Docker's image config spells them.
RUN_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal")
#: the keys an image config carries between tools: what run honours and what a build reads from its base.
CONFIG_KEYS = (*RUN_KEYS, "Healthcheck", "OnBuild", "Shell")
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


@dataclass(frozen=True)
class HistoryEntry:
    created: datetime | None
    created_by: str
    comment: str
    empty_layer: bool


def go_arch(arch: str) -> str:
    """OCI's architecture name for a Docker 0.7 / uname one (`x86_64` -> `amd64`)."""
    return _GO_ARCH.get(arch, arch)


def json_object(raw: bytes, what: str, error: type[PydockError] = InvalidArgument) -> dict[str, Any]:
    """`raw` parsed as a JSON object (configs, manifests, indexes); `error` naming `what` otherwise."""
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise error(f"{what} is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise error(f"{what} is not a JSON object")
    return data


def parse_config(raw: bytes, what: str = "image config") -> dict[str, Any]:
    """The config blob as a dict, checked for the parts pydock relies on."""
    data = json_object(raw, what)
    rootfs = data.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids", []), list):
        raise InvalidArgument(f"{what} has no rootfs.diff_ids")
    if data.get("os") not in (None, "linux"):
        raise InvalidArgument(f"{what} is for {data.get('os')}, not linux")
    return data


def diff_ids(config: dict[str, Any]) -> list[str]:
    return [str(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []]


def run_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of the image config `run` uses, in the Docker 0.7 Config shape pydock stores."""
    inner = config.get("config") or {}
    if not isinstance(inner, dict):
        raise InvalidArgument("image config: `config` is not an object")
    return {k: inner[k] for k in CONFIG_KEYS if inner.get(k) not in (None, "", [], {})}


def history(config: dict[str, Any]) -> list[HistoryEntry]:
    out = []
    for h in config.get("history") or []:
        if not isinstance(h, dict):
            continue
        created = None
        if h.get("created"):
            try:
                created = parse_time(str(h["created"]))
            except ValueError:
                created = None
        out.append(HistoryEntry(created, str(h.get("created_by") or ""), str(h.get("comment") or ""),
                                bool(h.get("empty_layer"))))
    return out


def created_of(config: dict[str, Any]) -> datetime | None:
    try:
        return parse_time(str(config["created"])) if config.get("created") else None
    except ValueError:
        return None


def stored_config(graph: Graph, image: Image) -> bytes | None:
    """The verbatim config blob an image came with, or None for an image made here."""
    return graph.meta_file(image.id, CONFIG_FILE)


def layer_chain(graph: Graph, image: Image) -> list[Image]:
    """The images holding the layers of `image`, bottom first (empty config-only layers left out)."""
    out = []
    for img in reversed(graph.history(image)):
        info = graph.layer_info(img.id)
        if info is None or not info.empty:
            out.append(img)
    return out


def build_config(graph: Graph, image: Image, diff_ids_: list[str]) -> bytes:
    """A config for an image made here (its chain's layers have `diff_ids_`, bottom first)."""
    chain = list(reversed(graph.history(image)))
    hist = []
    for img in chain:
        info = graph.layer_info(img.id)
        cmd = (img.container_config or {}).get("Cmd") or []
        entry: dict[str, Any] = {"created": format_time(img.created),
                                 "created_by": " ".join(cmd) if isinstance(cmd, list) else str(cmd)}
        if img.comment:
            entry["comment"] = img.comment
        if info is not None and info.empty:
            entry["empty_layer"] = True
        hist.append(entry)
    cfg = {k: v for k, v in (image.config or {}).items() if k in CONFIG_KEYS and v not in (None, "", [], {})}
    data: dict[str, Any] = {
        "architecture": go_arch(image.architecture), "os": "linux", "created": format_time(image.created),
        "config": cfg, "rootfs": {"type": "layers", "diff_ids": diff_ids_}, "history": hist,
    }
    if image.author:
        data["author"] = image.author
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
