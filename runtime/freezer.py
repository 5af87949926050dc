"""Pausing a container: its processes frozen by the kernel (`pause`/`unpause`), through the cgroup v1
freezer on a hybrid host or `cgroup.freeze` on a unified cgroup2 host. The kernel is the only record of
whether a container is paused."""

from __future__ import annotations

import logging
import time

from pydock.runtime import cgroups
from pydock.runtime.cgroups import Hierarchy
from pydock.utils.errors import Conflict, PydockError

log = logging.getLogger(__package__)

#: how long a freeze may take to settle (tasks stuck in uninterruptible sleep delay it)
SETTLE_TIMEOUT = 10.0


def _place(pid: int) -> tuple[str, str] | None:
    """(file to write, file that says the state) for the freezer of `pid`'s cgroup, None if gone."""
    where = cgroups.process_cgroups(pid)
    if cgroups.hierarchy() is Hierarchy.V2:
        base = where.get("")
        return (f"{base}/cgroup.freeze", f"{base}/cgroup.events") if base else None
    base = where.get("freezer")
    return (f"{base}/freezer.state", f"{base}/freezer.state") if base else None


def is_frozen(pid: int) -> bool:
    """Whether the cgroup of process `pid` (a container's PID 1) is frozen (or freezing)."""
    place = _place(pid)
    text = cgroups.read_text(place[0]) if place is not None else None
    return text is not None and text.strip() in ("1", "FROZEN", "FREEZING")


def _settled(pid: int, frozen: bool) -> bool:
    place = _place(pid)
    if place is None:
        return True
    text = cgroups.read_text(place[1]) or ""
    if cgroups.hierarchy() is Hierarchy.V2:
        return f"frozen {int(frozen)}" in text.splitlines()
    return text.strip() == ("FROZEN" if frozen else "THAWED")


def set_frozen(pid: int, frozen: bool, what: str) -> None:
    """Freeze (or thaw) the cgroup of process `pid` and wait until the kernel says it is done; Conflict
    if the process is gone (a SIGKILL passes cgroup v2's freezer, so a paused container can end)."""
    place = _place(pid)
    if place is None:
        raise Conflict(f"{what} is not running")
    value = ("1" if frozen else "0") if cgroups.hierarchy() is Hierarchy.V2 else ("FROZEN" if frozen else "THAWED")
    try:
        with open(place[0], "w") as f:
            f.write(value)
    except OSError as err:
        raise PydockError(f"{what}: cannot {'freeze' if frozen else 'thaw'} its cgroup: {err.strerror}") from None
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not _settled(pid, frozen):
        if time.monotonic() >= deadline:
            raise PydockError(f"{what}: its cgroup did not {'freeze' if frozen else 'thaw'} within "
                              f"{SETTLE_TIMEOUT:g}s")
        time.sleep(0.01)
