"""On-disk helpers shared by the directory drivers (overlay, vfs): names, atomic records, locks, mount lookup."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydock.utils import afterwards
from pydock.utils.mount import MNT_DETACH, mount, umount
from pydock.utils.mounttable import MountEntry, mountinfo, mounts_under
from pydock.utils.errors import Conflict, InvalidArgument, StorageError

log = logging.getLogger(__package__)

#: longest device hash accepted: prefixed 64-hex ids fit, and every name stays below NAME_MAX (255).
MAX_HASH_LENGTH = 200


#: control characters, which no device name may hold.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_hash(hash: str) -> bool:
    """Whether `hash` can name a device (it becomes a file name)."""
    return (isinstance(hash, str) and bool(hash) and not hash.startswith(".") and "/" not in hash
            and not _CONTROL.search(hash) and len(hash) <= MAX_HASH_LENGTH)


def validate_hash(hash: str) -> str:
    """Return `hash` if it can name a device (is_hash), else raise InvalidArgument."""
    if not is_hash(hash):
        raise InvalidArgument(f"invalid device hash {hash!r}")
    return hash


class HomeLock:
    """Serialises metadata changes on one driver home, across threads (RLock) and processes (flock)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)  # closing drops the flock
                    self._fd = None


def remove_tree(path: Path) -> None:
    """Delete a device's directory tree, refusing if anything is mounted inside it (it would be emptied too)."""
    if not path.exists() and not path.is_symlink():
        return
    _refuse_mounts_inside(path)
    try:
        shutil.rmtree(path)
    except OSError as err:
        raise StorageError(f"cannot delete {path}: {err.strerror or err}") from err


def discard_tree(path: Path, trash: Path, entries: list[MountEntry] | None = None) -> None:
    """remove_tree with only its commit now: the tree renamed into `trash` (so it is gone), deleted after
    the command answers (utils/afterwards.py). Refused, as there, while anything is mounted inside it
    (by `entries`: a mountinfo() the caller read under the lock that serialises mounts there)."""
    _refuse_mounts_inside(path, entries)
    afterwards.discard_tree(path, trash)


def _refuse_mounts_inside(path: Path, entries: list[MountEntry] | None = None) -> None:
    """Conflict while anything is mounted inside `path`: deleting the tree would empty it too."""
    inside = mounts_under(path, entries)
    if inside:
        raise Conflict(f"cannot delete {path}: {inside[0]} is mounted inside it")


def mount_holding(path: str | os.PathLike, entries: list[MountEntry]) -> MountEntry | None:
    """The mount `path` lives on: the deepest mountpoint above it, the latest of those stacked there."""
    real = os.path.realpath(path)
    best: MountEntry | None = None
    for e in entries:
        mp = e.mountpoint
        if real == mp or real.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best.mountpoint):
                best = e
    return best


def bind_identity(directory: Path, entries: list[MountEntry] | None = None) -> tuple[str, str] | None:
    """(major:minor, root-in-filesystem) that a bind mount of `directory` shows in mountinfo."""
    entries = mountinfo() if entries is None else entries
    real = os.path.realpath(directory)
    best = mount_holding(real, entries)
    if best is None:
        return None
    rel = os.path.relpath(real, best.mountpoint)
    root = os.path.normpath(os.path.join(best.root, rel)) if rel != "." else best.root
    return best.major_minor, root


def top_mount_at(path: str | os.PathLike, entries: list[MountEntry] | None = None) -> MountEntry | None:
    """The mount currently visible at `path` (the last one stacked there), or None."""
    entries = mountinfo() if entries is None else entries
    real = os.path.realpath(path)
    found = None
    for e in entries:
        if e.mountpoint == real:
            found = e
    return found


class MountCounter:
    """Per-(hash, path) mount counts of one driver instance: what shutdown() must undo."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, hash: str, path: str) -> None:
        with self._lock:
            self._counts[(hash, path)] += 1

    def drop(self, hash: str, path: str) -> None:
        with self._lock:
            key = (hash, path)
            if self._counts[key] <= 1:
                self._counts.pop(key, None)
            else:
                self._counts[key] -= 1

    def count(self, hash: str) -> int:
        with self._lock:
            return sum(n for (h, _), n in self._counts.items() if h == hash)

    def items(self) -> list[tuple[str, str, int]]:
        with self._lock:
            return [(h, p, n) for (h, p), n in self._counts.items()]

    def clear(self) -> None:
        """Forget every count (the mounts themselves are left alone)."""
        with self._lock:
            self._counts.clear()


def mount_target(path: str | os.PathLike) -> str:
    """Absolute real path of an existing directory to mount on; StorageError otherwise."""
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        raise StorageError(f"mount point {path} is not an existing directory")
    return real


def umount_checked(real: str, what: str, umount: Callable[[str], None], busy_timeout: float = 2.0) -> None:
    """Unmount `real`, turning the kernel's errno into a one-line StorageError.

    EBUSY is retried for a moment: a fork in another thread (any subprocess) briefly holds copies of
    this process's open files until it execs, which pins the mount without anyone doing wrong."""
    deadline = time.monotonic() + busy_timeout
    delay = 0.002
    while True:
        try:
            umount(real)
            return
        except OSError as err:
            if err.errno == errno.EBUSY and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            if err.errno == errno.EBUSY:
                raise StorageError(f"Error unmounting {what} from '{real}': device or resource busy") from err
            raise StorageError(f"Error unmounting {what} from '{real}': {os.strerror(err.errno or 0)}") from err

def unmount_all(counter: MountCounter, find_mounts: Callable[[], list[str]], driver: str) -> None:
    """Shutdown's unmount pass: every counted mount, then whatever `find_mounts` still sees (lazily if busy)."""
    counter.clear()
    for _ in range(1000):  # bounded: each pass removes at least one mount or stops
        remaining = find_mounts()
        if not remaining:
            return
        path = remaining[0]
        try:
            umount(path)
        except OSError as err:
            log.warning("%s: shutdown could not unmount %s (%s); detaching it", driver, path, err.strerror)
            try:
                umount(path, MNT_DETACH)
            except OSError as err2:
                log.warning("%s: shutdown could not detach %s: %s", driver, path, err2.strerror)
                return


def mount_from(cwd: Path, source: str, target: str, fstype: str, flags: int, data: str) -> None:
    """mount(2) with relative paths in `data` resolved against `cwd`, done in a forked child so this
    process's working directory (shared by all its threads) never changes. OSError carries the errno."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.chdir(cwd)
            mount(source, target, fstype, flags, data)
        except OSError as err:
            code = err.errno or 1
        except BaseException:
            code = 255
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise OSError(code, os.strerror(code) if 0 < code < 255 else "mount helper failed")
