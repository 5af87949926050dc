"""The raw dm/loop wrappers against the real kernel, cross-checked with dmsetup and losetup."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest
from dm_helpers import dmsetup

from pydock.devmapper.kernel import blockdev, dm, loop

pytestmark = pytest.mark.dm


def test_thin_pool_probe_says_yes_here() -> None:
    ok, why = dm.thin_pool_available()
    assert ok, why
    assert "thin-pool" in why


def test_version_and_targets() -> None:
    with dm.Control() as ctl:
        major, _minor, _patch = ctl.version()
        assert major == 4
        names = {v.name for v in ctl.list_versions()}
    assert {"thin-pool", "thin"} <= names
    # dmsetup targets lists the same target types
    listed = {line.split()[0] for line in dmsetup("targets").splitlines()}
    assert names == listed


def test_control_fd_is_close_on_exec() -> None:
    with dm.Control() as ctl:
        assert fcntl.fcntl(ctl.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


@pytest.fixture
def backing(tmp_path: Path):
    f = tmp_path / "disk"
    with open(f, "wb") as fh:
        fh.truncate(8 << 20)
    return f


def test_loop_attach_autoclear_and_find(backing: Path) -> None:
    fd, path = loop.attach(backing)
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert loop.find_by_backing(backing) == path
        info = loop.get_status(fd)
        assert info.autoclear and info.offset == 0
        assert blockdev.size_bytes(path) == 8 << 20
        out = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,AUTOCLEAR,BACK-FILE", str(path)],
                             capture_output=True, text=True, check=True).stdout.split()
        assert out == [str(path), "1", str(backing)]
    finally:
        os.close(fd)
    # autoclear: our close was the last reference
    assert loop.find_by_backing(backing) is None


def test_linear_device_lifecycle_matches_dmsetup(backing: Path, unique_prefix: str) -> None:
    name = f"{unique_prefix}-lin"
    fd, lpath = loop.attach(backing)
    ctl = dm.Control()
    try:
        info = ctl.create(name)
        ctl.load_table(name, [dm.Target(0, 2048, "linear", f"{lpath} 0"),
                              dm.Target(2048, 2048, "linear", f"{lpath} 4096")])
        info = ctl.resume(name)
        os.close(fd)
        fd = -1
        assert info.live_table and not info.suspended and info.target_count == 2
        assert dmsetup("table", name).split("\n")[0].split()[:3] == ["0", "2048", "linear"]
        assert [t.line().split()[:3] for t in ctl.table(name)] == [["0", "2048", "linear"],
                                                                  ["2048", "2048", "linear"]]
        assert name in {d.name for d in ctl.list_devices()}
        assert f"{name}\t({info.major_minor})" in dmsetup("ls")
        node = blockdev.ensure_node(Path("/dev/mapper") / name, os.major(info.dev), os.minor(info.dev))
        assert blockdev.size_bytes(node) == 4096 * 512
        ctl.suspend(name)
        assert ctl.status(name).suspended
        assert "SUSPENDED" in dmsetup("info", name)
        ctl.resume(name)
        ctl.rename(name, name + "2")
        assert ctl.info(name) is None and ctl.exists(name + "2")
        # held open: a plain remove is EBUSY, a deferred one is scheduled and happens on close
        hold = os.open(f"/dev/dm-{os.minor(info.dev)}", os.O_RDONLY | os.O_CLOEXEC)
        with pytest.raises(dm.DMError) as err:
            ctl.remove(name + "2")
        assert err.value.errno == errno.EBUSY
        assert ctl.remove(name + "2", deferred=True) is True
        assert ctl.status(name + "2").deferred_remove
        os.close(hold)
        for _ in range(200):  # the kernel removes it from a work queue after the last close
            if ctl.info(name + "2") is None:
                break
            time.sleep(0.005)
        assert ctl.info(name + "2") is None
        blockdev.remove_node(node)
    finally:
        if fd >= 0:
            os.close(fd)
        for n in (name, name + "2"):
            if ctl.exists(n):
                ctl.remove(n)
        ctl.close()


def test_missing_device_is_enxio() -> None:
    with dm.Control() as ctl:
        assert ctl.info("pydock-no-such-device") is None
        with pytest.raises(dm.DMError) as err:
            ctl.table_status("pydock-no-such-device")
        assert err.value.errno == errno.ENXIO
