"""Block device helpers: size by BLKGETSIZE64, device nodes made by mknod (no udev runs here)."""

from __future__ import annotations

import fcntl
import os
import stat
import struct
from pathlib import Path

BLKGETSIZE64 = 0x80081272  # _IOR(0x12, 114, size_t)


def size_bytes(path: str | os.PathLike) -> int:
    """BLKGETSIZE64 of a block device."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, BLKGETSIZE64, buf, True)
        return struct.unpack("<Q", buf)[0]
    finally:
        os.close(fd)


def ensure_node(path: str | os.PathLike, major: int, minor: int, mode: int = 0o600) -> Path:
    """Make `path` a block node for major:minor, replacing a stale node with another number.

    Where udev runs, `path` may already be its symlink to ../dm-N: accepted when it resolves
    to the right device.
    """
    path = Path(path)
    want = os.makedev(major, minor)
    try:
        st = os.stat(path)
        if stat.S_ISBLK(st.st_mode) and st.st_rdev == want:
            return path
    except FileNotFoundError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        os.mknod(path, mode | stat.S_IFBLK, want)
    except FileExistsError:  # another process made the same node meanwhile
        st = os.lstat(path)
        if not (stat.S_ISBLK(st.st_mode) and st.st_rdev == want):
            raise
    return path


def remove_node(path: str | os.PathLike) -> None:
    """Unlink a block node we made; missing is fine."""
    try:
        if stat.S_ISBLK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
