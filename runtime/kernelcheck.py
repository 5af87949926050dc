"""What the running kernel offers pydock, checked the way `lxc-checkconfig` does: config, then live probes."""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydock.utils.mount import supported_filesystems


@dataclass(frozen=True)
class Feature:
    """One kernel feature or host tool, whether it was found, and how we know."""

    name: str
    found: bool
    detail: str


@lru_cache(maxsize=1)
def _kernel_config() -> dict[str, str]:
    """CONFIG_* values from /proc/config.gz or /boot/config-<release>; empty when neither exists."""
    candidates = [Path("/proc/config.gz"), Path(f"/boot/config-{os.uname().release}")]
    for path in candidates:
        try:
            raw = gzip.open(path, "rt") if path.suffix == ".gz" else open(path)
            with raw as f:
                return dict(line.strip().split("=", 1) for line in f if line.startswith("CONFIG_") and "=" in line)
        except OSError:
            continue  # unreadable: try the next place a kernel config may be
    return {}


def _config_or_module(option: str, module: str) -> tuple[bool, str]:
    config = _kernel_config()
    if Path(f"/sys/module/{module}").exists():
        return True, f"module {module} loaded"
    if option in config:
        return config[option] in ("y", "m"), f"{option}={config[option]}"
    return False, f"{option} not set and module {module} not loaded"


def _namespace(name: str) -> Feature:
    present = Path(f"/proc/self/ns/{name}").exists()
    return Feature(f"namespace {name}", present, "/proc/self/ns/" + name + (" present" if present else " missing"))


def _cgroups() -> Feature:
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v2.exists():
        return Feature("cgroups", True, "cgroup2 at /sys/fs/cgroup: " + v2.read_text().strip())
    v1 = sorted(p.name for p in Path("/sys/fs/cgroup").glob("*") if (p / "tasks").exists())
    if v1:
        return Feature("cgroups", True, "cgroup v1: " + " ".join(v1))
    return Feature("cgroups", False, "no cgroup hierarchy mounted at /sys/fs/cgroup")


def device_mapper() -> Feature:
    """dm-thin-pool usable: control node present and the thin-pool target registered."""
    try:
        from pydock.devmapper.kernel.dm import thin_pool_available  # lazy: optional (builds without dm)
    except ImportError:
        found = Path("/dev/mapper/control").exists()
        detail = "/dev/mapper/control " + ("present" if found else "missing: no device-mapper in this kernel")
    else:
        found, detail = thin_pool_available()
    return Feature("device-mapper thin-pool", found, detail)


def _tool(name: str) -> Feature:
    path = shutil.which(name)
    return Feature(f"tool {name}", path is not None, path or f"{name} not on PATH")


def check_features() -> list[Feature]:
    """Every feature `pydock info` reports, in a stable order."""
    features = [_namespace(n) for n in ("mnt", "uts", "ipc", "pid", "net", "user")]
    features.append(_cgroups())
    features.append(device_mapper())
    fs = supported_filesystems()
    features.append(Feature("overlay", "overlay" in fs, "overlay in /proc/filesystems" if "overlay" in fs
                            else "overlay missing from /proc/filesystems"))
    features.append(Feature("ext4", "ext4" in fs, "ext4 in /proc/filesystems" if "ext4" in fs
                            else "ext4 missing from /proc/filesystems"))
    features.append(Feature("loop", Path("/dev/loop-control").exists(), "/dev/loop-control"))
    for label, option, module in (("veth", "CONFIG_VETH", "veth"), ("bridge", "CONFIG_BRIDGE", "bridge"),
                                  ("iptables nat", "CONFIG_NF_NAT", "nf_nat")):
        found, detail = _config_or_module(option, module)
        features.append(Feature(label, found, detail))
    for tool in ("lxc-start", "iptables", "mkfs.ext4"):
        features.append(_tool(tool))
    return features
