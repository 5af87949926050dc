"""Private work dirs under `graph/_tmp`, owned through a held flock so a crashed owner's leftovers are detectable.

Each scratch dir `_tmp/<name>/` has a sibling `_tmp/<name>.lock` that its owner creates first, holds
locked for the dir's lifetime and unlinks last. A dir whose lock can be taken (or is missing) has no
live owner: `clean_stale` hands it to a callback (drop its orphan device) and removes it. Several
processes can therefore share one root without ever deleting each other's work in progress.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydock.utils.fileutil import try_flock
from pydock.utils.process import pid_alive

log = logging.getLogger(__package__)

LOCK_SUFFIX = ".lock"
_SCRATCH_RE = re.compile(r"^[0-9]+-[0-9a-f]{12}(?:\.lock)?$")


def remove_tree(path: Path) -> None:
    """rmtree that reports (in the log) what it could not delete instead of raising: a scratch dir is
    never mounted on, so what fails is a leftover for the next clean_stale."""
    def failed(_func: object, failed_path: str, exc_info: tuple) -> None:
        log.warning("graph: could not delete %s: %s", failed_path, exc_info[1])

    shutil.rmtree(path, onerror=failed)


@contextmanager
def scratch_dir(tmp_root: Path) -> Iterator[Path]:
    """A fresh 0700 dir under `tmp_root`, locked for the block and removed after it (if still there)."""
    tmp_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"{os.getpid()}-{os.urandom(6).hex()}"
    lock = tmp_root / (name + LOCK_SUFFIX)
    # The lock must appear already locked: created and flocked under a name cleaners ignore, then
    # renamed into place. Otherwise a cleaner could take the fresh, not yet locked file for an
    # orphan, unlink it, and a later cleaner would then delete this dir as ownerless.
    staging = tmp_root / f".{name}.staging"
    fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(staging, lock)
        path = tmp_root / name
        path.mkdir(mode=0o700)
        try:
            yield path
        finally:
            if path.exists():
                remove_tree(path)
    finally:
        lock.unlink(missing_ok=True)
        staging.unlink(missing_ok=True)
        os.close(fd)


def clean_stale(tmp_root: Path, on_stale: Callable[[Path], None]) -> list[str]:
    """Remove scratch dirs whose owner is gone (calling `on_stale(dir)` first); returns their names."""
    if not tmp_root.is_dir():
        return []
    cleaned: list[str] = []
    for entry in sorted(os.listdir(tmp_root)):
        if entry.startswith(".") and entry.endswith(".staging"):
            # an owner that died before renaming its lock into place; judged by its pid, not by a lock:
            # the owner creates the file before it can lock it, so a lock test would race it again
            owner = entry[1:].split("-", 1)[0]
            if owner.isdigit() and not pid_alive(int(owner)):
                (tmp_root / entry).unlink(missing_ok=True)
            continue
        if not _SCRATCH_RE.match(entry):
            continue  # long-lived lock files (.graph.lock ...) and anything not ours
        if entry.endswith(LOCK_SUFFIX):
            base = entry[: -len(LOCK_SUFFIX)]
            if (tmp_root / base).exists():
                continue  # handled with its dir
            fd = try_flock(tmp_root / entry)
            if fd is not None:  # orphan lock of a finished/crashed owner
                (tmp_root / entry).unlink(missing_ok=True)
                os.close(fd)
            continue
        path = tmp_root / entry
        if not path.is_dir() or path.is_symlink():
            continue
        lock = tmp_root / (entry + LOCK_SUFFIX)
        fd = try_flock(lock)
        if fd is None:
            if lock.exists():
                continue  # a live owner holds it
            try:  # no lock at all: claim it so two cleaners don't race
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
        try:
            if path.exists():
                on_stale(path)
                remove_tree(path)
                cleaned.append(entry)
        finally:
            lock.unlink(missing_ok=True)
            os.close(fd)
    return cleaned
