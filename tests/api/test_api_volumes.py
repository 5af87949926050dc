"""The volume routes through the real docker CLI and SDK: create, ls, inspect, rm (refused while in
use), prune, `-v NAME:/ctr` and the container's Mounts."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.lxc


def test_docker_cli_volumes(server):
    assert server.docker_ok("volume", "create", "--label", "k=v", "cli-vol") == "cli-vol\n"
    assert server.docker_ok("volume", "ls", "-q") == "cli-vol\n"
    shown = json.loads(server.docker_ok("volume", "inspect", "cli-vol"))[0]
    assert (shown["Name"], shown["Driver"], shown["Labels"], shown["Scope"]) == ("cli-vol", "local", {"k": "v"}, "local")
    cid = server.docker_ok("run", "-d", "--net", "none", "-v", "cli-vol:/data", "busybox",
                           "sh", "-c", "echo from-docker > /data/f").strip()
    assert server.docker_ok("wait", cid) == "0\n"
    mounts = json.loads(server.docker_ok("inspect", "--format", "{{json .Mounts}}", cid))
    assert [(m["Type"], m["Name"], m["Destination"], m["RW"]) for m in mounts] == [("volume", "cli-vol", "/data", True)]
    p = server.docker("volume", "rm", "cli-vol")
    assert p.returncode == 1 and f"remove cli-vol: volume is in use - [{cid}]" in p.stderr.decode()
    server.docker_ok("rm", cid)
    assert server.docker_ok("run", "--rm", "--net", "none", "-v", "cli-vol:/data:ro", "busybox", "cat", "/data/f") == \
        "from-docker\n"
    assert server.docker_ok("volume", "rm", "cli-vol") == "cli-vol\n"
    p = server.docker("volume", "create", "--driver", "nfs", "x1")
    assert p.returncode == 1 and "Driver 'nfs' is not supported: only local" in p.stderr.decode()


def test_sdk_volumes(server):
    r = server.sdk("""
v = client.volumes.create(name='sdk-vol', labels={'a': 'b'})
got = client.volumes.get('sdk-vol')
listed = [x.name for x in client.volumes.list(filters={'label': 'a=b'})]
out = client.containers.run('busybox', 'ls /data', volumes={'sdk-vol': {'bind': '/data', 'mode': 'rw'}},
                            remove=True, network_mode='none')
anon = client.api.create_volume()['Name']
pruned = client.volumes.prune()
v.remove()
try:
    client.volumes.get('sdk-vol')
    gone = False
except docker.errors.NotFound:
    gone = True
result = [got.attrs['Labels'], listed, out.decode(), anon in (pruned['VolumesDeleted'] or []), gone]
""")
    assert r == [{"a": "b"}, ["sdk-vol"], "", False, True]
