"""save and load against podman, both ways: archives podman writes load and run in pydock with the same
files; archives pydock writes load and run in podman; layers are shared and stored once; bad archives
fail in one line and leave nothing registered."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import tarfile
import time
from pathlib import Path

import pytest
from images_helpers import PODMAN_RUN, tar_bytes, tree_of_dir

pytestmark = pytest.mark.lxc

#: mount points and files every runtime adds to a rootfs it runs: not part of an image's tree
RUNTIME_PATHS = ("proc", "sys", "dev", "run", "etc/hosts", "etc/hostname", "etc/resolv.conf", ".dockerinit",
                 ".dockerenv", "etc/mtab")


def _trees_equal(a: dict, b: dict) -> None:
    keys = sorted(set(a) | set(b))
    diff = [k for k in keys if a.get(k) != b.get(k) and k not in RUNTIME_PATHS]
    assert diff == [], f"trees differ at {diff[:10]}"


def _podman_tree(podman, ref: str) -> dict:
    path = Path(podman("image", "mount", ref).out.strip())
    try:
        return tree_of_dir(path)
    finally:
        podman("image", "unmount", ref)


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_podman_save_pydock_load_run(pydock, podman, peer_image, tmp_path: Path, fmt: str):
    archive = tmp_path / "multi.tar"
    podman("save", "--format", fmt, "-o", str(archive), "localhost/multi:1")
    if fmt == "oci-archive":  # compressed archives load too, from a pipe
        loaded = pydock("load", stdin=lzma.compress(archive.read_bytes()))
    else:
        loaded = pydock("load", "-i", str(archive))
    assert loaded.out == "Loaded image: localhost/multi:1\n"
    # the image id is the config's digest: the one podman shows
    assert pydock.image_id("localhost/multi:1") == peer_image
    info = pydock.inspect("localhost/multi:1")
    assert len(info["RootFS"]["Layers"]) == 3
    assert info["config"]["Env"][-1] == "FOO=bar" and info["config"]["WorkingDir"] == "/data"
    # the image config is honoured by run: Cmd, Env, WorkingDir
    assert pydock("run", "--rm", "localhost/multi:1").out == "one\n"
    out = pydock("run", "--rm", "localhost/multi:1", "sh", "-c", 'pwd; echo $FOO; ls /data; ls /bin/vi || true')
    assert out.out.splitlines()[:5] == ["/data", "bar", "empty", "link", "one"]
    assert "No such file" in out.err or "No such file" in out.out
    with pydock.mounted(peer_image) as rootfs:
        ours = tree_of_dir(rootfs)
    _trees_equal(ours, _podman_tree(podman, "localhost/multi:1"))


@pytest.mark.parametrize("fmt,compress", [("docker", None), ("docker", "gzip"), ("oci", "xz")])
def test_pydock_save_podman_load_run(pydock, podman, peer_image, tmp_path: Path, fmt: str, compress: str | None):
    archive = tmp_path / "multi.tar"
    podman("save", "-o", str(archive), "localhost/multi:1")
    pydock("load", "-i", str(archive))
    pydock("tag", "localhost/multi:1", "mine/multi:2")
    podman("rmi", "-f", "localhost/multi:1")
    saved = pydock("save", "--format", fmt, "mine/multi:2").stdout
    if compress == "gzip":
        saved = gzip.compress(saved)
    elif compress == "xz":
        saved = lzma.compress(saved)
    out = tmp_path / "back.tar"
    out.write_bytes(saved)
    podman("load", "-i", str(out))
    # byte-exact layers: podman computes the same config digest, the same image id
    assert podman("image", "inspect", "--format", "{{.Id}}", "mine/multi:2").out.strip() == peer_image
    ran = podman("run", "--rm", *PODMAN_RUN, "mine/multi:2", "sh", "-c", "pwd; echo $FOO; cat /data/one")
    assert ran.out == "/data\nbar\none\n"
    with pydock.mounted(peer_image) as rootfs:
        ours = tree_of_dir(rootfs)
    _trees_equal(ours, _podman_tree(podman, "mine/multi:2"))


def test_pydock_made_image_round_trips(pydock, podman, tmp_path: Path):
    """An image made in pydock (busybox + commit) saves with a config built from its history."""
    pydock("run", "--name", "maker", "busybox", "sh", "-c", "echo made > /made")
    pydock("commit", "-m", "add made", "maker", "made:v1")
    pydock("rm", "maker")
    archive = tmp_path / "made.tar"
    pydock("save", "-o", str(archive), "made:v1")
    podman("load", "-i", str(archive))
    assert podman("run", "--rm", *PODMAN_RUN, "made:v1", "cat", "/made").out == "made\n"
    # saved twice: the same bytes, so the same ids (no time or randomness in it)
    again = tmp_path / "again.tar"
    pydock("save", "-o", str(again), "made:v1")
    assert archive.read_bytes() == again.read_bytes()
    # and back into a fresh pydock root: same image id, runs
    other = type(pydock)(tmp_path / "other", pydock.driver)
    other("load", "-i", str(archive))
    assert other("run", "--rm", "made:v1", "cat", "/made").out == "made\n"


def test_load_shares_layers(pydock, podman, peer_image, busybox_rootfs: Path, tmp_path: Path):
    podman.build(tmp_path / "ctx2", "localhost/other:1", "FROM localhost/multi:1\nRUN echo three > /data/three\n")
    podman("save", "-o", str(tmp_path / "a.tar"), "localhost/multi:1")
    podman("save", "-o", str(tmp_path / "b.tar"), "localhost/other:1")
    pydock("load", "-i", str(tmp_path / "a.tar"))
    before = set(pydock("images", "-a", "-q", "--no-trunc").out.split())
    pydock("load", "-i", str(tmp_path / "b.tar"))
    after = set(pydock("images", "-a", "-q", "--no-trunc").out.split())
    assert len(after - before) == 2  # one new layer, one new image: the three shared layers are reused
    # the tree shows the sharing: both images under the same three layers
    tree = pydock("images", "--tree").out.splitlines()
    assert [l[: l.index("─") + 1] for l in tree] == ["└─", "  └─", "    └─", "      ├─", "      └─", "        └─"]
    assert tree[3].endswith("Tags: localhost/multi:1") and tree[5].endswith("Tags: localhost/other:1")
    viz = pydock("images", "--viz").out
    assert viz.startswith("digraph docker {\n") and viz.endswith(" base [style=invisible]\n}\n")
    assert viz.count(" -> ") == 6 and "localhost/other:1" in viz
    # loading the same archive again registers nothing
    pydock("load", "-i", str(tmp_path / "b.tar"))
    assert set(pydock("images", "-a", "-q", "--no-trunc").out.split()) == after
    # rmi of one image keeps the layers the other uses
    pydock("rmi", "localhost/other:1")
    assert set(pydock("images", "-a", "-q", "--no-trunc").out.split()) == before
    removed = pydock("rmi", "localhost/multi:1").out
    assert removed.count("Deleted:") == 4
    assert pydock("images", "-a", "-q").out == ""


# ---- bad archives ------------------------------------------------------------------------------

_tar = tar_bytes


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _docker_archive(layers: list[bytes], diff_ids: list[str] | None = None, tag: str = "bad:1") -> bytes:
    diff_ids = diff_ids or ["sha256:" + _sha(l) for l in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    members = {f"l{i}.tar": l for i, l in enumerate(layers)}
    members["c.json"] = config
    members["manifest.json"] = json.dumps([{"Config": "c.json", "RepoTags": [tag],
                                            "Layers": [f"l{i}.tar" for i in range(len(layers))]}]).encode()
    return _tar(members)


def _layer(members: dict[str, bytes]) -> bytes:
    return _tar(members)


def _nothing_registered(pydock) -> None:
    assert pydock("images", "-a", "-q").out == ""
    tmp = pydock.root / "graph" / "_tmp"
    assert [n for n in os.listdir(tmp) if not n.startswith(".")] == [] if tmp.exists() else True


@pytest.mark.parametrize("case", ["truncated", "digest", "breakout", "no-manifest", "not-a-tar", "count"])
def test_bad_archives(pydock, tmp_path: Path, case: str):
    good = _layer({"etc/motd": b"hi\n"})
    if case == "truncated":
        data = _docker_archive([good])[:1500]
    elif case == "digest":
        data = _docker_archive([good], ["sha256:" + "0" * 64])
    elif case == "breakout":
        data = _docker_archive([_layer({"../../escaped": b"x"})])
    elif case == "no-manifest":
        data = _tar({"hello": b"x"})
    elif case == "count":
        data = _docker_archive([good], ["sha256:" + _sha(good), "sha256:" + _sha(good)])
    else:
        data = b"this is not an archive at all" * 100
    proc = pydock("load", ok=False, stdin=data)
    assert proc.returncode != 0
    lines = proc.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.err
    _nothing_registered(pydock)
    assert not (tmp_path / "escaped").exists()


def test_image_config_honoured_by_run(pydock, podman, peer_image, tmp_path: Path):
    """Env, Cmd, WorkingDir (above), and ExposedPorts, Volumes, Labels, StopSignal from the image config."""
    archive = tmp_path / "multi.tar"
    podman("save", "-o", str(archive), "localhost/multi:1")
    pydock("load", "-i", str(archive))
    cid = pydock("run", "-d", "localhost/multi:1", "sh", "-c",
                 'trap "exit 7" INT; echo ready; while true; do sleep 0.1; done').out.strip()
    try:
        info = pydock.inspect(cid)
        config = info.get("Config") or info.get("config")
        assert config["Labels"]["org.example.kind"] == "test"
        assert "8080/tcp" in config["ExposedPorts"] and config["StopSignal"] == "SIGINT"
        assert "/vol" in (info.get("Volumes") or {})
        for _ in range(300):
            if pydock("logs", cid).out == "ready\n":
                break
            time.sleep(0.1)
        assert pydock("logs", cid).out == "ready\n"  # its trap is set
        pydock("stop", "-t", "20", cid)
        assert pydock("wait", cid).out.strip() == "7"  # the image's STOPSIGNAL (SIGINT), not SIGTERM
    finally:
        pydock("rm", "-f", cid, ok=None)
