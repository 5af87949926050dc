"""User-defined networks on disk: one JSON file (`<root>/network/networks.json`) holding every network's
record and its configured endpoints, rewritten atomically (utils.fileutil) while `networks.lock` is held,
so concurrent pydock processes see whole records and never lose one another's changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydock.utils.errors import NetworkError
from pydock.utils.fileutil import flocked, write_json_atomic


@dataclass
class Endpoint:
    """A container's membership of a network, as configured (`--net`, `network connect`)."""

    name: str  # the container's name, without the leading /
    aliases: list[str] = field(default_factory=list)
    ip: str = ""  # --ip; "" = the next free address
    mac: str = ""  # --mac-address; "" = derived from the address


@dataclass
class NetworkRecord:
    """One user network: what `network inspect` shows of it, and who is connected."""

    name: str
    id: str
    created: str
    subnet: str  # 172.18.0.0/16
    gateway: str  # 172.18.0.1
    internal: bool = False
    attachable: bool = False  # recorded and shown, as dockerd does; any container may join a local network
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # container id -> endpoint

    @property
    def bridge(self) -> str:
        """The Linux bridge: `br-` and the id's first 12 digits, as Docker names it."""
        return f"br-{self.id[:12]}"

    @property
    def bip(self) -> str:
        """The bridge's address with the subnet's prefix (`172.18.0.1/16`)."""
        return f"{self.gateway}/{self.subnet.partition('/')[2]}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["endpoints"] = {cid: asdict(e) for cid, e in sorted(self.endpoints.items())}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetworkRecord:
        eps = {cid: Endpoint(**e) for cid, e in (data.get("endpoints") or {}).items()}
        return cls(**{**data, "endpoints": eps})


class NetStore:
    """The locked, persisted set of user networks under `state_dir`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / "networks.json"
        self.lock_path = self.state_dir / "networks.lock"

    @contextmanager
    def locked(self) -> Iterator[dict[str, NetworkRecord]]:
        """Hold the lock, yield id -> record, and write the set back atomically if it changed."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with flocked(self.lock_path):
            nets = self._load()
            before = self._dump(nets)
            yield nets
            after = self._dump(nets)
            if after != before:
                write_json_atomic(self.path, json.loads(after))

    def read(self) -> dict[str, NetworkRecord]:
        """A snapshot (shared lock, nothing written)."""
        if not self.path.exists():
            return {}
        with flocked(self.lock_path, shared=True):
            return self._load()

    @staticmethod
    def _dump(nets: dict[str, NetworkRecord]) -> str:
        return json.dumps({nid: n.to_json() for nid, n in nets.items()}, sort_keys=True)

    def _load(self) -> dict[str, NetworkRecord]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise NetworkError(f"Corrupt network store {self.path}: {err}") from None
        return {nid: NetworkRecord.from_json(n) for nid, n in data.items()}
