"""Crash safety: a process SIGKILLed at each step of add/remove/mount leaves a pool the next start cleans.

PYDOCK_DM_FAULT=<step> makes DeviceSetDM kill itself at that step. After the crash a new
instance must: hold no open transaction, have exactly the thin ids its records name (nothing
leaked, nothing handed out twice), no stray mappings or mounts, and every device still readable.
"""

from __future__ import annotations

import json
import os
import signal
import shutil

import pytest
from dm_helpers import dm_names, pool_thin_ids, recorded_thin_ids, tree

from pydock.devmapper.deviceset import BASE_HASH, mounted
from pydock.utils.mounttable import mounts_under

pytestmark = pytest.mark.dm

ADD_STEPS = ["add:txn", "add:record", "add:snap", "add:created", "add:tid"]
REMOVE_STEPS = ["remove:txn", "remove:record", "remove:delete", "remove:unlinked", "remove:tid"]
MOUNT_STEPS = ["mount:activated", "mount:mounted"]


def seed(pool, make) -> None:
    ds = pool.open()
    make(ds, "img", BASE_HASH, {"etc/os": "img"})
    make(ds, "ctr", "img", {"etc/os": "ctr", "data": "c"})
    ds.close()


def check_clean(pool, ds, expect: dict[str, dict[str, str]]) -> None:
    """Invariants after recovery, and every expected device reads its content."""
    rec = pool.pool_record()
    assert rec["open"] is None
    assert pool_thin_ids(ds) == recorded_thin_ids(ds)
    assert rec["next_thin_id"] > max(recorded_thin_ids(ds))
    assert dm_names(pool.prefix) == {f"{pool.prefix}-pool"}
    assert mounts_under(pool.scratch) == []
    assert not any(n.startswith(f"{pool.prefix}-") for n in os.listdir("/dev/mapper"))
    for h in ds.list():
        assert ds.store.get(h).state.value == "created"
    for h, files in expect.items():
        with mounted(ds, h, pool.mnt(f"check-{h}"), readonly=True) as root:
            assert tree(root) == files
    # and the pool keeps working: a new device gets a fresh id
    ds.add_device("after", "img")
    assert ds.device_thin_id("after") not in recorded_thin_ids(ds) - {ds.device_thin_id("after")}
    ds.remove_device("after")


@pytest.mark.parametrize("step", ADD_STEPS)
def test_crash_during_add(pool, make, step: str) -> None:
    seed(pool, make)
    r = pool.child('ds.add_device("new", "ctr")\nprint("survived")', fault=step)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout, r.stderr)
    ds = pool.open()
    expect = {"img": {"etc/os": "img"}, "ctr": {"etc/os": "ctr", "data": "c"}}
    if ds.has_device("new"):  # rolled forward (only once the pool committed it)
        assert step == "add:tid"
        expect["new"] = expect["ctr"]
    else:
        assert ds.list() == ["ctr", "img"]
    check_clean(pool, ds, expect)


@pytest.mark.parametrize("step", REMOVE_STEPS)
def test_crash_during_remove(pool, make, step: str) -> None:
    seed(pool, make)
    thin = pool.open().device_thin_id("ctr")
    r = pool.child('ds.remove_device("ctr")\nprint("survived")', fault=step)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout, r.stderr)
    ds = pool.open()
    assert not ds.has_device("ctr")  # a delete is always rolled forward
    assert thin not in pool_thin_ids(ds)
    check_clean(pool, ds, {"img": {"etc/os": "img"}})


@pytest.mark.parametrize("step", MOUNT_STEPS)
def test_crash_during_mount(pool, make, step: str) -> None:
    seed(pool, make)
    target = pool.mnt("victim")
    r = pool.child(f'ds.mount_device("ctr", {str(target)!r})\nprint("survived")', fault=step)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout, r.stderr)
    ds = pool.open()
    check_clean(pool, ds, {"img": {"etc/os": "img"}, "ctr": {"etc/os": "ctr", "data": "c"}})


@pytest.mark.parametrize("step", ["base:txn", "base:snap", "base:tid", "base:activated", "base:mounted"])
def test_crash_while_making_the_base(pool, step: str) -> None:
    r = pool.child('print("survived")', fault=step)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout, r.stderr)
    ds = pool.open()
    assert ds.has_initialized_device(BASE_HASH)
    with mounted(ds, BASE_HASH, pool.mnt("base"), readonly=True) as root:
        assert os.listdir(root) == []
    assert pool_thin_ids(ds) == recorded_thin_ids(ds)
    assert not (pool.home / "mnt-base").exists()
    assert dm_names(pool.prefix) == {f"{pool.prefix}-pool"}


def test_a_killed_process_mounts_stay_usable_by_the_next(pool, make) -> None:
    """A completed mount is state, not debris: `pydock start` mounts, a later `pydock stop` unmounts."""
    seed(pool, make)
    target = pool.mnt("kept")
    r = pool.child(f'ds.mount_device("ctr", {str(target)!r})\nos.kill(os.getpid(), 9)')
    assert r.returncode == -signal.SIGKILL
    ds = pool.open()
    assert (target / "data").read_text() == "c"
    assert ds.has_activated_device("ctr")
    ds.unmount_device("ctr", target)
    assert not ds.has_activated_device("ctr")
    check_clean(pool, ds, {"ctr": {"etc/os": "ctr", "data": "c"}})


def test_lost_metadata_is_rebuilt_from_the_pool_and_journal(pool, make) -> None:
    seed(pool, make)
    ds = pool.open()
    ds.add_device("half", "img")  # never initialized
    make(ds, "gone", "img", {})
    ds.remove_device("gone")
    ids = {h: ds.device_thin_id(h) for h in ("img", "ctr", "half", BASE_HASH)}
    ds.close()
    for name in ("devices", "live"):
        shutil.rmtree(pool.home / name)
    (pool.home / "pool.json").unlink()
    ds = pool.open()
    assert ds.list() == ["ctr", "half", "img"]
    assert {h: ds.device_thin_id(h) for h in ids} == ids
    assert ds.has_initialized_device("ctr") and not ds.has_initialized_device("half")
    check_clean(pool, ds, {"img": {"etc/os": "img"}, "ctr": {"etc/os": "ctr", "data": "c"}})


def test_ids_the_pool_holds_are_never_handed_out_again(pool, make) -> None:
    """Even with pool.json and the journal gone, the new device must not reuse a live id."""
    seed(pool, make)
    ds = pool.open()
    held = ds.device_thin_id("ctr")
    ds.close()
    (pool.home / "pool.json").unlink()
    (pool.home / "journal").unlink()
    ds = pool.open()
    assert json.loads((pool.home / "pool.json").read_text())["next_thin_id"] > held
    ds.add_device("new", "img")
    assert ds.device_thin_id("new") > held
    with mounted(ds, "ctr", pool.mnt("ctr"), readonly=True) as root:
        assert tree(root) == {"etc/os": "ctr", "data": "c"}


def test_crash_between_recording_a_deferred_removal_and_the_rename(pool, make) -> None:
    """The deferred record is written first; a removal asked for is finished at the next start."""
    from pydock.devmapper.metadata import DeferredRecord

    seed(pool, make)
    ds = pool.open()
    thin = ds.device_thin_id("ctr")
    ds.mount_device("ctr", pool.mnt("m"))
    ds.unmount_device("ctr", pool.mnt("m"), deactivate=False)
    ds.store.put_deferred(DeferredRecord(thin, "ctr", f"{pool.prefix}--del-{thin}"))
    ds.close()
    ds = pool.open()
    assert not ds.has_device("ctr") and dict(ds.status())["Deferred Removals Pending"] == "0"
    assert thin not in pool_thin_ids(ds)
    check_clean(pool, ds, {"img": {"etc/os": "img"}})


def test_lost_device_records_alone_are_rebuilt(pool, make) -> None:
    seed(pool, make)
    shutil.rmtree(pool.home / "devices")
    ds = pool.open()
    assert ds.list() == ["ctr", "img"] and ds.has_initialized_device("img")
    check_clean(pool, ds, {"img": {"etc/os": "img"}, "ctr": {"etc/os": "ctr", "data": "c"}})


def test_a_failed_add_is_settled_at_once_in_the_same_process(pool, make) -> None:
    """An I/O error in the middle of a transaction is a StorageError and leaves nothing behind."""
    from pydock.utils.errors import StorageError

    seed(pool, make)
    ds = pool.open()
    journal = pool.home / "journal"
    saved = journal.read_bytes()
    journal.unlink()
    journal.mkdir()  # appending to it now fails with EISDIR, after the transaction opened
    try:
        with pytest.raises(StorageError, match="can't create device new"):
            ds.add_device("new", "img")
    finally:
        journal.rmdir()
        journal.write_bytes(saved)
    assert not ds.has_device("new") and pool.pool_record()["open"] is None
    check_clean(pool, ds, {"img": {"etc/os": "img"}, "ctr": {"etc/os": "ctr", "data": "c"}})
