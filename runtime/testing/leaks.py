"""Snapshots of host resources pydock can leak (mounts, loop and dm devices, lxc processes, links,
iptables rules), so a test session can prove it left nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pydock.utils.mounttable import mountinfo

_BUILTIN_CHAINS = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}
_LXC_COMMS = {"lxc-start", "lxc-execute", "init.lxc", "init.lxc.static", "lxc-init"}


@dataclass(frozen=True)
class HostSnapshot:
    """The leakable state of the host at one moment; `leaks_since(earlier)` is what appeared in between."""

    mounts: frozenset[str] = field(default_factory=frozenset)
    loops: frozenset[str] = field(default_factory=frozenset)
    dm_devices: frozenset[str] = field(default_factory=frozenset)
    lxc_processes: frozenset[str] = field(default_factory=frozenset)
    links: frozenset[str] = field(default_factory=frozenset)
    iptables: frozenset[str] = field(default_factory=frozenset)

    def leaks_since(self, before: HostSnapshot) -> dict[str, list[str]]:
        found = {}
        for kind in ("mounts", "loops", "dm_devices", "lxc_processes", "links", "iptables"):
            new = sorted(getattr(self, kind) - getattr(before, kind))
            if new:
                found[kind] = new
        return found


#: iproute2's `ip netns add` makes this directory a shared mount the first time and keeps it for good
#: (each namespace is a mount below it, and those do count)
_PERSISTENT_MOUNTS = {"/run/netns", "/var/run/netns"}


def _mounts() -> frozenset[str]:
    return frozenset(f"{e.mountpoint} ({e.fstype} {e.source})" for e in mountinfo()
                     if e.mountpoint not in _PERSISTENT_MOUNTS)


def _loops() -> frozenset[str]:
    found = set()
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            found.add(f"/dev/{backing.parent.parent.name} -> {backing.read_text().strip()}")
        except OSError:
            continue
    return frozenset(found)


def _dm_devices() -> frozenset[str]:
    found = set()
    for name in Path("/sys/block").glob("dm-*/dm/name"):
        try:
            found.add(name.read_text().strip())
        except OSError:
            continue
    return frozenset(found)


def _lxc_processes() -> frozenset[str]:
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if comm not in _LXC_COMMS:
                continue
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue  # ended meanwhile
        state, ppid = stat[stat.rindex(b")") + 2:].split()[:2]
        if state == b"Z" and ppid == b"1":
            continue  # exited, orphaned, waiting for the machine's init to reap it: nothing is left running
        found.add(f"{pid} {comm}")
    return frozenset(found)


def _links() -> frozenset[str]:
    try:
        return frozenset(os.listdir("/sys/class/net"))
    except OSError:
        return frozenset()


def _iptables() -> frozenset[str]:
    if shutil.which("iptables-save") is None:
        return frozenset()
    try:
        out = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    table = ""
    rules = set()
    for line in out.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A"):
            rules.add(f"{table} {line}")
        elif line.startswith(":") and line.split()[0][1:] not in _BUILTIN_CHAINS:
            rules.add(f"{table} chain {line.split()[0][1:]}")
    return frozenset(rules)


def snapshot() -> HostSnapshot:
    return HostSnapshot(_mounts(), _loops(), _dm_devices(), _lxc_processes(), _links(), _iptables())


def format_leaks(leaks: dict[str, list[str]]) -> str:
    lines = []
    for kind, items in leaks.items():
        lines.append(f"leaked {kind}:")
        lines.extend(f"  {item}" for item in items)
    return "\n".join(lines)
