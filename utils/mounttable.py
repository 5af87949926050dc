"""The mount table: /proc/<pid>/mountinfo parsed into records, and the questions asked of it (what is
mounted where, below a path, how `/` propagates). Reads only; mount.py changes the table."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo."""

    mount_id: int
    parent_id: int
    major_minor: str
    root: str
    mountpoint: str
    options: str
    optional: tuple[str, ...]
    fstype: str
    source: str
    super_options: str = ""  # the file system's own (a v1 cgroup's controllers are named here)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo; nearly every field has none
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "surrogateescape")


def mountinfo(pid: str = "self") -> list[MountEntry]:
    entries = []
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.rstrip("\n").partition(" - ")
            parts = left.split(" ")
            fstype, source, *rest = right.split(" ")
            entries.append(MountEntry(int(parts[0]), int(parts[1]), parts[2], _unescape(parts[3]),
                                      _unescape(parts[4]), parts[5], tuple(parts[6:]), fstype,
                                      _unescape(source), rest[0] if rest else ""))
    return entries


def is_mountpoint(path: str | os.PathLike) -> bool:
    """True when something is mounted exactly at `path` (by mountinfo, so bind mounts count too)."""
    real = os.path.realpath(path)
    return any(e.mountpoint == real for e in mountinfo())


def mounts_under(prefix: str | os.PathLike, entries: list[MountEntry] | None = None) -> list[str]:
    """Mountpoints at or below `prefix`, deepest first (the order to unmount them in); `entries`: a
    mountinfo() the caller already read."""
    real = os.path.realpath(prefix)
    found = [e.mountpoint for e in (mountinfo() if entries is None else entries)
             if e.mountpoint == real or e.mountpoint.startswith(real.rstrip("/") + "/")]
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def root_is_shared() -> bool:
    """Whether `/` propagates mounts (optional field `shared:N` on the `/` line)."""
    for e in mountinfo():
        if e.mountpoint == "/":
            return any(o.startswith("shared:") for o in e.optional)
    return True
