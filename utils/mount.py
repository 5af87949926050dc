"""mount(2)/umount2(2)/unshare(2) through libc, and the file systems the kernel knows. No policy here; the
mount table (/proc/self/mountinfo) is read by mounttable.py. Imports nothing heavy: the dockerinit helper
runs on it before every packaged launch."""

from __future__ import annotations

import ctypes
import os

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


def supported_filesystems() -> set[str]:
    """Filesystem types this kernel can mount (from /proc/filesystems)."""
    try:
        with open("/proc/filesystems") as f:
            return {line.split()[-1] for line in f if line.strip()}
    except OSError:
        return set()
