"""The API over the devicemapper driver (runs inside User-Mode Linux): run, diff, commit, rmi through
the docker CLI, with the thin devices made and dropped by the server's runtimes and helpers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from api_helpers import DOCKER, NO_DOCKER, Server, served

pytestmark = [pytest.mark.dm, pytest.mark.lxc]


@pytest.fixture(scope="module")
def dm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if DOCKER is None:
        pytest.skip(NO_DOCKER)
    with served(tmp_path_factory.mktemp("apidm"), driver="devicemapper") as srv:
        yield srv


def test_run_diff_commit_on_devicemapper(dm_server):
    srv = dm_server
    p = srv.docker("run", "--rm", "--net", "none", "busybox", "sh", "-c", "echo dm; exit 5")
    assert (p.returncode, p.stdout) == (5, b"dm\n"), p.stderr.decode()
    assert srv.docker("run", "-d", "--name", "dmweb", "--net", "none", "busybox", "sh", "-c",
                      "touch /made; exec sleep 30").returncode == 0
    for _ in range(100):
        diff = srv.docker("diff", "dmweb").stdout.decode().splitlines()
        if "A /made" in diff:
            break
    assert "A /made" in diff
    assert srv.docker("commit", "dmweb", "dmimg:1").returncode == 0
    assert srv.docker("rm", "-f", "dmweb").returncode == 0
    ls = srv.docker("run", "--rm", "--net", "none", "dmimg:1", "ls", "/made")
    assert (ls.returncode, ls.stdout) == (0, b"/made\n"), ls.stderr.decode()
    assert "dmimg" in srv.pydock("images").stdout.decode()
    assert srv.docker("rmi", "dmimg:1").returncode == 0


def test_exec_on_devicemapper_and_removal_under_a_running_exec(dm_server):
    """exec resolves its user, directory and command in the thin device's mounted rootfs; a container removed
    while an exec runs in it leaves no device or record behind."""
    srv = dm_server
    assert srv.docker("run", "-d", "--name", "dmexec", "--net", "none", "busybox", "sleep", "300").returncode == 0
    p = srv.docker("exec", "-i", "-u", "nobody", "-w", "/tmp", "dmexec", "sh", "-c", "cat > got; id -u; cat got",
                   input=b"through the thin device\n")
    assert (p.returncode, p.stdout) == (0, b"65534\nthrough the thin device\n"), p.stderr.decode()
    assert srv.docker("exec", "dmexec", "no-such-command").returncode == 127
    assert srv.docker("exec", "-d", "dmexec", "sleep", "300").returncode == 0
    cid = srv.docker("inspect", "-f", "{{.Id}}", "dmexec").stdout.decode().strip()
    assert srv.docker("rm", "-f", "dmexec").returncode == 0
    assert not (srv.root / "containers" / cid).exists()
    devices = subprocess.run(["dmsetup", "ls"], capture_output=True, text=True, check=True).stdout
    assert cid not in devices, devices
