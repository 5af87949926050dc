"""inotify(7), as far as pydock needs it: learn that anything changed in a few directories with one
non-blocking read, instead of statting what they hold (cli/cmdserver.py watches its own source)."""

from __future__ import annotations

import ctypes
import os

from pydock.utils.libc import libc

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
#: every change to a directory's entries, to the files in it, or to the directory itself
ANY_CHANGE = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
              | IN_DELETE_SELF | IN_MOVE_SELF)
#: a buffer larger than any one event (a header and a NAME_MAX name)
_READ_SIZE = 4096


class Inotify:
    """One inotify instance (non-blocking, close-on-exec). OSError from the kernel (e.g. EMFILE, or ENOSPC
    once the user's watches run out) is raised as such."""

    def __init__(self) -> None:
        fd = libc().inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd = fd

    def watch(self, path: str, mask: int = ANY_CHANGE) -> int:
        """Watch `path` (a symlink is followed) for the `mask` events; the watch descriptor."""
        wd = libc().inotify_add_watch(self.fd, os.fsencode(path), ctypes.c_uint32(mask))
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}", path)
        return wd

    def drain(self) -> bool:
        """Whether any event (a queue overflow included) came since the last drain; consumes them."""
        seen = False
        while True:
            try:
                if not os.read(self.fd, _READ_SIZE):
                    return seen
            except BlockingIOError:
                return seen
            seen = True

    def close(self) -> None:
        if self.fd != -1:
            os.close(self.fd)
            self.fd = -1
