"""The classic build cache: a step is done already when an image built here has the step's parent and
the step's config (Docker's image cache probe: children of the parent, container configs compared,
the newest match wins). The step is recorded in the config's Cmd: `#(nop) ENV A=1`, the RUN command
with its build args in front, or `#(nop) COPY file:<checksum> in /dest`, so content changes miss.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydock.graph.image import Image
from pydock.utils.errors import PydockError

log = logging.getLogger(__package__)

#: what the probe compares (Docker compares these and a few run flags that are always off in a build).
CACHE_KEYS = ("Cmd", "Entrypoint", "Env", "Shell", "ExposedPorts", "Volumes", "Labels", "OnBuild", "User",
              "WorkingDir", "StopSignal", "Healthcheck")


def cache_key(config: dict[str, Any] | None) -> str | None:
    """The comparable form of a container config; None for one that no build step could have written."""
    if not config or not isinstance(config.get("Cmd"), list) or not config.get("Cmd"):
        return None
    norm: dict[str, Any] = {}
    for key in CACHE_KEYS:
        value = config.get(key)
        if key in ("ExposedPorts", "Volumes"):
            value = sorted(value) if value else None
        norm[key] = value if value not in ("", [], {}) else None
    return json.dumps(norm, sort_keys=True)


class BuildCache:
    """Children of each parent image with their probe keys, read once per build."""

    def __init__(self, graph: Any, enabled: bool = True) -> None:
        self.graph = graph
        self.enabled = enabled
        self._children: dict[str | None, list[Image]] | None = None

    def _index(self) -> dict[str | None, list[Image]]:
        if self._children is None:
            self._children = {}
            for image in self.graph.list():
                self._children.setdefault(image.parent, []).append(image)
        return self._children

    def probe(self, parent: str | None, config: dict[str, Any]) -> str | None:
        """The id of the newest image made from `parent` by a step with `config`, if any."""
        if not self.enabled:
            return None
        key = cache_key(config)
        if key is None:
            return None
        best: Image | None = None
        for image in self._index().get(parent, []):
            if cache_key(image.container_config) == key and (best is None or image.created > best.created):
                best = image
        if best is not None and not self._usable(best.id):
            return None
        return best.id if best is not None else None

    def _usable(self, image_id: str) -> bool:
        try:
            return self.graph.exists(image_id)
        except PydockError as err:
            log.debug("build cache: %s is not usable: %s", image_id, err)
            return False

    def add(self, image: Image) -> None:
        """Remember an image this build made (a later identical step of the build reuses it)."""
        if self._children is not None:
            self._children.setdefault(image.parent, []).append(image)
