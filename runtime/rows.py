"""A container as a listing row shows it (`ps`): a few plain values read from its config.json, cheap to
keep in the listing index and to build by the thousand, where a full Container costs a Path, datetimes
and a State each."""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

from pydock.runtime.container import Container, network_settings
from pydock.runtime.state import State, parse_time, utcnow
from pydock.utils.epoch import epoch_us


class ContainerRow(NamedTuple):
    """One listed container. `status` is its Status value when its record alone decides it (created,
    exited, dead); "" while it runs or waits to restart, whose status depends on live processes: such a
    row carries its `container`, loaded (and repaired, see Runtime.refresh) for the listing."""

    id: str
    image: str
    name: str
    command_line: str
    created_us: int  # Created, microseconds since the epoch (sorting and "ago" without datetimes)
    status: str
    exit_code: int
    ports: dict[str, Any] | None  # NetworkSettings.Ports while the container has an address
    container: Container | None = None

    @property
    def short_id(self) -> str:
        return self.id[:12]


def row_values(data: dict[str, Any]) -> tuple[tuple[Any, ...], bool]:
    """The row of the config.json holding `data`, without `container` (what the listing index keeps), and
    whether it may be kept: not without a valid Created, shown as "now" as Container.from_json does.
    KeyError without an ID."""
    cid = data["ID"]
    created = parse_time(data.get("Created"))
    state = State.from_json(data.get("State"))
    live = state.running or state.restarting
    net = network_settings(data)
    # interned: the index (marshal) then keeps one copy of a value many rows share, and the id once
    return (sys.intern(cid), sys.intern(data.get("Image", "")), data.get("Name", ""),
            sys.intern(" ".join([data.get("Path", ""), *(data.get("Args") or [])])),
            epoch_us(created or utcnow()), "" if live else state.status.value, state.exit_code,
            (net or {}).get("Ports") or None), created is not None


def row_of(c: Container) -> ContainerRow:
    """The row of a loaded container, carrying it (for the rows whose status is live, and listings that
    also need the whole container: filters, --format, sizes)."""
    return ContainerRow(*row_values(c.to_json())[0], container=c)
