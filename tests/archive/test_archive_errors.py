"""Unreadable layers fail with one clear ArchiveError line ("invalid tar stream: ...")."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import random

import pytest

from archive_helpers import E, make_tar
from pydock.archive.apply import apply_layer
from pydock.utils.errors import ArchiveError, UnsafeArchive

GOOD = make_tar([E("dir", b"5", mode=0o755), E("dir/file", data=os.urandom(3000)), E("other", data=b"x" * 700)])


def _fails(tmp_path, data: bytes, match: str = "invalid tar stream") -> str:
    dest = tmp_path / "dest"
    dest.mkdir(exist_ok=True)
    with pytest.raises(ArchiveError) as err:
        apply_layer(dest, io.BytesIO(data))
    assert not isinstance(err.value, UnsafeArchive)
    msg = str(err.value)
    assert match in msg and "\n" not in msg, msg
    return msg


def test_good_archive_applies(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    assert apply_layer(dest, io.BytesIO(GOOD)) == 3700


def test_empty_input(tmp_path):
    assert _fails(tmp_path, b"") == "invalid tar stream: empty input"


def test_random_bytes(tmp_path):
    rng = random.Random(1)
    _fails(tmp_path, bytes(rng.getrandbits(8) for _ in range(5000)), "not a tar archive")


def test_text_file(tmp_path):
    _fails(tmp_path, b"this is not a tar file\n" * 100, "not a tar archive")


@pytest.mark.parametrize("cut", [100, 512, 600, 1536, 2048 + 1000])
def test_truncated_tar(tmp_path, cut):
    _fails(tmp_path, GOOD[:cut])


def test_missing_end_of_archive_marker(tmp_path):
    """Cut exactly at a member boundary: only the absent end marker reveals the truncation."""
    end = GOOD.rstrip(b"\0")
    end += b"\0" * (-len(end) % 512)
    _fails(tmp_path, end, "no end-of-archive marker")


def test_corrupt_header_after_first_member(tmp_path):
    data = bytearray(GOOD)
    data[512 * 1 + 10] ^= 0xFF  # name byte of the second header -> checksum mismatch
    _fails(tmp_path, bytes(data), "corrupt header")


@pytest.mark.parametrize("codec", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bzip2", "xz"])
def test_truncated_compressed_stream(tmp_path, codec):
    packed = codec(make_tar([E("big", data=os.urandom(40000)), E("after", data=b"x")]))
    _fails(tmp_path, packed[: len(packed) // 2])


@pytest.mark.parametrize("codec", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bzip2", "xz"])
def test_corrupt_compressed_stream(tmp_path, codec):
    packed = bytearray(codec(GOOD))
    for i in range(20, len(packed) - 20, 7):
        packed[i] ^= 0x5A
    _fails(tmp_path, bytes(packed))


def test_compressed_non_tar(tmp_path):
    _fails(tmp_path, gzip.compress(b"hello world\n" * 1000), "not a tar archive")


def test_just_a_magic_prefix(tmp_path):
    _fails(tmp_path, b"\x1f\x8b\x08")


def test_unsupported_entry_type(tmp_path):
    _fails(tmp_path, make_tar([E("weird", b"Z")]), "unsupported tar entry type")


def test_hard_link_to_directory_refused(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match="hard link to directory"):
        apply_layer(dest, io.BytesIO(make_tar([E("d", b"5"), E("h", b"1", linkname="d")])))


def test_file_under_a_regular_file(tmp_path):
    msg = _fails(tmp_path, make_tar([E("f", data=b"x"), E("f/g", data=b"y")]), "cannot extract 'f/g'")
    assert "not a directory" in msg


def test_dest_missing(tmp_path):
    with pytest.raises(ArchiveError, match="cannot apply layer to"):
        apply_layer(tmp_path / "nope", io.BytesIO(GOOD))


def test_no_fd_leaks_on_success_or_failure(tmp_path):
    from archive_helpers import sandbox
    from test_archive_breakout import CONTAINED, UNSAFE

    from pydock.archive.changes import changes
    from pydock.archive.tar import write_tar

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = fds()
    for i, entries in enumerate(list(UNSAFE.values()) + list(CONTAINED.values())):
        sb = sandbox(tmp_path / str(i))
        try:
            apply_layer(sb.dest, io.BytesIO(make_tar(entries)))
        except ArchiveError:
            pass
        write_tar(sb.dest, io.BytesIO())
        changes(sb.dest, sb.victim)
    for data in (b"", b"junk" * 300, GOOD[:1500], gzip.compress(GOOD)[:100]):
        try:
            apply_layer(tmp_path, io.BytesIO(data))
        except ArchiveError:
            pass
    assert fds() == before
