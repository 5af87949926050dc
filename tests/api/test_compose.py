"""Debian's docker-compose (1.29) against `pydock serve`: a three-service project (web, worker, db, each
built from busybox in the test) with a named volume, a user network, depends_on, environment and a
published port comes up, shows in `ps` and `logs`, runs `exec`, restarts, and `down -v` leaves nothing
behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from api_helpers import clean_env

pytestmark = [pytest.mark.lxc, pytest.mark.network,
              pytest.mark.skipif(shutil.which("docker-compose") is None,
                                 reason="docker-compose is needed (Debian package docker-compose)")]
PROJECT = Path(__file__).with_name("compose_project")


def _compose(srv, project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**clean_env(), **srv.docker_env(), "COMPOSE_INTERACTIVE_NO_CLI": "1"}
    return subprocess.run(["docker-compose", "--ansi", "never", "-p", "ctest", *args], cwd=project, capture_output=True,
                          timeout=timeout, env=env)


def _ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, (p.stdout.decode() + p.stderr.decode())[-3000:]
    return p.stdout.decode()


def _in_netns(srv, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net=/proc/{srv.proc.pid}/ns/net", *argv], capture_output=True, text=True)


def _wait_for(what: str, check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_compose_up_ps_logs_restart_down(netns_server, tmp_path: Path) -> None:
    srv = netns_server
    project = tmp_path / "proj"
    shutil.copytree(PROJECT, project)
    try:
        _ok(_compose(srv, project, "up", "-d"))
        ps = _ok(_compose(srv, project, "ps")).splitlines()[2:]
        assert sorted(line.split()[0] for line in ps) == ["ctest_db_1", "ctest_web_1", "ctest_worker_1"]
        assert all(" Up " in line for line in ps), ps
        assert "0.0.0.0:18080->8080/tcp" in [line for line in ps if line.startswith("ctest_web_1")][0]
        net = json.loads(_ok(srv.docker("network", "inspect", "ctest_back")))[0]
        assert sorted(c["Name"] for c in net["Containers"].values()) == ["ctest_db_1", "ctest_web_1", "ctest_worker_1"]
        gateway = net["IPAM"]["Config"][0]["Gateway"]
        # the published port, from the host side (the server's namespace), reaches web, which got db's answer
        fetch = ["python3", "-c", f"import urllib.request; print(urllib.request.urlopen("
                                  f"'http://{gateway}:18080/', timeout=5).read().decode(), end='')"]
        _wait_for("web to serve", lambda: _in_netns(srv, *fetch).stdout == "db store up\n")
        _wait_for("the worker to reach db by name",
                  lambda: "worker got: db store up" in _compose(srv, project, "logs", "worker").stdout.decode())
        logs = _ok(_compose(srv, project, "logs"))
        assert "db ready" in logs and "web serving" in logs
        assert "data" in _ok(srv.docker("volume", "ls", "-q")).replace("ctest_data", "data")
        # exec in a service's container: its environment, its volume, its network's names
        out = _ok(_compose(srv, project, "exec", "-T", "worker", "sh", "-c",
                           'echo "$DB_HOST"; grep -c ctest_db_1 /etc/hosts'))
        assert out.split() == ["db", "1"]
        failed = _compose(srv, project, "exec", "-T", "db", "sh", "-c", "exit 3")
        assert failed.returncode == 3
        _ok(_compose(srv, project, "restart"))
        ps = _ok(_compose(srv, project, "ps")).splitlines()[2:]
        assert len(ps) == 3 and all(" Up " in line for line in ps), ps
        _wait_for("web to serve after the restart", lambda: _in_netns(srv, *fetch).stdout == "db store up\n")
        hosts = (srv.root / "containers" / json.loads(_ok(srv.docker("inspect", "ctest_web_1")))[0]["Id"] / "hosts")
        names = {line.split()[1]: set(line.split()[2:]) for line in hosts.read_text().splitlines()
                 if line and not line.startswith("#") and len(line.split()) > 2}
        assert "db" in names["ctest_db_1"] and "worker" in names["ctest_worker_1"]  # service names are aliases
    finally:
        down = _compose(srv, project, "down", "-v")
    _ok(down)
    assert _ok(srv.docker("ps", "-aq")).split() == []
    assert "ctest_back" not in _ok(srv.docker("network", "ls"))
    assert "ctest_data" not in _ok(srv.docker("volume", "ls", "-q"))
    links = _in_netns(srv, "ip", "-o", "link").stdout
    assert "br-" not in links and " ve" not in links, links
    rules = _in_netns(srv, "iptables", "-w", "-S").stdout + _in_netns(srv, "iptables", "-w", "-t", "nat", "-S").stdout
    assert "br-" not in rules and "18080" not in rules and "PYDOCK-ISOLATION" not in rules, rules
