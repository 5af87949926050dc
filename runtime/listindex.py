"""The listing indexes (`<root>/containers.index`, `<root>/containers.rows`, utils/statindex.py): every
container as a listing needs it, kept with the identity of the config.json it was read from, so `ps -a`
over 1000 containers stats 1000 files instead of opening and decoding them. config.json is only ever
replaced by rename (Container.save/save_state via atomic_write), and an entry is used only while the
file is the one it was read from: a listing never shows a row older than its config.json.

Two such indexes, each rewritten only by the listings using it: `containers.index` holds the fields a
whole Container is built from (filters, the API, `info`), `containers.rows` only a listing row
(rows.py: what `ps` shows), a tenth of the bytes to decode.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydock.runtime.container import Container, read_config
from pydock.runtime.rows import ContainerRow, row_values
from pydock.utils.ids import is_valid_id
from pydock.utils.statindex import StatIndex

log = logging.getLogger(__package__)

#: what an index file holds changes with this
_MAGIC = b"pydock-listing-index 2 "
#: config.json's fields a listed container is built from (the paths in it derive from its directory;
#: Config is kept as JSON, decoded only when used: `ps -a` shows none of it)
_FIELDS = tuple(sys.intern(k) for k in ("ID", "Created", "Path", "Args", "Image", "Name", "Driver",
                                        "NetworkSettings", "Volumes", "VolumesRW", "State"))


class _Index(StatIndex):
    """One listing's use of an index: `ids`, then an entry per container, then `save`."""

    #: told apart from the other index's file (each is the other's foreign file)
    KIND = b""

    def __init__(self, path: Path, home: Path) -> None:
        """`path`: the index file; `home`: the containers directory (`<root>/containers`)."""
        super().__init__(path, home, _MAGIC + self.KIND, ("config.json",))

    def ids(self) -> list[str]:
        """The container ids in the containers directory (FileNotFoundError without one)."""
        return self.names(is_valid_id)

    def _read_config(self, cid: str, keep: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
        """config.json of `cid`, decoded; its entry `keep(data)` (None: none). NotFound without a
        readable config.json."""
        started = time.time_ns()
        data, st = read_config(self.home / cid)
        self.keep(cid, (st,), keep(data), started)
        return data


def _container_fields(data: dict[str, Any]) -> tuple[dict[str, Any], bytes] | None:
    """What ListingIndex keeps of a config.json: its _FIELDS, and Config as JSON (None without an ID)."""
    if "ID" not in data:
        return None
    fields = {k: data[k] for k in _FIELDS if k in data}
    if isinstance(fields.get("State"), dict):  # interned keys: marshal writes each once for the index
        fields["State"] = {sys.intern(k): v for k, v in fields["State"].items()}
    return fields, json.dumps(data.get("Config") or {}).encode()


class ListingIndex(_Index):
    """`containers.index`: whole containers (Runtime.containers)."""

    KIND = b"containers"

    def load(self, cid: str) -> Container:
        """The container `cid` as its config.json holds it now: from its entry while the file is the one
        the entry was read from, else read (NotFound without a readable config.json, KeyError without an ID)."""
        directory = self.home / cid
        kept = self.kept(cid)
        if kept is not None:
            try:
                return Container.from_json(directory, kept[0], kept[1])
            except (TypeError, AttributeError, KeyError, ValueError, IndexError) as err:
                log.debug("listing index entry of %s unusable (%s); reading it", cid[:12], err)
        return Container.from_json(directory, self._read_config(cid, _container_fields))


def _row_values(data: dict[str, Any]) -> tuple[Any, ...] | None:
    """What RowIndex keeps of a config.json: its row's values, if they may be kept (rows.row_values)."""
    try:
        values, keep = row_values(data)
    except KeyError:
        return None
    return values if keep else None


class RowIndex(_Index):
    """`containers.rows`: listing rows (Runtime.container_rows)."""

    KIND = b"rows"

    def row(self, cid: str) -> ContainerRow:
        """The listing row of `cid` as its config.json holds it now (see ListingIndex.load); it carries
        no container."""
        kept = self.kept(cid)
        if kept is not None:
            try:
                return ContainerRow(*kept)
            except TypeError as err:
                log.debug("listing index entry of %s unusable (%s); reading it", cid[:12], err)
        return ContainerRow(*row_values(self._read_config(cid, _row_values))[0])
