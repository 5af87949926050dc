"""mount(2)/umount2(2)/unshare(2) through libc, and /proc/self/mountinfo parsing. No policy here."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from pydock.utils.libc import libc

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_MGC_VAL = 0xC0ED0000

MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000


_libc = libc()
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]


def _b(value: str | os.PathLike | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | os.PathLike | None, target: str | os.PathLike, fstype: str | None = None,
          flags: int = 0, data: str | None = None) -> None:
    """mount(2); raises OSError with the errno (EINVAL, EBUSY, ...) on failure."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
           f"mount {source} on {target}")


def umount(target: str | os.PathLike, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def unshare(flags: int) -> None:
    """unshare(2), e.g. CLONE_NEWNS for a private mount namespace."""
    _check(_libc.unshare(flags), "unshare")


def make_rslave(path: str | os.PathLike = "/") -> None:
    """Make the tree at `path` a recursive slave: host mounts propagate in, ours never propagate out."""
    mount(None, path, None, MS_REC | MS_SLAVE)


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



def supported_filesystems() -> set[str]:
    """Filesystem types this kernel can mount (from /proc/filesystems)."""
    try:
        with open("/proc/filesystems") as f:
            return {line.split()[-1] for line in f if line.strip()}
    except OSError:
        return set()
