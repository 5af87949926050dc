"""openat2(2) (Linux 5.6+): open a path relative to a directory fd under kernel-enforced resolution
rules (`RESOLVE_*`). A thin typed wrapper, no policy: utils/safepath.py decides how pydock uses it.

Names follow <linux/openat2.h>: `struct open_how { __u64 flags; __u64 mode; __u64 resolve; }`.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os

from pydock.utils.libc import libc

#: the syscall number is the same on every architecture (the unified table new syscalls use since 5.1)
SYS_openat2 = 437
AT_FDCWD = -100

RESOLVE_NO_XDEV = 0x01  # no mount-point crossing (bind mounts included)
RESOLVE_NO_MAGICLINKS = 0x02  # no /proc/<pid>/fd/N, /proc/<pid>/root, ... style links
RESOLVE_NO_SYMLINKS = 0x04  # no symlink at all (implies NO_MAGICLINKS); a trailing one with O_PATH|O_NOFOLLOW is opened
RESOLVE_BENEATH = 0x08  # EXDEV if resolution would leave dirfd (absolute paths, `..` above it)
RESOLVE_IN_ROOT = 0x10  # dirfd is "/" for this lookup: absolute links and `..` stay below it, like chroot
RESOLVE_CACHED = 0x20  # only from the dcache (EAGAIN otherwise)


class OpenHow(ctypes.Structure):
    """`struct open_how` (extensible by size; this is OPEN_HOW_SIZE_VER0, 24 bytes)."""

    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_syscall = libc()["syscall"]  # a private function pointer: its argtypes are ours alone
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(OpenHow), ctypes.c_size_t]
_HOW_SIZE = ctypes.sizeof(OpenHow)


def openat2(dirfd: int, path: str | bytes | os.PathLike, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """The new fd; OSError with the kernel's errno (ENOSYS before 5.6, EXDEV for a RESOLVE_BENEATH
    escape, ELOOP for a refused symlink or magic link, EAGAIN when a concurrent rename or mount made
    an IN_ROOT/BENEATH lookup unverifiable: retry)."""
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    fd = _syscall(SYS_openat2, dirfd, raw, OpenHow(flags, mode, resolve), _HOW_SIZE)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(raw))
    return fd


@functools.cache
def supported() -> bool:
    """Whether this kernel (and any seccomp filter around us) lets openat2 with RESOLVE_IN_ROOT through."""
    try:
        fd = openat2(AT_FDCWD, "/", os.O_PATH | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    except OSError as err:
        if err.errno in (errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.E2BIG):
            return False
        raise
    os.close(fd)
    return True
