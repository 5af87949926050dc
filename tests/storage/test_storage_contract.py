"""The DeviceSet contract, checked the same way on every driver with real mounts (no mocks).

vfs and overlay run on the host; devicemapper runs only inside User-Mode Linux:
    hack/dmkernel.sh -m 3G -- .venv/bin/python -m pytest -m dm tests/storage -q
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from storage_helpers import Store, store_fixture

from pydock.devmapper.deviceset import BASE_HASH, DeviceSet, mounted
from pydock.utils.mounttable import is_mountpoint, mountinfo, mounts_under
from pydock.devmapper.prefixed import PrefixedDeviceSet
from pydock.utils.errors import Conflict, InvalidArgument, NotFound, PydockError, StorageError

store = store_fixture()


@pytest.fixture
def ds(store: Store) -> DeviceSet:
    return store.open()


def write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def tree(root: Path) -> dict[str, str]:
    """Every regular file below `root` (relative path -> content), except ext4's lost+found."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            full = Path(dirpath) / name
            found[str(full.relative_to(root))] = full.read_text()
    return found


def make_device(ds: DeviceSet, store: Store, hash: str, base: str, files: dict[str, str]) -> None:
    ds.add_device(hash, base)
    with mounted(ds, hash, store.mountpoint(f"build-{hash}")) as root:
        for rel, text in files.items():
            write(root, rel, text)
    ds.set_initialized(hash)


def mounts_at(path: Path) -> int:
    real = os.path.realpath(path)
    return sum(1 for e in mountinfo() if e.mountpoint == real)


# ---- devices -----------------------------------------------------------------------------------

def test_add_device_is_present_but_not_initialized(ds: DeviceSet) -> None:
    ds.add_device("a", BASE_HASH)
    assert ds.has_device("a")
    assert not ds.has_initialized_device("a")
    assert not ds.has_activated_device("a")
    assert "a" in ds.list()
    assert BASE_HASH not in ds.list()
    ds.set_initialized("a")
    assert ds.has_initialized_device("a")
    assert not ds.has_device("missing")
    assert not ds.has_initialized_device("missing")
    assert not ds.has_activated_device("missing")


def test_base_device_exists_and_is_empty(ds: DeviceSet, store: Store) -> None:
    assert ds.has_device(BASE_HASH)
    assert ds.has_initialized_device(BASE_HASH)
    with mounted(ds, BASE_HASH, store.mountpoint("base"), readonly=True) as root:
        assert os.listdir(root) == []  # no lost+found: the device root IS the rootfs
    ds.add_device("child", BASE_HASH)
    with mounted(ds, "child", store.mountpoint("child")) as root:
        assert os.listdir(root) == []
        assert (os.stat(root).st_mode & 0o777) == 0o755


def test_snapshot_chain_ten_deep_is_copy_on_write(ds: DeviceSet, store: Store) -> None:
    parent = BASE_HASH
    for i in range(10):
        h = f"level{i}"
        ds.add_device(h, parent)
        with mounted(ds, h, store.mountpoint(f"w{i}")) as root:
            if i > 0:
                assert (root / "shared").read_text() == str(i - 1)
            write(root, f"own/level{i}", f"written at {i}")
            (root / "shared").write_text(str(i))
            if i >= 2:
                (root / f"own/level{i - 2}").unlink()
            os.chmod(root / "shared", 0o600 + i)
        ds.set_initialized(h)
        parent = h
    # each level shows exactly its own state, whatever its descendants did afterwards
    for i in range(10):
        with mounted(ds, f"level{i}", store.mountpoint(f"r{i}"), readonly=True) as root:
            expected = {"shared": str(i), f"own/level{i}": f"written at {i}"}
            if i >= 1:
                expected[f"own/level{i - 1}"] = f"written at {i - 1}"
            assert tree(root) == expected
            assert (os.stat(root / "shared").st_mode & 0o777) == 0o600 + i
    # a writable child on top changes nothing below it
    ds.add_device("top", "level9")
    with mounted(ds, "top", store.mountpoint("top")) as root:
        (root / "shared").write_text("top")
        (root / "own/level9").unlink()
        write(root, "new", "x")
    with mounted(ds, "level9", store.mountpoint("r9-again"), readonly=True) as root:
        assert tree(root) == {"shared": "9", "own/level9": "written at 9", "own/level8": "written at 8"}
    with mounted(ds, "top", store.mountpoint("top-again"), readonly=True) as root:
        assert tree(root) == {"shared": "top", "own/level8": "written at 8", "new": "x"}


def test_siblings_are_isolated(ds: DeviceSet, store: Store) -> None:
    make_device(ds, store, "img", BASE_HASH, {"etc/motd": "image"})
    ds.add_device("c1", "img")
    ds.add_device("c2", "img")
    with mounted(ds, "c1", store.mountpoint("c1")) as r1, mounted(ds, "c2", store.mountpoint("c2")) as r2:
        (r1 / "etc/motd").write_text("one")
        assert (r2 / "etc/motd").read_text() == "image"
        (r2 / "etc/motd").unlink()
        assert (r1 / "etc/motd").read_text() == "one"
    with mounted(ds, "img", store.mountpoint("img"), readonly=True) as root:
        assert tree(root) == {"etc/motd": "image"}


# ---- mounts ------------------------------------------------------------------------------------

def test_mount_is_visible_only_between_mount_and_unmount(ds: DeviceSet, store: Store) -> None:
    ds.add_device("a", BASE_HASH)
    p1, p2 = store.mountpoint("one"), store.mountpoint("two with space")
    assert not is_mountpoint(p1)
    ds.mount_device("a", p1)
    assert is_mountpoint(p1) and mounts_at(p1) == 1
    ds.mount_device("a", p2)
    assert is_mountpoint(p2)
    write(p1, "f", "via one")
    assert (p2 / "f").read_text() == "via one"
    ds.unmount_device("a", p1)
    assert not is_mountpoint(p1)
    assert is_mountpoint(p2)
    assert not (p1 / "f").exists()
    ds.unmount_device("a", p2)
    assert not is_mountpoint(p2)
    assert mounts_under(store.scratch) == []


def test_unmount_of_a_path_that_is_not_mounted_fails(ds: DeviceSet, store: Store) -> None:
    ds.add_device("a", BASE_HASH)
    with pytest.raises(PydockError):
        ds.unmount_device("a", store.mountpoint("never"))


def test_mount_on_missing_directory_fails_cleanly(ds: DeviceSet, store: Store) -> None:
    ds.add_device("a", BASE_HASH)
    with pytest.raises(PydockError):
        ds.mount_device("a", store.scratch / "does-not-exist")
    assert not ds.has_activated_device("a") or ds.name == "devicemapper"
    assert mounts_under(store.scratch) == []


def test_readonly_mount_rejects_writes(ds: DeviceSet, store: Store) -> None:
    make_device(ds, store, "a", BASE_HASH, {"keep": "original"})
    with mounted(ds, "a", store.mountpoint("ro"), readonly=True) as root:
        assert (root / "keep").read_text() == "original"
        for attempt in (lambda: (root / "keep").write_text("changed"),
                        lambda: (root / "new").write_text("x"),
                        lambda: (root / "dir").mkdir(),
                        lambda: (root / "keep").unlink()):
            with pytest.raises(OSError) as err:
                attempt()
            assert err.value.errno == errno.EROFS
    with mounted(ds, "a", store.mountpoint("rw")) as root:
        assert tree(root) == {"keep": "original"}


def test_has_activated_device_follows_mounts_and_deactivation(ds: DeviceSet, store: Store) -> None:
    ds.add_device("a", BASE_HASH)
    p = store.mountpoint("act")
    assert not ds.has_activated_device("a")
    ds.mount_device("a", p)
    assert ds.has_activated_device("a")
    ds.unmount_device("a", p, deactivate=False)
    assert ds.has_activated_device("a")  # kept active, like a dm mapping left in place
    ds.deactivate_device("a")
    assert not ds.has_activated_device("a")
    ds.mount_device("a", p)
    ds.unmount_device("a", p, deactivate=True)
    assert not ds.has_activated_device("a")


def test_deactivate_while_mounted_is_refused_and_harmless(ds: DeviceSet, store: Store) -> None:
    make_device(ds, store, "a", BASE_HASH, {"f": "data"})
    with mounted(ds, "a", store.mountpoint("busy")) as root:
        with pytest.raises(PydockError):
            ds.deactivate_device("a")
        assert (root / "f").read_text() == "data"
        assert ds.has_activated_device("a")


def test_remove_while_mounted_conflicts_and_loses_nothing(ds: DeviceSet, store: Store) -> None:
    make_device(ds, store, "a", BASE_HASH, {"precious": "data"})
    p = store.mountpoint("busy")
    ds.mount_device("a", p)
    try:
        with pytest.raises(Conflict) as err:
            ds.remove_device("a")
        assert "a" in str(err.value)
        assert is_mountpoint(p)
        assert (p / "precious").read_text() == "data"
        assert ds.has_device("a") and ds.has_initialized_device("a")
    finally:
        ds.unmount_device("a", p)
    with mounted(ds, "a", store.mountpoint("again")) as root:
        assert tree(root) == {"precious": "data"}
    ds.remove_device("a")
    assert not ds.has_device("a")
    assert "a" not in ds.list()


def test_removed_hash_can_be_added_again_fresh(ds: DeviceSet, store: Store) -> None:
    make_device(ds, store, "a", BASE_HASH, {"old": "1"})
    ds.remove_device("a")
    ds.add_device("a", BASE_HASH)
    assert not ds.has_initialized_device("a")
    with mounted(ds, "a", store.mountpoint("fresh")) as root:
        assert tree(root) == {}


def test_removing_a_parent_keeps_its_children_working(ds: DeviceSet, store: Store) -> None:
    make_device(ds, store, "parent", BASE_HASH, {"from-parent": "p"})
    make_device(ds, store, "child", "parent", {"from-child": "c"})
    ds.remove_device("parent")
    assert not ds.has_device("parent")
    assert ds.list() == ["child"]
    with mounted(ds, "child", store.mountpoint("child")) as root:
        assert tree(root) == {"from-parent": "p", "from-child": "c"}
    ds.add_device("grandchild", "child")
    with mounted(ds, "grandchild", store.mountpoint("gc"), readonly=True) as root:
        assert tree(root) == {"from-parent": "p", "from-child": "c"}
    ds.remove_device("grandchild")
    ds.remove_device("child")
    assert ds.list() == []


def test_the_base_device_cannot_be_removed(ds: DeviceSet) -> None:
    with pytest.raises(PydockError):
        ds.remove_device(BASE_HASH)
    assert ds.has_device(BASE_HASH)


# ---- errors ------------------------------------------------------------------------------------

def test_unknown_hashes_are_not_found(ds: DeviceSet, store: Store) -> None:
    p = store.mountpoint("x")
    for call in (lambda: ds.mount_device("ghost", p),
                 lambda: ds.remove_device("ghost"),
                 lambda: ds.set_initialized("ghost"),
                 lambda: ds.deactivate_device("ghost"),
                 lambda: ds.add_device("new", "ghost")):
        with pytest.raises(NotFound) as err:
            call()
        assert "ghost" in str(err.value)
        assert "\n" not in str(err.value)
    assert not ds.has_device("new")
    assert mounts_under(store.scratch) == []


def test_duplicate_add_is_refused_and_keeps_the_original(ds: DeviceSet, store: Store) -> None:
    make_device(ds, store, "a", BASE_HASH, {"f": "first"})
    with pytest.raises((Conflict, StorageError), match="hash a already exists"):
        ds.add_device("a", BASE_HASH)
    assert ds.has_initialized_device("a")
    with mounted(ds, "a", store.mountpoint("a")) as root:
        assert tree(root) == {"f": "first"}


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".", "..", "x" * 300, "nul\0byte", "new\nline"])
def test_unusable_hashes_are_invalid(ds: DeviceSet, bad: str) -> None:
    with pytest.raises((InvalidArgument, StorageError)):
        ds.add_device(bad, BASE_HASH)
    assert not ds.has_device(bad)


def test_threads_can_share_one_instance(ds: DeviceSet, store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    make_device(ds, store, "img", BASE_HASH, {"etc/os-release": "img"})

    def worker(n: int) -> list[str]:
        seen = []
        for i in range(5):
            h = f"t{n}-{i}"
            ds.add_device(h, "img")
            with mounted(ds, h, store.mountpoint(h)) as root:
                (root / "who").write_text(h)
                seen.append((root / "etc/os-release").read_text() + ":" + (root / "who").read_text())
            ds.remove_device(h)
        return seen

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, range(4)))
    assert results == [[f"img:t{n}-{i}" for i in range(5)] for n in range(4)]
    assert ds.list() == ["img"]
    assert mounts_under(store.scratch) == []


# ---- restart -----------------------------------------------------------------------------------

def test_restart_sees_the_same_devices_and_data(store: Store) -> None:
    ds = store.open()
    make_device(ds, store, "img", BASE_HASH, {"etc/hostname": "img"})
    make_device(ds, store, "ctr", "img", {"tmp/state": "ctr"})
    ds.add_device("half", "img")  # never initialized
    ds.shutdown()
    again = store.open()
    assert again.list() == ["ctr", "half", "img"]
    assert again.has_initialized_device("img") and again.has_initialized_device("ctr")
    assert not again.has_initialized_device("half")
    with mounted(again, "ctr", store.mountpoint("ctr"), readonly=True) as root:
        assert tree(root) == {"etc/hostname": "img", "tmp/state": "ctr"}
    again.add_device("after", "ctr")
    again.remove_device("half")
    assert again.list() == ["after", "ctr", "img"]


def test_shutdown_unmounts_what_this_instance_mounted(store: Store) -> None:
    ds = store.open()
    make_device(ds, store, "a", BASE_HASH, {"f": "x"})
    p1, p2 = store.mountpoint("s1"), store.mountpoint("s2")
    ds.mount_device("a", p1)
    ds.mount_device("a", p2)  # same device twice (ext4 can't be mounted rw and ro at once)
    ds.shutdown()
    assert not is_mountpoint(p1) and not is_mountpoint(p2)
    again = store.open()
    assert again.has_initialized_device("a")


def test_shutdown_also_unmounts_what_an_earlier_instance_left_mounted(store: Store) -> None:
    first = store.open()
    make_device(first, store, "a", BASE_HASH, {"f": "x"})
    p = store.mountpoint("left-behind")
    first.mount_device("a", p)
    first.close()  # a process that exits without tearing the store down
    assert is_mountpoint(p)
    second = store.open()
    second.shutdown()
    assert not is_mountpoint(p)
    third = store.open()
    assert third.has_initialized_device("a") and not third.has_activated_device("a")


def test_close_keeps_mounts_for_the_next_process(store: Store) -> None:
    first = store.open()
    make_device(first, store, "a", BASE_HASH, {"f": "x"})
    p = store.mountpoint("kept")
    first.mount_device("a", p)
    first.close()
    assert is_mountpoint(p) and (p / "f").read_text() == "x"
    second = store.open()
    assert second.has_activated_device("a")
    second.unmount_device("a", p)
    assert not is_mountpoint(p)


def test_a_new_instance_can_unmount_an_earlier_instances_mount(store: Store) -> None:
    first = store.open()
    make_device(first, store, "a", BASE_HASH, {"f": "x"})
    p = store.mountpoint("shared")
    first.mount_device("a", p)
    second = store.open()  # e.g. `pydock stop` in another process than `pydock start`
    with pytest.raises(Conflict):
        second.remove_device("a")
    second.unmount_device("a", p)
    assert not is_mountpoint(p)
    second.remove_device("a")


# ---- the prefix wrapper -----------------------------------------------------------------------

def test_prefixed_wrappers_share_the_base_and_never_collide(ds: DeviceSet, store: Store) -> None:
    one = PrefixedDeviceSet(ds, store.prefix + "a")
    two = PrefixedDeviceSet(ds, store.prefix + "b")
    make_device(one, store, "img", BASE_HASH, {"who": "one"})
    make_device(two, store, "img", BASE_HASH, {"who": "two"})
    make_device(two, store, "only-two", "img", {"extra": "2"})
    assert one.list() == ["img"]
    assert two.list() == ["img", "only-two"]
    assert sorted(ds.list()) == sorted([f"{store.prefix}a-img", f"{store.prefix}b-img",
                                        f"{store.prefix}b-only-two"])
    assert not one.has_device("only-two")
    assert one.has_device(BASE_HASH) and two.has_device(BASE_HASH)
    with mounted(one, "img", store.mountpoint("one"), readonly=True) as r1, \
            mounted(two, "only-two", store.mountpoint("two"), readonly=True) as r2:
        assert tree(r1) == {"who": "one"}
        assert tree(r2) == {"who": "two", "extra": "2"}
    with pytest.raises((Conflict, StorageError), match="already exists"):
        one.add_device("img", BASE_HASH)
    with pytest.raises(NotFound):
        one.add_device("c", "only-two")


def test_prefixed_shutdown_leaves_other_prefixes_mounted(ds: DeviceSet, store: Store) -> None:
    one = PrefixedDeviceSet(ds, store.prefix + "a")
    two = PrefixedDeviceSet(ds, store.prefix + "b")
    make_device(one, store, "c", BASE_HASH, {"f": "one"})
    make_device(two, store, "c", BASE_HASH, {"f": "two"})
    p1, p2 = store.mountpoint("p1"), store.mountpoint("p2")
    one.mount_device("c", p1)
    two.mount_device("c", p2)
    one.shutdown()
    assert not is_mountpoint(p1)
    assert not one.has_activated_device("c")
    assert is_mountpoint(p2)
    assert (p2 / "f").read_text() == "two"
    assert two.has_activated_device("c")
    # the shared store still works for everyone after one wrapper shut down
    make_device(two, store, "d", "c", {"g": "x"})
    one.add_device("later", BASE_HASH)
    two.unmount_device("c", p2)
    assert one.list() == ["c", "later"] and two.list() == ["c", "d"]


def test_prefixed_rejects_bad_prefixes(ds: DeviceSet) -> None:
    for bad in ("", "a/b", "-lead", "x" * 100):
        with pytest.raises(InvalidArgument):
            PrefixedDeviceSet(ds, bad)


# ---- driver selection -------------------------------------------------------------------------

def _host_has_dm() -> bool:
    from pydock.devmapper.drivers import devicemapper_usable

    return devicemapper_usable()[0]


def test_selection_on_a_host_without_device_mapper_picks_overlay_and_says_why(tmp_path: Path) -> None:
    from pydock.devmapper.drivers import open_deviceset
    from pydock.devmapper.overlay import OverlayDeviceSet
    from pydock.utils.paths import RootLayout

    if _host_has_dm():
        pytest.skip("this kernel has dm-thin: the selection would rightly pick devicemapper")
    ds, reason = open_deviceset(tmp_path / "root")
    try:
        assert isinstance(ds, OverlayDeviceSet) and ds.name == "overlay"
        assert reason.startswith("overlay: ")
        assert "device-mapper" in reason and "\n" not in reason
        assert ds.home == Path(os.path.realpath(RootLayout(tmp_path / "root").driver_home("overlay")))
        assert [p.name for p in (tmp_path / "root").iterdir()] == ["overlay"]  # the probe cleaned up
    finally:
        ds.shutdown()


def test_requesting_devicemapper_where_it_is_missing_is_one_clear_error(tmp_path: Path) -> None:
    from pydock.devmapper.drivers import open_deviceset
    from pydock.utils.errors import KernelFeatureMissing

    if _host_has_dm():
        pytest.skip("this kernel has dm-thin")
    with pytest.raises(KernelFeatureMissing) as err:
        open_deviceset(tmp_path / "root", "devicemapper")
    message = str(err.value)
    assert message.startswith("driver devicemapper not supported: ")
    assert "device-mapper" in message and "/dev/mapper/control" in message
    assert "\n" not in message
    assert not (tmp_path / "root" / "devicemapper").exists()


@pytest.mark.dm
def test_selection_on_a_dm_kernel_picks_devicemapper_and_says_why(tmp_path: Path, unique_prefix: str) -> None:
    from pydock.devmapper.drivers import open_deviceset

    ds, reason = open_deviceset(tmp_path / "root", prefix=unique_prefix, data_size=256 << 20,
                                metadata_size=32 << 20, base_size=64 << 20)
    try:
        assert ds.name == "devicemapper"
        assert reason == "devicemapper: /dev/mapper/control and thin-pool present"
        ds.add_device("a", BASE_HASH)
        assert ds.list() == ["a"]
    finally:
        ds.shutdown()


@pytest.mark.parametrize("name", ["overlay", "vfs"])
def test_an_explicit_directory_driver_is_honoured(tmp_path: Path, name: str) -> None:
    from pydock.devmapper.drivers import open_deviceset
    from pydock.utils.paths import RootLayout

    ds, reason = open_deviceset(tmp_path / "root", name, prefix="ignored-by-directory-drivers")
    try:
        assert ds.name == name
        assert reason.startswith(f"{name}: ")
        assert RootLayout(tmp_path / "root").driver_home(name).is_dir()
        ds.add_device("a", BASE_HASH)
        assert ds.list() == ["a"]
    finally:
        ds.shutdown()


def test_unknown_driver_and_option_are_invalid_arguments(tmp_path: Path) -> None:
    from pydock.devmapper.drivers import open_deviceset

    with pytest.raises(InvalidArgument) as err:
        open_deviceset(tmp_path / "root", "aufs")
    assert "aufs" in str(err.value)
    for valid in ("devicemapper", "overlay", "vfs"):
        assert valid in str(err.value)
    with pytest.raises(InvalidArgument, match="colour"):
        open_deviceset(tmp_path / "root", "vfs", colour="blue")
    assert not (tmp_path / "root").exists()


def test_selection_works_for_a_root_whose_path_has_overlay_separators(tmp_path: Path) -> None:
    from pydock.devmapper.drivers import open_deviceset

    if _host_has_dm():
        pytest.skip("this kernel has dm-thin")
    ds, reason = open_deviceset(tmp_path / "root:with,odd\\chars")
    try:
        assert ds.name == "overlay", reason
    finally:
        ds.shutdown()


def test_prefixed_view_reads_shared_store_devices_but_never_changes_them(store: Store) -> None:
    """The pytest plugin's shape: an image built once in the store, snapshotted by per-test views."""
    inner = store.open()
    inner.add_device("img", BASE_HASH)
    with mounted(inner, "img", store.mountpoint("build")) as root:
        (root / "from-image").write_text("v1")
    inner.set_initialized("img")
    view = PrefixedDeviceSet(inner, store.prefix + "x", shared={"img"})

    assert view.has_device("img") and view.has_initialized_device("img")
    with pytest.raises(Conflict):
        view.add_device("img", BASE_HASH)
    view.add_device("ctr", "img")
    with mounted(view, "ctr", store.mountpoint("ctr")) as root:
        assert (root / "from-image").read_text() == "v1"
        (root / "from-image").write_text("changed in the container")
    assert sorted(view.list()) == ["ctr", "img"]

    view.remove_device("ctr")
    view.remove_device("img")  # drops it from the view only
    assert view.list() == [] and not view.has_device("img")
    assert inner.has_device("img")
    with mounted(inner, "img", store.mountpoint("check"), readonly=True) as root:
        assert (root / "from-image").read_text() == "v1"
