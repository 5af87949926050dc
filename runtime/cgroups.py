"""Which cgroup hierarchy lxc will use here (v1 hybrid or v2 unified) and the `lxc.cgroup*` keys for limits."""

from __future__ import annotations

import enum
import functools
import logging
import os
import stat
import time
from dataclasses import dataclass

from pydock.utils.errors import InvalidArgument

CGROUP_ROOT = "/sys/fs/cgroup"
log = logging.getLogger(__package__)
#: how long the processes of a container whose lxc-start was killed may take to leave its cgroups
EXIT_SETTLE = 5.0

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


#: the CFS period a `--cpus` quota is expressed in (Docker's, 100 ms)
CPU_PERIOD_US = 100_000


@functools.cache
def swap_limit_supported() -> bool:
    """Docker's SwapLimit: the kernel accounts swap per cgroup (v1 memory.memsw.*, v2 memory.swap.max;
    the latter shows only in non-root cgroups, so any one of them that has it tells)."""
    if hierarchy() is Hierarchy.V1:
        return os.path.exists(f"{CGROUP_ROOT}/memory/memory.memsw.limit_in_bytes")
    if not memory_limit_supported():
        return False
    for top, dirs, files in os.walk(CGROUP_ROOT):
        if top != CGROUP_ROOT:
            return "memory.swap.max" in files
        if not dirs:
            break
    return _probe_v2_file("memory.swap.max")


def _probe_v2_file(name: str) -> bool:
    """Whether a fresh child of the v2 root has file `name` (a cgroup made and removed to look)."""
    probe = f"{CGROUP_ROOT}/pydock-probe-{os.getpid()}"
    try:
        os.mkdir(probe)
    except OSError as err:
        log.debug("cgroup probe for %s failed: %s", name, err)
        return False
    try:
        return os.path.exists(f"{probe}/{name}")
    finally:
        os.rmdir(probe)


def swappiness_supported() -> bool:
    """Docker's MemorySwappiness: cgroup v1 only (v2 has no per-cgroup swappiness)."""
    return hierarchy() is Hierarchy.V1 and os.path.exists(f"{CGROUP_ROOT}/memory/memory.swappiness")


def limit_keys(memory: int | None, cpu_shares: int | None, *, pids_limit: int | None = None,
               cpuset_cpus: str | None = None, nano_cpus: int | None = None, memory_swap: int | None = None,
               swappiness: int | None = None) -> list[tuple[str, str]]:
    """lxc keys for a memory limit (bytes), cpu shares, a process count (`--pids-limit`), the CPUs it may
    run on (`--cpuset-cpus`), a CPU quota in billionths of CPUs (`--cpus`), memory plus swap (`--memory-swap`,
    -1 unlimited swap; v2 limits the swap alone, to the difference) and `--memory-swappiness` (v1), in the
    running hierarchy's spelling."""
    v2 = hierarchy() is Hierarchy.V2
    keys: list[tuple[str, str]] = []
    prefix = "lxc.cgroup2" if v2 else "lxc.cgroup"
    if pids_limit and pids_limit > 0:
        keys.append((f"{prefix}.pids.max", str(pids_limit)))
    if cpuset_cpus:
        keys.append((f"{prefix}.cpuset.cpus", cpuset_cpus))
    if nano_cpus:
        quota = max(1000, nano_cpus * CPU_PERIOD_US // 1_000_000_000)
        if v2:
            keys.append(("lxc.cgroup2.cpu.max", f"{quota} {CPU_PERIOD_US}"))
        else:
            keys += [("lxc.cgroup.cpu.cfs_period_us", str(CPU_PERIOD_US)), ("lxc.cgroup.cpu.cfs_quota_us", str(quota))]
    if memory:
        if v2:
            keys.append(("lxc.cgroup2.memory.max", str(memory)))
        else:
            keys.append(("lxc.cgroup.memory.limit_in_bytes", str(memory)))
            keys.append(("lxc.cgroup.memory.soft_limit_in_bytes", str(memory)))
    if memory_swap and (memory or memory_swap == -1):  # after the memory limit: memsw may not be below it
        if v2:
            keys.append(("lxc.cgroup2.memory.swap.max", "max" if memory_swap == -1 else str(memory_swap - (memory or 0))))
        else:
            keys.append(("lxc.cgroup.memory.memsw.limit_in_bytes", str(memory_swap)))
    if swappiness is not None and swappiness >= 0:
        keys.append(("lxc.cgroup.memory.swappiness", str(swappiness)))
    if cpu_shares:
        if v2:
            keys.append(("lxc.cgroup2.cpu.weight", str(shares_to_weight(cpu_shares))))
        else:
            keys.append(("lxc.cgroup.cpu.shares", str(cpu_shares)))
    return keys


def write_limits(pid: int, keys: list[tuple[str, str]]) -> None:
    """Write `limit_keys`' settings into the cgroups of the running process `pid` (`update` of a running
    container). A write the kernel refuses for its order (v1's memory.memsw.limit_in_bytes may not go
    below memory.limit_in_bytes, nor that above it) is retried once the others are in."""
    where = process_cgroups(pid)
    if not where:
        raise InvalidArgument("the container is not running any more; its cgroups are gone")
    pending = []
    for key, value in keys:
        name = key.split(".", 2)[2]
        directory = where.get("") if hierarchy() is Hierarchy.V2 else where.get(name.split(".")[0])
        if directory is None:
            raise InvalidArgument(f"cannot update {name}: its cgroup controller is not mounted")
        pending.append((f"{directory}/{name}", value))
    for attempt in (1, 2):
        failed = []
        for path, value in pending:
            try:
                with open(path, "w") as f:
                    f.write(value)
            except OSError as err:
                if attempt == 2:
                    raise InvalidArgument(f"cannot write {value} to {path}: {err.strerror}") from None
                failed.append((path, value))
        if not failed:
            return
        pending = failed


def controller_available(name: str) -> bool:
    """Whether the kernel offers cgroup controller `name` in the hierarchy lxc uses."""
    if hierarchy() is Hierarchy.V2:
        try:
            with open(f"{CGROUP_ROOT}/cgroup.controllers") as f:
                return name in f.read().split()
        except OSError:
            return False
    return os.path.isdir(f"{CGROUP_ROOT}/{name}")


def parse_cpuset(text: str, available: int | None = None) -> str:
    """`--cpuset-cpus` (`0-2,4`): checked against the CPUs this machine has, as Docker does."""
    if not controller_available("cpuset"):
        raise InvalidArgument("--cpuset-cpus needs the cpuset cgroup controller, which this kernel does not offer")
    count = available or os.cpu_count() or 1
    try:
        cpus: set[int] = set()
        for part in text.split(","):
            low, _, high = part.partition("-")
            first, last = int(low), int(high or low)
            if first > last or first < 0:
                raise ValueError
            cpus.update(range(first, last + 1))
    except ValueError:
        raise InvalidArgument(f"Invalid value {text} for cpuset cpus") from None
    if max(cpus) >= count:
        raise InvalidArgument(f"Requested CPUs are not available - requested {text}, available: 0-{count - 1}")
    return text


def parse_cpus(value: str | float, available: int | None = None) -> int:
    """`--cpus 1.5` -> billionths of CPUs (Docker's NanoCpus), within what this machine has."""
    count = available or os.cpu_count() or 1
    try:
        nano = round(float(value) * 1e9)
    except ValueError:
        raise InvalidArgument(f"invalid argument {value!r} for --cpus: a number of CPUs, e.g. 1.5") from None
    if not 10_000_000 <= nano <= count * 1_000_000_000:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {count:.2f}, as there are only {count} CPUs available")
    return nano


def device_keys(extra: tuple[str, ...] = (), *, privileged: bool = False) -> list[tuple[str, str]]:
    """Deny every device, then allow Docker's list and `extra` (`c 10:229 rwm` rules of `--device`);
    a privileged container may use every device."""
    prefix = "lxc.cgroup2" if hierarchy() is Hierarchy.V2 else "lxc.cgroup"
    if privileged:
        return [(f"{prefix}.devices.allow", "a")]
    return [(f"{prefix}.devices.deny", "a"), *((f"{prefix}.devices.allow", d) for d in (*ALLOWED_DEVICES, *extra))]


@dataclass(frozen=True)
class Device:
    """`--device HOST[:CONTAINER][:PERMISSIONS]`: a host device node made usable in the container."""

    host: str
    container: str
    permissions: str
    kind: str      # "c" or "b"
    major: int
    minor: int

    @property
    def rule(self) -> str:
        """Its device cgroup rule (`c 10:229 rwm`)."""
        return f"{self.kind} {self.major}:{self.minor} {self.permissions}"

    def to_json(self) -> dict[str, str]:
        return {"PathOnHost": self.host, "PathInContainer": self.container, "CgroupPermissions": self.permissions}


#: what Docker's HostDevices leaves out of a privileged container's /dev: directories of other mounts
#: or the container's own (pts, shm, mqueue), and nodes the container gets its own of
_HOST_DEVICE_SKIP_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})
_OWN_NODES = frozenset({"console", "null", "zero", "full", "random", "urandom", "tty", "ptmx"})


def host_devices(root: str = "/dev") -> list[Device]:
    """Every device node of the host under /dev (a privileged container's /dev, as Docker's), sorted;
    symlinks and the nodes the container has its own of are left out."""
    out: list[Device] = []
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not (top == root and d in _HOST_DEVICE_SKIP_DIRS))
        for name in sorted(files):
            path = os.path.join(top, name)
            if top == root and name in _OWN_NODES:
                continue
            try:
                st = os.lstat(path)
            except OSError as err:
                log.debug("host device %s skipped: %s", path, err)
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append(Device(path, path, "rwm", "c" if stat.S_ISCHR(st.st_mode) else "b",
                                  os.major(st.st_rdev), os.minor(st.st_rdev)))
    return out


def parse_device(spec: str) -> Device:
    """Check `--device` against the host: a character or block device node (not a directory of them)."""
    parts = spec.split(":")
    host = parts[0]
    container = parts[1] if len(parts) > 1 and parts[1].startswith("/") else host
    permissions = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
    if len(parts) > 3 or not host.startswith("/") or not permissions or set(permissions) - set("rwm"):
        raise InvalidArgument(f"invalid device specification: {spec} (HOST[:CONTAINER][:rwm])")
    try:
        st = os.stat(host)
    except OSError as err:
        raise InvalidArgument(f"error gathering device information while adding custom device {host!r}: "
                              f"{err.strerror}") from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise InvalidArgument(f"{host} is not a device node (a directory of devices is not supported)")
    if not os.path.normpath(container).startswith("/dev/"):
        raise InvalidArgument(f"invalid device specification: {spec} (the container path must be under /dev)")
    return Device(host, os.path.normpath(container), permissions, "c" if stat.S_ISCHR(st.st_mode) else "b",
                  os.major(st.st_rdev), os.minor(st.st_rdev))


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


def hierarchy_roots() -> list[str]:
    """The root directory of every cgroup hierarchy lxc makes a container's cgroups in."""
    if hierarchy() is Hierarchy.V2:
        return [CGROUP_ROOT]
    try:
        names = sorted(os.listdir(CGROUP_ROOT))
    except FileNotFoundError:
        return []
    return [f"{CGROUP_ROOT}/{n}" for n in names if os.path.isdir(f"{CGROUP_ROOT}/{n}")]


def remove_lxc_cgroups(name: str, settle: float = 0.0) -> list[str]:
    """Remove the cgroups lxc made for container `name` (`lxc.payload.<name>`, `lxc.monitor.<name>`, and
    any below them) in every hierarchy. lxc-start removes them as it exits; one killed outright leaves
    them behind for good. A cgroup still holding a process stays, after waiting up to `settle` seconds
    for it to empty: the container's processes die with lxc-start, but not in the same instant. The
    cgroups removed."""
    deadline = time.monotonic() + settle
    removed: list[str] = []
    while True:
        busy = _remove_empty_lxc_cgroups(name, removed)
        if not busy or time.monotonic() >= deadline:
            for directory, err in busy:
                log.debug("cgroup %s stays: %s", directory, err)
            return removed
        time.sleep(0.02)


def _remove_empty_lxc_cgroups(name: str, removed: list[str]) -> list[tuple[str, OSError]]:
    """One pass of `remove_lxc_cgroups`, adding what went to `removed`: the cgroups that stayed, with why."""
    busy = []
    for root in hierarchy_roots():
        for top in (f"{root}/lxc.payload.{name}", f"{root}/lxc.monitor.{name}"):
            if not os.path.isdir(top):
                continue
            for directory, _, _ in os.walk(top, topdown=False):  # the deepest first: only an empty one goes
                try:
                    os.rmdir(directory)
                    removed.append(directory)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    busy.append((directory, err))
    return busy


def read_text(path: str) -> str | None:
    """A cgroup file's content, or None when it (or its cgroup) does not exist."""
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, OSError):
        return None
