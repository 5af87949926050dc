"""Which cgroup hierarchy lxc will use here (v1 hybrid or v2 unified) and the `lxc.cgroup*` keys for limits."""

from __future__ import annotations

import enum
import functools
import os

CGROUP_ROOT = "/sys/fs/cgroup"

#: Docker's default device allowlist (runc's specconv.AllowedDevices): mknod of any node (but no
#: access to it), null, zero, full, random, urandom, /dev/tty, pts, ptmx and tun. Unlike Docker 0.7's
#: list there is no c 5:1 (the host's /dev/console) nor c 4:0/4:1 (its virtual terminals): a node for
#: them carried by an image can't be opened. The container's /dev/console is a pty (136:*).
ALLOWED_DEVICES = ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                   "c 5:0 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm")


class Hierarchy(enum.Enum):
    V1 = "cgroup"     # lxc.cgroup.<controller file>
    V2 = "cgroup2"    # lxc.cgroup2.<controller file>


@functools.cache
def hierarchy() -> Hierarchy:
    """V2 when /sys/fs/cgroup itself is the cgroup2 root (unified, e.g. inside UML); V1 for legacy and
    hybrid hosts (whose cgroup2 tree sits at /sys/fs/cgroup/unified). Only a cgroup2 root has cgroup.controllers."""
    return Hierarchy.V2 if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers") else Hierarchy.V1


def memory_limit_supported() -> bool:
    """Docker's MemoryLimit capability: the memory controller is available."""
    if hierarchy() is Hierarchy.V2:
        try:
            with open(f"{CGROUP_ROOT}/cgroup.controllers") as f:
                return "memory" in f.read().split()
        except OSError:
            return False
    return os.path.exists(f"{CGROUP_ROOT}/memory/memory.limit_in_bytes")


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] -> v2 cpu.weight [1, 10000] (the conversion runc/crun use)."""
    shares = max(2, min(262144, shares))
    return 1 + ((shares - 2) * 9999) // 262142


def limit_keys(memory: int | None, cpu_shares: int | None) -> list[tuple[str, str]]:
    """lxc keys for a memory limit (bytes) and cpu shares, in the running hierarchy's spelling."""
    v2 = hierarchy() is Hierarchy.V2
    keys: list[tuple[str, str]] = []
    if memory:
        if v2:
            keys.append(("lxc.cgroup2.memory.max", str(memory)))
        else:
            keys.append(("lxc.cgroup.memory.limit_in_bytes", str(memory)))
            keys.append(("lxc.cgroup.memory.soft_limit_in_bytes", str(memory)))
    if cpu_shares:
        if v2:
            keys.append(("lxc.cgroup2.cpu.weight", str(shares_to_weight(cpu_shares))))
        else:
            keys.append(("lxc.cgroup.cpu.shares", str(cpu_shares)))
    return keys


def device_keys() -> list[tuple[str, str]]:
    """Deny every device, then allow Docker's list."""
    prefix = "lxc.cgroup2" if hierarchy() is Hierarchy.V2 else "lxc.cgroup"
    return [(f"{prefix}.devices.deny", "a"), *((f"{prefix}.devices.allow", d) for d in ALLOWED_DEVICES)]


def process_cgroups(pid: int) -> dict[str, str]:
    """Where process `pid` is: controller -> its cgroup directory (v1: one per mounted controller, the
    v2 tree as "" ; v2 unified: "" only). Empty if the process is gone."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    unified = hierarchy() is Hierarchy.V2
    out: dict[str, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if not controllers:  # the cgroup2 line
            base = CGROUP_ROOT if unified else f"{CGROUP_ROOT}/unified"
            out[""] = f"{base}{path}".rstrip("/")
            continue
        for controller in controllers.split(","):
            name = controller.removeprefix("name=")
            if os.path.isdir(f"{CGROUP_ROOT}/{name}"):
                out[name] = f"{CGROUP_ROOT}/{name}{path}".rstrip("/")
    return out


def read_text(path: str) -> str | None:
    """A cgroup file's content, or None when it (or its cgroup) does not exist."""
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, OSError):
        return None
