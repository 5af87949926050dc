"""Render `config.lxc` (lxc 5 key syntax) for one container launch: Docker 0.7's template, translated.

Pure function of a `LxcSpec`; knows nothing of images, storage or the CLI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydock.runtime import caps, cgroups
from pydock.utils.errors import InvalidArgument

#: /proc files hidden behind /dev/null (runc's maskedPaths); `optional` because not every kernel has each.
MASKED_PROC_FILES = ("kcore", "keys", "timer_list", "timer_stats", "sched_debug", "latency_stats")
#: directories hidden behind an empty read-only tmpfs (runc's maskedPaths).
MASKED_DIRS = ("proc/acpi", "proc/asound", "proc/scsi", "sys/firmware", "sys/devices/virtual/powercap")
#: a network namespace of the container's own with only `lo`, up (`--net none`, as under Docker)
EMPTY_NETWORK = (("lxc.net.0.type", "empty"), ("lxc.net.0.flags", "up"))
#: every container's /dev/shm, Docker's default --shm-size
SHM_SIZE = 64 << 20
#: /proc directories made read-only (runc's readonlyPaths; /proc/sys and sysrq-trigger come from proc:mixed).
READONLY_PROC_DIRS = ("bus", "fs", "irq")


def masked_paths() -> list[str]:
    """What `inspect` shows as HostConfig.MaskedPaths: the paths hidden from every container."""
    return [f"/proc/{name}" for name in MASKED_PROC_FILES] + [f"/{path}" for path in MASKED_DIRS]


def readonly_paths() -> list[str]:
    """HostConfig.ReadonlyPaths: the paths every container sees read-only."""
    return [f"/proc/{name}" for name in READONLY_PROC_DIRS] + ["/proc/sys", "/proc/sysrq-trigger"]


#: where `--init`'s binary appears in the container (on lxc's /dev tmpfs: nothing lands in the image's tree)
INIT_PATH = "/dev/init"


@dataclass(frozen=True)
class Bind:
    """A host path bind-mounted at a container path (`target` absolute inside the container)."""

    source: Path
    target: str
    readonly: bool = True
    is_file: bool = True
    #: let lxc create the target: only for targets in lxc's own fresh /dev (autodev), where no image
    #: symlink can lead it out; every other target pydock makes inside the rootfs (rootpath.prepare_binds)
    lxc_creates: bool = False


@dataclass(frozen=True)
class LxcSpec:
    """Everything `config.lxc` says about one launch."""

    hostname: str
    rootfs: Path
    network: tuple[tuple[str, str], ...] = ()    # (): EMPTY_NETWORK
    binds: tuple[Bind, ...] = ()
    env: tuple[str, ...] = ()
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    cwd: str = "/"
    memory: int | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None                # --pids-limit (None, 0 or -1: unlimited)
    cpuset_cpus: str | None = None               # --cpuset-cpus
    nano_cpus: int | None = None                 # --cpus, in billionths
    memory_swap: int | None = None               # --memory-swap (memory + swap; -1 unlimited swap)
    swappiness: int | None = None                # --memory-swappiness (cgroup v1)
    #: PR_SET_NO_NEW_PRIVS for the command (`--security-opt no-new-privileges`)
    no_new_privs: bool = False
    #: lxc's seccomp policy file (seccomp.to_lxc), None: unconfined
    seccomp: Path | None = None
    #: a pty slave (host devpts) bind-mounted as the container's /dev/console
    console: Path | None = None
    #: `--init`: the init binary bind-mounted read-only at /dev/init
    init: Path | None = None
    #: the capabilities kept (caps.resolve of --cap-add/--cap-drop); every other one is dropped
    caps: tuple[str, ...] = caps.DEFAULT_CAPS
    #: `--read-only`: the rootfs mounted read-only (volumes, binds and tmpfs mounts stay as asked)
    read_only: bool = False
    #: `--tmpfs PATH[:OPTIONS]`: (container path, mount options) of fresh tmpfs mounts
    tmpfs: tuple[tuple[str, str], ...] = ()
    #: `--ulimit`: (name, soft, hard) resource limits of the command, -1 unlimited
    ulimits: tuple[tuple[str, int, int], ...] = ()
    #: `--device`: (host node, container path under /dev, cgroup rule) of extra devices
    devices: tuple[tuple[Path, str, str], ...] = ()
    #: `--privileged`: every capability, every device, /proc and /sys writable and unmasked, cgroups
    #: mounted writable (the host's devices come in `devices`; seccomp is left out by confinement)
    privileged: bool = False
    #: `--lxc-conf KEY=VALUE` lines, after pydock's own (Docker 0.7's escape hatch)
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)


_LXC_KEY = re.compile(r"lxc\.[a-z0-9_]+(\.[a-zA-Z0-9_]+)*")


def parse_lxc_conf(spec: str) -> tuple[str, str]:
    """`--lxc-conf lxc.key=value` -> (key, value), a key lxc's syntax allows and a one-line value."""
    key, sep, value = spec.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not _LXC_KEY.fullmatch(key):
        raise InvalidArgument(f"Invalid --lxc-conf {spec!r}: expected lxc.KEY=VALUE")
    return key, _value(value, "--lxc-conf value")


def _value(text: str, what: str) -> str:
    if "\n" in text or "\r" in text or "\0" in text:
        raise InvalidArgument(f"Invalid {what}: line breaks and NUL are not allowed: {text!r}")
    return text


def _fstab_path(path: str) -> str:
    """A path in lxc.mount.entry's fstab syntax: whitespace escaped as octal, like /etc/fstab."""
    return _value(path, "mount path").replace(" ", "\\040").replace("\t", "\\011")


def _bind_line(b: Bind) -> str:
    source = _fstab_path(str(b.source))
    target = _fstab_path(b.target.lstrip("/"))
    # no create= unless asked: pydock made the target inside the rootfs (rootpath.prepare_binds); lxc's
    # mkdir -p would follow the image's symlinks out of it
    opts = ["bind", "ro" if b.readonly else "rw"]
    if b.lxc_creates:
        opts.append("create=file" if b.is_file else "create=dir")
    return f"{source} {target} none {','.join(opts)} 0 0"


def render(spec: LxcSpec) -> str:
    """The text of `config.lxc` for `spec`."""
    lines: list[tuple[str, str]] = [
        ("lxc.uts.name", _value(spec.hostname, "hostname")),
        ("lxc.rootfs.path", f"dir:{spec.rootfs}"),
        *((("lxc.rootfs.options", "ro"),) if spec.read_only else ()),
        *(spec.network or EMPTY_NETWORK),
        ("lxc.apparmor.profile", "unconfined"),
        # proc rw but /proc/sys and /proc/sysrq-trigger read-only; sysfs read-only (privileged: all
        # writable, and the container's cgroups mounted writable, as Docker does)
        ("lxc.mount.auto", "proc:rw sys:rw cgroup:rw:force" if spec.privileged else "proc:mixed sys:ro"),
        ("lxc.autodev", "1"),
        ("lxc.console.path", "none"),
        ("lxc.tty.max", "0"),
        ("lxc.pty.max", "1024"),
        ("lxc.mount.entry", f"shm dev/shm tmpfs size={SHM_SIZE // 1024}k,nosuid,nodev,noexec,create=dir 0 0"),
    ]
    if not spec.privileged:  # privileged: lxc drops nothing from the bounding set
        # Docker's capabilities stay in the bounding set, every other one goes; a root command has
        # exactly these effective and permitted, inheritable and ambient stay empty
        lines.insert(-1, ("lxc.cap.keep", " ".join(spec.caps) or "none"))
        for name in MASKED_PROC_FILES:
            lines.append(("lxc.mount.entry", f"/dev/null proc/{name} none bind,ro,optional 0 0"))
        for name in READONLY_PROC_DIRS:  # global (not per-namespace) trees: the host's view, read-only
            lines.append(("lxc.mount.entry", f"/proc/{name} proc/{name} none bind,ro,optional 0 0"))
        for path in MASKED_DIRS:
            lines.append(("lxc.mount.entry", f"tmpfs {path} tmpfs ro,nosuid,nodev,noexec,size=0,optional 0 0"))
    if spec.console is not None:  # a pty of pydock's, never the host's console (lxc.console.path is none)
        lines.append(("lxc.mount.entry", _bind_line(Bind(spec.console, "/dev/console", readonly=False,
                                                          lxc_creates=True))))
    if spec.init is not None:
        lines.append(("lxc.mount.entry", _bind_line(Bind(spec.init, INIT_PATH, lxc_creates=True))))
    for b in spec.binds:
        lines.append(("lxc.mount.entry", _bind_line(b)))
    for target, options in spec.tmpfs:
        lines.append(("lxc.mount.entry", f"tmpfs {_fstab_path(target.lstrip('/'))} tmpfs "
                                          f"{_value(options, 'tmpfs options')} 0 0"))
    lines += cgroups.device_keys(tuple(rule for _, _, rule in spec.devices), privileged=spec.privileged)
    for host, target, _rule in spec.devices:  # on lxc's own /dev, like the console
        lines.append(("lxc.mount.entry", _bind_line(Bind(host, target, readonly=False, lxc_creates=True))))
    lines += cgroups.limit_keys(spec.memory, spec.cpu_shares, pids_limit=spec.pids_limit,
                                cpuset_cpus=spec.cpuset_cpus, nano_cpus=spec.nano_cpus,
                                memory_swap=spec.memory_swap, swappiness=spec.swappiness)
    if spec.no_new_privs:
        lines.append(("lxc.no_new_privs", "1"))
    if spec.seccomp is not None:
        # allow_nesting: stack on a filter pydock itself may run under instead of silently loading none
        lines += [("lxc.seccomp.profile", _value(str(spec.seccomp), "seccomp profile path")),
                  ("lxc.seccomp.allow_nesting", "1")]
    for name, soft, hard in spec.ulimits:
        lines.append((f"lxc.prlimit.{name}", ":".join("unlimited" if v == -1 else str(v) for v in (soft, hard))))
    lines += [("lxc.init.uid", str(spec.uid)), ("lxc.init.gid", str(spec.gid))]
    if spec.groups:
        lines.append(("lxc.init.groups", ",".join(str(g) for g in spec.groups)))
    lines.append(("lxc.init.cwd", _value(spec.cwd, "working directory")))
    for item in spec.env:
        lines.append(("lxc.environment", _value(item, "environment variable")))
    lines += [parse_lxc_conf(f"{k}={v}") for k, v in spec.extra]
    return "".join(f"{k} = {v}\n" for k, v in lines)
