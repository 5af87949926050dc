"""`update` (`container update`, `POST /containers/{id}/update`): change a container's resource limits
and restart policy, running or not. The new values go into its Config/HostConfig (the next start keeps
them) and, while it runs, into its cgroups at once, as Docker's update does."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydock.runtime import cgroups
from pydock.runtime.container import Container
from pydock.runtime.options import check_memory_swap, parse_memory, parse_memory_swap
from pydock.runtime.restart import RestartPolicy
from pydock.utils.errors import Conflict, InvalidArgument

if TYPE_CHECKING:
    from pydock.runtime.runtime import Runtime

log = logging.getLogger(__package__)


@dataclass(frozen=True)
class UpdateOptions:
    """What `update` may change (None: left as it is), in `run`'s spellings."""

    memory: int | str | None = None              # --memory
    memory_swap: int | str | None = None         # --memory-swap (-1: unlimited swap)
    cpus: str | float | None = None              # --cpus
    cpu_shares: int | None = None                # --cpu-shares
    cpuset_cpus: str | None = None               # --cpuset-cpus
    pids_limit: int | None = None                # --pids-limit (0 or -1: unlimited)
    restart: str | None = None                   # --restart

    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)


def update_container(rt: Runtime, c: Container, opts: UpdateOptions) -> list[str]:
    """Check everything first, then record and (running) apply it; Docker's warnings (none)."""
    if opts.empty():
        raise InvalidArgument("You must provide one or more flags when using this command.")
    memory = parse_memory(opts.memory)
    swap = parse_memory_swap(opts.memory_swap)
    nano = cgroups.parse_cpus(opts.cpus) if opts.cpus not in (None, "") else None
    cpuset = cgroups.parse_cpuset(opts.cpuset_cpus) if opts.cpuset_cpus else None
    if opts.cpu_shares is not None and opts.cpu_shares < 0:
        raise InvalidArgument("CPU shares must be a positive number")
    if opts.pids_limit is not None and opts.pids_limit < -1:
        raise InvalidArgument(f"Invalid PIDs limit {opts.pids_limit}: a count, or 0 or -1 for unlimited")
    policy = RestartPolicy.parse(opts.restart) if opts.restart is not None else None
    with c.locked() as c:
        cfg, hc = c.config, c.hostconfig
        if policy is not None and policy.restarts and hc.get("AutoRemove"):
            raise Conflict("Restart policy cannot be updated because AutoRemove is enabled for the container")
        current_swap = int(cfg.get("MemorySwap") or 0)
        if memory and swap is None and current_swap > 0 and memory > current_swap:
            raise Conflict("Memory limit should be smaller than already set memoryswap limit, update the "
                           "memoryswap at the same time")
        new_memory = memory or int(cfg.get("Memory") or 0)
        if swap is not None:
            check_memory_swap(new_memory, swap, swap_supported=cgroups.swap_limit_supported(),
                              swappiness_supported=cgroups.swappiness_supported(), update=True)
            if swap > 0 and not new_memory:
                raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
        keys = cgroups.limit_keys(new_memory if memory or swap is not None else None, opts.cpu_shares or None,
                                  pids_limit=opts.pids_limit, cpuset_cpus=cpuset, nano_cpus=nano,
                                  memory_swap=swap)
        if opts.pids_limit is not None and opts.pids_limit <= 0:
            keys.append((("lxc.cgroup2" if cgroups.hierarchy() is cgroups.Hierarchy.V2 else "lxc.cgroup")
                         + ".pids.max", "max"))
        if keys and c.state.running:
            cgroups.write_limits(rt._init_pid(c), keys)
        _record(c, memory, swap, nano, cpuset, opts, policy)
        c.save()
    return []


def _record(c: Container, memory: int | None, swap: int | None, nano: int | None, cpuset: str | None,
            opts: UpdateOptions, policy: RestartPolicy | None) -> None:
    """Where `create` keeps each value (Config for memory and shares, as Docker 0.7; HostConfig else)."""
    changes: dict[str, tuple[dict[str, Any], Any]] = {
        "Memory": (c.config, memory), "MemorySwap": (c.config, swap), "CpuShares": (c.config, opts.cpu_shares),
        "NanoCpus": (c.hostconfig, nano), "CpusetCpus": (c.hostconfig, cpuset),
        "PidsLimit": (c.hostconfig, None if opts.pids_limit is None else opts.pids_limit if opts.pids_limit > 0
                      else 0),
        "RestartPolicy": (c.hostconfig, policy.to_json() if policy is not None else None),
    }
    for key, (where, value) in changes.items():
        if value is not None:
            where[key] = value
    if c.hostconfig.get("PidsLimit") == 0:
        c.hostconfig["PidsLimit"] = None  # unlimited, as create records it
