"""Pool creation, reuse across restarts, the base device, status and the free-space guard."""

from __future__ import annotations

import os
import stat

import pytest
from dm_helpers import dm_names, dmsetup, pool_thin_ids, recorded_thin_ids, tree

from pydock.devmapper.deviceset import BASE_HASH, mounted
from pydock.utils.errors import PoolFull

pytestmark = pytest.mark.dm


def test_pool_files_table_and_base(pool, ds) -> None:
    assert stat.S_IMODE(os.stat(pool.home).st_mode) == 0o700
    for name, size in (("data", 512 << 20), ("metadata", 32 << 20)):
        st = os.stat(pool.home / name)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_size == size
        assert st.st_blocks * 512 < size // 4  # sparse
    table = dmsetup("table", f"{pool.prefix}-pool").split()
    assert table[:3] == ["0", str((512 << 20) // 512), "thin-pool"]
    assert table[5:] == ["128", "32768", "1", "error_if_no_space"]
    # both loops are autoclear: they go away with the pool
    for dev in table[3:5]:
        major, minor = dev.split(":")
        assert major == "7"
        assert open(f"/sys/block/loop{minor}/loop/autoclear").read().strip() == "1"
    status = dmsetup("status", f"{pool.prefix}-pool").split()
    assert status[3] == "1"  # transaction id after create_thin 0 + set_transaction_id 0 1
    # the base device: thin 0, ext4, empty root (no lost+found), inactive when unused
    assert ds.device_thin_id(BASE_HASH) == 0
    assert ds.has_initialized_device(BASE_HASH) and not ds.has_activated_device(BASE_HASH)
    assert dm_names(pool.prefix) == {f"{pool.prefix}-pool"}
    with mounted(ds, BASE_HASH, pool.mnt("base"), readonly=True) as root:
        assert os.listdir(root) == []
        fstype = [line.split()[2] for line in open("/proc/mounts") if line.split()[1] == str(root)]
        assert fstype == ["ext4"]


def test_default_prefix_is_device_and_inode_of_home(tmp_path) -> None:
    from pydock.devmapper.dm_deviceset import default_prefix

    st = os.stat(tmp_path)
    assert default_prefix(tmp_path) == f"pydock-{os.major(st.st_dev)}:{os.minor(st.st_dev)}-{st.st_ino}"


def test_status_lines(pool, ds) -> None:
    st = dict(ds.status())
    assert list(st)[:8] == ["Pool Name", "Data file", "Metadata file", "Data Space Used", "Data Space Total",
                            "Metadata Space Used", "Metadata Space Total", "Block size"]
    assert st["Pool Name"] == f"{pool.prefix}-pool"
    assert st["Data file"] == str(pool.home / "data")
    assert st["Data Space Total"] == "512.0 Mb"
    assert st["Metadata Space Total"] == "32.0 Mb"
    assert st["Block size"] == "64 KiB"
    assert st["Deferred Removals Pending"] == "0"
    _tid, meta, data = dmsetup("status", f"{pool.prefix}-pool").split()[3:6]
    assert st["Data Space Used"] == f"{int(data.split('/')[0]) * 65536 / 2**20:.1f} Mb"
    assert st["Metadata Space Used"] == f"{int(meta.split('/')[0]) * 4096 / 2**20:.1f} Mb"


def test_pool_is_reused_by_a_restart_in_another_process(pool, make) -> None:
    r = pool.child(f"""
        from pydock.devmapper.deviceset import mounted
        ds.add_device("img", "")
        with mounted(ds, "img", {str(pool.mnt("child"))!r}) as root:
            (root / "from-child").write_text("yes")
        print(ds.device_thin_id("img"))
        ds.close()
    """)
    assert r.returncode == 0, r.stderr
    before = dmsetup("info", "-c", "--noheadings", "-o", "major,minor", f"{pool.prefix}-pool").strip()
    ds = pool.open()
    after = dmsetup("info", "-c", "--noheadings", "-o", "major,minor", f"{pool.prefix}-pool").strip()
    assert before == after  # the same pool device, not a new one
    assert ds.list() == ["img"] and ds.device_thin_id("img") == int(r.stdout)
    make(ds, "ctr", "img", {"x": "1"})
    with mounted(ds, "img", pool.mnt("img")) as root:
        assert tree(root) == {"from-child": "yes"}
    ds.shutdown()
    assert dm_names(pool.prefix) == set()
    again = pool.open()  # pool gone: rebuilt from the same files, data intact
    assert again.list() == ["ctr", "img"]
    with mounted(again, "ctr", pool.mnt("ctr")) as root:
        assert tree(root) == {"from-child": "yes", "x": "1"}
    assert pool_thin_ids(again) == recorded_thin_ids(again)


def test_refuses_new_devices_when_free_space_is_low(pool, make) -> None:
    ds = pool.open(data_size=128 << 20, base_size=256 << 20)
    make(ds, "a", BASE_HASH, {})
    with mounted(ds, "a", pool.mnt("fill")) as root:
        with open(root / "big", "wb") as f:
            chunk = os.urandom(1 << 20)
            while ds.pool.status().data_free_percent > 7:  # fill the pool, not the filesystem
                for _ in range(4):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
    with pytest.raises(PoolFull) as err:
        ds.add_device("b", "a")
    msg = str(err.value)
    assert f"{pool.prefix}-pool" in msg and "data" in msg and "10%" in msg
    assert not ds.has_device("b")
    assert "b" not in ds.list()
    # metadata too: a threshold no pool can meet refuses on metadata as well as data
    strict = pool.open(data_size=128 << 20, base_size=256 << 20, min_free_percent=100)
    with pytest.raises(PoolFull):
        strict.add_device("c", BASE_HASH)
