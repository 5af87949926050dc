"""The options of `create`/`run` as one record (built by the CLI and by the Engine API, taken by
`Runtime.create`), and the parsing and checks that turn them into Docker 0.7's Config/HostConfig."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from pydock.utils.errors import InvalidArgument

MIN_MEMORY = 512 * 1024
#: the PATH a container gets unless its image or `-e` sets one (Docker 0.7's default).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# patterns, compiled by `re` (and kept in its cache) on first use rather than at import: every command
# imports this module, few check a memory limit or a hostname
_MEM_RE = r"^(\d+)([bkmg]?)$"
_HOST_RE = r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,62})?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,62})?)*$"


@dataclass(frozen=True)
class CreateOptions:
    """What a container is made from: the image, the command and every `run` option (Docker's names
    in the comments). Sequences are stored as tuples, so a record can't change after it is built."""

    image: str
    cmd: tuple[str, ...] | None = None           # Cmd (None: the image's)
    entrypoint: str | tuple[str, ...] | None = None  # Entrypoint ("" clears the image's)
    name: str | None = None                      # --name
    env: tuple[str, ...] = ()                    # -e K=V, or K to copy the caller's value
    workdir: str | None = None                   # -w
    user: str | None = None                      # -u
    hostname: str | None = None                  # -h host[.domain]
    volumes: tuple[str, ...] = ()                # -v /ctr, -v /host:/ctr[:ro|rw]
    memory: int | str | None = None              # -m
    cpu_shares: int | None = None                # -c
    links: tuple[str, ...] = ()                  # --link name:alias
    ports: tuple[str, ...] = ()                  # -p [ip:][hostPort:]containerPort
    publish_all: bool = False                    # -P
    expose: tuple[str, ...] = ()                 # --expose
    network: bool | str = True                   # --net bridge (True)|none (False)|host|container:NAME
    dns: tuple[str, ...] = ()                    # --dns
    auto_remove: bool = False                    # --rm
    tty: bool = False                            # -t
    stdin_open: bool = False                     # -i
    stdin_once: bool | None = None               # StdinOnce (None: as stdin_open, an attached `run -i`)
    cidfile: str | None = None                   # --cidfile
    init: bool = False                           # --init (HostConfig.Init)
    security_opt: tuple[str, ...] = ()           # --security-opt (HostConfig.SecurityOpt)
    labels: tuple[str, ...] = ()                 # --label K=V (K alone: an empty value), over the image's
    stop_signal: str | None = None               # --stop-signal (None: the image's, else SIGTERM)
    cap_add: tuple[str, ...] = ()                # --cap-add NAME|ALL
    cap_drop: tuple[str, ...] = ()               # --cap-drop NAME|ALL
    tmpfs: tuple[str, ...] = ()                  # --tmpfs /ctr[:OPTIONS]
    read_only: bool = False                      # --read-only
    extra_hosts: tuple[str, ...] = ()            # --add-host NAME:IP
    dns_search: tuple[str, ...] = ()             # --dns-search DOMAIN
    group_add: tuple[str, ...] = ()              # --group-add GROUP (a name in the image's /etc/group, or a gid)
    ulimits: tuple[str, ...] = ()                # --ulimit NAME=SOFT[:HARD]
    pids_limit: int | None = None                # --pids-limit (0 or -1: unlimited)
    cpuset_cpus: str | None = None               # --cpuset-cpus 0-2,4
    cpus: str | float | None = None              # --cpus 1.5
    volumes_from: tuple[str, ...] = ()           # --volumes-from CONTAINER[:ro|rw]
    lxc_conf: tuple[str, ...] = ()               # --lxc-conf lxc.KEY=VALUE (Docker 0.7)
    devices: tuple[str, ...] = ()                # --device HOST[:CONTAINER][:rwm]
    restart: str | None = None                   # --restart no|always|unless-stopped|on-failure[:N]
    stop_timeout: int | None = None              # --stop-timeout SECONDS (Config.StopTimeout)
    privileged: bool = False                     # --privileged
    memory_swap: int | str | None = None         # --memory-swap (memory + swap; -1: unlimited swap)
    memory_swappiness: int | None = None         # --memory-swappiness 0-100 (cgroup v1; -1: the host's)
    log_driver: str | None = None                # --log-driver json-file|none (None: json-file)
    log_opts: tuple[str, ...] = ()               # --log-opt max-size=10m, max-file=3
    console_size: tuple[str, ...] = ()           # a -t container's first terminal size: (rows, columns)
    network_aliases: tuple[str, ...] = ()        # --network-alias (on a user network)
    ip_address: str | None = None                # --ip (on a user network)
    mac_address: str | None = None               # --mac-address (Config.MacAddress)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, f.name, tuple(str(v) for v in value))

    @classmethod
    def of(cls, image: str, cmd: Sequence[str] | None = None, **options: object) -> CreateOptions:
        """`CreateOptions.of("busybox", ["echo", "hi"], name="web")`: an empty command means the image's."""
        return cls(image=image, cmd=tuple(cmd) if cmd else None, **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Volume:
    """`-v /ctr` (host None: a fresh anonymous volume), `-v /host:/ctr[:ro|rw]` (a bind mount) or
    `-v NAME:/ctr[:ro|rw]` (the named volume NAME, made when missing)."""

    target: str
    source: str | None
    readonly: bool = False
    name: str | None = None


def parse_memory(value: str | int | None) -> int | None:
    """`512k`, `64m`, `1g`, `1048576` -> bytes; below 512k is refused like Docker 0.7."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, int):
        n = value
    else:
        m = re.match(_MEM_RE, value.strip(), re.IGNORECASE)
        if not m:
            raise InvalidArgument(f"Invalid memory limit: {value} (use <number>[b|k|m|g])")
        n = int(m.group(1)) * {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
    if n < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 512k")
    return n


#: the log drivers pydock has (Docker's default first)
LOG_DRIVERS = ("json-file", "none")
#: json-file options Docker has and pydock does not carry out (refused by name, never ignored)
_UNSUPPORTED_LOG_OPTS = ("compress", "labels", "labels-regex", "env", "env-regex", "tag")
_SIZE_RE = r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$"


def parse_log_config(driver: str | None, opts: Mapping[str, str] | Sequence[str] = ()) -> dict[str, Any]:
    """`--log-driver` and `--log-opt K=V` (or HostConfig.LogConfig's Config map) as HostConfig.LogConfig,
    checked as Docker's json-file driver checks them: max-size a positive size (decimal units, as Docker's
    FromHumanSize: 10k = 10000 bytes), max-file a count of at least 1 that needs max-size."""
    driver = driver or "json-file"
    if isinstance(opts, Mapping):
        config = {str(k): str(v) for k, v in opts.items()}
    else:
        config = {}
        for item in opts:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise InvalidArgument(f"invalid key value pair format in log options: {item!r} (use KEY=VALUE)")
            config[key] = value
    if driver not in LOG_DRIVERS:
        raise InvalidArgument(f"logger: no log driver named '{driver}' is registered "
                              f"(pydock has {' and '.join(LOG_DRIVERS)})")
    for key in config:
        if driver == "json-file" and key in _UNSUPPORTED_LOG_OPTS:
            raise InvalidArgument(f"log opt '{key}' of the json-file log driver is not supported by pydock")
        if driver == "none" or key not in ("max-size", "max-file"):
            raise InvalidArgument(f"unknown log opt '{key}' for {driver} log driver")
    if "max-size" in config and log_max_size(config) <= 0:
        raise InvalidArgument("max-size must be a positive number")
    if "max-file" in config:
        if log_max_files(config) < 1:
            raise InvalidArgument("max-file cannot be less than 1")
        if "max-size" not in config:
            raise InvalidArgument("max-file cannot be used without max-size (the log would never rotate)")
    return {"Type": driver, "Config": config}


def log_max_size(config: Mapping[str, str]) -> int:
    """LogConfig's `max-size` in bytes (-1: none), decimal units like Docker's (`10k` = 10000)."""
    text = config.get("max-size")
    if text is None:
        return -1
    m = re.match(_SIZE_RE, text.strip(), re.IGNORECASE)
    if not m:
        raise InvalidArgument(f"invalid size: '{text}'")
    return int(float(m.group(1)) * 1000 ** " kmgtp".index(m.group(2).lower() or " "))


def log_max_files(config: Mapping[str, str]) -> int:
    """LogConfig's `max-file`: how many files the log keeps, the current one included (1 unless set)."""
    text = config.get("max-file", "1")
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f'strconv.Atoi: parsing "{text}": invalid syntax (max-file)') from None


def parse_memory_swap(value: str | int | None) -> int | None:
    """`--memory-swap`: memory plus swap in bytes (`<number>[b|k|m|g]`), -1 for unlimited swap; None unset."""
    if value is None or value == "" or value == 0 or value == "0":
        return None
    if value == -1 or value == "-1":
        return -1
    return parse_memory(value)


def check_memory_swap(memory: int, swap: int | None, swappiness: int | None = None, *,
                      swap_supported: bool, swappiness_supported: bool, update: bool = False) -> None:
    """Docker's checks of memory, memory-swap and swappiness together (its messages), and a clear refusal
    where this kernel can't carry them out (Docker would only warn and drop them)."""
    if swap is not None and swap > 0 and memory > 0 and swap < memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if swap is not None and swap > 0 and memory == 0 and not update:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    if swap is not None and not swap_supported:
        raise InvalidArgument("--memory-swap needs swap accounting (memory.memsw.* on cgroup v1, memory.swap.max "
                              "on v2), which this kernel does not offer")
    if swappiness is not None and swappiness != -1:
        if not 0 <= swappiness <= 100:
            raise InvalidArgument(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
        if not swappiness_supported:
            raise InvalidArgument("--memory-swappiness is not supported on cgroup v2 (nor without memory.swappiness)")


def parse_volume(spec: str) -> Volume:
    parts = spec.split(":")
    if len(parts) == 1:
        target, source, mode = parts[0], None, "rw"
    elif len(parts) == 2:
        source, target, mode = parts[0], parts[1], "rw"
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise InvalidArgument(f"Invalid volume specification: {spec}")
    if mode not in ("ro", "rw"):
        raise InvalidArgument(f"Invalid volume mode {mode!r} in {spec} (use ro or rw)")
    if not target.startswith("/"):
        raise InvalidArgument(f"Invalid volume specification: {spec} (the container path must be absolute)")
    name = None
    if source is not None and not source.startswith("/"):
        from pydock.runtime.volumes import check_name  # lazy: only a named volume; volumes.py is the store

        name, source = check_name(source), None
    if source is not None:
        if os.path.normpath(source) == "/":
            raise InvalidArgument("Invalid bind mount: source can't be '/'")
        source = os.path.normpath(source)
    target = os.path.normpath(target)
    if target == "/":
        raise InvalidArgument("Invalid volume specification: the container path can't be '/'")
    return Volume(target, source, mode == "ro", name)


#: tmpfs options a container may ask for (mount(8)'s generic ones and tmpfs(5)'s)
_TMPFS_FLAGS = {"rw", "ro", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime", "relatime",
                "strictatime", "nodiratime"}
_TMPFS_VALUES = {"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks"}
#: what Docker mounts a --tmpfs with unless told otherwise
TMPFS_DEFAULTS = ("rw", "noexec", "nosuid", "nodev")
_OPPOSITE = {"rw": "ro", "exec": "noexec", "suid": "nosuid", "dev": "nodev"}


def parse_tmpfs(spec: str) -> tuple[str, str]:
    """`/ctr[:opt,opt=value]` -> (normalized container path, mount options with Docker's defaults:
    rw,noexec,nosuid,nodev unless the spec says otherwise)."""
    target, _, given = spec.partition(":")
    if not target.startswith("/"):
        raise InvalidArgument(f"invalid mount path {target!r} for --tmpfs: mount path must be absolute")
    target = os.path.normpath(target)
    if target == "/":
        raise InvalidArgument("invalid --tmpfs: the container path can't be '/'")
    chosen = [o.strip() for o in given.split(",") if o.strip()] if given else []
    for option in chosen:
        key, sep, value = option.partition("=")
        if (key not in _TMPFS_VALUES or not sep or not re.fullmatch(r"[0-9]+[kmgKMG%]?", value)) \
                and not (option in _TMPFS_FLAGS and not sep):
            raise InvalidArgument(f"invalid tmpfs option {option!r} in --tmpfs {spec}")
    flags = {o for o in chosen if "=" not in o}
    opposites = {**_OPPOSITE, **{v: k for k, v in _OPPOSITE.items()}}
    defaults = [d for d in TMPFS_DEFAULTS if d not in flags and opposites[d] not in flags]
    return target, ",".join([*defaults, *chosen])


#: the resource limits `--ulimit` may set (setrlimit(2)'s, as Docker names them)
ULIMIT_NAMES = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
                "rss", "rtprio", "rttime", "sigpending", "stack")


@dataclass(frozen=True)
class Ulimit:
    """One `--ulimit`, in Docker's HostConfig.Ulimits shape (-1: unlimited)."""

    name: str
    soft: int
    hard: int

    def to_json(self) -> dict[str, Any]:
        return {"Name": self.name, "Soft": self.soft, "Hard": self.hard}


def parse_ulimit(spec: str) -> Ulimit:
    """`nofile=1024:2048`, `nproc=512` (hard = soft), `-1` for unlimited."""
    name, sep, values = spec.partition("=")
    if not sep or name not in ULIMIT_NAMES:
        raise InvalidArgument(f"invalid ulimit argument: {spec!r} (NAME=SOFT[:HARD], NAME one of "
                              f"{', '.join(ULIMIT_NAMES)})")
    soft_text, _, hard_text = values.partition(":")
    try:
        soft, hard = int(soft_text), int(hard_text or soft_text)
    except ValueError:
        raise InvalidArgument(f"invalid ulimit argument: {spec!r} (the limits are numbers)") from None
    if min(soft, hard) < -1 or (hard != -1 and (soft == -1 or soft > hard)):
        raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {spec}")
    return Ulimit(name, soft, hard)


def split_hostname(value: str | None) -> tuple[str, str]:
    """`-h host.domain` -> (Hostname, Domainname), split at the first dot like Docker 0.7."""
    if not value:
        return "", ""
    if not re.match(_HOST_RE, value) or len(value) > 253:
        raise InvalidArgument(f"Invalid hostname: {value}")
    host, _, domain = value.partition(".")
    return host, domain


def parse_env(items: list[str] | tuple[str, ...], client_env: Mapping[str, str] | None = None) -> list[str]:
    """Checked `K=V` items. A bare `K`: with `client_env` (the CLI's own environment, as the docker CLI
    does) it copies the client's value, dropped when the client has none; without (an API body) it is
    kept, and unsets K in the container as under dockerd."""
    out = []
    for item in items:
        key, sep, _value = item.partition("=")
        if not key or "\n" in item or "\0" in item:  # (the key holds no "=": it ends at the first)
            raise InvalidArgument(f"Invalid environment variable: {item!r}")
        if not sep and client_env is not None:
            if key in client_env:
                out.append(f"{key}={client_env[key]}")
            continue
        out.append(item)
    return out


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    """`--label K=V` items (`K` alone: an empty value) for containers and volumes."""
    labels = dict(item.partition("=")[::2] for item in items)
    if "" in labels:
        raise InvalidArgument("Invalid label: a label needs a name (K=V)")
    return labels


def read_env_files(paths: Sequence[str]) -> list[str]:
    """`--env-file` lines in order: `K=V` or a bare `K`; blank lines and `#` comments skipped (Docker's
    format: no quoting, the value is the rest of the line)."""
    out = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read((1 << 20) + 1)
        except (OSError, UnicodeDecodeError) as err:
            raise InvalidArgument(f"open {path}: {getattr(err, 'strerror', None) or err}") from None
        if len(text) > 1 << 20:
            raise InvalidArgument(f"env file {path} is larger than 1 MiB")
        for line in text.splitlines():
            line = line.lstrip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def merge_env(*layers: list[str], keep_unset: bool = False) -> list[str]:
    """Later `K=V` entries override earlier ones; first-seen order is kept. A bare `K` unsets K: it is
    dropped, or with `keep_unset` (a container's configuration, merged from its image's) kept bare."""
    merged: dict[str, str | None] = {}
    for layer in layers:
        for item in layer:
            key, sep, value = item.partition("=")
            if sep:
                merged[key] = value
            elif keep_unset:
                merged[key] = None
            else:
                merged.pop(key, None)
    return [k if v is None else f"{k}={v}" for k, v in merged.items()]


def env_value(env: list[str], key: str, default: str = "") -> str:
    for item in reversed(env):
        k, sep, v = item.partition("=")
        if sep and k == key:
            return v
    return default
