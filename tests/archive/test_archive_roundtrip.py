"""write_tar -> apply_layer reproduces a rootfs exactly; GNU tar reads ours and we read GNU tar's."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from archive_helpers import E, make_tar, snapshot
from pydock.archive.apply import apply_layer
from pydock.archive.compression import Compression
from pydock.archive.tar import write_tar

# A valid VFS_CAP_REVISION_2 blob: cap_net_bind_service (bit 10) permitted+effective.
CAP_BLOB = bytes.fromhex("01000002" "00040000" "00000000" "00000000" "00000000")
NS = 1_000_000_000


def _xattr_ok(path: Path, name: str, value: bytes) -> bool:
    try:
        os.setxattr(path, name, value)
        return True
    except OSError:
        return False


def build_rootfs(root: Path) -> dict[str, bool]:
    """A small tree with every kind of entry a rootfs layer carries; returns which xattrs stuck."""
    root.mkdir(exist_ok=True)
    (root / "bin").mkdir(mode=0o755)
    (root / "etc").mkdir()
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / "home").mkdir()
    (root / "home" / "user").mkdir()
    os.chown(root / "home" / "user", 1000, 1000)
    os.chmod(root / "home" / "user", 0o750)
    (root / "etc" / "passwd").write_bytes(b"root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "empty").write_bytes(b"")
    big = os.urandom(1 << 16) * 17 + b"tail"
    (root / "bin" / "busybox").write_bytes(big)
    os.chmod(root / "bin" / "busybox", 0o755)
    os.link(root / "bin" / "busybox", root / "bin" / "sh")
    os.link(root / "bin" / "busybox", root / "etc" / "busybox-link")
    os.symlink("busybox", root / "bin" / "ls")
    os.symlink("/bin/busybox", root / "bin" / "abs")
    os.symlink("/nonexistent/dangling", root / "dangling")
    os.symlink("home", root / "dirlink")
    (root / "bin" / "su").write_bytes(b"#!/bin/sh\nsetuid\n")
    os.chmod(root / "bin" / "su", 0o4755)
    (root / "bin" / "wall").write_bytes(b"setgid")
    os.chown(root / "bin" / "wall", 0, 5)
    os.chmod(root / "bin" / "wall", 0o2755)
    (root / "home" / "user" / "notes").write_bytes(b"mine")
    os.chown(root / "home" / "user" / "notes", 1000, 1001)
    os.chmod(root / "home" / "user" / "notes", 0o600)
    (root / "dev").mkdir()
    os.mknod(root / "dev" / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(root / "dev" / "loop9", 0o660 | 0o060000, os.makedev(7, 9))
    os.chown(root / "dev" / "loop9", 0, 6)
    os.mkfifo(root / "dev" / "initctl", 0o600)
    long_dir = root / ("d" * 120)
    long_dir.mkdir()
    (long_dir / ("f" * 150)).write_bytes(b"long names need pax/gnu headers")
    (root / os.fsdecode(b"caf\xe9-latin1")).write_bytes(b"non-utf8 name")
    (root / "unicode-\u00e9\u4e2d").write_bytes(b"utf8 name")
    (root / "emptydir").mkdir()
    ok = {
        "cap": _xattr_ok(root / "bin" / "busybox", "security.capability", CAP_BLOB),
        "user": _xattr_ok(root / "etc" / "passwd", "user.pydock.test", b"\x00\xffbinary"),
    }
    _xattr_ok(root / "etc", "user.dir", b"on a dir")
    # exact, distinct nanosecond times everywhere (dirs last, children first)
    t = 1_600_000_000 * NS + 123_456_789
    for dirpath, dirnames, filenames in sorted(os.walk(root, topdown=False), key=lambda x: -len(x[0])):
        for name in filenames + dirnames:
            t += 1_000_003
            os.utime(os.path.join(dirpath, name), ns=(t, t), follow_symlinks=False)
    os.utime(root, ns=(t + 7, t + 7))
    return ok


@pytest.fixture
def rootfs(tmp_path):
    src = tmp_path / "src"
    xattrs = build_rootfs(src)
    return src, xattrs


def _assert_same(a: Path, b: Path, xattrs: dict[str, bool]) -> None:
    assert snapshot(b) == snapshot(a)
    assert os.stat(b / "bin" / "sh").st_ino == os.stat(b / "bin" / "busybox").st_ino
    assert os.stat(b / "etc" / "busybox-link").st_ino == os.stat(b / "bin" / "busybox").st_ino
    if xattrs["cap"]:
        assert os.getxattr(b / "bin" / "busybox", "security.capability") == CAP_BLOB
    if xattrs["user"]:
        assert os.getxattr(b / "etc" / "passwd", "user.pydock.test") == b"\x00\xffbinary"


def _tar(src: Path, **kw) -> bytes:
    out = io.BytesIO()
    write_tar(src, out, **kw)
    return out.getvalue()


def test_round_trip_reproduces_everything(tmp_path, rootfs):
    src, xattrs = rootfs
    dest = tmp_path / "dest"
    dest.mkdir()
    data = _tar(src)
    written = apply_layer(dest, io.BytesIO(data))
    _assert_same(src, dest, xattrs)
    regular = (1 << 16) * 17 + 4  # busybox once: its two hard links carry no data
    assert written == regular + sum(len(x) for x in [b"root:x:0:0:root:/root:/bin/sh\n", b"#!/bin/sh\nsetuid\n",
                                                     b"setgid", b"mine", b"long names need pax/gnu headers",
                                                     b"non-utf8 name", b"utf8 name"])


def test_archive_has_numeric_owners_and_relative_names(rootfs):
    src, _ = rootfs
    with tarfile.open(fileobj=io.BytesIO(_tar(src))) as tf:
        members = tf.getmembers()
    assert members[0].name in (".", "./")
    assert all(m.name.startswith(".") for m in members)
    assert all(m.uname == "" and m.gname == "" for m in members)
    notes = next(m for m in members if m.name.endswith("notes"))
    assert (notes.uid, notes.gid, notes.mode) == (1000, 1001, 0o600)
    links = [m for m in members if m.islnk()]
    assert sorted(m.name for m in links) == ["./bin/sh", "./etc/busybox-link"]
    assert {m.linkname for m in links} == {"./bin/busybox"}


def test_sockets_are_skipped(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(src / "sock"))
        (src / "f").write_bytes(b"x")
        with tarfile.open(fileobj=io.BytesIO(_tar(src))) as tf:
            assert sorted(tf.getnames()) == [".", "./f"]
    finally:
        s.close()


@pytest.mark.parametrize("comp", list(Compression), ids=lambda c: c.name)
def test_compressed_round_trip(tmp_path, rootfs, comp):
    src, xattrs = rootfs
    data = _tar(src, compression=comp)
    from pydock.archive.compression import detect

    assert detect(data[:10]) is comp
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(dest, io.BytesIO(data))
    _assert_same(src, dest, xattrs)


@pytest.mark.parametrize("comp", list(Compression), ids=lambda c: c.name)
def test_round_trip_through_a_pipe(tmp_path, rootfs, comp):
    """Layers arrive on stdin/sockets: no seeking, reads of arbitrary size."""
    src, xattrs = rootfs
    data = _tar(src, compression=comp)
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb", buffering=0) as out:
            try:
                for i in range(0, len(data), 4093):
                    out.write(data[i : i + 4093])
            except BrokenPipeError:
                pass  # the reader stops at the end-of-archive blocks; the tar record's zero padding is left

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    dest = tmp_path / "dest"
    dest.mkdir()
    with os.fdopen(r, "rb", buffering=0) as pipe:
        apply_layer(dest, pipe)
    t.join(5)
    _assert_same(src, dest, xattrs)


def test_write_tar_streams_into_a_pipe(tmp_path, rootfs):
    """The writer never seeks its output: GNU tar reads it from a pipe and restores the tree."""
    src, xattrs = rootfs
    dest = tmp_path / "dest"
    dest.mkdir()
    proc = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", "-",
                             "-C", str(dest)], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    write_tar(src, proc.stdin)  # type: ignore[arg-type]
    proc.stdin.close()  # type: ignore[union-attr]
    assert proc.wait() == 0, proc.stderr.read()  # type: ignore[union-attr]
    _assert_same(src, dest, xattrs)


def test_apply_gnu_tar_posix_archive(tmp_path, rootfs):
    """An archive written by GNU tar (pax format, xattrs) applies to the identical tree."""
    src, xattrs = rootfs
    archive = tmp_path / "gnu.tar"
    subprocess.run(["tar", "--numeric-owner", "--format=posix", "--xattrs", "--xattrs-include=*",
                    "-C", str(src), "-cf", str(archive), "."], check=True)
    dest = tmp_path / "dest"
    dest.mkdir()
    with open(archive, "rb") as f:
        apply_layer(dest, f)
    _assert_same(src, dest, xattrs)


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_apply_gnu_sparse_files(tmp_path, fmt):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.seek(1 << 20)
        f.write(b"middle")
        f.seek(5 << 20)
        f.write(b"end")
    with open(src / "hole-at-end", "wb") as f:
        f.write(b"start")
        f.truncate(3 << 20)
    archive = tmp_path / "s.tar"
    subprocess.run(["tar", "--numeric-owner", f"--format={fmt}", "-S", "-C", str(src), "-cf", str(archive), "."],
                   check=True)
    dest = tmp_path / "dest"
    dest.mkdir()
    with open(archive, "rb") as f:
        apply_layer(dest, f)
    for name in ("sparse", "hole-at-end"):
        assert (dest / name).read_bytes() == (src / name).read_bytes()


def test_apply_onto_existing_tree_replaces_by_type(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "was-dir").mkdir()
    (dest / "was-dir" / "child").write_bytes(b"old")
    (dest / "was-file").write_bytes(b"old")
    (dest / "keep-dir").mkdir()
    (dest / "keep-dir" / "lower").write_bytes(b"lower")
    os.symlink("keep-dir", dest / "was-link")
    layer = make_tar([
        E("was-dir", data=b"now a file"),
        E("was-file", tarfile.DIRTYPE, mode=0o700),
        E("keep-dir", tarfile.DIRTYPE, mode=0o711, uid=7),
        E("keep-dir/upper", data=b"upper"),
        E("was-link", data=b"file now"),
    ])
    apply_layer(dest, io.BytesIO(layer))
    assert (dest / "was-dir").read_bytes() == b"now a file"
    assert (dest / "was-file").is_dir() and (os.stat(dest / "was-file").st_mode & 0o7777) == 0o700
    assert (dest / "keep-dir" / "lower").read_bytes() == b"lower"  # a dir entry merges
    st = os.stat(dest / "keep-dir")
    assert (st.st_mode & 0o7777, st.st_uid) == (0o711, 7)
    assert not (dest / "was-link").is_symlink() and (dest / "was-link").read_bytes() == b"file now"
    assert (dest / "keep-dir").is_dir()  # the old symlink's target was not touched


def test_missing_parents_are_created(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(dest, io.BytesIO(make_tar([E("a/b/c/file", data=b"x")])))
    assert (dest / "a" / "b" / "c" / "file").read_bytes() == b"x"
    assert os.stat(dest / "a").st_mode & 0o777 == 0o755


def test_directory_mtime_set_after_its_contents(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    layer = make_tar([E("d", tarfile.DIRTYPE, mode=0o755, mtime=1000), E("d/f", data=b"x", mtime=2000),
                      E("d/sub", tarfile.DIRTYPE, mode=0o755, mtime=3000), E("d/sub/g", data=b"y")])
    apply_layer(dest, io.BytesIO(layer))
    assert os.stat(dest / "d").st_mtime == 1000
    assert os.stat(dest / "d" / "sub").st_mtime == 3000
    assert os.stat(dest / "d" / "f").st_mtime == 2000


def test_includes_non_recursive_excludes_and_whiteouts(tmp_path, rootfs):
    src, _ = rootfs
    data = _tar(src, includes=["/etc", "bin/su", "/home/user"], recursive=False,
                whiteouts=["etc/.wh.shadow", ".wh.opt"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert list(members) == ["etc", "bin/su", "home/user", "etc/.wh.shadow", ".wh.opt"]
    wh = members["etc/.wh.shadow"]
    assert (wh.size, wh.uid, wh.gid, wh.mode, wh.isreg()) == (0, 0, 0, 0o600, True)

    data = _tar(src, includes=["etc", "home"], excludes=["passwd", "home/user/*"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = tf.getnames()
    assert "etc/empty" in names and "etc/passwd" not in names
    assert "home/user" in names and "home/user/notes" not in names


def test_include_through_symlinked_ancestor_is_refused(tmp_path, rootfs):
    """A container that swapped a dir for a symlink must not make export read host files."""
    src, _ = rootfs
    os.symlink("/etc", src / "hostetc")
    from pydock.utils.errors import ArchiveError

    with pytest.raises(ArchiveError, match="hostetc/passwd"):
        _tar(src, includes=["hostetc/passwd"], recursive=False)


def test_missing_include_is_an_error(rootfs):
    src, _ = rootfs
    from pydock.utils.errors import ArchiveError

    with pytest.raises(ArchiveError, match="cannot archive 'nope'"):
        _tar(src, includes=["nope"])


def test_gnu_tar_lists_our_archive(rootfs, tmp_path):
    src, _ = rootfs
    archive = tmp_path / "ours.tar.gz"
    with open(archive, "wb") as f:
        write_tar(src, f, compression=Compression.GZIP)
    out = subprocess.run(["tar", "-tvzf", str(archive)], check=True, capture_output=True, text=True)
    assert out.stderr == ""
    assert "./bin/sh link to ./bin/busybox" in out.stdout
    assert "./bin/ls -> busybox" in out.stdout


def test_dest_copy_matches_with_cp(tmp_path, rootfs):
    """Sanity for the comparison itself: `cp -a` reproduces the same snapshot."""
    src, xattrs = rootfs
    subprocess.run(["cp", "-a", str(src), str(tmp_path / "copy")], check=True)
    _assert_same(src, tmp_path / "copy", {"cap": False, "user": False})
    shutil.rmtree(tmp_path / "copy")


@pytest.mark.parametrize("mtime_ns", [0, 1, -1, -1_500_000_000, 123_000_000_000, 2**33 * NS + 7, -(2**30) * NS - 3])
def test_extreme_mtimes_round_trip_exactly(tmp_path, mtime_ns):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    try:
        os.utime(src / "f", ns=(mtime_ns, mtime_ns))
    except OSError:
        pytest.skip("filesystem cannot store this time")
    if os.stat(src / "f").st_mtime_ns != mtime_ns:
        pytest.skip("filesystem cannot store this time exactly")
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(dest, io.BytesIO(_tar(src)))
    assert os.stat(dest / "f").st_mtime_ns == mtime_ns


def test_excludes_are_unanchored_globs_like_gnu_tar(tmp_path):
    src = tmp_path / "src"
    for p in ("a/cache/x", "a/keep", "b/c/cache/y", "b/c/z.pyc", "b/c/z.py", "home/user/notes"):
        (src / p).parent.mkdir(parents=True, exist_ok=True)
        (src / p).write_bytes(b"x")
    with tarfile.open(fileobj=io.BytesIO(_tar(src, excludes=["cache", "*.pyc", "user/*"]))) as tf:
        names = sorted(n.removeprefix("./") for n in tf.getnames())
    assert names == [".", "a", "a/keep", "b", "b/c", "b/c/z.py", "home", "home/user"]
