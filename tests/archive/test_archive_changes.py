"""changes() (docker diff), sizes, and export_changes -> apply_layer (docker commit) round trips."""

from __future__ import annotations

import ctypes
import errno
import io
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from archive_helpers import snapshot
from pydock.archive.apply import apply_layer
from pydock.archive.changes import Change, ChangeKind, changes, changes_size, tree_size
from pydock.archive.export import export_changes, whiteout_path

T0 = 1_600_000_000_123_456_789


def _tree(root: Path) -> Path:
    root.mkdir()
    for d in ("etc", "var/lib/app", "var/cache/x/y", "usr/bin", "dev"):
        (root / d).mkdir(parents=True)
    (root / "etc" / "passwd").write_bytes(b"root:x:0:0\n")
    (root / "etc" / "hosts").write_bytes(b"127.0.0.1 localhost\n")
    (root / "var" / "lib" / "app" / "db").write_bytes(b"data" * 100)
    (root / "var" / "cache" / "x" / "y" / "z").write_bytes(b"z")
    (root / "usr" / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "usr" / "bin" / "tool", 0o755)
    os.symlink("tool", root / "usr" / "bin" / "alias")
    os.mknod(root / "dev" / "null", 0o666 | 0o020000, os.makedev(1, 3))
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(T0, T0), follow_symlinks=False)
    return root


def _copy(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


@pytest.fixture
def trees(tmp_path):
    old = _tree(tmp_path / "old")
    new = _copy(old, tmp_path / "new")
    return new, old


def _strs(found):
    return [str(c) for c in found]


def test_copy_is_unchanged(trees):
    """cp -a changes inode and ctime only: both are deliberately ignored."""
    new, old = trees
    assert changes(new, old) == []


def test_change_str_and_kinds():
    assert str(Change(ChangeKind.A, "/etc/x")) == "A /etc/x"
    assert [k.value for k in ChangeKind] == ["A", "C", "D"]


def test_mtime_only_change(trees):
    new, old = trees
    os.utime(new / "etc" / "passwd", ns=(T0, T0 + 1))  # one nanosecond
    assert _strs(changes(new, old)) == ["C /etc/passwd"]


def test_mode_only_change(trees):
    new, old = trees
    os.chmod(new / "usr" / "bin" / "tool", 0o4755)
    assert _strs(changes(new, old)) == ["C /usr/bin/tool"]


def test_owner_only_change(trees):
    new, old = trees
    os.chown(new / "etc" / "hosts", 0, 42)
    os.chown(new / "usr" / "bin" / "alias", 7, 0, follow_symlinks=False)
    assert _strs(changes(new, old)) == ["C /etc/hosts", "C /usr/bin/alias"]


def test_rdev_change(trees):
    new, old = trees
    os.unlink(new / "dev" / "null")
    os.mknod(new / "dev" / "null", 0o666 | 0o020000, os.makedev(1, 5))
    os.utime(new / "dev" / "null", ns=(T0, T0))
    os.utime(new / "dev", ns=(T0, T0))
    assert _strs(changes(new, old)) == ["C /dev/null"]


def test_same_size_content_change_with_restored_mtime_is_invisible(trees):
    """Docker's rule, documented: metadata only. Rolling mtime back hides an edit."""
    new, old = trees
    (new / "etc" / "passwd").write_bytes(b"toor:x:0:0\n")
    os.utime(new / "etc" / "passwd", ns=(T0, T0))
    assert changes(new, old) == []


def test_directory_size_is_ignored(trees):
    new, old = trees
    d = new / "var" / "lib"
    for i in range(300):  # grow the directory file, then empty it again
        (d / f"tmp{i:04d}-{'x' * 40}").write_bytes(b"")
    for i in range(300):
        (d / f"tmp{i:04d}-{'x' * 40}").unlink()
    os.utime(d, ns=(T0, T0))
    assert os.stat(d).st_size != os.stat(old / "var" / "lib").st_size
    assert changes(new, old) == []


def test_add_whole_subtree_lists_every_descendant(trees):
    new, old = trees
    (new / "srv" / "www" / "html").mkdir(parents=True)
    (new / "srv" / "www" / "html" / "index.html").write_bytes(b"<p>")
    (new / "srv" / "README").write_bytes(b"r")
    found = changes(new, old)
    # the root itself (its mtime changed) is never listed
    assert _strs(found) == ["A /srv", "A /srv/README", "A /srv/www", "A /srv/www/html",
                            "A /srv/www/html/index.html"]
    assert all(c.kind is ChangeKind.A for c in found)


def test_delete_reported_only_at_top(trees):
    new, old = trees
    shutil.rmtree(new / "var" / "cache")
    os.utime(new / "var", ns=(T0, T0))
    assert _strs(changes(new, old)) == ["D /var/cache"]


def test_type_change_file_to_dir_and_back(trees):
    new, old = trees
    (new / "etc" / "hosts").unlink()
    (new / "etc" / "hosts").mkdir()
    (new / "etc" / "hosts" / "inner").write_bytes(b"i")
    shutil.rmtree(new / "var" / "lib" / "app")
    (new / "var" / "lib" / "app").write_bytes(b"now a file")
    for p in ("etc", "var/lib"):
        os.utime(new / p, ns=(T0, T0))
    assert _strs(changes(new, old)) == ["C /etc/hosts", "A /etc/hosts/inner", "C /var/lib/app"]


def test_sorted_by_path(trees):
    new, old = trees
    for name in ("zz", "aa", "mm"):
        (new / name).write_bytes(b"x")
    (new / "etc" / "passwd").unlink()
    found = changes(new, old)
    paths = [c.path for c in found]
    assert paths == sorted(paths)
    assert _strs(found) == ["A /aa", "C /etc", "D /etc/passwd", "A /mm", "A /zz"]


# ---------------------------------------------------------------- unchanged trees read no contents

IN_ACCESS, IN_OPEN, IN_ISDIR = 0x1, 0x20, 0x40000000


class _OpenWatch:
    """inotify watch on every directory of some trees: reports files (not dirs) opened or read."""

    def __init__(self, *roots: Path) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            pytest.skip("inotify unavailable")
        self.names: dict[int, str] = {}
        for root in roots:
            for dirpath, _, _ in os.walk(root):
                wd = self.libc.inotify_add_watch(self.fd, os.fsencode(dirpath), IN_OPEN | IN_ACCESS)
                assert wd >= 0, os.strerror(ctypes.get_errno())
                self.names[wd] = dirpath

    def files_touched(self) -> list[str]:
        touched = []
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    return touched
                raise
            off = 0
            while off < len(buf):
                wd, mask, _cookie, length = struct.unpack_from("iIII", buf, off)
                name = buf[off + 16 : off + 16 + length].rstrip(b"\0").decode()
                off += 16 + length
                if not mask & IN_ISDIR:
                    touched.append(os.path.join(self.names[wd], name))

    def close(self) -> None:
        os.close(self.fd)


def test_unchanged_tree_reads_no_file_contents(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for i in range(40):
        d = old / f"d{i}"
        d.mkdir()
        for j in range(25):
            (d / f"f{j}").write_bytes(b"content %d %d\n" % (i, j) * 50)
    new = _copy(old, tmp_path / "new")
    watch = _OpenWatch(new, old)
    try:
        assert watch.files_touched() == []
        assert changes(new, old) == []
        assert watch.files_touched() == []
        # positive control: the watch does see a file being opened
        (new / "d3" / "f7").read_bytes()
        assert watch.files_touched() == [str(new / "d3" / "f7")] * 2  # IN_OPEN + IN_ACCESS
    finally:
        watch.close()


# ---------------------------------------------------------------- sizes


def test_tree_size_counts_hard_links_once(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "a").write_bytes(b"x" * 1000)
    os.link(root / "a", root / "b")
    (root / "d").mkdir()
    (root / "d" / "c").write_bytes(b"y" * 10)
    os.symlink("abc", root / "d" / "s")  # symlink size = len(target)
    assert tree_size(root) == 1000 + 10 + 3


def test_changes_size_sums_added_and_changed_files(trees):
    new, old = trees
    (new / "big").write_bytes(b"b" * 5000)
    (new / "etc" / "passwd").write_bytes(b"r" * 77)
    shutil.rmtree(new / "var" / "cache")
    (new / "newdir").mkdir()
    found = changes(new, old)
    assert {c.kind for c in found} == {ChangeKind.A, ChangeKind.C, ChangeKind.D}
    assert changes_size(new, found) == 5000 + 77


# ---------------------------------------------------------------- export -> apply


def test_whiteout_path():
    assert whiteout_path("/a/b/c") == "a/b/.wh.c"
    assert whiteout_path("/top") == ".wh.top"


def test_export_then_apply_on_old_copy_reproduces_new(tmp_path, trees):
    new, old = trees
    # every kind of change a container makes
    (new / "srv" / "app").mkdir(parents=True)
    (new / "srv" / "app" / "main.py").write_bytes(b"print('hi')\n")
    (new / "etc" / "passwd").write_bytes(b"root:x:0:0\napp:x:1000:1000\n")
    os.chmod(new / "usr" / "bin" / "tool", 0o4711)
    os.chown(new / "etc" / "hosts", 0, 10)
    shutil.rmtree(new / "var" / "cache")
    (new / "usr" / "bin" / "alias").unlink()
    (new / "var" / "lib" / "app" / "db").unlink()
    (new / "var" / "lib" / "app" / "db").mkdir()  # file -> dir
    (new / "var" / "lib" / "app" / "db" / "wal").write_bytes(b"w")
    os.link(new / "srv" / "app" / "main.py", new / "srv" / "app" / "main-link.py")
    os.symlink("/srv/app/main.py", new / "usr" / "bin" / "app")
    os.mkfifo(new / "srv" / "fifo")
    found = changes(new, old)
    assert "D /var/cache" in _strs(found) and "D /usr/bin/alias" in _strs(found)

    layer = io.BytesIO()
    export_changes(new, found, layer)
    applied = _copy(old, tmp_path / "applied")
    layer.seek(0)
    apply_layer(applied, layer)
    assert changes(new, applied) == []
    snap_new, snap_applied = snapshot(new), snapshot(applied)
    snap_new.pop(".")
    snap_applied.pop(".")
    assert snap_applied == snap_new
    assert os.stat(applied / "srv" / "app" / "main-link.py").st_ino == os.stat(applied / "srv" / "app" / "main.py").st_ino


def test_export_of_no_changes_is_a_valid_empty_layer(tmp_path, trees):
    new, old = trees
    layer = io.BytesIO()
    export_changes(new, changes(new, old), layer)
    assert len(layer.getvalue()) % 10240 == 0
    applied = _copy(old, tmp_path / "applied")
    layer.seek(0)
    assert apply_layer(applied, layer) == 0
    assert changes(applied, old) == []


def test_deep_trees_need_no_recursion(tmp_path):
    """diff, export and sizes walk with explicit stacks (recursion limit lowered to 150, depth 300)."""
    import sys

    old = tmp_path / "old"
    old.mkdir()
    new = tmp_path / "new"
    deep = new / "/".join(["d"] * 300)
    deep.mkdir(parents=True)
    (deep / "leaf").write_bytes(b"leaf")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(150)
    try:
        found = changes(new, old)
        layer = io.BytesIO()
        export_changes(new, found, layer)
        size = tree_size(new)
    finally:
        sys.setrecursionlimit(limit)
    assert len(found) == 301 and found[-1].path.endswith("/d/leaf")
    assert size == 4
    layer.seek(0)
    apply_layer(old, layer)
    assert changes(new, old) == []


def test_roots_may_be_symlinks_but_must_exist(tmp_path, trees):
    new, old = trees
    os.symlink(new, tmp_path / "new-link")
    (new / "added").write_bytes(b"x")
    assert _strs(changes(tmp_path / "new-link", old)) == ["A /added"]
    from pydock.utils.errors import ArchiveError

    with pytest.raises(ArchiveError, match="cannot compare"):
        changes(tmp_path / "missing", old)
