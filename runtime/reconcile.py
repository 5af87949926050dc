"""Crash recovery: a container marked running whose supervising process is gone (kill -9, host crash).

Liveness is the monitor lock (monitorlock.py); the recorded (pid, start time) pairs only say which
lxc-start to finish off.

Policy (documented in README/`ps`): when the monitor is gone, a container still running is killed
(there is no one left to collect its output or status) and recorded as `Exit 137`; one that had
already ended is recorded as `Exit -1` (status unknown). Then its run is finished exactly as its
monitor would have (supervise.finish: address, rootfs, lxc state released; a `--rm` container
removed). A container whose recovery is under way in another process shows as `Ghost`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from pydock.runtime import cgroups, freezer, monitorlock, netattach, removal
from pydock.runtime.container import Container
from pydock.runtime.launcher import container_init, stray_processes, wait_gone
from pydock.runtime.state import EXIT_KILLED, EXIT_LOST
from pydock.utils.process import proc_start_time
from pydock.utils.errors import PydockError

if TYPE_CHECKING:
    from pydock.runtime.runtime import Runtime

log = logging.getLogger(__package__)

#: a container directory without a readable config.json older than this was left by a crash mid-create/remove.
INCOMPLETE_AGE = 60.0


def kill_leftover(name: str, pid: int, pid_start: int) -> bool:
    """SIGKILL the container's PID 1 (ending its whole pid namespace), then lxc-start, then anything
    lxc left in the container's cgroups without them; True if lxc-start still ran."""
    ran = pid > 0 and proc_start_time(pid) == pid_start
    if ran:
        init = container_init(pid)
        if init is not None:
            try:
                os.kill(init, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it ended by itself meanwhile
            _thaw(init, name)
        if not wait_gone(pid, pid_start, 5.0):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it ended by itself meanwhile
            wait_gone(pid, pid_start, 5.0)
    strays = stray_processes(name)
    for stray in strays:
        try:
            os.kill(stray, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it ended by itself meanwhile
    if strays:
        _thaw(strays[0], name)
        log.info("container %s: killed %d process(es) lxc left behind", name[:12], len(strays))
    return ran


def _thaw(pid: int, name: str) -> None:
    """Thaw the cgroup of `pid` if it is frozen (a paused container): a frozen process takes the SIGKILL
    it was sent only once thawed, and would otherwise stay, frozen, for good."""
    try:
        if freezer.is_frozen(pid):
            freezer.set_frozen(pid, False, f"Container {name[:12]}")
    except PydockError as err:
        log.warning("container %s: could not thaw it to end it: %s", name[:12], err)


def recover(rt: Runtime, c: Container) -> bool:
    """Repair `c` if its monitor is dead; True if repaired. Marks it Ghost when another process is at it."""
    from pydock.runtime.supervise import finish  # lazy: the launch machinery, needed only after a crash

    fd = monitorlock.take_if_free(c.monitor_lock_path)
    if fd is None:  # a live monitor, another process repairing it, or the container went
        try:
            c.reload()
        except PydockError:
            return False
        if c.state.running and not c.state.ghost and not monitorlock.held(c.monitor_lock_path):
            c.state = replace(c.state, ghost=True)
        return False
    try:
        with c.locked():
            if not c.state.running:
                return False
        killed = kill_leftover(c.id, c.state.pid, c.state.pid_start)
        cgroups.remove_lxc_cgroups(c.id, settle=cgroups.EXIT_SETTLE)  # an lxc-start killed outright leaves them behind
        shutil.rmtree(rt.layout.lxc / c.id, ignore_errors=True)
        finish(rt, c, EXIT_KILLED if killed else EXIT_LOST, fd)
    finally:
        os.close(fd)
    return True


def sweep_incomplete(rt: Runtime, container_id: str, min_age: float = INCOMPLETE_AGE) -> bool:
    """Remove the devices, names and directory of a container that never got (or lost) its config.json."""
    cdir = rt.layout.container(container_id)
    try:
        if time.time() - cdir.stat().st_mtime < min_age or _readable(cdir / "config.json"):
            return False
    except FileNotFoundError:
        return False
    stub = Container(id=container_id, dir=cdir, image="", path="", args=[], config={})
    removal.destroy(rt, stub)
    return True


def _readable(path) -> bool:
    try:
        json.loads(path.read_bytes())
        return True
    except (OSError, ValueError):
        return False


def reconcile_all(rt: Runtime) -> list[str]:
    """Repair every container with a dead monitor, release addresses of stopped ones, purge stale names."""
    from pydock.links.linking import prune_names  # lazy: only `reconcile` prunes names

    repaired = []
    live = []
    for cid in rt.container_ids():
        try:
            c = rt.load(cid)
        except (PydockError, KeyError):
            if sweep_incomplete(rt, cid):
                repaired.append(cid)
            continue
        if c.state.running and not monitorlock.held(c.monitor_lock_path) and recover(rt, c):
            repaired.append(cid)
        if c.dir.exists() and c.state.running:
            live.append(cid)
    if rt.networking:
        try:
            rt.network.reconcile(live)
        except PydockError as err:
            log.warning("reconcile: the network could not be reconciled: %s", err)
    if netattach.has_networks(rt):
        try:
            netattach.refresh_hosts(rt, rt.user_networks.reconcile(live))
        except PydockError as err:
            log.warning("reconcile: the user networks could not be reconciled: %s", err)
    try:
        prune_names(rt.names, set(rt.container_ids()))
    except PydockError as err:
        log.warning("reconcile: stale names could not be pruned: %s", err)
    return repaired
