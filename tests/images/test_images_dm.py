"""Images on the devicemapper driver (runs inside User-Mode Linux): a multi-layer archive loads as a chain
of thin snapshots, saves back byte for byte, pushes to and pulls from docker-registry in a namespace made
here, runs, and rmi drops every thin device it made."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from images_helpers import Pydock, Registry, tar_bytes, tree_of_dir

pytestmark = [pytest.mark.dm, pytest.mark.lxc, pytest.mark.network]


def _tar(entries: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """(name, data or None for a dir, type) entries as a layer tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mtime = kind, 1_600_000_000
            if kind == tarfile.DIRTYPE:
                info.mode = 0o755
            elif kind == tarfile.SYMTYPE:
                info.linkname = data.decode() if data else ""
                data = None
            else:
                info.mode, info.size = 0o644, len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data is not None and kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def _archive(busybox: bytes) -> tuple[bytes, list[bytes]]:
    """A docker-save archive of busybox plus two layers (a whiteout, an opaque dir, a symlink)."""
    d, f, l = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE
    second = _tar([("data", None, d), ("data/keep", b"keep\n", f), ("data/old", b"old\n", f), ("bin/.wh.vi", b"", f)])
    third = _tar([("data", None, d), ("data/.wh..wh..opq", b"", f), ("data/new", b"new\n", f),
                  ("data/link", b"new", l)])
    layers = [busybox, second, third]
    diff_ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["cat", "/data/new"], "Env": ["PATH=/bin:/usr/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created_by": f"step {i}"} for i in range(3)]}).encode()
    members = {f"{i}/layer.tar": x for i, x in enumerate(layers)}
    members["config.json"] = config
    members["manifest.json"] = json.dumps([{"Config": "config.json", "RepoTags": ["dmtest:1"],
                                            "Layers": [f"{i}/layer.tar" for i in range(3)]}]).encode()
    return tar_bytes(members), layers


def _teardown(root: Path) -> None:
    from pydock.runtime.runtime import Runtime

    rt = Runtime(root, "devicemapper", bridge="none")
    try:
        for _ in range(10):  # a chain goes top down, one layer a round
            for image in rt.images.graph.list():
                try:
                    rt.images.graph.delete(image.id)
                except Exception:  # noqa: BLE001 - a parent goes once its children have: retried
                    continue
        assert rt.images.graph.list() == []
    finally:
        try:
            rt.driver.shutdown()
        finally:
            rt.close()


def test_load_save_push_pull_on_devicemapper(tmp_path: Path, busybox_rootfs: Path):
    root = tmp_path / "dmroot"
    pydock = Pydock(root, "devicemapper", env={"DOCKER_CONFIG": str(tmp_path / "docker-config")})
    registry = Registry(tmp_path / "registry")
    try:
        archive, layers = _archive(busybox_rootfs.read_bytes())
        assert pydock("load", stdin=archive).out == "Loaded image: dmtest:1\n"
        image_id = pydock.image_id("dmtest:1")
        assert len(pydock("images", "-a", "-q").out.split()) == 4  # three layers and the image
        with pydock.mounted(image_id) as rootfs:
            tree = tree_of_dir(rootfs)
        assert tree["data/new"][2] == b"new\n" and tree["data/link"][2] == "new"
        assert "data/keep" not in tree and "data/old" not in tree and "bin/vi" not in tree  # opaque, whiteout
        assert pydock("run", "--rm", "dmtest:1").out == "new\n"
        # saved back: the very layer bytes that were loaded
        saved = pydock("save", "dmtest:1").stdout
        with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
            got = [tar.extractfile(name).read() for name in manifest["Layers"]]  # type: ignore[union-attr]
        assert got == layers
        # push, forget, pull back from the registry
        p = pydock.inside(registry.ns)
        p("tag", "dmtest:1", f"{registry.host}/dmtest:1")
        p("push", f"{registry.host}/dmtest:1")
        pydock("rmi", "dmtest:1")
        removed = pydock("rmi", f"{registry.host}/dmtest:1").out
        assert removed.count("Deleted:") == 4
        assert pydock("images", "-a", "-q").out == ""
        pulled = p("pull", f"{registry.host}/dmtest:1").out
        assert pulled.count("Pull complete") == 3
        assert pydock.image_id(f"{registry.host}/dmtest:1") == image_id
        assert pydock("run", "--rm", f"{registry.host}/dmtest:1").out == "new\n"
        assert "Image is up to date" in p("pull", f"{registry.host}/dmtest:1").out
    finally:
        registry.close()
        if root.exists():
            _teardown(root)
