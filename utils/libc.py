"""The C library, loaded once, for the thin kernel wrappers in utils (mount(2), openat2(2))."""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def libc() -> ctypes.CDLL:
    """glibc with errno kept (`ctypes.get_errno()`); its soname first, because ctypes.util.find_library
    runs `ldconfig -p` (~70 ms on every pydock start)."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library  # lazy: imports subprocess and more (~4 ms), only off glibc

        return ctypes.CDLL(find_library("c"), use_errno=True)
