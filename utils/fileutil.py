"""Durable file primitives every store uses (device records, image json, tags, container state):
0600 writes, atomic replace, directory fsync, fcntl locks. One place, so crash-safety is uniform."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Make a rename/create/unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Create `path` (it must not exist) holding `data` with `mode`, fsynced unless `durable` is False."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask; records must be exactly `mode`
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Replace `path` with `data` in one step (temp file in the same dir, fsync, rename, dir fsync):
    a crash leaves the old content or the new, never a torn file. Temp names start with '.'."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        write_new(tmp, data, mode, durable)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_json_atomic(path: Path, data: Any, mode: int = 0o600, durable: bool = True) -> None:
    atomic_write(path, json.dumps(data, sort_keys=True).encode(), mode, durable)


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@contextmanager
def flocked(path: Path, shared: bool = False) -> Iterator[int]:
    """Hold an fcntl lock on `path` (created 0600 if missing) for the block; works across processes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def try_flock(path: Path, create: bool = False) -> int | None:
    """An fd holding an exclusive lock on `path` (made 0600 if `create`), or None if another process holds
    it or it (or, with `create`, its directory) is gone."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o600)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
