"""Restart policies (`--restart no|always|unless-stopped|on-failure[:N]`) without a daemon: a detached
container's monitor restarts its command when it ends, with Docker's back-off, unless a user stopped
or killed it; `pydock boot` starts, after a reboot, what Docker's daemon would have started."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydock.utils.errors import InvalidArgument, PydockError

if TYPE_CHECKING:
    from pydock.runtime.runtime import Runtime

log = logging.getLogger(__package__)

NAMES = ("no", "always", "unless-stopped", "on-failure")
#: Docker's back-off: 100 ms, doubled at each restart, at most a minute; back to 100 ms once a run
#: lasted 10 seconds
FIRST_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0


@dataclass(frozen=True)
class RestartPolicy:
    """HostConfig.RestartPolicy."""

    name: str = "no"
    max_retries: int = 0   # on-failure only; 0: no limit

    @classmethod
    def parse(cls, text: str | None) -> RestartPolicy:
        """`always`, `on-failure:3`, ... as `--restart` takes them; "" is `no`."""
        name, _, count = (text or "no").partition(":")
        if name not in NAMES:
            raise InvalidArgument(f"invalid restart policy {text!r} (no, always, unless-stopped, on-failure[:N])")
        if count and name != "on-failure":
            raise InvalidArgument(f"invalid restart policy {text!r}: only on-failure takes a maximum retry count")
        try:
            retries = int(count) if count else 0
        except ValueError:
            raise InvalidArgument(f"invalid restart policy {text!r}: the retry count is a number") from None
        if retries < 0:
            raise InvalidArgument("invalid restart policy: the maximum retry count cannot be negative")
        return cls(name, retries)

    @classmethod
    def from_json(cls, data: Any) -> RestartPolicy:
        if not data:
            return cls()
        return cls(str(data.get("Name") or "no"), int(data.get("MaximumRetryCount") or 0))

    @classmethod
    def of(cls, hostconfig: dict[str, Any]) -> RestartPolicy:
        """The policy a container's HostConfig records."""
        return cls.from_json(hostconfig.get("RestartPolicy"))

    @property
    def restarts(self) -> bool:
        """Whether it ever runs a command again."""
        return self.name != "no"

    def to_json(self) -> dict[str, Any]:
        return {"Name": self.name, "MaximumRetryCount": self.max_retries}

    def wants_restart(self, exit_code: int, restarts: int, stopped_by_user: bool) -> bool:
        """Whether a run that ended with `exit_code`, after `restarts` restarts, is run again."""
        if stopped_by_user or not self.restarts:
            return False
        if self.name == "on-failure":
            return exit_code != 0 and (self.max_retries == 0 or restarts < self.max_retries)
        return True

    def starts_at_boot(self, stopped_by_user: bool) -> bool:
        """Whether `pydock boot` starts the container: `always` does, `unless-stopped` unless a user
        stopped it (as dockerd does when it starts)."""
        return self.name == "always" or self.name == "unless-stopped" and not stopped_by_user


class Backoff:
    """The delay before each restart."""

    def __init__(self) -> None:
        self.delay = FIRST_DELAY

    def next(self, ran_for: float) -> float:
        """The wait before the next start, after a run that lasted `ran_for` seconds."""
        if ran_for >= RESET_AFTER:
            self.delay = FIRST_DELAY
        delay = self.delay
        self.delay = min(self.delay * 2, MAX_DELAY)
        return delay


def start_at_boot(rt: Runtime) -> list[tuple[str, str | None]]:
    """`pydock boot`: start every stopped container whose policy says a restarted daemon would (`always`,
    `unless-stopped` unless a user stopped it). (id, None or the error) for each one tried."""
    tried: list[tuple[str, str | None]] = []
    for c in rt.containers(all=True):
        policy = RestartPolicy.of(c.hostconfig)
        if c.state.running or not policy.starts_at_boot(c.stopped_by_user_marker.exists()):
            continue
        try:
            rt.start(c)
            tried.append((c.id, None))
        except PydockError as err:
            log.warning("container %s: not started at boot: %s", c.short_id, err)
            tried.append((c.id, str(err)))
    return tried
