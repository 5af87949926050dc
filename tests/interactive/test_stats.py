"""`stats --no-stream`: one reading per running container, from its cgroup."""

from __future__ import annotations

import pytest
from tty_helpers import pydock

pytestmark = pytest.mark.lxc


def _rows(out: bytes) -> dict[str, list[str]]:
    lines = out.decode().splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%",
                                "NET", "I/O", "BLOCK", "I/O", "PIDS"]
    return {line.split()[1]: line.split("   ") for line in lines[1:]}


def test_stats_no_stream(root):
    assert pydock(root, "run", "-d", "--name", "busy", "-m", "64m", "busybox", "sh", "-c",
                  "sleep 600 & while :; do :; done").returncode == 0
    assert pydock(root, "run", "-d", "--name", "idle", "busybox", "sleep", "600").returncode == 0
    assert pydock(root, "create", "--name", "off", "busybox", "true").returncode == 0
    p = pydock(root, "stats", "--no-stream")
    assert p.returncode == 0, p.stderr
    rows = _rows(p.stdout)
    assert set(rows) == {"busy", "idle"}  # running containers only
    cells = [c.strip() for c in rows["busy"] if c.strip()]
    cpu, mem, mem_pct, pids = cells[2], cells[3], cells[4], cells[-1]
    assert float(cpu.rstrip("%")) > 0  # a busy loop used CPU during the second measured
    assert mem.endswith("/ 64MiB") and mem_pct.endswith("%")
    assert int(pids) >= 2
    p = pydock(root, "stats", "--no-stream", "idle")
    assert p.returncode == 0 and set(_rows(p.stdout)) == {"idle"}
    p = pydock(root, "stats", "--no-stream", "off")
    assert p.returncode != 0 and b"is not running" in p.stderr
