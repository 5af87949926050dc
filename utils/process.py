"""Process identity: whether a pid is alive, and (pid, start time) pairs that survive pid reuse."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or None if no such process.

    (pid, start time) identifies a process across pid reuse.
    """
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] == b"Z":
        return None  # a zombie has finished
    return int(rest[19])


def same_process(pid: int, start_time: int) -> bool:
    """Whether `pid` is still the very process that had `start_time` (not a reused pid)."""
    return pid > 0 and start_time > 0 and proc_start_time(pid) == start_time


def self_identity() -> tuple[int, int]:
    """(pid, start time) of the calling process."""
    pid = os.getpid()
    return pid, proc_start_time(pid) or 0
