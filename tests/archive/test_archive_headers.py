"""The fast ustar header path agrees with tarfile's parser on archives from every GNU tar format."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from pydock.archive import apply
from pydock.archive.apply import _Entry, _members, _Reader
from pydock.utils.errors import ArchiveError
from pydock.archive.tar import pax_header


def _tree(root):
    root.mkdir()
    (root / "dir").mkdir()
    (root / "dir" / "file").write_bytes(b"x" * 1234)
    (root / "empty").write_bytes(b"")
    os.symlink("dir/file", root / "sym")
    os.link(root / "dir" / "file", root / "hard")
    os.mknod(root / "chr", 0o640 | 0o020000, os.makedev(4, 64))
    os.mkfifo(root / "fifo")
    (root / ("n" * 99)).write_bytes(b"99")
    (root / "dir" / ("p" * 120)).write_bytes(b"prefix or long name")
    os.chown(root / "empty", 4000000, 1234)  # > 0o7777777: base-256 or pax
    os.utime(root / "empty", ns=(0, 1_234_567_890_123_456_789))


def _fields(m):
    return (m.name, m.type, m.mode & 0o7777, m.uid, m.gid, m.size, int(m.mtime), m.linkname,
            m.devmajor if m.type in (tarfile.CHRTYPE, tarfile.BLKTYPE) else 0,
            m.devminor if m.type in (tarfile.CHRTYPE, tarfile.BLKTYPE) else 0)


@pytest.mark.parametrize("fmt", ["gnu", "oldgnu", "ustar", "posix", "v7"])
def test_fast_path_matches_tarfile(tmp_path, fmt):
    _tree(tmp_path / "t")
    # ustar and v7 cannot hold some entries (long names, huge ids, v7: devices and fifos)
    names = {"ustar": ["dir", "dir/file", "sym", "hard", "chr", "fifo", "n" * 99],
             "v7": ["dir", "dir/file", "sym", "hard", "n" * 99, "."]}.get(fmt, ["."])
    proc = subprocess.run(["tar", "--numeric-owner", "--no-recursion", f"--format={fmt}", "-C",
                           str(tmp_path / "t"), "-cf", "-", *names] if fmt in ("ustar", "v7") else
                          ["tar", "--numeric-owner", f"--format={fmt}", "-C", str(tmp_path / "t"), "-cf", "-", *names],
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr
    data = proc.stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        expected = [_fields(m) for m in tf.getmembers()]
    scratch = memoryview(bytearray(1 << 16))
    got = [_fields(m) for m in _members(_Reader(io.BytesIO(data)), scratch)]
    assert got == expected
    assert len(got) >= 6


def test_our_headers_parse_identically(tmp_path):
    """pax_header output read back by both parsers, including long names and big ids."""
    infos = []
    for name, kind, extra in [("a", tarfile.REGTYPE, {}), ("d" * 150, tarfile.DIRTYPE, {}),
                              ("l", tarfile.SYMTYPE, {"linkname": "t" * 300}),
                              ("big-ids", tarfile.REGTYPE, {"uid": 1 << 30, "gid": 5}),
                              ("caf\u00e9", tarfile.FIFOTYPE, {})]:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mtime = 1_700_000_000
        for k, v in extra.items():
            setattr(info, k, v)
        infos.append(info)
    data = b"".join(pax_header(i) for i in infos) + b"\0" * 1024
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        expected = [_fields(m) for m in tf.getmembers()]
    got = [_fields(m) for m in _members(_Reader(io.BytesIO(data)), memoryview(bytearray(4096)))]
    assert got == expected
    assert [g[0] for g in got] == ["a", "d" * 150, "l", "big-ids", "caf\u00e9"]
    assert got[3][3] == 1 << 30


def _pax_member(records: list[bytes], name: bytes = b"plain", size: int = 0) -> bytes:
    """One pax extended header holding `records` verbatim, then a ustar regular-file header (and data)."""
    body = b"".join(records)
    x = tarfile.TarInfo("././@PaxHeader")
    x.type = tarfile.XHDTYPE
    x.size = len(body)
    head = x.tobuf(tarfile.USTAR_FORMAT) + body + b"\0" * (-len(body) % tarfile.BLOCKSIZE)
    info = tarfile.TarInfo(name.decode())
    info.size = size
    info.mtime = 1_700_000_000
    return head + info.tobuf(tarfile.USTAR_FORMAT) + b"d" * size + b"\0" * (-size % tarfile.BLOCKSIZE)


def _read(data: bytes):
    """Our members of `data` as fields plus pax records, or "refused"."""
    try:
        return [(_fields(m), dict(m.pax_headers)) for m in _members(_Reader(io.BytesIO(data)),
                                                                      memoryview(bytearray(4096)))]
    except ArchiveError:
        return "refused"


def _tarfile_path(reader, block):
    """_fast_pax that always declines: every pax member goes through tarfile's parser."""
    reader.unread(block)
    reader.header_bytes = 0


def _both(data: bytes, monkeypatch):
    """(members as tarfile's parser reads them, as the fast path reads them)."""
    with monkeypatch.context() as m:
        m.setattr(apply, "_fast_pax", _tarfile_path)
        expected = _read(data)
    return expected, _read(data)


def test_posix_tar_members_are_read_without_tarfile(tmp_path, monkeypatch):
    """GNU tar's pax format (a pax header before every member: atime, ctime, xattrs) is what rootfs
    tarballs made with --xattrs look like; its members parse as tarfile parses them, on the fast path."""
    _tree(tmp_path / "t")
    os.setxattr(tmp_path / "t" / "dir" / "file", "user.note", b"caf\xc3\xa9")
    data = subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--format=posix", "-C",
                           str(tmp_path / "t"), "-cf", "-", "."], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert [(_fields(m), m.pax_headers) for m in tf.getmembers()] == _read(data)
    expected, got = _both(data, monkeypatch)
    assert got == expected
    assert any("SCHILY.xattr.user.note" in pax for _, pax in got)
    members = list(_members(_Reader(io.BytesIO(data)), memoryview(bytearray(4096))))
    assert len(members) == 10 and all(isinstance(m, _Entry) for m in members)


def _rec(key: str, value: bytes) -> bytes:
    """A well-framed pax record ("<len> key=value\\n", the length counting itself)."""
    body = b" " + key.encode() + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


@pytest.mark.parametrize("records", [
    [_rec("mtime", b"1700000000.123456789"), _rec("path", b"renamed/file/"), _rec("uid", b"70000000"),
     _rec("gid", b"42"), _rec("atime", b"1.5"), _rec("comment", b"kept")],
    [_rec("size", b"notanumber")],  # tarfile reads an unparsable number as 0
    [_rec("uid", b"-5")],
    [b"99 path=truncated\n"],  # the length runs past the header
    [_rec("path", b"x"), b"0 a=\n"],
    [_rec("hdrcharset", b"BINARY"), _rec("path", b"caf\xe9")],
    [_rec("GNU.sparse.name", b"sparse")],
    [b"12 path=xy\nx"],  # not ended by its newline
], ids=["overrides", "bad-size", "negative-uid", "overlong", "zero-length", "hdrcharset", "gnu-sparse",
        "no-newline"])
def test_pax_records_read_as_tarfile_reads_them(records, monkeypatch):
    data = _pax_member(records, size=5) + _pax_member([_rec("path", b"second")]) + b"\0" * 1024
    expected, got = _both(data, monkeypatch)
    assert got == expected
