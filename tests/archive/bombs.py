"""Hand-made hostile tar streams, written block by block (tarfile refuses to write most of them), and a
lazy stream so a bomb of hundreds of megabytes costs the test nothing to hold."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

BLOCK = 512
END = bytes(2 * BLOCK)
_GNU_MAGIC = b"ustar  \0"
_POSIX_MAGIC = b"ustar\x0000"


def _octal(n: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, n)


def header(name: bytes, typeflag: bytes, size: int = 0, mode: int = 0o644, *, gnu: bool = False,
           fill: dict[int, bytes] | None = None) -> bytes:
    """One header block; `fill` writes raw bytes at offsets (GNU sparse fields). Checksum computed."""
    buf = bytearray(BLOCK)
    buf[0:len(name)] = name
    buf[100:108] = _octal(mode, 8)
    buf[108:116] = _octal(0, 8)
    buf[116:124] = _octal(0, 8)
    buf[124:136] = _octal(size, 12)
    buf[136:148] = _octal(1_600_000_000, 12)
    buf[156:157] = typeflag
    buf[257:265] = _GNU_MAGIC if gnu else _POSIX_MAGIC
    for offset, raw in (fill or {}).items():
        buf[offset:offset + len(raw)] = raw
    buf[148:156] = b"        "
    buf[148:156] = b"%06o\0 " % sum(buf)
    return bytes(buf)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def member(name: bytes = b"file", data: bytes = b"x") -> bytes:
    return header(name, b"0", len(data)) + padded(data)


def pax_chain(n: int, typeflag: bytes = b"x") -> bytes:
    """`n` extended headers (x: per-file, g: global) before one member, each parsed by recursion."""
    rec = pax_record("comment", "hostile")
    return b"".join(header(b"././@PaxHeader", typeflag, len(rec)) + padded(rec) for _ in range(n)) + member() + END


def longlink_chain(n: int) -> bytes:
    """`n` GNU LongName headers before one member."""
    name = b"long/" * 20 + b"name\0"
    return b"".join(header(b"././@LongLink", b"L", len(name), gnu=True) + padded(name) for _ in range(n)) \
        + member() + END


def gnu_sparse_chain(extensions: int, size: int = 1 << 40) -> Iterator[bytes]:
    """An old-GNU sparse member whose map continues over `extensions` extension blocks of 21 extents."""
    def extent(i: int) -> bytes:
        return _octal(i * 8192, 12) + _octal(1, 12)

    first = {386: b"".join(extent(i) for i in range(4)), 482: b"\x01", 483: _octal(size, 12)}
    yield header(b"sparse", b"S", 0, gnu=True, fill=first)
    k = 4
    for j in range(extensions):
        block = bytearray(BLOCK)
        block[0:504] = b"".join(extent(k + i) for i in range(21))
        block[504] = 1 if j < extensions - 1 else 0
        k += 21
        yield bytes(block)
    yield END


def sparse10_map(entries: int) -> bytes:
    """A PAX 1.0 sparse member whose map (at the start of its data) claims `entries` extents."""
    pax = pax_record("GNU.sparse.major", "1") + pax_record("GNU.sparse.minor", "0") + \
        pax_record("GNU.sparse.name", "sparse") + pax_record("GNU.sparse.realsize", str(1 << 40))
    body = f"{entries}\n".encode() + b"".join(b"%d\n1\n" % (i * 8192) for i in range(entries))
    return header(b"././@PaxHeader", b"x", len(pax)) + padded(pax) + header(b"GNUSparseFile.0/sparse", b"0",
                                                                               len(body)) + padded(body) + END


def pax_claiming(size: int) -> bytes:
    """A pax header that says its records take `size` bytes (and then the stream just ends)."""
    return header(b"././@PaxHeader", b"x", size) + END


def repeated(block: bytes, n: int) -> Iterator[bytes]:
    for _ in range(n):
        yield block


class Lazy(io.RawIOBase):
    """A readable stream over an iterable of byte strings, produced as it is read."""

    def __init__(self, parts: Iterable[bytes]) -> None:
        super().__init__()
        self._parts = iter(parts)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        while not self._left:
            try:
                self._left = next(self._parts)
            except StopIteration:
                return 0
        n = min(len(b), len(self._left))
        b[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def lazy(parts: Iterable[bytes]) -> io.BufferedReader:
    return io.BufferedReader(Lazy(parts), 1 << 16)
