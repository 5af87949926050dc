"""Overlay-driver specifics beyond the shared contract: deep chains, layer lifetime, crash leftovers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pydock.devmapper.deviceset import BASE_HASH, mounted
from pydock.utils import afterwards
from pydock.utils.mounttable import mountinfo
from pydock.devmapper.overlay import MAX_DEPTH, OverlayDeviceSet
from pydock.utils.errors import Conflict, StorageError
from storage_helpers import driver_fixtures


home, ds = driver_fixtures(OverlayDeviceSet)


def layer_count(home: Path) -> int:
    return len([n for n in os.listdir(home / "layers") if not n.startswith(".")])


def test_a_chain_too_long_for_one_page_of_mount_options_still_mounts(ds: OverlayDeviceSet, tmp_path: Path) -> None:
    parent = BASE_HASH
    for i in range(MAX_DEPTH):
        h = f"layer-{i:03d}"
        ds.add_device(h, parent)
        parent = h
    bottom = ds._layer_dir(ds._lookup("layer-000")) / "diff"
    (bottom / "bottom").write_text("0")
    top = ds._layer_dir(ds._lookup(parent)) / "diff"
    (top / "top").write_text(str(MAX_DEPTH - 1))
    assert len(ds._mount_data(ds._chain(ds._lookup(parent)), True, str(ds.home))) > 4096  # absolute won't fit
    target = tmp_path / "deep"
    target.mkdir()
    for readonly in (True, False):
        with mounted(ds, parent, target, readonly=readonly) as root:
            assert sorted(os.listdir(root)) == ["bottom", "top"]
            assert (root / "bottom").read_text() == "0"
    with pytest.raises(StorageError, match="at most"):
        ds.add_device("one-too-many", parent)
    assert not ds.has_device("one-too-many")


def test_a_removed_parent_keeps_its_layer_until_the_last_child_goes(ds: OverlayDeviceSet, home: Path,
                                                                     tmp_path: Path) -> None:
    ds.add_device("p", BASE_HASH)
    ds.add_device("c1", "p")
    ds.add_device("c2", "c1")
    assert layer_count(home) == 4  # base + 3
    ds.remove_device("p")
    ds.remove_device("c1")
    assert ds.list() == ["c2"]
    assert layer_count(home) == 4  # c2 still stacks on both
    ds.remove_device("c2")
    assert layer_count(home) == 1  # only the base is left
    assert ds.list() == []


def test_restart_collects_layers_left_by_a_crash(home: Path) -> None:
    ds = OverlayDeviceSet(home)
    ds.add_device("kept", BASE_HASH)
    # a crash between creating a layer and publishing its device link leaves an unnamed layer behind
    (home / "layers" / "0123456789" / "diff").mkdir(parents=True)
    stray = home / "layers" / "abcdefabcd"
    (stray / "diff").mkdir(parents=True)
    (stray / "meta.json").write_text('{"hash": "never-linked", "parent": "base", "initialized": false}')
    for lid in ("0123456789", "abcdefabcd"):  # add_device marks a layer pending before making it
        (home / "pending" / lid).touch()
    ds.shutdown()
    again = OverlayDeviceSet(home)
    assert again.list() == ["kept"]
    assert layer_count(home) == 2
    assert again.has_device("kept")
    assert os.listdir(home / "pending") == []


def test_a_crash_between_unnaming_a_device_and_deleting_its_layer_is_collected(home: Path) -> None:
    ds = OverlayDeviceSet(home)
    ds.add_device("kept", BASE_HASH)
    ds.add_device("gone", "kept")
    lid = ds._lookup("gone")
    (home / "pending" / lid).touch()  # what remove_device marks before unlinking the name
    os.unlink(home / "devices" / "gone")
    ds.shutdown()
    again = OverlayDeviceSet(home)
    assert again.list() == ["kept"]
    assert layer_count(home) == 2


def test_a_removed_layer_is_gone_at_once_and_what_a_crash_left_in_the_trash_goes_at_the_next_open(home: Path) -> None:
    ds = OverlayDeviceSet(home)
    ds.add_device("gone", BASE_HASH)
    lid = ds._lookup("gone")
    with afterwards.collecting() as pending:  # as the command server's worker runs a command
        ds.remove_device("gone")
        assert not (home / "layers" / lid).exists()  # renamed into the trash: the answer need not wait
        assert [n.split(".")[0] for n in os.listdir(home / "trash")] == [lid]
    ds.shutdown()  # a crash before the work after the answer: the layer's files are still in the trash
    assert os.listdir(home / "trash")
    OverlayDeviceSet(home).shutdown()
    assert os.listdir(home / "trash") == []
    afterwards.run(pending)  # late, and finding nothing left: harmless


def test_a_root_made_before_children_were_recorded_is_indexed_on_first_open(home: Path) -> None:
    ds = OverlayDeviceSet(home)
    ds.add_device("p", BASE_HASH)
    ds.add_device("c", "p")
    ds.shutdown()
    for children in (home / "layers").glob("*/children"):  # the older layout: no children recorded
        shutil.rmtree(children)
    (home / ".children-indexed").unlink()
    again = OverlayDeviceSet(home)
    again.remove_device("p")
    assert layer_count(home) == 3  # c still stacks on p's layer: known from the rebuilt index
    again.remove_device("c")
    assert layer_count(home) == 1


def test_a_crash_while_creating_the_base_layer_is_repaired(home: Path) -> None:
    (home / "layers" / "base" / "diff").mkdir(parents=True)  # no meta.json: creation never finished
    ds = OverlayDeviceSet(home)
    assert ds.has_initialized_device(BASE_HASH)
    ds.add_device("a", BASE_HASH)
    assert ds.list() == ["a"]


def test_a_childs_root_directory_inherits_mode_and_owner(ds: OverlayDeviceSet, tmp_path: Path) -> None:
    ds.add_device("p", BASE_HASH)
    target = tmp_path / "m"
    target.mkdir()
    with mounted(ds, "p", target) as root:
        os.chmod(root, 0o750)
        os.chown(root, 1234, 5678)
    ds.add_device("c", "p")
    with mounted(ds, "c", target) as root:
        st = os.stat(root)
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o750, 1234, 5678)


def test_mountinfo_names_the_layer_as_the_source(ds: OverlayDeviceSet, tmp_path: Path) -> None:
    ds.add_device("a", BASE_HASH)
    target = tmp_path / "m"
    target.mkdir()
    with mounted(ds, "a", target):
        entry = [e for e in mountinfo() if e.mountpoint == str(target)][-1]
        assert entry.fstype == "overlay"
        assert entry.source == str(ds._layer_dir(ds._lookup("a")))


def test_a_deleted_then_recreated_directory_hides_the_parents_files(ds: OverlayDeviceSet, tmp_path: Path) -> None:
    ds.add_device("p", BASE_HASH)
    target = tmp_path / "m"
    target.mkdir()
    with mounted(ds, "p", target) as root:
        (root / "etc").mkdir()
        (root / "etc" / "old").write_text("old")
    ds.add_device("c", "p")
    with mounted(ds, "c", target) as root:
        (root / "etc" / "old").unlink()
        (root / "etc").rmdir()
        (root / "etc").mkdir()
        (root / "etc" / "new").write_text("new")
    ds.add_device("g", "c")
    with mounted(ds, "g", target, readonly=True) as root:
        assert os.listdir(root / "etc") == ["new"]


_ADD_SCRIPT = """
import sys
from pydock.devmapper.overlay import OverlayDeviceSet
from pydock.utils.errors import Conflict
ds = OverlayDeviceSet(sys.argv[1])
try:
    ds.add_device("contested", "")
except Conflict:
    print("conflict")
else:
    print("added")
"""


def test_concurrent_processes_adding_one_hash_get_exactly_one_winner(home: Path) -> None:
    OverlayDeviceSet(home)
    procs = [subprocess.Popen([sys.executable, "-c", _ADD_SCRIPT, str(home)], stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    results = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert results == ["added"] + ["conflict"] * 5
    assert OverlayDeviceSet(home).list() == ["contested"]
    assert layer_count(home) == 2


def test_a_parent_can_be_removed_while_its_child_is_mounted(ds: OverlayDeviceSet, tmp_path: Path) -> None:
    ds.add_device("p", BASE_HASH)
    ds.add_device("c", "p")
    target = tmp_path / "m"
    target.mkdir()
    with mounted(ds, "p", target) as root:
        (root / "f").write_text("p")
    with mounted(ds, "c", target) as root:
        ds.remove_device("p")  # allowed: the child mount keeps reading the parent's layer
        assert (root / "f").read_text() == "p"
    with pytest.raises(Conflict):
        with mounted(ds, "c", target):
            ds.remove_device("c")


def test_a_home_whose_path_has_overlay_separators_still_works(tmp_path: Path) -> None:
    home = tmp_path / "odd: name, with\\separators"
    ds = OverlayDeviceSet(home)
    try:
        ds.add_device("p", BASE_HASH)
        ds.add_device("c", "p")
        target = tmp_path / "m"
        target.mkdir()
        with mounted(ds, "p", target) as root:
            (root / "f").write_text("p")
        with mounted(ds, "c", target) as root:
            assert (root / "f").read_text() == "p"
            assert ds.has_activated_device("c")
        with pytest.raises(Conflict):
            with mounted(ds, "c", target, readonly=True):
                ds.remove_device("c")
    finally:
        ds.shutdown()



def _volatile(target: Path) -> bool:
    """Whether the overlay mounted at `target` is volatile (`volatile`, or `fsync=volatile` since 6.x)."""
    with open("/proc/self/mounts") as f:
        rows = [line.split() for line in f]
    options = next(row[3] for row in reversed(rows) if row[1] == str(target)).split(",")
    return "volatile" in options or "fsync=volatile" in options


def test_a_scratch_device_mounts_volatile_and_can_be_mounted_again(ds: OverlayDeviceSet, tmp_path: Path) -> None:
    """A `--rm` container's layers: their read-write mounts skip the unmount's flush (volatile), and the
    mark a volatile mount leaves does not stop the next mount (a --rm container kept and started again)."""
    ds.add_device("img", BASE_HASH)
    ds.add_device("scratch", "img", durable=False)
    ds.add_device("kept", "img")
    target = tmp_path / "m"
    target.mkdir()
    for round_ in range(2):
        with mounted(ds, "scratch", target) as root:
            assert _volatile(target)
            (root / f"file{round_}").write_text("x")
            assert sorted(os.listdir(root)) == [f"file{i}" for i in range(round_ + 1)]
    with mounted(ds, "kept", target):
        assert not _volatile(target)
    ds.set_initialized("scratch")
    assert ds.has_initialized_device("scratch")
    ds.remove_device("scratch")
    assert ds.list() == ["img", "kept"]
