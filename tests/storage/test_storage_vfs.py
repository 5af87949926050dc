"""vfs-driver specifics beyond the shared contract: what a copy preserves, snapshot timing, leftovers."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pydock.devmapper.deviceset import BASE_HASH, mounted
from pydock.utils.mount import mount, umount
from pydock.devmapper.vfs import VfsDeviceSet
from pydock.utils.errors import StorageError
from storage_helpers import driver_fixtures


home, ds = driver_fixtures(VfsDeviceSet)


def test_a_copy_keeps_owners_modes_times_links_nodes_and_xattrs(ds: VfsDeviceSet, tmp_path: Path) -> None:
    ds.add_device("p", BASE_HASH)
    target = tmp_path / "m"
    target.mkdir()
    with mounted(ds, "p", target) as r:
        (r / "bin").mkdir()
        (r / "bin" / "tool").write_text("#!/bin/sh\n")
        os.chmod(r / "bin" / "tool", 0o4755)
        os.chown(r / "bin" / "tool", 0, 42)
        (r / "home").mkdir()
        os.chown(r / "home", 1000, 1000)
        (r / "tmp").mkdir()
        os.chmod(r / "tmp", 0o1777)
        os.link(r / "bin" / "tool", r / "bin" / "hardlink")
        os.symlink("../nowhere", r / "bin" / "dangling")
        os.mknod(r / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mkfifo(r / "fifo", 0o640)
        try:
            os.setxattr(r / "bin" / "tool", "user.pydock", b"kept")
            user_xattrs = True
        except OSError as err:  # tmpfs before Linux 6.6 has no user.* xattrs
            assert err.errno == errno.EOPNOTSUPP
            user_xattrs = False
        os.setxattr(r / "bin" / "tool", "trusted.pydock", b"root-only")
        os.utime(r / "bin" / "tool", ns=(1_000_000_123, 2_000_000_456))
        os.utime(r / "home", ns=(3_000_000_000, 4_000_000_000))
        before = {p: os.lstat(r / p) for p in ("bin/tool", "home", "tmp", "null", "fifo", "bin/dangling")}
    ds.add_device("c", "p")
    with mounted(ds, "c", target, readonly=True) as r:
        for rel, old in before.items():
            new = os.lstat(r / rel)
            assert (new.st_mode, new.st_uid, new.st_gid, new.st_rdev) == \
                (old.st_mode, old.st_uid, old.st_gid, old.st_rdev), rel
            if not stat.S_ISLNK(old.st_mode):
                assert new.st_mtime_ns == old.st_mtime_ns, rel
        tool = os.stat(r / "bin" / "tool")
        assert tool.st_nlink == 2 and tool.st_ino == os.stat(r / "bin" / "hardlink").st_ino
        assert os.readlink(r / "bin" / "dangling") == "../nowhere"
        if user_xattrs:
            assert os.getxattr(r / "bin" / "tool", "user.pydock") == b"kept"
        assert os.getxattr(r / "bin" / "tool", "trusted.pydock") == b"root-only"


def test_a_child_is_a_snapshot_taken_at_add_time(ds: VfsDeviceSet, tmp_path: Path) -> None:
    ds.add_device("p", BASE_HASH)
    target = tmp_path / "m"
    target.mkdir()
    with mounted(ds, "p", target) as r:
        (r / "f").write_text("before")
    ds.add_device("c", "p")
    with mounted(ds, "p", target) as r:
        (r / "f").write_text("after")
        (r / "g").write_text("new")
    with mounted(ds, "c", target) as r:
        assert os.listdir(r) == ["f"] and (r / "f").read_text() == "before"


def test_restart_deletes_leftovers_of_dead_processes_only(home: Path) -> None:
    ds = VfsDeviceSet(home)
    ds.add_device("kept", BASE_HASH)
    ds.shutdown()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (home / "tmp" / f"{dead}-cafebabe" / "rootfs" / "half-copied").mkdir(parents=True)
    live = home / "tmp" / f"{os.getppid()}-deadbeef"  # a live process (pytest's parent) may still be copying
    live.mkdir()
    VfsDeviceSet(home)
    assert os.listdir(home / "tmp") == [live.name]
    assert VfsDeviceSet(home).list() == ["kept"]
    live.rmdir()


def test_a_copy_that_runs_out_of_space_leaves_no_device_and_no_scratch(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mount("tmpfs", small, "tmpfs", 0, "size=1m")
    try:
        ds = VfsDeviceSet(small / "home")
        ds.add_device("p", BASE_HASH)
        (small / "home" / "devices" / "p" / "rootfs" / "big").write_bytes(b"x" * (700 << 10))
        with pytest.raises(StorageError, match="cannot copy p into c: .*No space left"):
            ds.add_device("c", "p")
        assert not ds.has_device("c") and ds.list() == ["p"]
        assert os.listdir(small / "home" / "tmp") == []
        ds.add_device("c", BASE_HASH)  # the name is still free and the store still works
    finally:
        umount(small)
