"""Layer compression: sniff gzip/bzip2/xz by magic bytes and (de)compress in-process.

Decompression never execs an external tool on image data (CVE-2014-9357: Docker 1.3.2 ran
`xz` as root outside any confinement on untrusted archives).
"""

from __future__ import annotations

import enum
import io
import logging
from typing import BinaryIO

from pydock.utils.errors import ArchiveError

log = logging.getLogger(__package__)
# Docker 0.7 peeks this many bytes; xz's magic (the longest) needs 6.
HEAD_SIZE = 10
_BUFSIZE = 1 << 20


class Compression(enum.Enum):
    """Compression of a tar stream; values are Docker 0.7's numbers (archive.go)."""

    NONE = 0
    BZIP2 = 1
    GZIP = 2
    XZ = 3

    @property
    def extension(self) -> str:
        """File extension of a tarball with this compression (`tar`, `tar.gz`, ...)."""
        return _EXTENSIONS[self]

    @classmethod
    def from_extension(cls, ext: str) -> "Compression":
        """Compression for an extension like `tar.gz` or `.tar.xz` (ArchiveError if unknown)."""
        ext = ext.lstrip(".")
        for comp, name in _EXTENSIONS.items():
            if ext == name:
                return comp
        raise ArchiveError(f"unknown archive extension: {ext!r}")


_EXTENSIONS = {
    Compression.NONE: "tar",
    Compression.BZIP2: "tar.bz2",
    Compression.GZIP: "tar.gz",
    Compression.XZ: "tar.xz",
}

_MAGIC = (
    (b"\x42\x5a\x68", Compression.BZIP2),
    (b"\x1f\x8b\x08", Compression.GZIP),
    (b"\xfd\x37\x7a\x58\x5a\x00", Compression.XZ),
)


# After "BZh" comes the block size digit and then a block or end-of-stream magic (48-bit pi / sqrt(pi)).
_BZIP2_NEXT = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")


def detect(head: bytes) -> Compression:
    """Compression of a stream whose first bytes are `head` (NONE when no magic matches).

    Docker's magic numbers; for bzip2 ("BZh", printable) a full 10-byte head must also carry
    the block-size digit and block magic, so a plain tar whose first entry is named "BZh..."
    is not mistaken for bzip2.
    """
    for magic, comp in _MAGIC:
        if head.startswith(magic):
            if comp is Compression.BZIP2 and len(head) >= HEAD_SIZE:
                if not (head[3:4].isdigit() and head[3:4] != b"0" and head[4:10] in _BZIP2_NEXT):
                    continue
            return comp
    return Compression.NONE


class _Prefixed(io.RawIOBase):
    """A raw reader that replays already-consumed `head` bytes, then reads the rest of `src`."""

    def __init__(self, head: bytes, src: BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._src = src

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        readinto = getattr(self._src, "readinto", None)
        if readinto is not None:
            return readinto(b) or 0
        data = self._src.read(len(b))
        b[: len(data)] = data
        return len(data)


def read_head(fileobj: BinaryIO, size: int = HEAD_SIZE) -> tuple[bytes, BinaryIO]:
    """First `size` bytes of `fileobj` without losing them: (head, stream positioned at the start).

    Uses `peek` when the object has one (BufferedReader, sys.stdin.buffer); otherwise reads the
    bytes and chains them in front of the rest, so pipes and sockets work (no seek needed).
    """
    peek = getattr(fileobj, "peek", None)
    if peek is not None:
        try:
            head = peek(size)[:size]
        except (OSError, ValueError) as e:  # the read below meets the same error if it is real
            log.debug("peek of the stream failed (%s): reading its head instead", e)
            head = b""
        if len(head) >= size:
            return head, fileobj
    chunks = []
    got = 0
    while got < size:
        chunk = fileobj.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    head = b"".join(chunks)
    return head, io.BufferedReader(_Prefixed(head, fileobj), buffer_size=_BUFSIZE)


def decompress_stream(fileobj: BinaryIO) -> BinaryIO:
    """A reader of the uncompressed bytes of `fileobj`, whatever its (sniffed) compression; ArchiveError
    for data compressed twice (see open_once).

    Works on non-seekable streams (pipes, stdin). Corrupt compressed data raises the codec's
    own error when read (see `codec_errors()`); apply_layer turns those into ArchiveError.
    """
    head, stream = read_head(fileobj)
    return open_once(stream, detect(head))


def open_once(stream: BinaryIO, compression: Compression) -> BinaryIO:
    """open_decompressed, refusing what decompresses to compressed data again: a layer is compressed
    once, and a gzip inside a gzip (or any such pair) only multiplies what a small upload expands to."""
    out = open_decompressed(stream, compression)
    if compression is Compression.NONE:
        return out
    try:
        inner, out = read_head(out)
    except codec_errors() + (OSError, ValueError) as e:  # type: ignore[operator]
        raise ArchiveError(f"invalid tar stream: {compression.name.lower()}: {e or type(e).__name__}") from None
    nested = detect(inner)
    if nested is not Compression.NONE:
        raise ArchiveError(f"invalid layer: {nested.name.lower()} data inside {compression.name.lower()} data "
                           "(a layer is compressed once)")
    return out


def open_decompressed(stream: BinaryIO, compression: Compression) -> BinaryIO:
    """Wrap `stream` in the in-process decompressor for `compression` (NONE: returned as is)."""
    if compression is Compression.NONE:
        return stream
    if compression is Compression.GZIP:
        import gzip  # lazy: only the codec a stream uses is loaded

        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if compression is Compression.BZIP2:
        import bz2  # lazy: only the codec a stream uses is loaded

        return bz2.BZ2File(stream, "rb")  # type: ignore[return-value]
    try:
        import lzma  # lazy: only the codec a stream uses is loaded
    except ImportError:  # pragma: no cover - a Python built without liblzma
        raise ArchiveError("xz-compressed data, but this Python has no lzma module") from None

    return lzma.LZMAFile(stream, "rb")  # type: ignore[return-value]


class _NoClose(io.RawIOBase):
    """Writable pass-through whose close() flushes but leaves the caller's `out` open."""

    def __init__(self, out: BinaryIO) -> None:
        super().__init__()
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        data = bytes(b) if not isinstance(b, (bytes, bytearray, memoryview)) else b
        n = len(data)
        view = memoryview(data)
        while view:
            written = self._out.write(view)
            if written is None:  # non-blocking raw stream; BufferedWriter never returns None
                written = len(view)
            view = view[written:]
        return n

    def close(self) -> None:
        if not self.closed:
            flush = getattr(self._out, "flush", None)
            if flush is not None:
                flush()
        super().close()


def compress_stream(out: BinaryIO, compression: Compression) -> BinaryIO:
    """A buffered writer that compresses into `out`; close() it to finish the stream (`out` stays open)."""
    raw: object
    if compression is Compression.NONE:
        raw = _NoClose(out)
    elif compression is Compression.GZIP:
        import gzip  # lazy: only the codec a stream uses is loaded

        # level 6 like gzip(1)'s default; GzipFile's own default (9) is ~3x slower for ~1% size.
        raw = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0)
    elif compression is Compression.BZIP2:
        import bz2  # lazy: only the codec a stream uses is loaded

        raw = bz2.BZ2File(out, "wb")
    else:
        import lzma  # lazy: only the codec a stream uses is loaded

        raw = lzma.LZMAFile(out, "wb", preset=6)
    # The codecs (and a bare pipe) pay per call; tar writes 512-byte headers, so batch them.
    return io.BufferedWriter(raw, buffer_size=_BUFSIZE)  # type: ignore[arg-type,return-value]


# Exceptions the codecs raise on corrupt or truncated data; callers map them to ArchiveError.
def codec_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the compressed data is corrupt or truncated"."""
    import gzip  # lazy: only the codec a stream uses is loaded
    import zlib  # lazy: only the codec a stream uses is loaded

    errors: list[type[BaseException]] = [EOFError, zlib.error, gzip.BadGzipFile]
    try:
        import lzma  # lazy: only the codec a stream uses is loaded
    except ImportError:  # pragma: no cover - no lzma: open_decompressed refuses xz data, none reaches a codec
        return tuple(errors)
    errors.append(lzma.LZMAError)
    return tuple(errors)
