"""The listing index (`<root>/containers.index`): every container as a listing needs it, each entry kept
with the identity of the config.json it was read from, so `ps -a` over 1000 containers stats 1000 files
instead of opening and decoding them.

An entry is used only while its config.json has the same (st_ino, st_size, st_mtime_ns, st_ctime_ns)
as when the entry was read. config.json is only ever replaced by rename (Container.save/save_state via
atomic_write), so a new file is a new inode and a new ctime. As in git's "racily clean" rule, a file
changed less than `_RACY_NS` before it was read is not kept: a later change could otherwise land in the
same coarse timestamp tick and, on a reused inode number with the same size, look unchanged. So a
listing never shows a row older than its config.json.

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
from pathlib import Path
from typing import Any

from pydock.runtime.container import Container, read_config
from pydock.utils.errors import NotFound
from pydock.utils.fileutil import atomic_write

log = logging.getLogger(__package__)

#: what an entry holds changes with this; marshal's format may change with Python's minor version
_MAGIC = b"pydock-listing-index 1 py%d.%d\n" % sys.version_info[:2]
#: config.json's fields a listed container is built from (the paths in it derive from its directory;
#: Config is kept as JSON, decoded only when used: `ps -a` shows none of it)
_FIELDS = tuple(sys.intern(k) for k in ("ID", "Created", "Path", "Args", "Image", "Name", "Driver",
                                        "NetworkSettings", "Volumes", "VolumesRW", "State"))
#: a config.json changed this recently when read is not kept (see the module docstring): well over the
#: coarse clock tick file timestamps come from (1-10 ms)
_RACY_NS = 1_000_000_000

#: An entry: ((st_ino, st_size, st_mtime_ns, st_ctime_ns) of the file read, {field: value} of _FIELDS, Config as JSON)
Entry = tuple[tuple[int, int, int, int], dict[str, Any], bytes]


def _key(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class ListingIndex:
    """One listing's use of the index: `load` each container, then `save` (writes only if something changed)."""

    def __init__(self, path: Path, home: Path) -> None:
        """`path`: the index file; `home`: the containers directory (`<root>/containers`)."""
        self.path = path
        self.home = home
        self._old = self._read()
        self._new: dict[str, Entry] = {}
        self._changed = False

    def _read(self) -> dict[str, Entry]:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as err:
            log.debug("listing index %s unreadable (%s); reading every container", self.path, err)
            return {}
        head = len(_MAGIC) + 4
        if len(blob) < head or not blob.startswith(_MAGIC) or zlib.crc32(blob[head:]) != int.from_bytes(blob[head - 4:head], "big"):
            log.debug("listing index %s is torn or from another version; rebuilding it", self.path)
            return {}
        try:
            entries = marshal.loads(blob[head:])
        except (ValueError, EOFError, TypeError) as err:
            log.debug("listing index %s undecodable (%s); rebuilding it", self.path, err)
            return {}
        return entries if isinstance(entries, dict) else {}

    def cached(self) -> set[str]:
        """Ids the index held an entry for when opened (what `load` may answer without reading)."""
        return set(self._old)

    def load(self, cid: str) -> Container:
        """The container `cid` as its config.json holds it now: from its entry while the file is the one
        the entry was read from, else read (NotFound without a readable config.json, KeyError without an ID)."""
        directory = self.home / cid
        path = f"{directory}/config.json"
        entry = self._old.get(cid)
        if isinstance(entry, tuple) and len(entry) == 3:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise NotFound(f"No such container: {cid}") from None
            if _key(st) == entry[0]:
                try:
                    c = Container.from_json(directory, entry[1], entry[2])
                except (TypeError, AttributeError, KeyError, ValueError, IndexError) as err:
                    log.debug("listing index entry of %s unusable (%s); reading it", cid[:12], err)
                else:
                    self._new[cid] = entry
                    return c
        now = time.time_ns()
        data, st = read_config(directory)
        c = Container.from_json(directory, data)
        if max(st.st_mtime_ns, st.st_ctime_ns) + _RACY_NS < now:
            fields = {k: data[k] for k in _FIELDS if k in data}
            if isinstance(fields.get("State"), dict):  # interned keys: marshal writes each once for the index
                fields["State"] = {sys.intern(k): v for k, v in fields["State"].items()}
            self._new[cid] = (_key(st), fields, json.dumps(data.get("Config") or {}).encode())
            self._changed = True
        elif entry is not None:
            self._changed = True  # its entry is out of date and not replaced: drop it
        return c

    def save(self) -> None:
        """Rewrite the index with the entries this listing used, if any changed or went away (a container
        removed). Call it before the containers are handed out: entries share their values."""
        if not self._changed and len(self._new) == len(self._old):
            return
        payload = marshal.dumps(self._new)
        try:
            atomic_write(self.path, _MAGIC + zlib.crc32(payload).to_bytes(4, "big") + payload, durable=False)
        except OSError as err:  # a cache: the next listing reads the files again
            log.debug("listing index %s not written: %s", self.path, err)

