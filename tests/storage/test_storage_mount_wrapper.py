"""utils/mount.py against the real kernel: tmpfs mounts, mountinfo parsing, unmount order."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pydock.utils import mount as km
from pydock.utils import mounttable


@pytest.fixture
def area(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "area"
    root.mkdir()
    try:
        yield root
    finally:
        leftover = mounttable.mounts_under(root)
        for path in leftover:
            km.umount(path, km.MNT_DETACH)
        assert not leftover, f"test left mounts: {leftover}"


def entry_at(path: Path) -> mounttable.MountEntry:
    real = os.path.realpath(path)
    found = [e for e in mounttable.mountinfo() if e.mountpoint == real]
    assert found, f"{real} not in mountinfo"
    return found[-1]


def test_tmpfs_mount_appears_in_mountinfo_and_goes_away(area: Path) -> None:
    target = area / "t"
    target.mkdir()
    km.mount("pydock-test-src", target, "tmpfs", km.MS_NOSUID | km.MS_NODEV, "size=1m,mode=0711")
    try:
        assert mounttable.is_mountpoint(target)
        e = entry_at(target)
        assert e.fstype == "tmpfs" and e.source == "pydock-test-src"
        assert "nosuid" in e.options.split(",") and "nodev" in e.options.split(",")
        assert (os.stat(target).st_mode & 0o777) == 0o711
        (target / "file").write_text("in tmpfs")
    finally:
        km.umount(target)
    assert not mounttable.is_mountpoint(target)
    assert not (target / "file").exists()


def test_readonly_remount_gives_erofs(area: Path) -> None:
    target = area / "ro"
    target.mkdir()
    km.mount("tmpfs", target, "tmpfs", 0, "size=1m")
    try:
        km.mount(None, target, None, km.MS_REMOUNT | km.MS_RDONLY)
        with pytest.raises(OSError) as err:
            (target / "x").write_text("no")
        assert err.value.errno == errno.EROFS
        assert "ro" in entry_at(target).options.split(",")
    finally:
        km.umount(target)


@pytest.mark.parametrize("name", ["with space", "tab\there", "back\\slash", "new\nline", "ünïcode"])
def test_mountinfo_unescapes_odd_paths_and_sources(area: Path, name: str) -> None:
    target = area / name / "inner dir"
    target.mkdir(parents=True)
    source = f"src {name}"
    km.mount(source, target, "tmpfs", 0, "size=1m")
    try:
        e = entry_at(target)
        assert e.mountpoint == os.path.realpath(target)
        assert e.source == source
        assert mounttable.is_mountpoint(target)
        assert mounttable.mounts_under(area / name) == [os.path.realpath(target)]
    finally:
        km.umount(target)


def test_mountinfo_agrees_with_findmnt(area: Path) -> None:
    target = area / "cmp"
    target.mkdir()
    km.mount("cmp-src", target, "tmpfs", 0, "size=1m")
    try:
        out = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "--mountpoint", str(target)],
                             capture_output=True, text=True, check=True).stdout.split()
        e = entry_at(target)
        assert out == [e.source, e.fstype]
    finally:
        km.umount(target)


def test_bind_mount_root_field_names_the_source_directory(area: Path) -> None:
    src = area / "src"
    (src / "sub").mkdir(parents=True)
    fs = area / "fs"
    fs.mkdir()
    km.mount("tmpfs", fs, "tmpfs", 0, "size=1m")
    try:
        (fs / "deep" / "dir").mkdir(parents=True)
        target = area / "bound"
        target.mkdir()
        km.mount(fs / "deep" / "dir", target, None, km.MS_BIND)
        try:
            e = entry_at(target)
            assert e.root == "/deep/dir"
            assert e.major_minor == entry_at(fs).major_minor
        finally:
            km.umount(target)
    finally:
        km.umount(fs)


def test_mounts_under_lists_deepest_first_and_respects_name_boundaries(area: Path) -> None:
    a = area / "a"
    a.mkdir()
    km.mount("tmpfs", a, "tmpfs", 0, "size=1m")
    (a / "b" / "c").mkdir(parents=True)
    km.mount("tmpfs", a / "b", "tmpfs", 0, "size=1m")
    (a / "b" / "c").mkdir()
    km.mount("tmpfs", a / "b" / "c", "tmpfs", 0, "size=1m")
    sibling = area / "ab"  # shares the prefix "a" textually but is not below a/
    sibling.mkdir()
    km.mount("tmpfs", sibling, "tmpfs", 0, "size=1m")
    real = os.path.realpath(a)
    under = mounttable.mounts_under(a)
    assert under == [f"{real}/b/c", f"{real}/b", real]
    assert os.path.realpath(sibling) not in under
    for path in under:  # the order really is the order to unmount in
        km.umount(path)
    km.umount(sibling)
    assert mounttable.mounts_under(area) == []


def test_umount_and_mount_errors_carry_errno(area: Path) -> None:
    plain = area / "plain"
    plain.mkdir()
    with pytest.raises(OSError) as err:
        km.umount(plain)
    assert err.value.errno == errno.EINVAL
    with pytest.raises(OSError) as err:
        km.mount("tmpfs", area / "missing", "tmpfs")
    assert err.value.errno == errno.ENOENT
    with pytest.raises(OSError) as err:
        km.mount("x", plain, "no-such-filesystem-type")
    assert err.value.errno == errno.ENODEV
    assert str(plain) in str(err.value) or "mount" in str(err.value)


def test_umount_busy_then_detach(area: Path) -> None:
    target = area / "busy"
    target.mkdir()
    km.mount("tmpfs", target, "tmpfs", 0, "size=1m")
    fd = os.open(target / "open-file", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC)
    try:
        with pytest.raises(OSError) as err:
            km.umount(target)
        assert err.value.errno == errno.EBUSY
        km.umount(target, km.MNT_DETACH)
        assert not mounttable.is_mountpoint(target)
    finally:
        os.close(fd)


def test_unshare_gives_a_private_mount_namespace(area: Path) -> None:
    target = area / "private"
    target.mkdir()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: private namespace, mount there, report what it sees
        try:
            os.close(read_end)
            km.unshare(km.CLONE_NEWNS)
            km.make_rslave("/")
            km.mount("child-only", target, "tmpfs", 0, "size=1m")
            os.write(write_end, b"1" if mounttable.is_mountpoint(target) else b"0")
        except BaseException:
            os.write(write_end, b"E")
        finally:
            os._exit(0)
    os.close(write_end)
    seen = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert seen == b"1"
    assert not mounttable.is_mountpoint(target)  # never propagated back to us


def test_root_is_shared_matches_findmnt() -> None:
    out = subprocess.run(["findmnt", "-n", "-o", "PROPAGATION", "/"], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert mounttable.root_is_shared() == ("shared" in out)
