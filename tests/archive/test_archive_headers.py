"""The fast ustar header path agrees with tarfile's parser on archives from every GNU tar format."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from pydock.archive.apply import _members, _Reader
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
