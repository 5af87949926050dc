"""Docker's default capability set: the only capabilities a container's processes may ever hold.

lxc keeps exactly these in the bounding set (`lxc.cap.keep`); a root command then has them effective
and permitted, and inheritable and ambient stay empty (as in Docker since CVE-2022-24769, where a
non-empty inheritable set let file capabilities raise a process above the container's).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydock.utils.errors import InvalidArgument

log = logging.getLogger(__package__)

#: capability numbers (linux/capability.h) of the names pydock uses
CAP_NUMBERS = {
    "chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "fsetid": 4, "kill": 5, "setgid": 6,
    "setuid": 7, "setpcap": 8, "linux_immutable": 9, "net_bind_service": 10, "net_broadcast": 11,
    "net_admin": 12, "net_raw": 13, "ipc_lock": 14, "ipc_owner": 15, "sys_module": 16, "sys_rawio": 17,
    "sys_chroot": 18, "sys_ptrace": 19, "sys_pacct": 20, "sys_admin": 21, "sys_boot": 22, "sys_nice": 23,
    "sys_resource": 24, "sys_time": 25, "sys_tty_config": 26, "mknod": 27, "lease": 28, "audit_write": 29,
    "audit_control": 30, "setfcap": 31, "mac_override": 32, "mac_admin": 33, "syslog": 34, "wake_alarm": 35,
    "block_suspend": 36, "audit_read": 37, "perfmon": 38, "bpf": 39, "checkpoint_restore": 40,
}

#: Docker's default (moby oci/caps/defaults.go), in its order
DEFAULT_CAPS = ("chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
                "net_bind_service", "net_raw", "sys_chroot", "mknod", "audit_write", "setfcap")


def mask(names: tuple[str, ...] | list[str] | set[str]) -> int:
    """The bit mask of capability `names` (as /proc/<pid>/status prints it in hex)."""
    bits = 0
    for name in names:
        bits |= 1 << CAP_NUMBERS[name]
    return bits


DEFAULT_MASK = mask(DEFAULT_CAPS)  # 0xa80425fb


def _name(text: str) -> str:
    """`NET_ADMIN`, `cap_net_admin` or `CAP_NET_ADMIN` -> `net_admin`; `ALL` -> `all`."""
    name = text.strip().lower().removeprefix("cap_")
    if name != "all" and name not in CAP_NUMBERS:
        raise InvalidArgument(f"unknown capability: \"{text}\"")
    return name


def kernel_caps() -> tuple[str, ...]:
    """Every capability this kernel knows (up to /proc/sys/kernel/cap_last_cap): a privileged
    container's set, as Docker's GetAllCapabilities."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError) as err:
        log.debug("cap_last_cap unreadable (%s); every capability pydock knows counts", err)
        last = max(CAP_NUMBERS.values())
    return tuple(name for name, number in CAP_NUMBERS.items() if number <= last)


def resolve(add: Sequence[str] = (), drop: Sequence[str] = (), *, privileged: bool = False) -> tuple[str, ...]:
    """The capabilities a container holds with `--cap-add`/`--cap-drop`, as Docker computes them:
    the default set plus `add` minus `drop`; `ALL` in `add` starts from every capability, `ALL` in
    `drop` from none (then `add` still adds). `--privileged` holds every capability whatever the
    others say (Docker's TweakCapabilities). Unknown names raise InvalidArgument."""
    added, dropped = [_name(n) for n in add], [_name(n) for n in drop]
    if privileged:
        return kernel_caps()
    if "all" in added:
        base = list(CAP_NUMBERS)
    elif "all" in dropped:
        base = [n for n in CAP_NUMBERS if n in added]
    else:
        base = [*DEFAULT_CAPS, *(n for n in CAP_NUMBERS if n in added and n not in DEFAULT_CAPS)]
    return tuple(n for n in base if n not in dropped or n in added and "all" in dropped)
