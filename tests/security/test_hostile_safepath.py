"""utils/safepath, the one resolver for paths inside untrusted trees, with both implementations: openat2
(RESOLVE_IN_ROOT / RESOLVE_BENEATH) and the O_NOFOLLOW walk old kernels get (PYDOCK_NO_OPENAT2=1).
Nothing it resolves, creates or reads is ever outside the root, also while the tree changes under it."""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_helpers import tree

from pydock.utils import openat2, safepath


@pytest.fixture(params=["openat2", "walk"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(safepath.NO_OPENAT2_ENV, "1" if request.param == "walk" else "0")
    safepath.kernel_resolution.cache_clear()
    assert safepath.kernel_resolution() == (request.param == "openat2")
    yield request.param
    safepath.kernel_resolution.cache_clear()


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """(root, outside): a rootfs full of links that point at `outside`, which must stay empty."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "etc").mkdir(parents=True)
    outside.mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
    (root / "abs").symlink_to(str(outside))
    (root / "rel").symlink_to("../" * 12 + str(outside).lstrip("/"))
    (root / "dangling").symlink_to("/nowhere/deeper")
    (root / "loop").symlink_to("/loop")
    (root / "fd").symlink_to("/proc/self/fd")
    os.mkfifo(root / "fifo")
    return root, outside


def test_the_kernel_has_openat2():
    """This host and UML's 6.1 kernel both have it: the fast path is the one that runs."""
    assert openat2.supported()


def test_lookups_stay_inside(world, impl):
    root, outside = world
    assert safepath.lookup_in_root(root, "/abs/x/../y") == str(outside) + "/y"
    assert safepath.lookup_in_root(root, "rel/a") == str(outside) + "/a"
    assert safepath.lookup_in_root(root, "/../../etc/passwd") == "/etc/passwd"
    assert safepath.lookup_in_root(root, "/dangling/x") == "/nowhere/deeper/x"
    with pytest.raises(OSError) as err:
        safepath.lookup_in_root(root, "/loop")
    assert err.value.errno == errno.ELOOP
    with pytest.raises(FileNotFoundError):  # /proc/self/fd of the *rootfs*, never our own fds
        os.close(safepath.open_in_root(root, "/fd/0"))


def test_opens_follow_links_inside_the_root_only(world, impl):
    root, outside = world
    (outside / "secret").write_text("host\n")
    (root / "etc" / "shadow").symlink_to(str(outside / "secret"))
    with pytest.raises(FileNotFoundError):
        safepath.open_in_root(root, "/etc/shadow", os.O_RDONLY)
    (root / "inside").symlink_to("../../etc")  # `..` above the root stays at the root
    fd = safepath.open_in_root(root, "/inside/../inside/passwd", os.O_RDONLY)
    try:
        assert os.read(fd, 4) == b"root"
    finally:
        os.close(fd)
    fd = safepath.open_in_root(root, "/abs", follow=False)
    try:
        assert stat.S_ISLNK(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def test_creation_lands_inside(world, impl):
    root, outside = world
    found = safepath.make_dirs_in_root(root, "/abs/made/deep", 0o750, 123, 456)
    assert found.path == f"{outside}/made/deep" and found.is_dir
    made = root / str(outside).lstrip("/") / "made"
    assert (made.stat().st_uid, stat.S_IMODE(made.stat().st_mode)) == (123, 0o750)
    assert safepath.make_file_in_root(root, "/rel/f").path == f"{outside}/f"
    assert safepath.make_dirs_in_root(root, "/dangling/d").path == "/nowhere/deeper/d"
    with pytest.raises(NotADirectoryError):
        safepath.make_dirs_in_root(root, "/etc/passwd/x")
    assert tree(outside) == []


def test_reads_are_bounded_and_never_block(world, impl):
    root, _ = world
    assert safepath.read_in_root(root, "/etc/passwd", 100).startswith(b"root")
    for path, errnum in (("/fifo", errno.EINVAL), ("/etc", errno.EINVAL), ("/etc/passwd", errno.EFBIG)):
        with pytest.raises(OSError) as err:
            safepath.read_in_root(root, path, 10 if path == "/etc/passwd" else 100)
        assert err.value.errno == errnum, (path, err.value)


def test_beneath_refuses_every_symlink_and_escape(world, impl):
    root, _ = world
    rfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for rel, errnum in (("abs/x", errno.ELOOP), ("rel", errno.ELOOP), ("etc/../../x", errno.EXDEV)):
            with pytest.raises(OSError) as err:
                os.close(safepath.open_beneath(rfd, rel, os.O_RDONLY))
            assert err.value.errno == errnum, (rel, err.value)
        assert stat.S_ISLNK(safepath.lstat_beneath(rfd, "abs").st_mode)  # the link itself, as an entry
        assert stat.S_ISREG(safepath.lstat_beneath(rfd, "etc/passwd").st_mode)
    finally:
        os.close(rfd)


def test_a_directory_swapped_for_a_link_while_resolving_never_leads_out(tmp_path: Path, impl):
    """A concurrent process flips `a` between a directory and a link to `outside` as fast as it can."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    stop = threading.Event()

    def flip() -> None:
        a, spare = root / "a", root / "a.dir"
        spare.mkdir()
        while not stop.is_set():
            try:
                os.rename(spare, a)  # a: the directory
                os.rename(a, spare)
                os.symlink(str(outside), a)  # a: the link out
                os.unlink(a)
            except OSError:
                continue

    t = threading.Thread(target=flip)
    t.start()
    try:
        for _ in range(2000):
            for call in (lambda: safepath.make_dirs_in_root(root, "/a/b/c"),
                         lambda: safepath.make_file_in_root(root, "/a/f"),
                         lambda: safepath.lookup_in_root(root, "/a/b")):
                try:
                    call()
                except OSError:
                    continue  # the path changed under it: fine, as long as nothing lands outside
    finally:
        stop.set()
        t.join()
    assert tree(outside) == []
