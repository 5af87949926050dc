"""Loop device ioctls (linux/loop.h): attach a backing file with autoclear, find it again. No policy."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from . import blockdev

log = logging.getLogger(__package__)

LOOP_SET_FD = 0x4C00
LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LOOP_GET_STATUS64 = 0x4C05
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LOOP_MAJOR = 7
LO_NAME_SIZE = 64

# struct loop_info64: lo_device lo_inode lo_rdevice lo_offset lo_sizelimit lo_number
#   lo_encrypt_type lo_encrypt_key_size lo_flags lo_file_name[64] lo_crypt_name[64]
#   lo_encrypt_key[32] lo_init[2]                                       (sizeof == 232)
_INFO = struct.Struct("<Q Q Q Q Q I I I I 64s 64s 32s 2Q")


@dataclass(frozen=True)
class LoopInfo:
    """LOOP_GET_STATUS64 of one loop device."""

    number: int         # lo_number
    device: int         # lo_device: st_dev of the backing file
    inode: int          # lo_inode: st_ino of the backing file
    offset: int         # lo_offset
    flags: int          # lo_flags
    file_name: str      # lo_file_name (truncated to 63 bytes by the kernel)

    @property
    def autoclear(self) -> bool:
        return bool(self.flags & LO_FLAGS_AUTOCLEAR)


class LoopError(OSError):
    """A loop ioctl failed."""


def loop_path(n: int) -> Path:
    return Path(f"/dev/loop{n}")


def get_status(fd: int) -> LoopInfo:
    """LOOP_GET_STATUS64; ENXIO when nothing is attached."""
    buf = bytearray(_INFO.size)
    fcntl.ioctl(fd, LOOP_GET_STATUS64, buf, True)
    f = _INFO.unpack(buf)
    return LoopInfo(number=f[5], device=f[0], inode=f[1], offset=f[3], flags=f[8],
                    file_name=f[9].split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))


def _get_free() -> int:
    """LOOP_CTL_GET_FREE on /dev/loop-control (allocates a new loop if none is free), or 0."""
    try:
        fd = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        log.debug("loop: no /dev/loop-control (%s); scanning from loop0", e.strerror)
        return 0
    try:
        return fcntl.ioctl(fd, LOOP_CTL_GET_FREE)
    except OSError as e:
        log.debug("loop: LOOP_CTL_GET_FREE failed (%s); scanning from loop0", e.strerror)
        return 0
    finally:
        os.close(fd)


def attach(backing: str | os.PathLike, autoclear: bool = True, max_tries: int = 64) -> tuple[int, Path]:
    """Bind `backing` to a free loop device; returns (open loop fd, loop path).

    The caller must keep the returned fd open until something else (the thin pool) holds the
    loop: with LO_FLAGS_AUTOCLEAR the kernel detaches it on the last close.
    EBUSY from LOOP_SET_FD means another process took that loop first: try the next one.
    """
    file_fd = os.open(backing, os.O_RDWR | os.O_CLOEXEC)
    try:
        n = _get_free()
        for _ in range(max_tries):
            path = loop_path(n)
            blockdev.ensure_node(path, LOOP_MAJOR, n)
            if not stat.S_ISBLK(os.stat(path).st_mode):
                raise LoopError(errno.ENOTBLK, f"{path} is not a block device")
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.ioctl(fd, LOOP_SET_FD, file_fd)
            except OSError as e:
                os.close(fd)
                if e.errno == errno.EBUSY:
                    n = max(n + 1, _get_free())
                    continue
                raise LoopError(e.errno, f"LOOP_SET_FD {path}: {os.strerror(e.errno)}") from None
            try:
                name = str(path).encode()[:LO_NAME_SIZE - 1]
                info = _INFO.pack(0, 0, 0, 0, 0, n, 0, 0, LO_FLAGS_AUTOCLEAR if autoclear else 0,
                                  name, b"", b"", 0, 0)
                fcntl.ioctl(fd, LOOP_SET_STATUS64, bytearray(info), True)
            except OSError as e:
                fcntl.ioctl(fd, LOOP_CLR_FD, 0)
                os.close(fd)
                raise LoopError(e.errno, f"LOOP_SET_STATUS64 {path}: {os.strerror(e.errno)}") from None
            return fd, path
        raise LoopError(errno.EBUSY, "There are no more loopback devices available")
    finally:
        os.close(file_fd)


def detach(fd: int) -> None:
    """LOOP_CLR_FD (for a loop we attached without autoclear)."""
    fcntl.ioctl(fd, LOOP_CLR_FD, 0)


def find_by_backing(backing: str | os.PathLike) -> Path | None:
    """The loop device whose backing file is `backing` (matched by st_dev/st_ino), or None."""
    st = os.stat(backing)
    sysblock = Path("/sys/block")
    try:
        names = [p.name for p in sysblock.iterdir() if p.name.startswith("loop")]
    except OSError as e:
        log.debug("loop: can't list %s: %s", sysblock, e.strerror)
        names = []
    for name in names:
        path = Path("/dev") / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # no node for it here: not one we attached
            continue
        try:
            info = get_status(fd)
        except OSError:  # ENXIO: nothing attached to it
            continue
        finally:
            os.close(fd)
        if info.device == st.st_dev and info.inode == st.st_ino:
            return path
    return None
