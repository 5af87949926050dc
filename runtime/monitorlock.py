"""The monitor lock, `containers/<id>/monitor.lock`: the one fact about whether a run is supervised.

The process supervising a run (the detached monitor, or the foreground `run`) holds an exclusive
flock on it from before the launch until the run is recorded, cleaned up and (with `--rm`) removed.
The kernel drops the lock when that process dies, so pid reuse can't fool it. Before letting go the
supervisor writes the run's exit code into the file: a waiter that opened it beforehand reads the
code even after an auto-remove deleted the container (the open file outlives its name).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from pydock.utils.errors import Conflict, NotFound
from pydock.utils.fileutil import try_flock

#: how long a start waits for the previous run's supervisor to finish its cleanup and let go.
MONITOR_EXIT_GRACE = 10.0


def create(path: Path) -> None:
    """Make the (unheld) lock file at create time, so a wait begun before the first start holds it open
    and reads the exit code of that run even if an auto-remove deletes the container at its end."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))


def acquire(path: Path, is_running: object, what: str) -> int:
    """The lock's fd, held exclusively; `is_running()` True while waiting means another run is live:
    Conflict. A supervisor that already recorded its exit is only cleaning up: wait for it, briefly.
    NotFound if the container was removed meanwhile."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:  # its directory is gone: removed (a --rm container's own monitor did it)
        raise NotFound(f"No such container: {what}") from None
    deadline = time.monotonic() + MONITOR_EXIT_GRACE
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        if is_running() or time.monotonic() >= deadline:  # type: ignore[operator]
            os.close(fd)
            raise Conflict(f"Container {what} is already running")
        time.sleep(0.01)


def take_if_free(path: Path) -> int | None:
    """The lock's fd if no process supervises the container now (for crash recovery), else None."""
    return try_flock(path, create=True)


def record_exit(fd: int, code: int) -> None:
    """Write the run's exit code into the held lock file, for waiters that outlive the container."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{code}\n".encode(), 0)


def held(path: Path) -> bool:
    """Whether some process supervises the container right now."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class RunWatch:
    """An open handle on a container's monitor lock: wait for the current run's supervisor to let go,
    then read the exit code it left (also after the container was removed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._pending: threading.Event | None = None
        self._open()

    def _open(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._fd = None  # never started (the first start makes it), or already removed

    def released(self, timeout: float | None = None) -> bool:
        """Block until no process holds the lock (True), or `timeout` seconds pass (False)."""
        if self._fd is None:
            self._open()  # a waiter that came before the first start catches up with its run here
            if self._fd is None:
                return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            if timeout is not None and timeout <= 0:
                return False
        else:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            return True
        if timeout is None:
            fcntl.flock(self._fd, fcntl.LOCK_SH)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            return True
        # flock has no timeout: a helper thread blocks on its own descriptor (it ends with the run),
        # one per run however often a follower asks with a short timeout
        # (its own open file, not a dup: a lock taken through a dup would outlive the thread's close)
        if self._pending is None or self._pending.is_set():
            done = self._pending = threading.Event()
            fd = os.open(f"/proc/self/fd/{self._fd}", os.O_RDONLY | os.O_CLOEXEC)

            def block() -> None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH)
                finally:
                    os.close(fd)  # the only descriptor of that open file: the shared lock goes with it
                    done.set()

            threading.Thread(target=block, name="monitor-lock-wait", daemon=True).start()
        return self._pending.wait(timeout)

    def exit_code(self) -> int | None:
        """The exit code the last supervisor recorded, or None (none recorded, or no lock file)."""
        if self._fd is None:
            return None
        text = os.pread(self._fd, 32, 0).strip()
        return int(text) if text.lstrip(b"-").isdigit() else None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
