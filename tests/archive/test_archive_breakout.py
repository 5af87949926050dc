"""Hostile layers must never write outside the rootfs (after moby's archive_test.go breakout tests).

Each case extracts into `dest/` next to a `victim/` tree and checks the victim byte for byte
(contents, modes, owners, mtimes) afterwards. "unsafe" cases must be refused with an
UnsafeArchive naming the entry; "contained" cases may succeed or fail, but whatever they
write lands inside dest.
"""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from archive_helpers import E, make_tar, sandbox, snapshot
from pydock.archive.apply import apply_layer
from pydock.utils.errors import ArchiveError, UnsafeArchive

REG, SYM, LNK, DIR = tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE

UNSAFE = {
    # TestUntarInvalidFilenames / TestApplyLayerInvalidFilenames
    "dotdot": [E("../victim/dotdot", data=b"x")],
    "slash-dotdot": [E("/../victim/slash-dotdot", data=b"x")],
    "deep-dotdot": [E("a/../../victim/hello", data=b"owned")],
    # TestUntarInvalidHardlink
    "hardlink-dotdot": [E("dotdot", LNK, linkname="../victim/hello")],
    "hardlink-slash-dotdot": [E("slash-dotdot", LNK, linkname="/../victim/hello")],
    "hardlink-dir-then-file": [E("loophole-victim", LNK, linkname="../victim"),
                               E("loophole-victim/file", data=b"x")],
    "hardlink-slash-dir-then-file": [E("loophole-victim", LNK, linkname="/../victim"),
                                     E("loophole-victim/file", data=b"x")],
    "hardlink-then-symlink": [E("loophole-victim", LNK, linkname="../victim"),
                              E("symlink", SYM, linkname="loophole-victim/hello")],
    "hardlink-then-hardlink": [E("loophole-victim", LNK, linkname="../victim"),
                               E("hardlink", LNK, linkname="loophole-victim/hello")],
    "hardlink-then-overwrite": [E("loophole-victim", LNK, linkname="../victim"),
                                E("loophole-victim", data=b"x")],
    # whiteouts climbing out
    "whiteout-dotdot": [E("../victim/.wh.hello")],
    "whiteout-of-dotdot": [E("sub/.wh..."), E("x", data=b"x")],
    # names
    "nul-in-name": [E("ok", pax={"path": "victim\x00/../hello"}, data=b"x")],
    "bad-owner": [E("f", pax={"uid": "4294967295"}, data=b"x")],
    "root-as-file": [E(".", data=b"x")],
    "hardlink-to-root-dir": [E("h", LNK, linkname="/")],
}

CONTAINED = {
    # an absolute entry name means "in the rootfs", never the host path
    "absolute-name": [E("/victim/hello", data=b"inside")],
    # TestUntarInvalidSymlink: symlinks may point anywhere; following them stays inside
    "symlink-dotdot": [E("dotdot", SYM, linkname="../victim/hello")],
    "symlink-dir-then-file": [E("loophole", SYM, linkname="../victim"), E("loophole/exploit", data=b"x")],
    "symlink-abs-dir-then-file": [E("loophole", SYM, linkname="/../victim"), E("loophole/exploit", data=b"x")],
    "symlink-root-then-write": [E("x", SYM, linkname="/"), E("x/victim/hello", data=b"owned")],
    "symlink-deep-dotdot-then-write": [E("x", SYM, linkname="../../../../../.."), E("x/victim/hello", data=b"owned")],
    "symlink-then-overwrite": [E("loophole", SYM, linkname="../victim/hello"), E("loophole", data=b"owned")],
    "symlink-nested-then-file": [E("dir", DIR, mode=0o755), E("dir/loophole", SYM, linkname="../../victim"),
                                 E("dir/loophole/newdir/newfile", data=b"x")],
    "symlink-chain": [E("a", SYM, linkname="b"), E("b", SYM, linkname="../victim"), E("a/hello", data=b"owned")],
    "symlink-then-dir-entry": [E("loophole", SYM, linkname="../victim"), E("loophole", DIR, mode=0o777)],
    "symlink-then-mode-via-dir-entry": [E("loophole", SYM, linkname="../victim"),
                                        E("loophole/sub", DIR, mode=0o777, uid=1234)],
    "symlink-then-symlink-through": [E("loophole", SYM, linkname="../victim"),
                                     E("loophole/hello", SYM, linkname="/etc/shadow")],
    "symlink-then-hardlink-through": [E("loophole", SYM, linkname="../victim"),
                                      E("stolen", LNK, linkname="loophole/hello")],
    "hardlink-absolute-host-path": [E("passwd", LNK, linkname="/etc/passwd")],
    "symlink-then-fifo-through": [E("loophole", SYM, linkname="../victim"),
                                  E("loophole/hello", tarfile.FIFOTYPE)],
    "symlink-loop": [E("a", SYM, linkname="b"), E("b", SYM, linkname="a"), E("a/file", data=b"x")],
    "whiteout-through-symlink": [E("link", SYM, linkname="../victim"), E("link/.wh.hello")],
    "whiteout-through-abs-symlink": [E("link", SYM, linkname="/../victim"), E("link/.wh.sub")],
    "opaque-through-symlink": [E("link", SYM, linkname="../victim"), E("link/.wh..wh..opq")],
    "aufs-metadata-escape": [E(".wh..wh.plnk/../../victim/hello", data=b"x")],
}


def _apply(dest, data: bytes):
    return apply_layer(dest, io.BytesIO(data))


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_layer_is_refused_and_victim_untouched(tmp_path, case):
    sb = sandbox(tmp_path)
    with pytest.raises(UnsafeArchive) as err:
        _apply(sb.dest, make_tar(UNSAFE[case]))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("unsafe layer entry")
    sb.victim_untouched()


@pytest.mark.parametrize("case", sorted(CONTAINED))
def test_hostile_but_containable_layer_stays_inside(tmp_path, case):
    sb = sandbox(tmp_path)
    try:
        _apply(sb.dest, make_tar(CONTAINED[case]))
    except ArchiveError as e:  # refusing is fine, as long as the message is one clear line
        assert "\n" not in str(e) and str(e)
    sb.victim_untouched()


def test_symlink_targets_are_stored_verbatim(tmp_path):
    """Rootfs layers legitimately carry absolute and dotdot symlinks; they are created as-is."""
    sb = sandbox(tmp_path)
    _apply(sb.dest, make_tar([E("abs", SYM, linkname="/etc/passwd"), E("rel", SYM, linkname="../victim/hello")]))
    assert os.readlink(sb.dest / "abs") == "/etc/passwd"
    assert os.readlink(sb.dest / "rel") == "../victim/hello"
    sb.victim_untouched()


def test_write_through_absolute_symlink_lands_in_rootfs(tmp_path):
    """`x -> /` then `x/victim/hello` writes dest/victim/hello (securejoin semantics), not the host."""
    sb = sandbox(tmp_path)
    _apply(sb.dest, make_tar([E("x", SYM, linkname="/"), E("x/victim/hello", data=b"inside")]))
    assert (sb.dest / "victim" / "hello").read_bytes() == b"inside"
    assert os.readlink(sb.dest / "x") == "/"
    sb.victim_untouched()


def test_overwriting_a_symlink_replaces_it(tmp_path):
    sb = sandbox(tmp_path)
    _apply(sb.dest, make_tar([E("loophole", SYM, linkname="../victim/hello"), E("loophole", data=b"mine")]))
    assert not (sb.dest / "loophole").is_symlink()
    assert (sb.dest / "loophole").read_bytes() == b"mine"
    sb.victim_untouched()


def test_hardlink_to_host_path_is_not_found(tmp_path):
    sb = sandbox(tmp_path)
    nlink = os.stat("/etc/passwd").st_nlink
    with pytest.raises(ArchiveError, match="hard link target '/etc/passwd' not found"):
        _apply(sb.dest, make_tar([E("passwd", LNK, linkname="/etc/passwd")]))
    assert os.stat("/etc/passwd").st_nlink == nlink
    assert not (sb.dest / "passwd").exists()


@pytest.mark.parametrize("target", ["../../..", "/", "../../../../victim", "/../victim", "."])
def test_two_layer_symlinked_ancestor(tmp_path, target):
    """GNU tar CVE-2025-45582 shape: layer 1 plants `x -> target`, layer 2 writes through `x/`."""
    sb = sandbox(tmp_path)
    _apply(sb.dest, make_tar([E("x", SYM, linkname=target)]))
    layer2 = [E("x/hello", data=b"owned"), E("x/victim/hello", data=b"owned"), E("x/sub", DIR, mode=0o777),
              E("x/sub/file", data=b"owned"), E("x/.wh.hello"), E("x/.wh..wh..opq"),
              E("x/link", LNK, linkname="x/hello")]
    try:
        _apply(sb.dest, make_tar(layer2))
    except ArchiveError as e:
        assert "\n" not in str(e)
    sb.victim_untouched()


def test_two_layer_symlink_replacing_a_directory(tmp_path):
    """Layer 1 has a real dir, layer 2 swaps it for a symlink out and writes below it in the same stream."""
    sb = sandbox(tmp_path)
    _apply(sb.dest, make_tar([E("d", DIR, mode=0o755), E("d/f", data=b"1")]))
    _apply(sb.dest, make_tar([E("d", SYM, linkname="../victim"), E("d/hello", data=b"owned"),
                              E("d/sub/file", data=b"owned")]))
    sb.victim_untouched()


def test_whiteout_through_symlink_never_deletes_outside(tmp_path):
    sb = sandbox(tmp_path)
    _apply(sb.dest, make_tar([E("link", SYM, linkname="../victim")]))
    _apply(sb.dest, make_tar([E("link/.wh.hello"), E("link/.wh.sub"), E("link/.wh..wh..opq")]))
    sb.victim_untouched()
    assert (sb.dest / "link").is_symlink()


def test_failed_layer_writes_nothing_outside(tmp_path):
    """A refused entry late in a stream: earlier entries stay inside dest, the victim is intact."""
    sb = sandbox(tmp_path)
    entries = [E("ok", data=b"fine"), E("loop", SYM, linkname="../victim"), E("loop/x", data=b"x"),
               E("../victim/late", data=b"x")]
    with pytest.raises(UnsafeArchive, match="'../victim/late'"):
        _apply(sb.dest, make_tar(entries))
    sb.victim_untouched()
    assert (sb.dest / "ok").read_bytes() == b"fine"


def test_huge_pax_header_is_refused(tmp_path):
    """A pax header claiming gigabytes must not make us buffer it in memory."""
    sb = sandbox(tmp_path)
    hdr = tarfile.TarInfo("././@PaxHeader")
    hdr.type = tarfile.XHDTYPE
    hdr.size = 8**11 - 1
    data = hdr.tobuf(tarfile.USTAR_FORMAT) + b"\0" * 4096
    with pytest.raises(ArchiveError, match="invalid tar stream"):
        _apply(sb.dest, data)
    sb.victim_untouched()


def test_dest_snapshot_helper_sees_changes(tmp_path):
    """Guard for the guard: the snapshot used above does notice an mtime-only change."""
    sb = sandbox(tmp_path)
    os.utime(sb.victim / "hello", ns=(1, 2))
    assert snapshot(sb.victim) != sb.before


def test_very_deep_path_does_not_exhaust_fds(tmp_path):
    """Path resolution holds one directory fd at a time, whatever the depth (fd limit lowered to 64)."""
    import resource

    sb = sandbox(tmp_path)
    depth = 300
    deep = "/".join(["d"] * depth)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        _apply(sb.dest, make_tar([E(deep + "/leaf", data=b"x"),
                                  E(deep + "/up", SYM, linkname="../../../victim"),
                                  E(deep + "/up/hello", data=b"inside")]))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert (sb.dest / "/".join(["d"] * (depth - 3)) / "victim" / "hello").read_bytes() == b"inside"
    sb.victim_untouched()


def test_out_of_range_device_numbers_fail_cleanly(tmp_path):
    sb = sandbox(tmp_path)
    with pytest.raises(ArchiveError, match="cannot extract 'dev/x'"):
        _apply(sb.dest, make_tar([E("dev/x", tarfile.CHRTYPE, devmajor=0o7777777, devminor=0o7777777)],
                                 fmt=tarfile.GNU_FORMAT))
    sb.victim_untouched()


def test_replacing_a_very_deep_tree(tmp_path):
    """Replacing or whiting out a tree deeper than the recursion limit (lowered to 150) works."""
    import sys

    sb = sandbox(tmp_path)
    deep = "/".join(["d"] * 400)
    _apply(sb.dest, make_tar([E("top/" + deep + "/leaf", data=b"x"), E("top/" + deep[:300] + "/f", data=b"y"),
                              E("other/" + deep + "/leaf", data=b"x")]))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(150)
    try:
        _apply(sb.dest, make_tar([E("top", data=b"now a file"), E(".wh.other")]))
    finally:
        sys.setrecursionlimit(limit)
    assert (sb.dest / "top").read_bytes() == b"now a file"
    assert not (sb.dest / "other").exists()
    sb.victim_untouched()
