"""Human-readable sizes and durations, worded like Docker (`1.235 MB`, `About a minute`, `5 minutes ago`):
one implementation for the CLI tables and the Engine API's container status."""

from __future__ import annotations

import functools
from datetime import datetime, timezone

from pydock.utils.epoch import epoch_us

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: int | float) -> str:
    """Decimal units with 4 significant digits, like Docker's HumanSize: 1234567 -> `1.235 MB`."""
    value = float(size)
    unit = 0
    while value >= 1000.0 and unit < len(_UNITS) - 1:
        value /= 1000.0
        unit += 1
    return f"{value:.4g} {_UNITS[unit]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: `Less than a second`, `1 second`, `About a minute`, `3 hours`, `2 weeks`..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ago(when: datetime, now: datetime | None = None) -> str:
    """`<human duration> ago` for an aware (or naive-UTC) timestamp."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return ago_us(epoch_us(when), epoch_us(now or datetime.now(timezone.utc)))


def ago_us(when_us: int, now_us: int) -> str:
    """`ago` of two times in microseconds since the epoch (listings keep them so): human_duration of
    the whole seconds between them (it reads no fraction), so rows made in the same second share them."""
    return _ago_seconds(max(0, now_us - when_us) // 10**6)


@functools.lru_cache(maxsize=1024)
def _ago_seconds(seconds: int) -> str:
    return f"{human_duration(seconds)} ago"
