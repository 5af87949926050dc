"""`stats`: a running container's resource use, read from its cgroup (v1 controllers on a hybrid host,
the unified tree on cgroup2) and from its network namespace (/proc/<its PID 1>/net/dev), as Docker
computes it: CPU % over an interval against the whole host's CPU time, memory without the page cache
that could be dropped (inactive files), the limit capped at the host's memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydock.runtime import cgroups
from pydock.runtime.cgroups import Hierarchy

_NS = 1_000_000_000


@dataclass(frozen=True)
class Sample:
    """One reading of a container's counters."""

    cpu_ns: int          # CPU time its processes used
    system_ns: int       # CPU time the whole host used (all CPUs), for the percentage
    online_cpus: int
    mem_usage: int       # bytes, without inactive page cache
    mem_limit: int       # bytes (the host's memory when unlimited)
    net_rx: int
    net_tx: int
    blk_read: int
    blk_write: int
    pids: int

    @property
    def mem_percent(self) -> float:
        return 100.0 * self.mem_usage / self.mem_limit if self.mem_limit else 0.0


def cpu_percent(before: Sample, after: Sample) -> float:
    """Docker's CPU %: the container's share of the host's CPU time between the samples, times the CPUs."""
    cpu, system = after.cpu_ns - before.cpu_ns, after.system_ns - before.system_ns
    if cpu <= 0 or system <= 0:
        return 0.0
    return 100.0 * cpu / system * after.online_cpus


def _int(text: str | None) -> int:
    try:
        return int((text or "").split()[0])
    except (ValueError, IndexError):
        return 0


def _keyed(text: str | None) -> dict[str, int]:
    out = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def _host_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass  # no /proc: no cap, the cgroup's figure stands
    return 0


def _system_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:9]  # user nice system idle iowait irq softirq steal
    return sum(int(x) for x in fields) * _NS // os.sysconf("SC_CLK_TCK")


def _net(pid: int) -> tuple[int, int]:
    rx = tx = 0
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        name, _, data = line.partition(":")
        if name.strip() == "lo":
            continue
        values = data.split()
        if len(values) >= 9:
            rx, tx = rx + int(values[0]), tx + int(values[8])
    return rx, tx


def _blkio_v1(text: str | None) -> tuple[int, int]:
    read = write = 0
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in ("Read", "Write"):
            if parts[1] == "Read":
                read += int(parts[2])
            else:
                write += int(parts[2])
    return read, write


def _io_v2(text: str | None) -> tuple[int, int]:
    read = write = 0
    for line in (text or "").splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                write += int(value)
    return read, write


def sample(init_pid: int) -> Sample | None:
    """The counters of the container whose PID 1 is `init_pid` (None once it is gone)."""
    where = cgroups.process_cgroups(init_pid)
    if not where:
        return None
    read = cgroups.read_text
    if cgroups.hierarchy() is Hierarchy.V2:
        base = where.get("", "")
        cpu_ns = _keyed(read(f"{base}/cpu.stat")).get("usage_usec", 0) * 1000
        memstat = _keyed(read(f"{base}/memory.stat"))
        usage = _int(read(f"{base}/memory.current")) - memstat.get("inactive_file", 0)
        limit_text = (read(f"{base}/memory.max") or "max").strip()
        limit = int(limit_text) if limit_text.isdigit() else 0
        blk = _io_v2(read(f"{base}/io.stat"))
        pids = _int(read(f"{base}/pids.current"))
    else:
        cpu_ns = _int(read(f"{where.get('cpuacct', '')}/cpuacct.usage"))
        mem = where.get("memory", "")
        memstat = _keyed(read(f"{mem}/memory.stat"))
        usage = _int(read(f"{mem}/memory.usage_in_bytes")) - memstat.get("total_inactive_file", 0)
        limit = _int(read(f"{mem}/memory.limit_in_bytes"))
        blk = _blkio_v1(read(f"{where.get('blkio', '')}/blkio.throttle.io_service_bytes"))
        pids = _int(read(f"{where.get('pids', '')}/pids.current"))
    host = _host_memory()
    if host and (not limit or limit > host):
        limit = host
    rx, tx = _net(init_pid)
    return Sample(cpu_ns=cpu_ns, system_ns=_system_ns(), online_cpus=os.cpu_count() or 1, mem_usage=max(0, usage),
                  mem_limit=limit, net_rx=rx, net_tx=tx, blk_read=blk[0], blk_write=blk[1], pids=pids)
