"""The real docker SDK (docker-py 7.x) against `pydock serve`, mirroring the upstream integration tests'
assertions (models_containers_test, models_images_test) on pydock's busybox.

The SDK is not a pydock dependency: each test runs its script in a python that can `import docker`."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.lxc


def test_negotiates_and_pings(server):
    r = server.sdk("result = [client.ping(), client.api.api_version, client.version()['MinAPIVersion']]")
    assert r == [True, "1.44", "1.24"]


def test_run_returns_output_and_removes(server):
    r = server.sdk("""
out = client.containers.run('busybox', 'echo hello world', remove=True, network_mode='none')
try:
    client.containers.run('busybox', "sh -c 'echo oops >&2; exit 3'", remove=True, network_mode='none')
    err = None
except docker.errors.ContainerError as e:
    err = [e.exit_status, e.stderr.decode()]
result = [out.decode(), err, len(client.containers.list(all=True))]
""")
    assert r == ["hello world\n", [3, "oops\n"], 0]


def test_run_detach_get_list_kill_remove(server):
    name = "sdk-" + uuid.uuid4().hex[:6]
    r = server.sdk(f"""
c = client.containers.run('busybox', 'sleep 30', detach=True, name={name!r}, network_mode='none')
first = c.status
c.reload()
got = client.containers.get({name!r})
listed = [x.name for x in client.containers.list()]
sparse = [x.id for x in client.containers.list(all=True, sparse=True)]
c.kill()
c.reload()
killed = [c.status, c.attrs['State']['ExitCode']]
c.remove()
try:
    client.containers.get({name!r})
    gone = False
except docker.errors.NotFound:
    gone = True
result = [first, c.name, got.id == c.id, got.image.tags, {name!r} in listed, c.id in sparse, killed, gone]
""")
    assert r == ["created", name, True, ["busybox:latest"], True, True, ["exited", 137], True]


def test_wait_logs_diff_commit(server):
    repo = "sdkimg-" + uuid.uuid4().hex[:6]
    r = server.sdk(f"""
c = client.containers.run('busybox', "sh -c 'touch /made; echo logged'", detach=True, network_mode='none')
status = c.wait()
logs = c.logs().decode()
diff = c.diff()
img = c.commit({repo!r}, 'v2')
tags = img.tags
labels = img.labels
ids = [i.id for i in client.images.list()]
c.remove()
client.images.remove({repo!r} + ':v2')
result = [status, logs, diff, tags, labels, img.id in ids]
""")
    assert r[0] == {"StatusCode": 0, "Error": None}
    assert r[1] == "logged\n"
    assert {"Path": "/made", "Kind": 1} in r[2]
    assert r[3] == [f"{repo}:v2"]
    assert r[4] == {}
    assert r[5] is True


def test_auto_remove_and_streamed_logs(server):
    r = server.sdk("""
c = client.containers.run('busybox', 'true', detach=True, remove=True, network_mode='none')
code = c.wait(condition='removed')['StatusCode']
try:
    c.reload()
    removed = False
except docker.errors.NotFound:
    removed = True
lines = [x.decode() for x in client.containers.run('busybox', "sh -c 'echo a; echo b'", stream=True,
                                                    remove=True, network_mode='none')]
result = [code, removed, ''.join(lines)]
""")
    assert r == [0, True, "a\nb\n"]


def test_import_image_and_missing_image(server):
    repo = "sdkimport-" + uuid.uuid4().hex[:6]
    r = server.sdk(f"""
import io, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w') as t:
    ti = tarfile.TarInfo('hello.txt'); ti.size = 3; t.addfile(ti, io.BytesIO(b'hi\\n'))
raw = client.api.import_image(src=buf.getvalue(), repository={repo!r}, tag='t')
img = client.images.get({repo!r} + ':t')
try:
    client.containers.run('nosuchimage-{uuid.uuid4().hex[:6]}', 'true')
    missing = None
except docker.errors.ImageNotFound as e:
    missing = 'ImageNotFound'
except docker.errors.APIError as e:  # a real pull now: offline (as in CI) Docker Hub is unreachable
    missing = 'ImageNotFound' if 'registry-1.docker.io is unreachable' in str(e) else repr(e)
client.images.remove({repo!r} + ':t')
result = [raw, img.tags, img.attrs['Config'] is not None, missing]
""")
    assert '"status": "sha256:' in r[0]
    assert r[1] == [f"{repo}:t"]
    assert r[2] is True
    assert r[3] == "ImageNotFound"


def test_bind_mount_volume(server, tmp_path):
    src = tmp_path / "vol"
    src.mkdir()
    (src / "f").write_text("from-host\n")
    r = server.sdk(f"""
out = client.containers.run('busybox', 'cat /m/f', volumes={{{str(src)!r}: {{'bind': '/m', 'mode': 'ro'}}}},
                            remove=True, network_mode='none')
result = out.decode()
""")
    assert r == "from-host\n"
