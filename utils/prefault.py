"""Copy-on-write faults taken ahead of time. A process forked from a big parent shares its parent's pages
until it writes to them, and Python writes to most of them (reference counts): one fault and one page
copy each, ~2,600 for a `run` in a forked worker. A process forked to wait for work (the command
server's spare) takes those copies while it waits, with madvise(MADV_POPULATE_WRITE) (Linux 5.14)."""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable

from pydock.utils.libc import libc

MADV_POPULATE_WRITE = 23
#: bytes populated between two looks at `until` (~0.15 ms of copying here)
CHUNK = 256 * 1024


def writable_private_ranges() -> list[tuple[int, int]]:
    """[start, end) of this process's private writable mappings (heap, anonymous memory, libraries'
    data): the ones a fork shares copy-on-write."""
    ranges = []
    with open("/proc/self/maps", "rb") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if fields[1] == b"rw-p":
                start, end = fields[0].split(b"-")
                ranges.append((int(start, 16), int(end, 16)))
    return ranges


def populate_writable(until: Callable[[], bool]) -> int:
    """Make every page of `writable_private_ranges` this process's own, a chunk at a time, until
    `until()` says to stop (work arrived: its faults are now cheaper than the copies left). The
    bytes populated; 0 on a kernel without MADV_POPULATE_WRITE (nothing is done then)."""
    madvise = libc().madvise
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    done = 0
    for start, end in writable_private_ranges():
        for chunk in range(start, end, CHUNK):
            if until():
                return done
            size = min(CHUNK, end - chunk)
            if madvise(chunk, size, MADV_POPULATE_WRITE) == 0:
                done += size
            elif ctypes.get_errno() == errno.EINVAL and done == 0:
                return 0  # before 5.14: unknown advice
            else:
                break  # a mapping that cannot be populated (gone, or special): the next one
    return done
