"""`stats --no-stream`: one reading per running container, from its cgroup."""

from __future__ import annotations

import pytest
from tty_helpers import pydock

pytestmark = pytest.mark.lxc


HEADERS = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]


def _rows(out: bytes) -> dict[str, list[str]]:
    """Each row's cells by the header's column positions (left-aligned columns; a cell may fill its own)."""
    lines = out.decode().splitlines()
    starts = [lines[0].index(h) for h in HEADERS]
    assert starts == sorted(starts), lines[0]
    bounds = list(zip(starts, [*starts[1:], None]))
    rows = {}
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in bounds]
        rows[cells[1]] = cells
    return rows


def test_stats_no_stream(root):
    assert pydock(root, "run", "-d", "--name", "busy", "-m", "64m", "busybox", "sh", "-c",
                  "sleep 600 & while :; do :; done").returncode == 0
    assert pydock(root, "run", "-d", "--name", "idle", "busybox", "sleep", "600").returncode == 0
    assert pydock(root, "create", "--name", "off", "busybox", "true").returncode == 0
    p = pydock(root, "stats", "--no-stream")
    assert p.returncode == 0, p.stderr
    rows = _rows(p.stdout)
    assert set(rows) == {"busy", "idle"}  # running containers only
    cells = rows["busy"]
    cpu, mem, mem_pct, pids = cells[2], cells[3], cells[4], cells[-1]
    assert float(cpu.rstrip("%")) > 0  # a busy loop used CPU during the second measured
    assert mem.endswith("/ 64MiB") and mem_pct.endswith("%")
    assert int(pids) >= 2
    p = pydock(root, "stats", "--no-stream", "idle")
    assert p.returncode == 0 and set(_rows(p.stdout)) == {"idle"}
    p = pydock(root, "stats", "--no-stream", "off")
    assert p.returncode != 0 and b"is not running" in p.stderr
