"""Crash recovery: a container marked running whose supervising process is gone (kill -9, host crash).

Liveness is the monitor's exclusive flock on `containers/<id>/monitor.lock` (the kernel drops it when
the process dies, so pid reuse cannot fool it); the recorded (pid, start time) pairs only say which
lxc-execute to finish off.

Policy (documented in README/`ps`): when the monitor is gone, a container still running is killed
(there is no one left to collect its output or status) and recorded as `Exit 137`; one that had
already ended is recorded as `Exit -1` (status unknown). Its mounts, address, veth and lxc state are
released. A container whose recovery is under way in another process shows as `Ghost`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
from dataclasses import replace
from typing import TYPE_CHECKING

from pydock.runtime.container import Container
from pydock.utils.errors import PydockError
from pydock.utils.fileutil import try_flock
from pydock.runtime.launcher import container_init, wait_gone
from pydock.runtime.state import EXIT_KILLED, EXIT_LOST, proc_start_time

if TYPE_CHECKING:
    from pydock.runtime.runtime import Runtime


def monitor_alive(c: Container) -> bool:
    """Whether some process holds the container's monitor lock."""
    try:
        fd = os.open(c.monitor_lock_path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def kill_leftover(pid: int, pid_start: int) -> bool:
    """SIGKILL the container's init (ending its whole pid namespace), then lxc-execute; True if one ran."""
    if pid <= 0 or proc_start_time(pid) != pid_start:
        return False
    init = container_init(pid)
    if init is not None:
        try:
            os.kill(init, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if not wait_gone(pid, pid_start, 5.0):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_gone(pid, pid_start, 5.0)
    return True


def unmount_leftovers(rt: Runtime, c: Container) -> None:
    """Lazily detach anything still mounted under the container's directory (a dead monitor's rootfs)."""
    from pydock.utils.mount import MNT_DETACH, mounts_under, umount

    if not c.dir.exists():
        return
    for mp in mounts_under(c.dir):
        try:
            umount(mp, MNT_DETACH)
        except OSError:
            pass
    for hash_ in (c.id, c.init_id):
        try:
            if rt.driver.has_activated_device(hash_):
                rt.driver.deactivate_device(hash_)
        except (PydockError, OSError):
            pass


def recover(rt: Runtime, c: Container) -> bool:
    """Repair `c` if its monitor is dead; True if repaired. Marks it Ghost when another process is at it."""
    fd = try_flock(c.monitor_lock_path, create=True)  # None: a live monitor, or the container went
    if fd is None:
        try:
            c.reload()
        except PydockError:
            return False
        if c.state.running and not c.state.ghost and not monitor_alive(c):
            c.state = replace(c.state, ghost=True)
        return False
    try:
        with c.locked():
            if not c.state.running:
                return False
            killed = kill_leftover(c.state.pid, c.state.pid_start)
            code = EXIT_KILLED if killed else EXIT_LOST
            from pydock.runtime.supervise import cleanup

            cleanup(rt, c)  # the same release a live monitor does when its container ends
            shutil.rmtree(rt.layout.lxc / c.id, ignore_errors=True)
            c.save_state(c.state.stopped(code))
    finally:
        os.close(fd)
    if c.auto_remove:
        try:
            rt.remove(c, force=True)
        except PydockError:
            pass
    return True


#: a container directory without a readable config.json older than this was left by a crash mid-create/remove.
INCOMPLETE_AGE = 60.0


def sweep_incomplete(rt: Runtime, container_id: str, min_age: float = INCOMPLETE_AGE) -> bool:
    """Remove the devices, names and directory of a container that never got (or lost) its config.json."""
    import time

    from pydock.runtime.container import Container as _C

    cdir = rt.layout.container(container_id)
    try:
        if time.time() - cdir.stat().st_mtime < min_age or (cdir / "config.json").exists() and \
                _readable(cdir / "config.json"):
            return False
    except FileNotFoundError:
        return False
    stub = _C(id=container_id, dir=cdir, image="", path="", args=[], config={})
    rt._destroy(stub)
    return True


def _readable(path) -> bool:
    import json

    try:
        json.loads(path.read_bytes())
        return True
    except (OSError, ValueError):
        return False


def reconcile_all(rt: Runtime) -> list[str]:
    """Repair every container with a dead monitor, release addresses of stopped ones, purge stale names."""
    repaired = []
    live = []
    for cid in rt._ids():
        try:
            c = rt._load(cid)
        except (PydockError, KeyError):
            if sweep_incomplete(rt, cid):
                repaired.append(cid)
            continue
        if c.state.running and not monitor_alive(c) and recover(rt, c):
            repaired.append(cid)
        if c.state.running:
            live.append(cid)
    if rt.networking:
        try:
            rt.network.reconcile(live)
        except PydockError:
            pass
    try:
        from pydock.links.linking import prune_names

        known = set(rt._ids())
        prune_names(rt.names, known)
    except PydockError:
        pass
    return repaired
