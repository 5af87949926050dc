"""`docker run --link` end to end: the server runs in a network namespace this module creates, so the
bridge, veths and iptables rules pydock makes for linked containers live (and die) there."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.lxc, pytest.mark.network]


def test_run_with_link_sees_env_and_hosts(netns_server):
    srv = netns_server
    p = srv.docker("run", "-d", "--name", "db", "--expose", "6379", "busybox", "sleep", "30")
    assert p.returncode == 0, p.stderr.decode()
    ip = srv.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "db").stdout.decode().strip()
    assert ip.count(".") == 3
    run = srv.docker("run", "--rm", "--name", "web", "--link", "db:db", "busybox", "sh", "-c",
                     "env | sort; cat /etc/hosts")
    assert run.returncode == 0, run.stderr.decode()
    text = run.stdout.decode()
    assert "DB_NAME=/web/db" in text
    assert f"DB_PORT=tcp://{ip}:6379" in text
    assert any(line.split()[:1] == [ip] and "db" in line.split()[1:] for line in text.splitlines())
    # --rm removed web, and with it the link name
    names = srv.docker("ps", "--no-trunc", "--format", "{{.Names}}").stdout.decode().split()
    assert names == ["db"]
