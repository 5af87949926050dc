"""A listing's cache of what it reads from many directories (`<dir>/<name>/<file>...`): one file of
entries, each kept with the identity of the files it was read from, so a listing stats those files
instead of opening and decoding them (runtime/listindex.py: containers; graph/graph.py: images).

An entry is used only while each of its files has the same (st_ino, st_size, st_mtime_ns,
st_ctime_ns) as when the entry was read (a missing file is part of the identity too). Those files are
replaced by rename, so a new file is a new inode and a new ctime; one edited in place has a new mtime.
As in git's "racily clean" rule, files changed less than `RACY_NS` before they were read are not kept:
a later change could otherwise land in the same coarse timestamp tick and, on a reused inode number
with the same size, look unchanged. So a listing never shows an entry older than its files.

The index is a cache, never the source of truth: rewritten atomically (not fsynced) only when an entry
changed; a lost, torn or foreign (another pydock or Python version, another index's) file is rebuilt
from the files. Entries validate themselves, so processes racing to rewrite it can only cost re-reads,
never a stale entry.
"""

from __future__ import annotations

import logging
import marshal
import os
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydock.utils.fileutil import atomic_write

log = logging.getLogger(__package__)

#: files changed this recently when read are not kept (see the module docstring): well over the
#: coarse clock tick file timestamps come from (1-10 ms)
RACY_NS = 1_000_000_000

#: the identity of one file as read (None: it was missing)
Key = tuple[int, int, int, int] | None


def file_key(st: os.stat_result | None) -> Key:
    return None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StatIndex:
    """One listing's use of an index: `names`, then `kept` (or `keep` what was read instead) per name,
    then `save` (writes only if something changed; closes the directory it holds open)."""

    def __init__(self, path: Path, home: Path, magic: bytes, files: Sequence[str]) -> None:
        """`path`: the index file; `home`: the directory of the entries' directories; `magic`: what the
        index holds, and its version; `files`: each entry's files, in its directory."""
        self.path = path
        self.home = home
        self._magic = magic + b" py%d.%d\n" % sys.version_info[:2]  # marshal's format may change with Python
        self._files = tuple(files)
        self._old = self._read()
        self._new: dict[str, tuple[Any, ...]] = {}
        self._changed = False
        self._fd: int | None = None

    def _read(self) -> dict[str, tuple[Any, ...]]:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as err:
            log.debug("index %s unreadable (%s); reading the files", self.path, err)
            return {}
        head = len(self._magic) + 4
        if len(blob) < head or not blob.startswith(self._magic) or \
                zlib.crc32(blob[head:]) != int.from_bytes(blob[head - 4:head], "big"):
            log.debug("index %s is torn or from another version; rebuilding it", self.path)
            return {}
        try:
            entries = marshal.loads(blob[head:])
        except (ValueError, EOFError, TypeError) as err:
            log.debug("index %s undecodable (%s); rebuilding it", self.path, err)
            return {}
        return entries if isinstance(entries, dict) else {}

    def cached(self) -> set[str]:
        """Names the index held an entry for when opened (what it may answer without reading)."""
        return set(self._old)

    def names(self, valid: Callable[[str], bool]) -> list[str]:
        """The `valid` names in the home directory (FileNotFoundError without one), read through the
        descriptor the entries are then checked through (stats relative to it skip walking the path to
        it); a name the index holds was `valid` when its entry was made."""
        if self._fd is None:
            self._fd = os.open(self.home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        old = self._old
        return [n for n in os.listdir(self._fd) if n in old or valid(n)]

    def _stat(self, path: str) -> os.stat_result | None:
        try:
            return os.stat(path, dir_fd=self._fd) if self._fd is not None else os.stat(f"{self.home}/{path}")
        except FileNotFoundError:
            return None

    def kept(self, name: str) -> Any:
        """What the entry of `name` keeps if each of its files is still the one it was read from (and
        then the entry stays), else None (read the files and `keep` what they hold)."""
        entry = self._old.get(name)
        if not (isinstance(entry, tuple) and len(entry) == len(self._files) + 1):
            return None
        for file, key in zip(self._files, entry):
            if file_key(self._stat(f"{name}/{file}")) != key:
                return None
        self._new[name] = entry
        return entry[-1]

    def keep(self, name: str, stats: Sequence[os.stat_result | None], value: Any, started_ns: int) -> None:
        """Make the entry of `name`: `value`, read from files whose stats (of the very files read, in
        `files` order) were `stats`, reading begun at `started_ns` (time.time_ns()). None, or files too
        recently changed, make no entry (and drop its old one)."""
        if value is not None and all(st is None or max(st.st_mtime_ns, st.st_ctime_ns) + RACY_NS < started_ns
                                     for st in stats):
            self._new[sys.intern(name)] = (*map(file_key, stats), value)
            self._changed = True
        elif name in self._old:
            self._new.pop(name, None)  # its entry is out of date (or undecodable) and not replaced: drop it
            self._changed = True

    def save(self) -> None:
        """Rewrite the index with the entries this listing used, if any changed or went away."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self._changed and len(self._new) == len(self._old):
            return
        payload = marshal.dumps(self._new)
        try:
            atomic_write(self.path, self._magic + zlib.crc32(payload).to_bytes(4, "big") + payload, durable=False)
        except OSError as err:  # a cache: the next listing reads the files again
            log.debug("index %s not written: %s", self.path, err)

