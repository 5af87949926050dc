"""Named and anonymous volumes: `-v NAME:/ctr` makes or reuses a volume that outlives its containers,
a new or empty volume starts with the image's content at its mount point (copy-up, resolved inside the
image), `rm -v` takes anonymous volumes only, and `volume rm|prune` never take one a container uses."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from pydock.runtime import volumes as volume_ops
from pydock.utils.errors import Conflict, InvalidArgument, NotFound

pytestmark = pytest.mark.lxc


def _out(result) -> str:
    assert result.exit_code == 0, result.stderr
    return result.stdout.decode()


def test_a_named_volume_outlives_its_containers_and_starts_with_the_images_content(rt):
    # copy-up: the image's /etc, owners and modes kept, in the new volume
    listing = _out(rt.run("busybox", ["sh", "-c", "stat -c '%a %u %n' /etc/passwd; echo kept > /etc/mine"],
                          remove=True, volumes=("etcvol:/etc",)))
    assert listing == "644 0 /etc/passwd\n"
    info = rt.volumes.get("etcvol")
    assert (info.mountpoint / "passwd").read_text().startswith("root:")
    # `--rm` took the container, not the named volume: the next container sees what the first wrote
    assert _out(rt.run("busybox", ["cat", "/etc/mine"], remove=True, volumes=("etcvol:/etc:ro",))) == "kept\n"
    # a volume that is not empty is not filled again
    (info.mountpoint / "passwd").unlink()
    assert _out(rt.run("busybox", ["ls", "/etc"], remove=True, volumes=("etcvol:/etc",))).split() == \
        sorted(["group", "hostname", "hosts", "mine", "resolv.conf"])
    c = rt.create("busybox", ["true"], volumes=("etcvol:/data",))
    with pytest.raises(Conflict, match=rf"remove etcvol: volume is in use - \[{c.id}\]"):
        volume_ops.remove(rt, "etcvol")
    assert volume_ops.prune(rt, all_=True) == ([], 0)  # in use: not pruned
    rt.remove(c, volumes=True)
    volume_ops.remove(rt, "etcvol")
    with pytest.raises(NotFound, match="get etcvol: no such volume"):
        rt.volumes.get("etcvol")


def test_rm_v_takes_anonymous_volumes_and_prune_the_unused_ones(rt):
    c = rt.create("busybox", ["true"], volumes=("/anon", "named:/named"))
    anon = rt.volumes.owner_of(c.volumes["/anon"])
    assert anon is not None and anon.anonymous and not rt.volumes.owner_of(c.volumes["/named"]).anonymous
    rt.remove(c, volumes=True)
    assert [v.name for v in rt.volumes.list()] == ["named"]
    rt.create("busybox", ["true"], volumes=("/kept",))  # its anonymous volume is in use
    orphan = rt.volumes.anonymous()
    (orphan / "f").write_bytes(b"12345")
    assert volume_ops.prune(rt) == ([orphan.name], 5)  # anonymous and unused only
    assert sorted(v.anonymous for v in rt.volumes.list()) == [False, True]
    assert volume_ops.prune(rt, all_=True) == (["named"], 0)


def test_a_failed_create_leaves_no_volume(rt):
    with pytest.raises(NotFound):
        rt.create("busybox", ["true"], volumes=("/anon",), links=("nosuchcontainer:alias",))
    assert rt.volumes.list() == [] and rt.containers(all=True) == []


def test_volume_names_are_docker_local_names(rt):
    for bad in ("a", "-x:/d", "sp ace:/d", "x/y:/d"):
        with pytest.raises(InvalidArgument):
            rt.create("busybox", ["true"], volumes=(bad if ":" in bad else f"{bad}:/d",))
    with pytest.raises(InvalidArgument, match="only \\[a-zA-Z0-9\\]\\[a-zA-Z0-9_.-\\] are allowed"):
        rt.volumes.create("../escape")


def test_copy_up_resolves_the_images_symlinks_inside_the_image(rt, busybox_tar: bytes, tmp_path):
    """An image whose /data is a symlink to /etc fills the volume with the image's /etc, never the host's."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(busybox_tar)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        link = tarfile.TarInfo("data")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        dst.addfile(link)
    rt.images.import_(io.BytesIO(out.getvalue()), repo="linked", tag="1")
    rt.create("linked:1", ["true"], volumes=("linkvol:/data",))
    filled = sorted(os.listdir(rt.volumes.get("linkvol").mountpoint))
    assert "passwd" in filled and "os-release" not in filled  # the host's /etc has os-release


def test_the_volume_commands(cli):
    def ok(*args: str) -> str:
        p = cli(*args)
        assert p.returncode == 0, p.stderr.decode()
        return p.stdout.decode()

    assert ok("volume", "create", "--label", "team=qa", "data") == "data\n"
    assert ok("volume", "create", "data") == "data\n"  # an existing name: the same volume, as in Docker
    anonymous = ok("volume", "create").strip()
    assert len(anonymous) == 64
    assert ok("volume", "ls", "-q", "--filter", "label=team=qa") == "data\n"
    assert ok("volume", "ls").splitlines() == ["DRIVER    VOLUME NAME",
                                               *(f"local     {name}" for name in sorted([anonymous, "data"]))]
    shown = json.loads(ok("volume", "inspect", "data"))
    assert [(v["Name"], v["Driver"], v["Labels"], v["Mountpoint"].endswith("/volumes/data/_data")) for v in shown] \
        == [("data", "local", {"team": "qa"}, True)]
    assert ok("run", "--rm", "--net", "none", "-v", "data:/d", "busybox", "sh", "-c", "echo hi > /d/f") == ""
    cid = ok("create", "--net", "none", "-v", "data:/d", "busybox", "cat", "/d/f").strip()
    p = cli("volume", "rm", "data", "nope")
    assert p.returncode == 1 and p.stderr.decode().splitlines() == [
        f"Error: remove data: volume is in use - [{cid}]", "Error: get nope: no such volume"]
    assert ok("volume", "ls", "-q", "--filter", "dangling=false") == "data\n"
    assert ok("start", "-a", cid) == "hi\n"
    ok("rm", "-v", cid)
    assert ok("volume", "prune", "-f") == "Total reclaimed space: 0 B\n"  # no anonymous volume is unused
    assert ok("volume", "rm", "data") == "data\n"
    p = cli("run", "--rm", "--net", "none", "-v", "bad name:/d", "busybox", "true")
    assert p.returncode == 125 and b"includes invalid characters for a local volume name" in p.stderr
    assert ok("volume", "ls", "-q") == f"{anonymous}\n"


def test_volumes_from_shares_another_containers_volumes(rt):
    a = rt.create("busybox", ["sh", "-c", "echo shared > /data/f"], volumes=("/data", "named-a:/named"))
    rt.start(a)
    assert rt.wait(a, timeout=30) == 0
    result = rt.run("busybox", ["sh", "-c", "cat /data/f; touch /data/g 2>/dev/null || echo read-only; ls /named"],
                    remove=True, volumes_from=(f"{a.id[:12]}:ro",))
    assert result.stdout == b"shared\nread-only\n"
    b = rt.create("busybox", ["cat", "/data/f"], volumes_from=(a.id,))
    assert b.volumes["/data"] == a.volumes["/data"] and b.volumes_rw["/data"]
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /data"):
        rt.create("busybox", ["true"], volumes=("/data",), volumes_from=(a.id,))
    anonymous = rt.volumes.owner_of(a.volumes["/data"])
    rt.remove(a, volumes=True)  # b still uses the anonymous volume: it stays
    assert rt.volumes.get(anonymous.name).anonymous
    rt.remove(b, volumes=True)  # now nothing does
    with pytest.raises(NotFound):
        rt.volumes.get(anonymous.name)
