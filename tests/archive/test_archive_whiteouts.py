"""Whiteouts (`.wh.<name>`, opaque `.wh..wh..opq`, aufs metadata) as Docker's ApplyLayer applies them."""

from __future__ import annotations

import io
import logging
import os
import tarfile

from archive_helpers import E, make_tar
from pydock.archive.apply import apply_layer

DIR = tarfile.DIRTYPE


def _lower(dest):
    """A lower layer: /etc with files, /var/cache tree, /opt."""
    apply_layer(dest, io.BytesIO(make_tar([
        E("etc", DIR, mode=0o755, mtime=1000),
        E("etc/passwd", data=b"root\n"),
        E("etc/shadow", data=b"secret\n", mode=0o600),
        E("var", DIR, mode=0o755, mtime=1000),
        E("var/cache", DIR, mode=0o755, mtime=1000),
        E("var/cache/a", data=b"a"),
        E("var/cache/sub", DIR, mode=0o755),
        E("var/cache/sub/b", data=b"b"),
        E("opt", DIR, mode=0o755, mtime=1000),
        E("opt/tool", data=b"tool"),
    ])))


def _apply(dest, entries):
    return apply_layer(dest, io.BytesIO(make_tar(entries)))


def test_whiteout_removes_file_and_restores_parent_mtime(tmp_path):
    dest = tmp_path / "rootfs"
    dest.mkdir()
    _lower(dest)
    before = os.stat(dest / "etc").st_mtime_ns
    _apply(dest, [E("etc/.wh.shadow")])
    assert sorted(os.listdir(dest / "etc")) == ["passwd"]
    assert os.stat(dest / "etc").st_mtime_ns == before
    assert not (dest / "etc" / ".wh.shadow").exists()


def test_whiteout_removes_whole_directory(tmp_path):
    dest = tmp_path / "rootfs"
    dest.mkdir()
    _lower(dest)
    _apply(dest, [E("var/.wh.cache"), E(".wh.opt")])
    assert os.listdir(dest / "var") == []
    assert sorted(os.listdir(dest)) == ["etc", "var"]
    assert os.stat(dest / "var").st_mtime == 1000


def test_whiteout_of_missing_entry_is_ignored(tmp_path, caplog):
    dest = tmp_path / "rootfs"
    dest.mkdir()
    _lower(dest)
    with caplog.at_level(logging.DEBUG, logger="pydock.archive"):
        _apply(dest, [E("etc/.wh.nothing"), E("nodir/.wh.x")])
    assert sorted(os.listdir(dest / "etc")) == ["passwd", "shadow"]
    assert not (dest / "nodir").exists()
    # ignored, but said so at debug level (pydock -D), on the package's logger
    said = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("pydock.archive", logging.DEBUG, "layer: whiteout 'etc/.wh.nothing' hides nothing (no such path below)") in said
    assert ("pydock.archive", logging.DEBUG, "layer: whiteout 'nodir/.wh.x' hides nothing (no such path below)") in said


def test_opaque_directory_keeps_only_this_layers_entries(tmp_path):
    dest = tmp_path / "rootfs"
    dest.mkdir()
    _lower(dest)
    # opaque marker placed both before and after the layer's own entries must behave the same
    _apply(dest, [
        E("var/cache", DIR, mode=0o700, mtime=5000),
        E("var/cache/.wh..wh..opq"),
        E("var/cache/new", data=b"new"),
        E("var/cache/sub/c", data=b"c"),  # implicit parent: sub stays, its lower child b goes
    ])
    assert sorted(os.listdir(dest / "var" / "cache")) == ["new", "sub"]
    assert os.listdir(dest / "var" / "cache" / "sub") == ["c"]
    assert os.stat(dest / "var" / "cache").st_mtime == 5000
    assert not (dest / "var" / "cache" / ".wh..wh..opq").exists()


def test_opaque_marker_after_entries(tmp_path):
    dest = tmp_path / "rootfs"
    dest.mkdir()
    _lower(dest)
    _apply(dest, [E("opt/new", data=b"n"), E("opt/.wh..wh..opq")])
    assert os.listdir(dest / "opt") == ["new"]


def test_layer_entry_wins_over_its_own_whiteout(tmp_path):
    dest = tmp_path / "rootfs"
    dest.mkdir()
    _lower(dest)
    _apply(dest, [E("etc/.wh.passwd"), E("etc/passwd", data=b"new root\n")])
    assert (dest / "etc" / "passwd").read_bytes() == b"new root\n"


def test_aufs_metadata_is_dropped(tmp_path):
    dest = tmp_path / "rootfs"
    dest.mkdir()
    _apply(dest, [
        E(".wh..wh.aufs", data=b"meta"),
        E(".wh..wh.orph", DIR, mode=0o700),
        E(".wh..wh.orph/x", data=b"x"),
        E(".wh..wh.plnk", DIR, mode=0o700),
        E(".wh..wh.plnk/1.2", data=b"y"),
        E("real", data=b"kept"),
    ])
    assert os.listdir(dest) == ["real"]


def test_whiteout_through_in_root_symlink_follows_it_inside(tmp_path):
    """Merged-/usr style `lib -> usr/lib`: a whiteout under lib/ removes usr/lib/<name>."""
    dest = tmp_path / "rootfs"
    dest.mkdir()
    _apply(dest, [E("usr/lib", DIR, mode=0o755), E("usr/lib/libfoo.so", data=b"x"),
                  E("lib", tarfile.SYMTYPE, linkname="usr/lib")])
    _apply(dest, [E("lib/.wh.libfoo.so"), E("lib/libbar.so", data=b"bar")])
    assert os.listdir(dest / "usr" / "lib") == ["libbar.so"]
    assert os.path.islink(dest / "lib")


def test_whiteout_entries_count_no_bytes(tmp_path):
    dest = tmp_path / "rootfs"
    dest.mkdir()
    _lower(dest)
    assert _apply(dest, [E("etc/.wh.shadow"), E("etc/motd", data=b"hello")]) == 5


def test_deep_opaque_needs_no_recursion(tmp_path):
    import sys

    dest = tmp_path / "rootfs"
    dest.mkdir()
    deep = "/".join(["d"] * 300)
    _apply(dest, [E("o/" + deep + "/lower", data=b"l")])
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(150)
    try:
        _apply(dest, [E("o/.wh..wh..opq"), E("o/" + deep + "/upper", data=b"u")])
    finally:
        sys.setrecursionlimit(limit)
    assert os.listdir(dest / "o" / deep) == ["upper"]


def test_gnu_volume_label_is_skipped(tmp_path):
    dest = tmp_path / "rootfs"
    dest.mkdir()
    _apply(dest, [E("my-label", b"V"), E("f", data=b"x")])
    assert os.listdir(dest) == ["f"]
