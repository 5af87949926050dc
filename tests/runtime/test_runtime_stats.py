"""`Runtime.stats` on every storage driver (in UML the cgroup2 files are read, here the v1 controllers)."""

from __future__ import annotations

import pytest

from pydock.runtime.options import CreateOptions
from pydock.runtime.stats import cpu_percent
from pydock.utils.errors import Conflict

pytestmark = pytest.mark.lxc


def test_stats_of_a_running_container(rt):
    c = rt.create(CreateOptions(image="busybox", cmd=("sh", "-c", "sleep 600 & while :; do :; done"),
                                memory="64m"))
    with pytest.raises(Conflict, match="not running"):
        rt.stats(c)
    rt.start(c)
    try:
        first = rt.stats(c.id)
        later = first
        for _ in range(10_000):  # until the busy loop has been charged some CPU time, and sleep forked
            later = rt.stats(c.id)
            if later.cpu_ns > first.cpu_ns and later.system_ns > first.system_ns and later.pids >= 2:
                break
        assert cpu_percent(first, later) > 0
        assert later.mem_limit == 64 << 20 and 0 < later.mem_usage < later.mem_limit
        assert later.pids >= 2
        assert (later.net_rx, later.net_tx) == (0, 0)  # no network: nothing but lo, which is not counted
    finally:
        rt.kill(c)
        rt.wait(c, timeout=60)
