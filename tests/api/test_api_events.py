"""The docker CLI against `pydock serve` for pause/unpause, rename, stats and events."""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = pytest.mark.lxc


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_pause_rename_stats_and_events_through_docker(server):
    t0 = str(int(time.time()) - 1)
    name, renamed = uniq("ev"), uniq("evr")
    p = server.docker("run", "-d", "--name", name, "--net", "none", "busybox", "sh", "-c",
                      "sleep 600 & while :; do :; done")
    assert p.returncode == 0, p.stderr.decode()
    cid = p.stdout.decode().strip()
    assert server.docker("pause", name).returncode == 0
    state = server.docker("inspect", "-f", "{{.State.Paused}}", name).stdout.decode().strip()
    assert state == "true"
    listed = server.docker("ps", "--filter", f"name={name}", "--format", "{{.State}} {{.Status}}").stdout.decode()
    assert listed.startswith("paused Up ") and listed.rstrip().endswith("(Paused)")
    assert server.docker("info", "--format", "{{.ContainersPaused}}").stdout.decode().strip() == "1"
    p = server.docker("pause", name)
    assert p.returncode == 1 and "already paused" in p.stderr.decode()
    assert server.docker("unpause", name).returncode == 0
    p = server.docker("rename", name, renamed)
    assert p.returncode == 0, p.stderr.decode()
    assert renamed in server.docker("ps", "--filter", f"name={renamed}").stdout.decode()
    p = server.docker("stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.PIDs}}", renamed)
    assert p.returncode == 0, p.stderr.decode()
    fields = p.stdout.decode().split()
    assert fields[0] == renamed and fields[1].endswith("%") and int(fields[2]) >= 1
    assert server.docker("rm", "-f", renamed).returncode == 0
    p = server.docker("events", "--since", t0, "--until", str(int(time.time()) + 1),
                      "--filter", f"container={cid}", "--format", "{{.Action}}")
    assert p.returncode == 0, p.stderr.decode()
    actions = p.stdout.decode().split()
    for action in ("create", "start", "pause", "unpause", "rename", "kill", "die", "destroy"):
        assert action in actions, (action, actions)
    assert actions.index("create") < actions.index("start") < actions.index("pause") < actions.index("die")
