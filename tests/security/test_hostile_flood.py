"""A container that floods its output must not grow its monitor: the monitor runs outside the container's
memory cgroup, so what it buffers is the host's memory. 64 MiB of stderr without a newline (the
`cat /dev/zero >&2` shape) leaves the detached monitor's peak RSS where a quiet container's is."""

from __future__ import annotations

import json
import time

import pytest
from hostile_helpers import Store, container_state, overlay_store, status_kib  # noqa: F401 - a fixture

pytestmark = pytest.mark.lxc

FLOOD = 64 << 20
#: what the monitor's peak RSS may exceed a quiet container's monitor by (records are 16 KiB; the pipe
#: reads 64 KiB; the rest is allocator noise)
SLACK_KIB = 24 << 10


def _monitor_peak(store: Store, script: str, until_log_bytes: int, timeout: float = 120) -> tuple[int, str]:
    """Start `script` detached, wait until its log has `until_log_bytes` and its last line, then the
    monitor's VmHWM (KiB) and the container id."""
    cid = store.ok("run", "-d", "busybox", "sh", "-c", script).strip()
    log = store.root / "containers" / cid / f"{cid}-json.log"
    deadline = time.monotonic() + timeout
    while True:
        size = log.stat().st_size
        if size >= until_log_bytes and log.read_bytes()[-200:].find(b'"log": "done\\n"') >= 0:
            break
        assert time.monotonic() < deadline, f"only {size} bytes logged after {timeout} s"
        time.sleep(0.2)
    pid = container_state(store, cid)["MonitorPid"]
    assert pid > 0
    return status_kib(pid, "VmHWM"), cid


def test_stderr_flood_without_newlines_keeps_the_monitor_flat(overlay_store: Store):
    store = overlay_store
    quiet, qid = _monitor_peak(store, "echo done; exec sleep 300", 1)
    flood, fid = _monitor_peak(store, f"tr '\\0' a < /dev/zero | head -c {FLOOD} >&2; echo done; exec sleep 300",
                               FLOOD)
    try:
        assert flood - quiet < SLACK_KIB, f"monitor peak RSS {flood} KiB under a flood, {quiet} KiB quiet"
    finally:
        store.ok("rm", "-f", qid, fid)


def test_a_long_line_is_split_into_16k_records_and_read_back_whole(overlay_store: Store):
    store = overlay_store
    cid = store.ok("run", "-d", "busybox", "sh", "-c", "head -c 40000 /dev/zero | tr '\\0' b; echo; echo end").strip()
    store.ok("wait", cid)
    log = store.root / "containers" / cid / f"{cid}-json.log"
    records = [json.loads(line)["log"] for line in log.read_text().splitlines()]
    assert [len(r) for r in records] == [16384, 16384, 40000 - 2 * 16384 + 1, 4]
    assert store.ok("logs", cid) == "b" * 40000 + "\nend\n"
    store.ok("rm", cid)
