"""The graph driver's contract (get/put by id, counts shared by processes), the same on every DeviceSet.

Checked the way a user would see it: mountinfo, the kernel's dm devices (/sys/block/dm-*), files
written through the mounts, other processes. vfs and overlay run on the host; devicemapper only
inside User-Mode Linux:
    hack/dmkernel.sh -m 4G -- .venv/bin/python -m pytest -m dm tests/storage -q
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from storage_helpers import Store, store_fixture

from pydock.devmapper.deviceset import BASE_HASH, DeviceSet
from pydock.devmapper.driver import Driver
from pydock.devmapper.prefixed import PrefixedDeviceSet
from pydock.utils.errors import InvalidArgument, NotFound, StorageError
from pydock.utils.mount import umount
from pydock.utils.mounttable import mountinfo, mounts_under

store = store_fixture()


@pytest.fixture
def ds(store: Store) -> DeviceSet:
    return store.open()


@pytest.fixture
def drv(store: Store, ds: DeviceSet) -> Driver:
    drv = store.driver(ds)
    drv.create("a", None)
    return drv


# ---- what a user can observe -------------------------------------------------------------------

def mounts_at(path: Path) -> list[str]:
    """The mount options of every mount stacked at `path` (empty: not mounted)."""
    real = os.path.realpath(path)
    return [e.options for e in mountinfo() if e.mountpoint == real]


def dm_names() -> set[str]:
    """The device-mapper devices the kernel has right now."""
    names = set()
    for f in Path("/sys/block").glob("dm-*/dm/name"):
        try:
            names.add(f.read_text().strip())
        except OSError:  # removed while we looked
            continue
    return names


def mapped(ds: DeviceSet, hash: str) -> bool:
    """Whether the kernel has a dm mapping for the device (always False for directory drivers)."""
    if isinstance(ds, PrefixedDeviceSet):
        return mapped(ds.inner, hash if hash in ds.shared else f"{ds.prefix}-{hash}")
    dm_name = getattr(ds, "dm_name", None)
    return dm_name is not None and dm_name(hash) in dm_names()


def leftovers(drv: Driver) -> list[str]:
    """What the driver keeps under home/mnt: a mountpoint or a count file per id in use."""
    mnt = drv.home / "mnt"
    return sorted([n for n in os.listdir(mnt) if n != ".refs"] + os.listdir(mnt / ".refs"))


def child_source(store: Store, drv: Driver, body: str) -> str:
    return (store.open_source() + "import os\nfrom pathlib import Path\nfrom pydock.devmapper.driver import Driver\n"
            f"drv = Driver(ds, {str(drv.home)!r})\n" + textwrap.dedent(body))


def run_child(store: Store, drv: Driver, body: str) -> str:
    """Run `body` in another process with `drv` opened there on the same home (like another pydock)."""
    proc = subprocess.run([sys.executable, "-c", child_source(store, drv, body)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def start_child(store: Store, drv: Driver, body: str) -> subprocess.Popen:
    """Like run_child, left running: `body` should print a line once it holds what it holds."""
    return subprocess.Popen([sys.executable, "-c", child_source(store, drv, body)], stdout=subprocess.PIPE,
                            text=True)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


HOLD = """
    path = drv.get("a")
    os.chdir(path)  # busy while alive
    print("held", flush=True)
    import time
    time.sleep(120)
"""


# ---- get / put -----------------------------------------------------------------------------------

def test_get_mounts_once_at_home_mnt_and_counts(drv: Driver, ds: DeviceSet) -> None:
    first = drv.get("a")
    assert first == drv.home / "mnt" / "a" == drv.mountpoint("a")
    assert drv.get("a") == first
    assert drv.get("a", readonly=True) == first
    assert len(mounts_at(first)) == 1  # one mount, three references
    assert drv.references("a") == 3
    (first / "f").write_text("kept")
    drv.put("a")
    drv.put("a")
    assert len(mounts_at(first)) == 1 and drv.references("a") == 1
    assert mapped(ds, "a") == (ds.name == "devicemapper")
    drv.put("a")
    assert mounts_at(first) == [] and drv.references("a") == 0
    assert not mapped(ds, "a")  # the last put deactivates
    assert leftovers(drv) == []
    with drv.mounted("a", readonly=True) as root:
        assert (root / "f").read_text() == "kept"
    assert mounts_at(first) == []


def test_put_without_a_reference_is_not_found(drv: Driver) -> None:
    with pytest.raises(NotFound) as err:
        drv.put("a")
    assert "\n" not in str(err.value) and "a" in str(err.value)
    assert leftovers(drv) == []


def test_the_first_get_decides_the_mode(drv: Driver) -> None:
    path = drv.get("a", readonly=True)
    assert mounts_at(path)[0].split(",")[0] == "ro"
    with pytest.raises(OSError) as err:
        (path / "f").write_text("x")
    assert err.value.errno == errno.EROFS
    with pytest.raises(StorageError) as refused:
        drv.get("a")
    message = str(refused.value)
    assert "read-only" in message and "\n" not in message
    assert drv.references("a") == 1 and len(mounts_at(path)) == 1
    drv.put("a")
    # read-write first: a read-only get shares that mount
    assert drv.get("a") == path
    assert drv.get("a", readonly=True) == path
    assert [o.split(",")[0] for o in mounts_at(path)] == ["rw"]
    (path / "f").write_text("written")
    drv.put("a")
    drv.put("a")
    assert mounts_at(path) == []


def test_mounted_puts_even_when_the_block_fails(drv: Driver, ds: DeviceSet) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with drv.mounted("a") as root:
            (root / "f").write_text("x")
            raise RuntimeError("boom")
    assert mounts_at(drv.mountpoint("a")) == [] and not mapped(ds, "a")
    with drv.mounted("a") as root:
        assert (root / "f").read_text() == "x"


def test_create_snapshots_the_parent(drv: Driver) -> None:
    with drv.mounted("a") as root:
        (root / "from-a").write_text("a")
    drv.set_initialized("a")
    drv.create("b", "a")
    assert drv.exists("a") and drv.exists("b")
    assert not drv.exists("nope") and not drv.exists("") and not drv.exists("../a")
    with drv.mounted("b") as root:
        assert (root / "from-a").read_text() == "a"
        (root / "from-a").write_text("b")
    with drv.mounted("a", readonly=True) as root:
        assert (root / "from-a").read_text() == "a"
    with pytest.raises(NotFound):
        drv.create("c", "nope")
    assert not drv.exists("c")


def test_unusable_ids_are_refused_before_anything_is_mounted(drv: Driver) -> None:
    for bad in ("", "../a", ".refs", "a/b", "x" * 300):
        with pytest.raises(InvalidArgument):
            drv.get(bad)
    with pytest.raises(NotFound):
        drv.get("ghost")
    assert leftovers(drv) == []


def test_threads_share_one_driver(drv: Driver) -> None:
    holder = drv.get("a")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                assert drv.get("a") == holder
                drv.put("a")
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert drv.references("a") == 1
    drv.put("a")
    assert mounts_at(holder) == []


# ---- shared by processes ---------------------------------------------------------------------------

def test_a_reference_taken_in_one_process_is_put_in_another(store: Store, drv: Driver, ds: DeviceSet) -> None:
    out = run_child(store, drv, """
        path = drv.get("a")
        (path / "from-child").write_text("child")
        print(path)
    """)  # exits holding it, like `pydock start` handing the rootfs to its monitor
    path = Path(out.strip())
    assert path == drv.mountpoint("a") and len(mounts_at(path)) == 1
    assert drv.references("a") == 1
    assert (path / "from-child").read_text() == "child"
    assert drv.get("a") == path
    run_child(store, drv, 'drv.put("a")')
    assert drv.references("a") == 1 and len(mounts_at(path)) == 1
    drv.put("a")
    assert mounts_at(path) == [] and not mapped(ds, "a")
    # and the other way round
    drv.get("a")
    run_child(store, drv, 'drv.put("a")')
    assert mounts_at(path) == [] and not mapped(ds, "a")
    assert leftovers(drv) == []


def test_processes_racing_on_one_id_keep_the_count(store: Store, drv: Driver, ds: DeviceSet) -> None:
    cycles = """
        for _ in range(8):
            drv.get("a")
            drv.put("a")
        print("done", flush=True)
    """
    holder = drv.get("a")
    procs = [start_child(store, drv, cycles) for _ in range(3)]
    for p in procs:
        assert p.communicate(timeout=300)[0] == "done\n" and p.returncode == 0
    assert drv.references("a") == 1 and len(mounts_at(holder)) == 1
    drv.put("a")
    # and through zero: every cycle may mount and unmount
    procs = [start_child(store, drv, cycles) for _ in range(3)]
    for p in procs:
        assert p.communicate(timeout=300)[0] == "done\n" and p.returncode == 0
    assert mounts_at(holder) == [] and not mapped(ds, "a")
    assert leftovers(drv) == []


def test_release_after_the_holder_was_killed_leaves_nothing(store: Store, drv: Driver, ds: DeviceSet) -> None:
    proc = start_child(store, drv, HOLD)
    try:
        assert proc.stdout.readline() == "held\n"
    finally:
        kill(proc)
    path = drv.mountpoint("a")
    assert len(mounts_at(path)) == 1 and drv.references("a") == 1  # the mount outlives its holder
    drv.release("a")
    assert mounts_at(path) == [] and not mapped(ds, "a")
    assert leftovers(drv) == []
    drv.release("a")  # nothing held: no error
    assert drv.get("a") == path and drv.references("a") == 1
    drv.put("a")
    assert mounts_at(path) == []


def test_release_of_a_busy_mount_detaches_it(store: Store, drv: Driver, ds: DeviceSet) -> None:
    proc = start_child(store, drv, HOLD)
    try:
        assert proc.stdout.readline() == "held\n"
        drv.release("a")  # the holder is alive and inside: detached lazily
        assert mounts_at(drv.mountpoint("a")) == [] and drv.references("a") == 0
    finally:
        kill(proc)
    drv.release("a")  # once the last user is gone, the device can go too
    assert not mapped(ds, "a")
    assert leftovers(drv) == []


def test_a_failed_put_leaves_the_mount_for_the_next_get(store: Store, drv: Driver, ds: DeviceSet) -> None:
    proc = start_child(store, drv, HOLD)
    try:
        assert proc.stdout.readline() == "held\n"
        with pytest.raises(StorageError):
            drv.put("a")  # busy: the holder's cwd is inside
        path = drv.mountpoint("a")
        assert len(mounts_at(path)) == 1 and drv.references("a") == 0
        assert drv.get("a") == path and drv.references("a") == 1  # taken over, not stacked
        assert len(mounts_at(path)) == 1
    finally:
        kill(proc)
    drv.put("a")
    assert mounts_at(path) == [] and not mapped(ds, "a")


def test_a_mount_left_without_a_count_is_replaced_not_stacked(drv: Driver, ds: DeviceSet) -> None:
    """A get killed between its mount and writing its count leaves a mount nobody holds."""
    path = drv.mountpoint("a")
    path.mkdir(parents=True)
    ds.mount_device("a", path, readonly=True)  # what the killed get had done
    assert drv.references("a") == 0
    assert drv.get("a") == path
    assert [o.split(",")[0] for o in mounts_at(path)] == ["rw"]  # one mount, in the mode asked for
    (path / "f").write_text("x")
    drv.put("a")
    assert mounts_at(path) == [] and not mapped(ds, "a")
    assert leftovers(drv) == []


def test_a_count_whose_mount_vanished_is_not_believed(drv: Driver, ds: DeviceSet) -> None:
    path = drv.get("a")
    drv.get("a")
    umount(path)  # behind the driver's back (like a reboot, without the reboot)
    assert drv.references("a") == 0
    assert drv.get("a") == path
    assert drv.references("a") == 1 and len(mounts_at(path)) == 1
    drv.put("a")
    assert mounts_at(path) == [] and not mapped(ds, "a")
    # a put after the mount vanished finishes the job instead of failing
    drv.get("a")
    umount(path)
    drv.put("a")
    assert not mapped(ds, "a") and leftovers(drv) == []


# ---- remove, close, shutdown ------------------------------------------------------------------------

def test_remove_releases_a_mounted_device_first(store: Store, drv: Driver, ds: DeviceSet) -> None:
    run_child(store, drv, 'drv.get("a")')
    path = drv.get("a")
    drv.remove("a")
    assert mounts_at(path) == [] and not mapped(ds, "a")
    assert not drv.exists("a") and "a" not in ds.list()
    assert leftovers(drv) == []
    with pytest.raises(NotFound):
        drv.remove("a")
    with pytest.raises(NotFound):
        drv.get("a")
    assert leftovers(drv) == []


def test_close_keeps_mounts_for_a_later_process(store: Store, drv: Driver) -> None:
    path = drv.get("a")
    (path / "f").write_text("x")
    drv.close()
    assert len(mounts_at(path)) == 1
    again = store.driver(store.open())
    assert again.references("a") == 1 and (again.get("a") / "f").read_text() == "x"
    again.put("a")
    again.put("a")
    assert mounts_at(path) == []


def test_shutdown_releases_every_reference(store: Store, drv: Driver, ds: DeviceSet) -> None:
    drv.create("b", "a")
    drv.get("a", readonly=True)
    drv.get("b")
    drv.get("b")
    run_child(store, drv, 'drv.get("b")')
    drv.shutdown()
    assert mounts_under(drv.home) == []
    assert not mapped(ds, "a") and not mapped(ds, "b")
    assert leftovers(drv) == []


def test_open_driver_puts_mountpoints_in_the_driver_home(tmp_path: Path) -> None:
    from pydock.devmapper.drivers import open_driver
    from pydock.utils.paths import RootLayout

    drv, reason = open_driver(tmp_path / "root", "vfs")
    try:
        assert drv.name == "vfs" and reason.startswith("vfs: ")
        assert drv.home == RootLayout(tmp_path / "root").driver_home("vfs")
        assert drv.status() == drv.deviceset.status()
        drv.create("a", None)
        assert drv.get("a") == tmp_path / "root" / "vfs" / "mnt" / "a"
        drv.put("a")
    finally:
        drv.shutdown()
    assert mounts_under(tmp_path) == []


# ---- one store, per-runtime views ---------------------------------------------------------------------

def test_prefixed_views_get_their_own_mounts(store: Store, tmp_path: Path) -> None:
    """The pytest plugin's shape: the pool in the store, each runtime a prefixed view with its own home."""
    inner = store.open()
    inner.add_device("img", BASE_HASH)
    image = store.driver(inner)
    with image.mounted("img") as root:
        (root / "from-image").write_text("image")
    inner.set_initialized("img")
    views = [PrefixedDeviceSet(inner, f"{store.prefix}{n}", shared={"img"}) for n in ("x", "y")]
    one, two = (store.driver(view, tmp_path / f"runtime-{n}") for n, view in enumerate(views))
    for drv, who in ((one, "one"), (two, "two")):
        drv.create("c", "img")
        with drv.mounted("c") as root:
            assert (root / "from-image").read_text() == "image"
            (root / "who").write_text(who)
    p1, p2 = one.get("c"), two.get("c")
    assert p1 != p2 and (p1 / "who").read_text() == "one" and (p2 / "who").read_text() == "two"
    # the shared image mounted by both views at once; one put leaves the other's mount alone
    s1, s2 = one.get("img", readonly=True), two.get("img", readonly=True)
    one.put("img")
    assert mounts_at(s1) == [] and (s2 / "from-image").read_text() == "image"
    assert mapped(views[1], "img") == (inner.name == "devicemapper")
    two.put("img")
    assert mounts_at(s2) == [] and not mapped(views[1], "img")
    one.remove("c")  # gone from its own view only
    assert mounts_at(p1) == [] and not one.exists("c") and two.exists("c")
    assert (p2 / "who").read_text() == "two"
    one.remove("img")  # a shared device: the view stops seeing it, the store keeps it
    assert not one.exists("img") and two.exists("img") and inner.has_device("img")
    two.shutdown()
    assert mounts_at(p2) == [] and not mapped(views[1], "c")
    assert inner.has_device(f"{store.prefix}y-c")  # shutdown releases, never deletes
