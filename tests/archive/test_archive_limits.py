"""Layers built to exhaust the applier: header chains, sparse maps, repeated headers, endless names,
double compression, more data than the disk has. Each is applied in a child process under an
address-space limit, so an unbounded structure shows up as MemoryError and a deep recursion as
RecursionError (both test failures); what must come back is one ArchiveError line."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import bombs
from archive_helpers import E, make_tar
from pydock.archive.apply import LayerLimits, apply_layer
from pydock.archive.compression import decompress_stream
from pydock.utils.errors import ArchiveError, UnsafeArchive

HERE = Path(__file__).parent
#: the child's whole address space: Python and pydock take ~20 MiB, an applier that stays bounded
#: a few more; anything that grows with the input hits it long before the input ends
AS_LIMIT = 256 << 20

_CHILD = """
import json, resource, sys
sys.path.insert(0, {here!r})
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
import bombs
from pydock.archive.apply import LayerLimits, apply_layer
from pydock.utils.errors import ArchiveError
try:
    out = {{"ok": apply_layer({dest!r}, {stream}, {limits})}}
except ArchiveError as e:
    out = {{"error": str(e)}}
out["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""


def applied(dest: Path, stream: str, limits: str = "LayerLimits()") -> dict:
    """Apply the bomb `stream` (an expression over `bombs`) onto `dest` in a memory-limited child."""
    dest.mkdir(exist_ok=True)
    code = _CHILD.format(here=str(HERE), limit=AS_LIMIT, dest=str(dest), stream=stream, limits=limits)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert p.returncode == 0, f"the child died ({p.returncode}): {p.stderr.decode()[-2000:]}"
    return json.loads(p.stdout.decode().splitlines()[-1])


def refused(dest: Path, stream: str, match: str, limits: str = "LayerLimits()") -> str:
    out = applied(dest, stream, limits)
    assert "error" in out and match in out["error"] and "\n" not in out["error"], out
    return out["error"]


@pytest.mark.parametrize("stream", ["io.BytesIO(bombs.pax_chain(5000))", "io.BytesIO(bombs.pax_chain(5000, b'g'))",
                                    "io.BytesIO(bombs.longlink_chain(5000))"])
def test_5000_chained_extension_headers_are_a_clean_error(tmp_path: Path, stream: str):
    refused(tmp_path / "d", "__import__('io')." + stream.removeprefix("io."), "extension headers chained")


def test_a_few_chained_headers_are_fine(tmp_path: Path):
    assert applied(tmp_path / "d", "__import__('io').BytesIO(bombs.pax_chain(8))")["ok"] == 1


@pytest.mark.parametrize("stream", [
    "bombs.lazy(bombs.gnu_sparse_chain(200_000))",  # 100 MB of extension blocks, 4 million extents
    "__import__('io').BytesIO(bombs.sparse10_map(300_000))",  # a 4 MB sparse map at the start of the data
    "__import__('io').BytesIO(bombs.pax_claiming(1 << 30))",  # pax records said to take 1 GiB
])
def test_header_data_is_capped_per_member(tmp_path: Path, stream: str):
    refused(tmp_path / "d", stream, "take more than 1048576 bytes")


@pytest.mark.parametrize("what", ["dir", "whiteout"])
def test_repeated_headers_cost_no_memory(tmp_path: Path, what: str):
    block = bombs.header(b"d/", b"5", mode=0o755) if what == "dir" else bombs.header(b"d/.wh.x", b"0")
    rss = {}
    for n in (20_000, 250_000):
        stream = (f"bombs.lazy([bombs.header(b'd/', b'5', mode=0o755), *bombs.repeated({block!r}, {n}), "
                  "bombs.END])")
        out = applied(tmp_path / f"d{n}", stream)
        assert "ok" in out, out
        rss[n] = out["maxrss_kib"]
    assert rss[250_000] - rss[20_000] < 8 << 10, rss  # 230 000 more headers, not 8 MiB more memory


def test_the_entry_count_is_capped(tmp_path: Path):
    stream = "bombs.lazy([*(bombs.member(b'f%d' % i) for i in range(1001)), bombs.END])"
    refused(tmp_path / "d", stream, "more than 1000 entries", "LayerLimits(entries=1000)")
    assert LayerLimits().entries == 1_000_000


def test_names_are_capped_one_by_one_and_in_all(tmp_path: Path):
    long_name = "a/" * 2500 + "f"  # 5001 bytes, in a pax path record
    with pytest.raises(ArchiveError, match="longer than 4096 bytes"):
        apply_layer(tmp_path, io.BytesIO(make_tar([E(long_name, data=b"x")])))
    with pytest.raises(ArchiveError, match="longer than 4096 bytes"):
        apply_layer(tmp_path, io.BytesIO(make_tar([E("link", tarfile.SYMTYPE, linkname="b/" * 2500)])))
    names = [E("n" * 90 + f"{i:04d}", data=b"") for i in range(200)]
    with pytest.raises(ArchiveError, match="names take more than"):
        apply_layer(tmp_path, io.BytesIO(make_tar(names)), LayerLimits(total_name_bytes=10_000))
    assert not any(p.name.startswith("a") for p in tmp_path.iterdir())


def _tar() -> bytes:
    return make_tar([E("file", data=b"payload")])


@pytest.mark.parametrize("outer,inner", [(gzip.compress, gzip.compress), (gzip.compress, lzma.compress),
                                         (lzma.compress, gzip.compress)])
def test_a_layer_compressed_twice_is_refused(tmp_path: Path, outer, inner):
    data = outer(inner(_tar()))
    with pytest.raises(ArchiveError, match="compressed once"):
        apply_layer(tmp_path, io.BytesIO(data))
    with pytest.raises(ArchiveError, match="compressed once"):
        apply_layer(tmp_path, decompress_stream(io.BytesIO(data)))  # the graph's way in
    assert list(tmp_path.iterdir()) == []
    assert apply_layer(tmp_path, decompress_stream(io.BytesIO(gzip.compress(_tar())))) == 7  # once is fine


def _pax_sparse(mapping: str, realsize: int, stored: bytes) -> bytes:
    pax = "".join(bombs.pax_record(k, v).decode() for k, v in (
        ("GNU.sparse.major", "0"), ("GNU.sparse.minor", "1"), ("GNU.sparse.name", "sparse"),
        ("GNU.sparse.size", str(realsize)), ("GNU.sparse.map", mapping))).encode()
    return (bombs.header(b"././@PaxHeader", b"x", len(pax)) + bombs.padded(pax)
            + bombs.header(b"GNUSparseFile.0/sparse", b"0", len(stored)) + bombs.padded(stored) + bombs.END)


@pytest.mark.parametrize("mapping,match", [("100,10,50,10", "bad sparse map"), ("0,10,195,10", "bad sparse map"),
                                           ("-5,10", "bad sparse map"), ("0,600", "needs 600 bytes of data")])
def test_sparse_maps_must_describe_the_file(tmp_path: Path, mapping: str, match: str):
    with pytest.raises(ArchiveError, match=match):
        apply_layer(tmp_path, io.BytesIO(_pax_sparse(mapping, 2000 if mapping == "0,600" else 200, b"d" * 20)))
    assert apply_layer(tmp_path, io.BytesIO(_pax_sparse("0,10,190,10", 200, b"d" * 20))) == 20
    assert (tmp_path / "sparse").read_bytes() == b"d" * 10 + bytes(180) + b"d" * 10


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs (reserve: 5% of it) to fill."""
    from pydock.utils.mount import MNT_DETACH, mount, umount

    where = tmp_path / "small"
    where.mkdir()
    mount("tmpfs", where, "tmpfs", 0, "size=32m,mode=0755")
    try:
        yield where
    finally:
        umount(where, MNT_DETACH)


def _zeros(name: bytes, size: int) -> Iterator[bytes]:
    yield bombs.header(name, b"0", size)
    chunk = bytes(1 << 20)
    left = size + (-size % 512)
    while left:
        yield chunk[:min(left, len(chunk))]
        left -= min(left, len(chunk))


def test_a_layer_never_fills_the_filesystem(small_fs: Path):
    stream = bombs.lazy([*_zeros(b"big", 64 << 20), bombs.END])
    with pytest.raises(ArchiveError, match="needs more space than its filesystem has free"):
        apply_layer(small_fs, stream)
    assert os.statvfs(small_fs).f_bfree * os.statvfs(small_fs).f_frsize > 30 << 20  # refused before writing
    many = bombs.lazy([*(part for i in range(40) for part in _zeros(b"f%02d" % i, 1 << 20)), bombs.END])
    with pytest.raises(ArchiveError, match="reserve"):
        apply_layer(small_fs, many)
    st = os.statvfs(small_fs)
    assert st.f_bavail * st.f_frsize >= int(0.05 * st.f_blocks * st.f_frsize) - (1 << 20)


def test_a_gzip_bomb_is_refused_at_its_header(small_fs: Path):
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    parts = [comp.compress(p) for p in [*_zeros(b"bomb", 1 << 30), bombs.END]]
    data = b"".join(parts) + comp.flush()
    assert len(data) < 2 << 20  # a 1 GiB file in under 2 MB
    with pytest.raises(ArchiveError, match="needs more space") as err:
        apply_layer(small_fs, io.BytesIO(data))
    assert not isinstance(err.value, UnsafeArchive)  # a resource refusal, not a breakout
