"""The embedded busybox image: reproducible tarball from busybox-static, usable rootfs, clear errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pydock.graph import busybox
from pydock.utils.errors import NotFound

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_graph_busybox_tar_is_reproducible_and_complete():
    first = busybox.busybox_tar_bytes()
    assert busybox.busybox_tar_bytes() == first
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(first))}
    bb = members["bin/busybox"]
    assert bb.isreg() and bb.mode == 0o755 and bb.uid == 0 and bb.size == Path("/bin/busybox").stat().st_size
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert members["usr/bin/env"].linkname == "../../bin/busybox"
    assert members["sbin/ifconfig"].linkname == "../bin/busybox"
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    for d in ("dev", "proc", "sys", "root", "home", "var", "etc", "usr"):
        assert members[d].isdir(), d
    assert {m.mtime for m in members.values()} == {busybox.MTIME}
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(first))]
    assert names.index("bin") < names.index("bin/busybox")


def test_graph_busybox_script_writes_the_same_bytes(tmp_path: Path):
    out = tmp_path / "busybox.tar"
    subprocess.run([str(REPO_ROOT / "hack/mkimage-busybox.sh"), str(out)], check=True,
                   env={**os.environ, "PYDOCK_PYTHON": sys.executable})
    assert out.read_bytes() == busybox.busybox_tar_bytes()
    piped = subprocess.run([str(REPO_ROOT / "hack/mkimage-busybox.sh")], check=True, capture_output=True,
                           env={**os.environ, "PYDOCK_PYTHON": sys.executable}).stdout
    assert piped == out.read_bytes()


def test_graph_busybox_refuses_a_dynamic_binary(monkeypatch):
    monkeypatch.setenv(busybox.BUSYBOX_ENV, "/bin/ls")  # dynamically linked on Debian
    with pytest.raises(NotFound, match="busybox-static"):
        busybox.busybox_tar_bytes()
    monkeypatch.setenv(busybox.BUSYBOX_ENV, "/nonexistent/busybox")
    with pytest.raises(NotFound, match="install the busybox-static package"):
        busybox.busybox_tar_bytes()
    assert busybox.is_static_elf(Path("/bin/busybox").read_bytes())
    assert not busybox.is_static_elf(Path("/bin/ls").read_bytes())
    assert not busybox.is_static_elf(b"#!/bin/sh\n")


def test_graph_busybox_resolved_on_first_use_and_runs(store):
    with pytest.raises(NotFound, match="Unable to find image 'nosuch'"):
        store.resolve("nosuch")
    image = store.resolve("busybox")
    assert store.tags.get("busybox", "latest") == image.id
    assert image.config["Cmd"] == ["/bin/sh"]
    assert store.resolve("busybox:latest").id == image.id  # built once, then found by tag
    assert len(store.graph.list()) == 1
    with store.driver.mounted(image.id, readonly=True) as rootfs:
        assert busybox.is_static_elf((rootfs / "bin/busybox").read_bytes())
        assert os.readlink(rootfs / "bin/sh") == "busybox"
        assert (rootfs / "etc/passwd").read_text().startswith("root:x:0:0:root:/root:/bin/sh\n")
        assert "nogroup:x:65534:" in (rootfs / "etc/group").read_text()
        assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
        out = subprocess.run(["chroot", str(rootfs), "/bin/sh", "-c", "echo hello from $(basename $0); ls /bin | wc -l"],
                             capture_output=True, text=True, check=True).stdout.split()
        assert out[:3] == ["hello", "from", "sh"] and int(out[3]) > 50
    binary = busybox.BUSYBOX.stat().st_size
    assert binary <= image.size < binary + 64 * 1024  # the binary, small files, symlink lengths
    assert store.graph.virtual_size(image) == image.size


def test_graph_busybox_same_host_same_image_id(store):
    import hashlib

    image = store.resolve("busybox")
    assert image.id == hashlib.sha256(busybox.busybox_tar_bytes()).hexdigest()
    store.remove("busybox")
    assert store.resolve("busybox").id == image.id


def _resolve_busybox(root: str, driver_name: str, queue) -> None:
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).parent))
    from graph_helpers import open_driver

    from pydock.graph.lookup import ImageStore
    from pydock.utils.paths import RootLayout

    layout = RootLayout(Path(root))
    driver = open_driver(driver_name, layout, "bb")
    try:
        queue.put(ImageStore(layout, driver).resolve("busybox").id)
    finally:
        driver.close()  # not shutdown: that would unmount the other processes' work in the same home


def test_graph_busybox_concurrent_first_use_builds_once(layout, driver_name, driver):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_resolve_busybox, args=(str(layout.root), driver_name, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ids = {queue.get(timeout=5) for _ in procs}
    assert len(ids) == 1
    from pydock.graph.lookup import ImageStore

    store = ImageStore(layout, driver)
    assert [i.id for i in store.graph.list()] == list(ids)
    assert driver.deviceset.list() == list(ids)
