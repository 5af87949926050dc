"""Create/runtime options through `pydock serve`, driven by the real docker CLI and SDK: the log driver
and its rotation, privileged mode, `docker update`, prune filters."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.lxc


def _ok(server, *args: str) -> str:
    p = server.docker(*args)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def test_log_driver_and_rotation_through_the_docker_cli(server):
    cid = _ok(server, "run", "-d", "--net", "none", "--log-opt", "max-size=1k", "--log-opt", "max-file=2", "busybox",
              "sh", "-c", "i=0; while [ $i -lt 200 ]; do echo row $i; i=$((i+1)); done").strip()
    assert _ok(server, "wait", cid) == "0\n"
    rows = _ok(server, "logs", cid).splitlines()
    assert rows[-1] == "row 199" and rows == [f"row {i}" for i in range(200 - len(rows), 200)] and len(rows) < 200
    config = json.loads(_ok(server, "inspect", "-f", "{{json .HostConfig.LogConfig}}", cid))
    assert config == {"Type": "json-file", "Config": {"max-size": "1k", "max-file": "2"}}
    _ok(server, "rm", cid)
    cid = _ok(server, "run", "-d", "--net", "none", "--log-driver", "none", "busybox", "echo", "hi").strip()
    assert _ok(server, "wait", cid) == "0\n"
    p = server.docker("logs", cid)
    assert p.returncode != 0 and "configured logging driver does not support reading" in p.stderr.decode()
    assert _ok(server, "inspect", "-f", "{{.HostConfig.LogConfig.Type}}|{{.LogPath}}", cid) == "none|\n"
    _ok(server, "rm", cid)
    p = server.docker("run", "--net", "none", "--log-opt", "tag=x", "busybox", "true")
    assert p.returncode == 125 and "log opt 'tag' of the json-file log driver is not supported" in p.stderr.decode()
    assert _ok(server, "ps", "-aq") == ""
