"""utils.humanize: `ago`, from datetimes or the listings' microsecond times, says what go-units says of the
duration between them."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from pydock.utils.epoch import epoch_us, from_epoch_us
from pydock.utils.humanize import ago, ago_us, human_duration


def test_ago_us_is_ago_at_every_boundary() -> None:
    rng = random.Random(7)
    now = datetime(2026, 12, 2, 11, 22, 33, 123456, tzinfo=timezone.utc)
    for _ in range(20000):
        us = rng.choice([rng.randrange(-10**6, 10**8), rng.randrange(0, 10**11), rng.randrange(0, 10**15)])
        unit = rng.choice([1, 60, 1800, 3600, 86400]) * 10**6  # just around the words' boundaries too
        if rng.random() < 0.5:
            us = us // unit * unit + rng.choice([-1, 0, 1, 499999, 500000, 999999])
        when = now - timedelta(microseconds=us)
        expected = f"{human_duration(max(0.0, (now - when).total_seconds()))} ago"  # go-units on the timedelta
        assert ago_us(epoch_us(when), epoch_us(now)) == ago(when, now) == expected, us


def test_epoch_us_round_trips() -> None:
    when = datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    assert from_epoch_us(epoch_us(when)) == when and epoch_us(when) == 1577934245678901
