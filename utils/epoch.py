"""Times as microseconds since the epoch, exactly (timedelta arithmetic, no float): how the listing
indexes keep them, cheap to store, sort and compare, and back to the very datetime they came from."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def epoch_us(when: datetime) -> int:
    """Microseconds since the epoch of an aware time."""
    return (when - EPOCH) // _MICROSECOND


def from_epoch_us(us: int) -> datetime:
    """The aware UTC time `us` microseconds after the epoch (epoch_us's inverse)."""
    return EPOCH + timedelta(microseconds=us)
