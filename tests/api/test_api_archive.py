"""`/containers/{id}/archive` (GET, HEAD, PUT) driven by the real docker CLI's `docker cp` both ways and by
the SDK's get_archive/put_archive, on running and stopped containers."""

from __future__ import annotations

import io
import os
import tarfile
import time
import uuid

import pytest

pytestmark = pytest.mark.lxc


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


SCRIPT = "mkdir -p /data/sub; echo hello > /data/f; echo deep > /data/sub/g; ln -s /etc /data/etclink"


def _container(server, *, running: bool) -> str:
    """A container whose /data holds a file, a subdirectory and a symlink to /etc; stopped, or running."""
    name = uniq("arc")
    if running:
        p = server.docker("run", "-d", "--name", name, "--net", "none", "busybox", "sh", "-c",
                          SCRIPT + "; touch /ready; exec sleep 300")
        assert p.returncode == 0, p.stderr.decode()
        deadline = time.monotonic() + 60
        while server.pydock("exec", name, "test", "-e", "/ready").returncode != 0:
            assert time.monotonic() < deadline, "the container never got ready"
            time.sleep(0.1)
    else:
        p = server.docker("run", "--name", name, "--net", "none", "busybox", "sh", "-c", SCRIPT)
        assert p.returncode == 0, p.stderr.decode()
    return name


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "running"])
def test_docker_cp_out_and_in(server, tmp_path, running):
    name = _container(server, running=running)
    try:
        p = server.docker("cp", f"{name}:/data", str(tmp_path / "out"))
        assert p.returncode == 0, p.stderr.decode()
        assert (tmp_path / "out" / "f").read_text() == "hello\n"
        assert (tmp_path / "out" / "sub" / "g").read_text() == "deep\n"
        assert os.readlink(tmp_path / "out" / "etclink") == "/etc"
        p = server.docker("cp", f"{name}:/data/.", str(tmp_path / "contents"))
        assert p.returncode == 0, p.stderr.decode()
        assert sorted(os.listdir(tmp_path / "contents")) == ["etclink", "f", "sub"]
        (tmp_path / "up").mkdir()
        (tmp_path / "up" / "new.txt").write_text("from the host\n")
        os.chown(tmp_path / "up" / "new.txt", 1234, 1234)
        p = server.docker("cp", str(tmp_path / "up" / "new.txt"), f"{name}:/data/renamed.txt")
        assert p.returncode == 0, p.stderr.decode()
        p = server.docker("cp", str(tmp_path / "up"), f"{name}:/data/")
        assert p.returncode == 0, p.stderr.decode()
        p = server.docker("cp", f"{name}:/data/renamed.txt", "-")
        assert p.returncode == 0, p.stderr.decode()
        member = tarfile.open(fileobj=io.BytesIO(p.stdout)).getmembers()
        assert [(m.name, m.uid) for m in member] == [("renamed.txt", 0)]  # root-owned in the container
        p = server.docker("cp", f"{name}:/data/up/new.txt", "-")
        assert p.returncode == 0, p.stderr.decode()
        assert tarfile.open(fileobj=io.BytesIO(p.stdout)).extractfile("new.txt").read() == b"from the host\n"
    finally:
        server.docker("rm", "-f", name)


def test_docker_cp_errors(server, tmp_path):
    name = _container(server, running=False)
    try:
        p = server.docker("cp", f"{name}:/nope", str(tmp_path / "x"))
        assert p.returncode == 1
        assert f"Could not find the file /nope in container {name}" in p.stderr.decode()
        p = server.docker("cp", str(tmp_path), f"{name}:/missing/parent/x")
        assert p.returncode == 1
        assert "Could not find the file" in p.stderr.decode()
        # the container's /etc symlink never leads to the host's /etc
        p = server.docker("cp", f"{name}:/data/etclink/passwd", "-")
        assert p.returncode == 0, p.stderr.decode()
        text = tarfile.open(fileobj=io.BytesIO(p.stdout)).extractfile("passwd").read()
        assert text == server.docker("run", "--rm", "--net", "none", "busybox", "cat", "/etc/passwd").stdout
    finally:
        server.docker("rm", "-f", name)


def test_sdk_get_and_put_archive(server):
    name = _container(server, running=False)
    try:
        result = server.sdk(f"""
import io, tarfile
c = client.containers.get({name!r})
stream, stat = c.get_archive('/data/f')
data = b''.join(stream)
member = tarfile.open(fileobj=io.BytesIO(data)).getmembers()[0]
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w') as t:
    info = tarfile.TarInfo('put.txt'); info.size = 3; info.uid = 4321
    t.addfile(info, io.BytesIO(b'abc'))
ok = c.put_archive('/data', buf.getvalue())
keep = io.BytesIO()
with tarfile.open(fileobj=keep, mode='w') as t:
    info = tarfile.TarInfo('kept.txt'); info.size = 1; info.uid = 4321
    t.addfile(info, io.BytesIO(b'k'))
api = client.api
res = api._put(api._url('/containers/{{0}}/archive', {name!r}), params={{'path': '/data', 'copyUIDGID': 1}},
               data=keep.getvalue())
stream2, stat2 = c.get_archive('/data/put.txt')
put_owner = tarfile.open(fileobj=io.BytesIO(b''.join(stream2))).getmembers()[0].uid
stream3, _ = c.get_archive('/data/kept.txt')
kept_owner = tarfile.open(fileobj=io.BytesIO(b''.join(stream3))).getmembers()[0].uid
_, link = c.get_archive('/data/etclink')
try:
    c.get_archive('/nope')
    missing = None
except docker.errors.NotFound as e:
    missing = str(e)
try:
    c.put_archive('/data/f', buf.getvalue())
    notdir = None
except docker.errors.APIError as e:
    notdir = e.status_code
result = dict(stat=stat, name=member.name, ok=ok, put_owner=put_owner, put_status=res.status_code,
              kept_owner=kept_owner, link=link, missing=missing, notdir=notdir)
""")
        assert result["name"] == "f"
        assert result["stat"]["name"] == "f" and result["stat"]["size"] == 6
        assert result["stat"]["mode"] == 0o644
        assert result["ok"] is True and result["put_status"] == 200
        assert result["put_owner"] == 0  # copyUIDGID unset: root in the container
        assert result["kept_owner"] == 4321
        assert result["link"]["linkTarget"] == "/etc" and result["link"]["mode"] & (1 << 27)
        assert "Could not find the file /nope" in result["missing"]
        assert result["notdir"] == 400
    finally:
        server.docker("rm", "-f", name)


def test_read_only_rootfs_is_403_and_volumes_are_copied(server, tmp_path):
    name = uniq("ro")
    vol = tmp_path / "vol"
    vol.mkdir()
    p = server.docker("create", "--name", name, "--net", "none", "--read-only", "-v", f"{vol}:/data", "busybox",
                      "true")
    assert p.returncode == 0, p.stderr.decode()
    try:
        (tmp_path / "f").write_text("into the volume")
        p = server.docker("cp", str(tmp_path / "f"), f"{name}:/")
        assert p.returncode == 1 and "read-only" in p.stderr.decode()
        p = server.docker("cp", str(tmp_path / "f"), f"{name}:/data/")  # a volume of a read-only container
        assert p.returncode == 0, p.stderr.decode()
        assert (vol / "f").read_text() == "into the volume"
        status = server.sdk(f"""
import io, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w') as t:
    t.addfile(tarfile.TarInfo('x'), io.BytesIO(b''))
try:
    client.containers.get({name!r}).put_archive('/', buf.getvalue())
    result = None
except docker.errors.APIError as e:
    result = e.status_code
""")
        assert status == 403
    finally:
        server.docker("rm", "-f", name)
