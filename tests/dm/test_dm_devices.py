"""Snapshots, mounts and removal on a real thin pool, cross-checked with dmsetup."""

from __future__ import annotations

import errno
import os
import time

import pytest
from dm_helpers import dm_names, dmsetup, pool_thin_ids, recorded_thin_ids, tree, write

from pydock.devmapper.deviceset import BASE_HASH, mounted
from pydock.utils.mounttable import is_mountpoint
from pydock.devmapper.prefixed import PrefixedDeviceSet
from pydock.utils.errors import Conflict, InvalidArgument, NotFound

pytestmark = pytest.mark.dm


def test_snapshot_chain_ten_deep_is_copy_on_write(pool, ds, make) -> None:
    parent = BASE_HASH
    for i in range(10):
        make(ds, f"l{i}", parent, {f"layer{i}": str(i), "shared": f"v{i}"})
        parent = f"l{i}"
    # each layer sees its ancestors' files and its own version of the shared one
    for i in (0, 4, 9):
        with mounted(ds, f"l{i}", pool.mnt(f"check{i}"), readonly=True) as root:
            want = {f"layer{j}": str(j) for j in range(i + 1)}
            want["shared"] = f"v{i}"
            assert tree(root) == want
    # a write to a child never shows in its parent, and vice versa
    with mounted(ds, "l9", pool.mnt("w9")) as root:
        write(root, "layer0", "changed by l9")
    with mounted(ds, "l5", pool.mnt("w5")) as root:
        write(root, "layer0", "changed by l5")
        assert (root / "layer9").exists() is False
    with mounted(ds, "l0", pool.mnt("r0"), readonly=True) as root:
        assert (root / "layer0").read_text() == "0"
    with mounted(ds, "l9", pool.mnt("r9"), readonly=True) as root:
        assert (root / "layer0").read_text() == "changed by l9"
    assert [ds.device_thin_id(f"l{i}") for i in range(10)] == list(range(1, 11))


def test_snapshot_of_a_mounted_origin_is_consistent(pool, ds, make) -> None:
    make(ds, "img", BASE_HASH, {"f": "v1"})
    p = pool.mnt("live")
    ds.mount_device("img", p)
    try:
        write(p, "f", "v2")  # not synced: the suspend around create_snap must flush it
        ds.add_device("snap", "img")
        write(p, "f", "v3")
    finally:
        ds.unmount_device("img", p)
    with mounted(ds, "snap", pool.mnt("snap"), readonly=True) as root:
        assert (root / "f").read_text() == "v2"


def test_mapping_exists_only_while_mounted(pool, ds, make) -> None:
    make(ds, "a", BASE_HASH, {"f": "x"})
    name = f"{pool.prefix}-a"
    assert dm_names(pool.prefix) == {f"{pool.prefix}-pool"}
    p1, p2 = pool.mnt("m1"), pool.mnt("m2")
    ds.mount_device("a", p1)
    assert name in dm_names(pool.prefix)
    pool_dev = dmsetup("info", "-c", "--noheadings", "-o", "major,minor", f"{pool.prefix}-pool").strip()
    table = dmsetup("table", name).split()
    assert table == ["0", str((64 << 20) // 512), "thin", pool_dev, str(ds.device_thin_id("a"))]
    assert dmsetup("status", name).split()[2] == "thin"
    assert os.path.exists(f"/dev/mapper/{name}")
    ds.mount_device("a", p2, readonly=True)
    ds.unmount_device("a", p1)
    assert name in dm_names(pool.prefix)  # still mounted at p2
    assert (p2 / "f").read_text() == "x"
    ds.unmount_device("a", p2)
    assert name not in dm_names(pool.prefix)
    assert not os.path.exists(f"/dev/mapper/{name}")
    # deactivate=False keeps the mapping until asked
    ds.mount_device("a", p1)
    ds.unmount_device("a", p1, deactivate=False)
    assert ds.has_activated_device("a") and name in dm_names(pool.prefix)
    ds.deactivate_device("a")
    assert name not in dm_names(pool.prefix)


def test_remove_while_mounted_is_a_clear_conflict_and_loses_nothing(pool, ds, make) -> None:
    make(ds, "a", BASE_HASH, {"precious": "data"})
    p = pool.mnt("busy")
    ds.mount_device("a", p)
    try:
        with pytest.raises(Conflict, match=f"device a is mounted at {p}"):
            ds.remove_device("a")
        assert is_mountpoint(p) and (p / "precious").read_text() == "data"
    finally:
        ds.unmount_device("a", p)
    with mounted(ds, "a", pool.mnt("again"), readonly=True) as root:
        assert tree(root) == {"precious": "data"}
    thin = ds.device_thin_id("a")
    ds.remove_device("a")
    assert not ds.has_device("a") and thin not in pool_thin_ids(ds)


def test_busy_device_is_removed_deferred_and_its_id_freed_later(pool, ds, make) -> None:
    make(ds, "a", BASE_HASH, {"f": "x"})
    ds.mount_device("a", pool.mnt("m"))
    ds.unmount_device("a", pool.mnt("m"), deactivate=False)
    # something outside pydock holds the block device open
    node = f"/dev/mapper/{pool.prefix}-a"
    hold = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
    thin = ds.device_thin_id("a")
    try:
        ds.remove_device("a")
        assert not ds.has_device("a") and "a" not in ds.list()
        assert dict(ds.status())["Deferred Removals Pending"] == "1"
        assert f"{pool.prefix}--del-{thin}" in dm_names(pool.prefix)
        ds.add_device("a", BASE_HASH)  # the name is free again at once
    finally:
        os.close(hold)
    for _ in range(200):
        if dict(ds.status())["Deferred Removals Pending"] == "0":
            break
        time.sleep(0.005)
    assert dict(ds.status())["Deferred Removals Pending"] == "0"
    assert thin not in pool_thin_ids(ds)
    assert pool_thin_ids(ds) == recorded_thin_ids(ds)


def test_docker_error_strings(pool, ds, make) -> None:
    make(ds, "a", BASE_HASH, {})
    with pytest.raises(Conflict, match="^hash a already exists$"):
        ds.add_device("a", BASE_HASH)
    with pytest.raises(NotFound, match="^Error adding device for 'b': can't find device for parent 'nope'$"):
        ds.add_device("b", "nope")
    with pytest.raises(NotFound, match="^Unknown device nope$"):
        ds.mount_device("nope", pool.mnt("x"))
    with pytest.raises(NotFound, match="^Unknown device nope$"):
        ds.set_initialized("nope")
    with pytest.raises(NotFound, match="^hash nope doesn't exists$"):
        ds.remove_device("nope")
    with pytest.raises(InvalidArgument):
        ds.add_device("x" * 120, BASE_HASH)  # the dm name would pass DM_NAME_LEN
    with pytest.raises(InvalidArgument):
        ds.add_device("pool", BASE_HASH)


def test_mount_failure_leaves_nothing_active(pool, ds) -> None:
    ds.add_device("a", BASE_HASH)
    with pytest.raises(Exception) as err:
        ds.mount_device("a", pool.scratch / "missing")
    assert "Error mounting" in str(err.value)
    assert not ds.has_activated_device("a")
    assert f"{pool.prefix}-a" not in dm_names(pool.prefix)


def test_two_prefixed_users_share_one_pool(pool, ds, make) -> None:
    one, two = PrefixedDeviceSet(ds, "one"), PrefixedDeviceSet(ds, "two")
    make(one, "img", BASE_HASH, {"who": "one"})
    make(two, "img", BASE_HASH, {"who": "two"})
    assert one.list() == ["img"] and two.list() == ["img"]
    with mounted(one, "img", pool.mnt("1"), readonly=True) as r1, \
            mounted(two, "img", pool.mnt("2"), readonly=True) as r2:
        assert tree(r1) == {"who": "one"} and tree(r2) == {"who": "two"}
        assert {f"{pool.prefix}-one-img", f"{pool.prefix}-two-img"} <= dm_names(pool.prefix)
    one.remove_device("img")
    assert not one.has_device("img") and two.has_device("img")
    assert ds.list() == ["two-img"]


def test_two_pools_with_their_own_prefixes_are_independent(pool, tmp_path, make) -> None:
    from dm_helpers import SMALL

    from pydock.devmapper.dm_deviceset import DeviceSetDM

    a = pool.open()
    b = DeviceSetDM(tmp_path / "other", prefix=pool.prefix + "x", **SMALL)
    pool.opened.append(b)
    make(a, "same", BASE_HASH, {"in": "a"})
    make(b, "same", BASE_HASH, {"in": "b"})
    assert a.list() == ["same"] and b.list() == ["same"]
    with mounted(b, "same", pool.mnt("b"), readonly=True) as root:
        assert tree(root) == {"in": "b"}
    b.shutdown()
    assert f"{pool.prefix}x-pool" not in dmsetup("ls")
    with mounted(a, "same", pool.mnt("a"), readonly=True) as root:
        assert tree(root) == {"in": "a"}


def test_every_fd_is_close_on_exec(ds) -> None:
    import fcntl

    for fd in (ds.ctl.fd, ds._lock_fd):
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def test_readonly_mount_is_readonly(pool, ds, make) -> None:
    make(ds, "a", BASE_HASH, {"f": "x"})
    with mounted(ds, "a", pool.mnt("ro"), readonly=True) as root:
        with pytest.raises(OSError) as err:
            (root / "g").write_text("no")
        assert err.value.errno == errno.EROFS
        # a writable mount next to it writes (shared superblock, per-mount flag)
        with mounted(ds, "a", pool.mnt("rw")) as rw:
            (rw / "g").write_text("yes")
        with pytest.raises(OSError):
            (root / "h").write_text("no")
    with mounted(ds, "a", pool.mnt("check"), readonly=True) as root:
        assert tree(root) == {"f": "x", "g": "yes"}


def test_a_pool_whose_prefix_extends_ours_is_left_alone(pool, tmp_path, make) -> None:
    from dm_helpers import SMALL

    from pydock.devmapper.dm_deviceset import DeviceSetDM

    ours = pool.open()
    other = DeviceSetDM(tmp_path / "other", prefix=pool.prefix + "-b", **SMALL)
    pool.opened.append(other)
    make(other, "x", BASE_HASH, {"f": "other"})
    p = pool.mnt("other")
    other.mount_device("x", p)
    ours.shutdown()
    again = pool.open()  # recovery must not take "<prefix>-b-x" for a stray device of ours
    assert (p / "f").read_text() == "other" and other.has_activated_device("x")
    again.shutdown()
    assert (p / "f").read_text() == "other"
    other.unmount_device("x", p)


def test_an_instance_survives_another_shutting_the_pool_down(pool, make) -> None:
    first = pool.open()
    make(first, "a", BASE_HASH, {"f": "x"})
    second = pool.open()
    second.shutdown()
    assert f"{pool.prefix}-pool" not in dm_names(pool.prefix)
    with mounted(first, "a", pool.mnt("a"), readonly=True) as root:  # the pool comes back
        assert tree(root) == {"f": "x"}


def test_recovery_leaves_mounts_it_did_not_make(pool, make) -> None:
    from pydock.utils.mount import MS_BIND, mount, umount

    ds = pool.open()
    make(ds, "a", BASE_HASH, {"f": "x"})
    p, extra = pool.mnt("a"), pool.mnt("someone-elses-bind")
    ds.mount_device("a", p)
    mount(p, extra, None, MS_BIND)
    try:
        pool.open()  # a second pydock process starting up
        assert is_mountpoint(extra) and (extra / "f").read_text() == "x"
        assert is_mountpoint(p)
    finally:
        umount(extra)
    ds.unmount_device("a", p)
    assert not ds.has_activated_device("a")
