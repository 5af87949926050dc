"""The options of `create`/`run` as one record (built by the CLI and by the Engine API, taken by
`Runtime.create`), and the parsing and checks that turn them into Docker 0.7's Config/HostConfig."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields

from pydock.utils.errors import InvalidArgument

MIN_MEMORY = 512 * 1024
#: the PATH a container gets unless its image or `-e` sets one (Docker 0.7's default).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MEM_RE = re.compile(r"^(\d+)([bkmg]?)$", re.IGNORECASE)
_HOST_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,62})?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,62})?)*$")
_ENV_KEY_RE = re.compile(r"^[^=\0\n]+$")


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
    network: bool = True                         # --net bridge|none
    dns: tuple[str, ...] = ()                    # --dns
    auto_remove: bool = False                    # --rm
    tty: bool = False                            # -t
    stdin_open: bool = False                     # -i
    stdin_once: bool | None = None               # StdinOnce (None: as stdin_open, an attached `run -i`)
    cidfile: str | None = None                   # --cidfile
    init: bool = False                           # --init (HostConfig.Init)
    security_opt: tuple[str, ...] = ()           # --security-opt (HostConfig.SecurityOpt)

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
    """`-v /ctr` (host None: a fresh volume dir) or `-v /host:/ctr[:ro|rw]`."""

    target: str
    source: str | None
    readonly: bool = False


def parse_memory(value: str | int | None) -> int | None:
    """`512k`, `64m`, `1g`, `1048576` -> bytes; below 512k is refused like Docker 0.7."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, int):
        n = value
    else:
        m = _MEM_RE.match(value.strip())
        if not m:
            raise InvalidArgument(f"Invalid memory limit: {value} (use <number>[b|k|m|g])")
        n = int(m.group(1)) * {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
    if n < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 512k")
    return n


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
    if source is not None:
        if not source.startswith("/"):
            raise InvalidArgument(f"Invalid volume specification: {spec} (the host path must be absolute)")
        if os.path.normpath(source) == "/":
            raise InvalidArgument("Invalid bind mount: source can't be '/'")
        source = os.path.normpath(source)
    target = os.path.normpath(target)
    if target == "/":
        raise InvalidArgument("Invalid volume specification: the container path can't be '/'")
    return Volume(target, source, mode == "ro")


def split_hostname(value: str | None) -> tuple[str, str]:
    """`-h host.domain` -> (Hostname, Domainname), split at the first dot like Docker 0.7."""
    if not value:
        return "", ""
    if not _HOST_RE.match(value) or len(value) > 253:
        raise InvalidArgument(f"Invalid hostname: {value}")
    host, _, domain = value.partition(".")
    return host, domain


def parse_env(items: list[str] | tuple[str, ...], client_env: dict[str, str] | None = None) -> list[str]:
    """`K=V` items; a bare `K` copies the client's value (dropped when the client has none)."""
    out = []
    for item in items:
        key, sep, _value = item.partition("=")
        if not key or not _ENV_KEY_RE.match(key) or "\n" in item or "\0" in item:
            raise InvalidArgument(f"Invalid environment variable: {item!r}")
        if not sep:
            env = os.environ if client_env is None else client_env
            if key in env:
                out.append(f"{key}={env[key]}")
            continue
        out.append(item)
    return out


def merge_env(*layers: list[str]) -> list[str]:
    """Later `K=V` entries override earlier ones; first-seen order is kept."""
    merged: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            key, _, value = item.partition("=")
            merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def env_value(env: list[str], key: str, default: str = "") -> str:
    for item in reversed(env):
        k, sep, v = item.partition("=")
        if sep and k == key:
            return v
    return default
