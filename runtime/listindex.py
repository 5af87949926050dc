"""The listing indexes (`<root>/containers.index`, `<root>/containers.rows`): every container as a
listing needs it, each entry kept with the identity of the config.json it was read from, so `ps -a`
over 1000 containers stats 1000 files instead of opening and decoding them.

An entry is used only while its config.json has the same (st_ino, st_size, st_mtime_ns, st_ctime_ns)
as when the entry was read. config.json is only ever replaced by rename (Container.save/save_state via
atomic_write), so a new file is a new inode and a new ctime. As in git's "racily clean" rule, a file
changed less than `_RACY_NS` before it was read is not kept: a later change could otherwise land in the
same coarse timestamp tick and, on a reused inode number with the same size, look unchanged. So a
listing never shows a row older than its config.json.

Two such indexes, each rewritten only by the listings using it: `containers.index` holds the fields a
whole Container is built from (filters, the API, `info`), `containers.rows` only a listing row
(rows.py: what `ps` shows), a tenth of the bytes to decode.

The index is a cache, never the source of truth: rewritten atomically (not fsynced) only when an entry
changed; a lost, torn or foreign (another pydock or Python version) index is rebuilt from the files.
Entries validate themselves, so processes racing to rewrite it can only cost re-reads, never a stale row.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydock.runtime.container import Container, read_config
from pydock.runtime.rows import ContainerRow, row_values
from pydock.utils.errors import NotFound
from pydock.utils.fileutil import atomic_write
from pydock.utils.ids import is_valid_id

log = logging.getLogger(__package__)

#: what an index file holds; marshal's format may change with Python's minor version
_MAGIC = b"pydock-listing-index 2 py%d.%d\n" % sys.version_info[:2]
#: config.json's fields a listed container is built from (the paths in it derive from its directory;
#: Config is kept as JSON, decoded only when used: `ps -a` shows none of it)
_FIELDS = tuple(sys.intern(k) for k in ("ID", "Created", "Path", "Args", "Image", "Name", "Driver",
                                        "NetworkSettings", "Volumes", "VolumesRW", "State"))
#: a config.json changed this recently when read is not kept (see the module docstring): well over the
#: coarse clock tick file timestamps come from (1-10 ms)
_RACY_NS = 1_000_000_000

#: An entry: ((st_ino, st_size, st_mtime_ns, st_ctime_ns) of the file read, what the index keeps of it)
Entry = tuple[tuple[int, int, int, int], Any]


def _key(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class _Index:
    """One listing's use of an index: `ids`, then an entry per container, then `save` (writes only if
    something changed, and closes the containers directory it holds open)."""

    #: told apart from the other index's file (each is the other's foreign file)
    KIND = b""

    def __init__(self, path: Path, home: Path) -> None:
        """`path`: the index file; `home`: the containers directory (`<root>/containers`)."""
        self.path = path
        self.home = home
        self._magic = _MAGIC + self.KIND + b"\n"
        self._old = self._read()
        self._new: dict[str, Entry] = {}
        self._changed = False
        self._fd: int | None = None

    def _read(self) -> dict[str, Entry]:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as err:
            log.debug("listing index %s unreadable (%s); reading every container", self.path, err)
            return {}
        head = len(self._magic) + 4
        if len(blob) < head or not blob.startswith(self._magic) or \
                zlib.crc32(blob[head:]) != int.from_bytes(blob[head - 4:head], "big"):
            log.debug("listing index %s is torn or from another version; rebuilding it", self.path)
            return {}
        try:
            entries = marshal.loads(blob[head:])
        except (ValueError, EOFError, TypeError) as err:
            log.debug("listing index %s undecodable (%s); rebuilding it", self.path, err)
            return {}
        return entries if isinstance(entries, dict) else {}

    def cached(self) -> set[str]:
        """Ids the index held an entry for when opened (what it may answer without reading)."""
        return set(self._old)

    def ids(self) -> list[str]:
        """The container ids in the containers directory (FileNotFoundError without one), read through
        the descriptor the entries are then checked through (stats relative to it skip walking the root's
        path); a name the index holds was checked to be an id when its entry was made."""
        if self._fd is None:
            self._fd = os.open(self.home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        old = self._old
        return [n for n in os.listdir(self._fd) if n in old or is_valid_id(n)]

    def _kept(self, cid: str) -> Any:
        """What the entry of `cid` keeps, if its config.json is still the file it was read from (else
        None; NotFound without a config.json)."""
        entry = self._old.get(cid)
        if not (isinstance(entry, tuple) and len(entry) == 2):
            return None
        try:
            st = os.stat(f"{cid}/config.json", dir_fd=self._fd) if self._fd is not None \
                else os.stat(f"{self.home}/{cid}/config.json")
        except FileNotFoundError:
            raise NotFound(f"No such container: {cid}") from None
        return entry[1] if _key(st) == entry[0] else None

    def _use(self, cid: str) -> None:
        """The entry of `cid` answered: keep it."""
        self._new[cid] = self._old[cid]

    def _read_config(self, cid: str, keep: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
        """config.json of `cid`, decoded; its entry, `keep(data)`, made if the file is old enough (see the
        module docstring) and `keep` gives something. NotFound without a readable config.json."""
        now = time.time_ns()
        data, st = read_config(self.home / cid)
        kept = keep(data) if max(st.st_mtime_ns, st.st_ctime_ns) + _RACY_NS < now else None
        if kept is not None:
            self._new[sys.intern(cid)] = (_key(st), kept)
            self._changed = True
        elif cid in self._old:
            self._changed = True  # its entry is out of date and not replaced: drop it
        return data

    def save(self) -> None:
        """Rewrite the index with the entries this listing used, if any changed or went away (a container
        removed)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self._changed and len(self._new) == len(self._old):
            return
        payload = marshal.dumps(self._new)
        try:
            atomic_write(self.path, self._magic + zlib.crc32(payload).to_bytes(4, "big") + payload, durable=False)
        except OSError as err:  # a cache: the next listing reads the files again
            log.debug("listing index %s not written: %s", self.path, err)


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
        kept = self._kept(cid)
        if kept is not None:
            try:
                c = Container.from_json(directory, kept[0], kept[1])
            except (TypeError, AttributeError, KeyError, ValueError, IndexError) as err:
                log.debug("listing index entry of %s unusable (%s); reading it", cid[:12], err)
            else:
                self._use(cid)
                return c
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
        kept = self._kept(cid)
        if kept is not None:
            try:
                row = ContainerRow(*kept)
            except TypeError as err:
                log.debug("listing index entry of %s unusable (%s); reading it", cid[:12], err)
            else:
                self._use(cid)
                return row
        return ContainerRow(*row_values(self._read_config(cid, _row_values))[0])
