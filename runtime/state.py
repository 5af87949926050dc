"""A container's run state (Docker 0.7's `State` block) and the time format of its records."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from pydock.utils.process import same_process

#: ExitCode recorded when a container's monitor vanished (kill -9, host crash) and its status is unknown.
EXIT_LOST = -1
#: ExitCode recorded when pydock itself delivered SIGKILL (kill -s KILL, stop timeout, reconcile).
EXIT_KILLED = 128 + 9
ZERO_TIME = "0001-01-01T00:00:00Z"


class Status(enum.Enum):
    """What `ps` shows in STATUS."""

    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    GHOST = "ghost"
    RESTARTING = "restarting"   # between two runs of a restart policy, its monitor waiting out the back-off


def format_time(value: datetime | None) -> str:
    """RFC 3339 with nanosecond digits like Go's time.Time JSON; None -> Go's zero time."""
    if value is None:
        return ZERO_TIME
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}000Z"


def parse_time(text: str | None) -> datetime | None:
    """Inverse of format_time (zero time -> None); tolerates fewer fraction digits. (No strptime: its
    import costs more than a `pydock run` can spare; fromisoformat, in C, reads Go's nanoseconds and
    `Z` since Python 3.11, several times faster than the fallback below: `ps -a` parses three a container.)"""
    if not text or text.startswith("0001-01-01"):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is not None:
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value if value.tzinfo is timezone.utc else value.astimezone(timezone.utc)
    main, _, frac = text.rstrip("Z").partition(".")
    date, _, clock = main.partition("T")
    y, mo, d = (int(x) for x in date.split("-"))
    h, mi, sec = (int(x) for x in clock.split(":"))
    micro = int((frac + "000000")[:6]) if frac else 0
    return datetime(y, mo, d, h, mi, sec, micro, tzinfo=timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class State:
    """Docker's State{Running, Pid, ExitCode, StartedAt, FinishedAt, Ghost} plus the monitor's identity."""

    running: bool = False
    pid: int = 0
    exit_code: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    ghost: bool = False
    #: the process supervising the container (detached monitor or foreground `run`) and its start time
    monitor_pid: int = 0
    monitor_start: int = 0
    #: start time of `pid` (lxc-start), to tell it from a reused pid
    pid_start: int = 0
    #: why the last run's auto-remove failed (Docker's State.Error), "" otherwise
    error: str = ""
    #: times its restart policy has run it again since a user last started it
    restart_count: int = 0
    #: between two runs of its restart policy (monitor_pid/monitor_start: the monitor that will run it)
    restarting: bool = False

    @property
    def status(self) -> Status:
        if self.ghost:
            return Status.GHOST
        if self.running:
            return Status.RUNNING
        if self.restarting and same_process(self.monitor_pid, self.monitor_start):
            return Status.RESTARTING
        if self.started_at is None and self.finished_at is None:
            return Status.CREATED
        return Status.EXITED

    def docker_status(self, paused: bool = False) -> str:
        """Docker's State.Status: created, running, paused (the kernel froze it, which the caller asks),
        restarting, exited, or dead (pydock's Ghost: recovery under way)."""
        st = self.status
        if st is Status.GHOST:
            return "dead"
        if st is Status.RUNNING and paused:
            return "paused"
        return st.value

    def started(self, *, pid: int, pid_start: int, monitor_pid: int, monitor_start: int) -> State:
        return State(running=True, pid=pid, exit_code=0, started_at=utcnow(), finished_at=None,
                     monitor_pid=monitor_pid, monitor_start=monitor_start, pid_start=pid_start, error="",
                     restart_count=self.restart_count)

    def stopped(self, exit_code: int) -> State:
        return replace(self, running=False, pid=0, pid_start=0, exit_code=exit_code, finished_at=utcnow(),
                       ghost=False, monitor_pid=0, monitor_start=0, restarting=False)

    def to_json(self) -> dict[str, Any]:
        return {"Running": self.running, "Pid": self.pid, "ExitCode": self.exit_code,
                "StartedAt": format_time(self.started_at), "FinishedAt": format_time(self.finished_at),
                "Ghost": self.ghost, "MonitorPid": self.monitor_pid, "MonitorStartTime": self.monitor_start,
                "PidStartTime": self.pid_start, "Error": self.error, "RestartCount": self.restart_count,
                "Restarting": self.restarting}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> State:
        data = data or {}
        return cls(running=bool(data.get("Running")), pid=int(data.get("Pid") or 0),
                   exit_code=int(data.get("ExitCode") or 0), started_at=parse_time(data.get("StartedAt")),
                   finished_at=parse_time(data.get("FinishedAt")), ghost=bool(data.get("Ghost")),
                   monitor_pid=int(data.get("MonitorPid") or 0),
                   monitor_start=int(data.get("MonitorStartTime") or 0),
                   pid_start=int(data.get("PidStartTime") or 0), error=str(data.get("Error") or ""),
                   restart_count=int(data.get("RestartCount") or 0), restarting=bool(data.get("Restarting")))
