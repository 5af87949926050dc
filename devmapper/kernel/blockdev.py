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
    if _is_block(path, want, follow=True):
        return path
    path.unlink(missing_ok=True)
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        os.mknod(path, mode | stat.S_IFBLK, want)
    except FileExistsError:  # another process made the same node meanwhile
        if not _is_block(path, want, follow=False):
            raise
    return path


def _is_block(path: Path, rdev: int | None, follow: bool) -> bool:
    """Whether `path` is a block node (for device `rdev` unless None); a missing path is not."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISBLK(st.st_mode) and (rdev is None or st.st_rdev == rdev)


def remove_node(path: str | os.PathLike) -> None:
    """Unlink a block node we made; missing is fine."""
    path = Path(path)
    if _is_block(path, None, follow=False):
        path.unlink(missing_ok=True)
