"""The container record (`containers/<id>/config.json` + `hostconfig.json`) and its files, written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from pathlib import Path
from typing import Any

from pydock.utils.errors import NotFound
from pydock.utils.fileutil import atomic_write, flocked
from pydock.runtime.state import State, format_time, parse_time, utcnow


class _HostConfigField:
    """`Container.hostconfig`, read from hostconfig.json on first use when the record was loaded without it:
    listings (`ps -a`) never need it, and it is half of what loading a container reads."""

    def __get__(self, obj: Container | None, owner: type) -> Any:
        if obj is None:
            return None  # the dataclass default: "not given", read from the container's directory on use
        value = obj.__dict__.get("_hostconfig")
        if value is None:
            try:
                value = json.loads((obj.dir / "hostconfig.json").read_bytes())
            except (FileNotFoundError, ValueError):
                value = {}
            if not isinstance(value, dict):
                value = {}
            obj.__dict__["_hostconfig"] = value
        return value

    def __set__(self, obj: Container, value: dict[str, Any] | None) -> None:
        obj.__dict__["_hostconfig"] = value


class _ConfigField:
    """`Container.config`, decoded on first use from the JSON kept by the listing index
    (listindex.py): `ps -a` shows none of it, and decoding it was most of a listed container's cost."""

    def __get__(self, obj: Container | None, owner: type) -> Any:
        if obj is None:
            return None  # the dataclass default: "not given", decoded from `_config_json` (or {}) on use
        value = obj.__dict__.get("_config")
        if value is None:
            text = obj.__dict__.pop("_config_json", None)
            value = json.loads(text) if text else {}
            if not isinstance(value, dict):
                value = {}
            obj.__dict__["_config"] = value
        return value

    def __set__(self, obj: Container, value: dict[str, Any] | None) -> None:
        obj.__dict__["_config"] = value
        obj.__dict__.pop("_config_json", None)


def read_config(directory: Path) -> tuple[dict[str, Any], os.stat_result]:
    """A container directory's config.json, decoded, and the stat of the very file read (the listing
    index keys its entries by it); NotFound if it is missing or corrupt."""
    try:
        with open(f"{directory}/config.json", "rb") as f:  # not Path's `/`: listings read many
            st = os.fstat(f.fileno())
            data = json.loads(f.read())
    except FileNotFoundError:
        raise NotFound(f"No such container: {directory.name}") from None
    except ValueError as err:
        raise NotFound(f"Container {directory.name[:12]} has a corrupt config.json: {err}") from None
    if not isinstance(data, dict):
        raise NotFound(f"Container {directory.name[:12]} has a corrupt config.json: not an object")
    return data, st


def network_settings(data: dict[str, Any]) -> dict[str, Any] | None:
    """A config.json's NetworkSettings while the container has an address (None otherwise: not networked,
    or stopped and released)."""
    net = data.get("NetworkSettings") or None
    return net if net and net.get("IPAddress") else None


@dataclass
class Container:
    """One container: what it runs (Docker's Config), how (HostConfig), where (dir), and its State."""

    id: str
    dir: Path
    image: str
    path: str
    args: list[str]
    config: dict[str, Any] = _ConfigField()  # type: ignore[assignment]
    hostconfig: dict[str, Any] = _HostConfigField()  # type: ignore[assignment]
    created: datetime = field(default_factory=utcnow)
    state: State = field(default_factory=State)
    name: str = ""
    driver: str = ""
    network: dict[str, Any] | None = None
    volumes: dict[str, str] = field(default_factory=dict)
    volumes_rw: dict[str, bool] = field(default_factory=dict)

    # ---- derived paths ----------------------------------------------------------------------
    @property
    def short_id(self) -> str:
        return self.id[:12]

    @cached_property
    def init_id(self) -> str:
        """The init layer's device (mount-point stubs between the image and the container's own device):
        the image's shared one its `init-layer` file names (initlayer.py), else the container's own
        `<id>-init` (a container made before init layers were shared). Read once."""
        try:
            return self.init_layer_path.read_text().strip() or self.own_init_id
        except FileNotFoundError:
            return self.own_init_id

    @property
    def own_init_id(self) -> str:
        """The device a container made before init layers were shared has for its init layer."""
        return f"{self.id}-init"

    @property
    def init_layer_path(self) -> Path:
        """Names the (shared) init layer the container's device was made on."""
        return self.dir / "init-layer"

    @property
    def config_path(self) -> Path:
        return self.dir / "config.json"

    @property
    def hostconfig_path(self) -> Path:
        return self.dir / "hostconfig.json"

    @property
    def lxc_config_path(self) -> Path:
        return self.dir / "config.lxc"

    @property
    def env_path(self) -> Path:
        return self.dir / "config.env"

    @property
    def hostname_path(self) -> Path:
        return self.dir / "hostname"

    @property
    def hosts_path(self) -> Path:
        return self.dir / "hosts"

    @property
    def resolv_conf_path(self) -> Path:
        return self.dir / "resolv.conf"

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.id}-json.log"

    @property
    def lxc_log_path(self) -> Path:
        return self.dir / "lxc.log"

    @property
    def lock_path(self) -> Path:
        """Serialises read-modify-write of this container's files."""
        return self.dir / ".lock"

    @property
    def monitor_lock_path(self) -> Path:
        """Held by the process supervising the container's run; see monitorlock.py."""
        return self.dir / "monitor.lock"

    @property
    def stopped_by_user_marker(self) -> Path:
        """Exists once a user stopped or killed the running container: its restart policy then leaves it
        stopped (Docker's HasBeenManuallyStopped); the next start removes it."""
        return self.dir / "stopped-by-user"

    @property
    def killed_marker(self) -> Path:
        """Exists while pydock has sent SIGKILL itself: the exit is then recorded as 137 whatever lxc says."""
        return self.dir / "killed"

    @property
    def command_line(self) -> str:
        return " ".join([self.path, *self.args])

    @property
    def auto_remove(self) -> bool:
        return bool(self.hostconfig.get("AutoRemove"))

    # ---- persistence ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Created": format_time(self.created), "Path": self.path, "Args": self.args,
            "Config": self.config, "State": self.state.to_json(), "Image": self.image,
            "NetworkSettings": self.network or {"IPAddress": "", "IPPrefixLen": 0, "Gateway": "",
                                                "Bridge": "", "PortMapping": None, "Ports": None},
            "SysInitPath": "", "ResolvConfPath": str(self.resolv_conf_path),
            "HostnamePath": str(self.hostname_path), "HostsPath": str(self.hosts_path),
            "Name": self.name, "Driver": self.driver, "Volumes": self.volumes, "VolumesRW": self.volumes_rw,
        }

    def save(self) -> None:
        """Write hostconfig.json then config.json (config.json last, so a container with one is complete).

        Durably (fsync) unless the container is `--rm`: if a crash tears its files, reconcile sweeps
        it anyway, which is all an auto-removed container would get.
        """
        durable = not self.auto_remove
        atomic_write(self.hostconfig_path, json.dumps(self.hostconfig).encode(), durable=durable)
        atomic_write(self.config_path, json.dumps(self.to_json()).encode(), durable=durable)

    def save_state(self, state: State) -> None:
        """Record a state change (not fsynced: a state torn by a crash is what reconcile repairs)."""
        self.state = state
        atomic_write(self.config_path, json.dumps(self.to_json()).encode(), durable=False)

    @classmethod
    def load(cls, directory: Path) -> Container:
        """The container as its config.json holds it (NotFound without a readable one, KeyError without an ID)."""
        return cls.from_json(directory, read_config(directory)[0])

    @classmethod
    def from_json(cls, directory: Path, data: dict[str, Any], config_json: bytes | None = None) -> Container:
        """The container whose config.json holds `data` (KeyError without an ID). `config_json`: the
        Config block as JSON, decoded on first use instead of `data["Config"]` (listindex.py)."""
        c = cls(id=data["ID"], dir=directory, image=data.get("Image", ""), path=data.get("Path", ""),
                args=list(data.get("Args") or []), config=None if config_json else data.get("Config") or {},
                hostconfig=None, created=parse_time(data.get("Created")) or utcnow(),
                state=State.from_json(data.get("State")), name=data.get("Name", ""), driver=data.get("Driver", ""),
                network=network_settings(data), volumes=dict(data.get("Volumes") or {}), volumes_rw=dict(data.get("VolumesRW") or {}))
        if config_json:
            c.__dict__["_config_json"] = config_json
        return c

    def reload(self) -> Container:
        """Re-read state from disk (another process — the monitor, a rename — may have changed it)."""
        fresh = Container.load(self.dir)
        self.state, self.network, self.hostconfig = fresh.state, fresh.network, None  # hostconfig: re-read on use
        self.config = fresh.config  # `update` changes Memory and CpuShares there
        self.name = fresh.name
        return self

    @contextmanager
    def locked(self) -> Iterator[Container]:
        """Hold the container's lock and yield it with fresh state."""
        with flocked(self.lock_path):
            yield self.reload()

    def env(self) -> list[str]:
        return list(self.config.get("Env") or [])
