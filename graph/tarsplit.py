"""Byte-exact layer tars without keeping them: the headers are recorded as a layer is applied, the file
contents are read back from the layer's rootfs when the tar is needed again (save, push).

A layer's identity (its diff id) is the sha256 of its uncompressed tar, so `save` and `push` must give
back the very bytes that were applied; keeping every tar would double the disk a layer takes. Like
Docker's tar-split, `Recorder` wraps the stream `apply_layer` reads and writes, gzip-compressed, every
non-payload byte (headers, pax and GNU long-name records, padding, the end blocks) and, for each
regular file's payload, only its name and size. `reassemble` replays the record against the layer's
mounted rootfs; the caller checks the result against the diff id and falls back to a fresh export when
the two differ (a tar that named one path twice, a sparse file).
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
from pathlib import Path
from typing import BinaryIO

from pydock.archive.apply import clean_name
from pydock.utils.errors import UnsafeArchive

log = logging.getLogger(__package__)

BLOCK = 512
_RAW, _FILE = b"R", b"F"
#: typeflags whose payload is metadata about the next entry: recorded raw.
_META_TYPES = {b"x", b"g", b"L", b"K"}
#: typeflags of entries whose payload is file data read back from the rootfs.
_FILE_TYPES = {b"0", b"\0", b"7"}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_COPY = 1 << 20


class NotReproducible(Exception):
    """The recorded layer cannot be rebuilt byte for byte (the caller exports afresh instead)."""


def _number(field: bytes) -> int:
    """A tar numeric field: octal text, or GNU base-256 when the top bit is set."""
    if field and field[0] & 0x80:
        value = field[0] & 0x3F
        for b in field[1:]:
            value = (value << 8) | b
        return value
    text = field.split(b"\0", 1)[0].strip(b" \0")
    return int(text, 8) if text else 0


def _pax_fields(data: bytes) -> dict[str, str]:
    """`path` and `size` (the two that matter here) from a pax extended header's records."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            break
        if length <= 0:
            break
        record = data[space + 1: pos + length - 1]
        key, _, value = record.partition(b"=")
        if key in (b"path", b"size"):
            out[key.decode()] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class Recorder:
    """A read-only stream over the uncompressed layer tar that records its split into `out` (gzip)."""

    def __init__(self, raw: BinaryIO, out: Path) -> None:
        self.raw = raw
        self._out = gzip.open(out, "wb", compresslevel=1)
        self._record = bytearray()  # records not yet compressed: gzip pays per write() call
        self._raw_buf = bytearray()
        self._block = bytearray()
        self._state = "header"  # header | meta | payload | pad | trailer
        self._left = 0  # bytes left in the current meta/payload/pad part
        self._meta = bytearray()
        self._meta_type = b""
        self._meta_len = 0
        self._pad = 0
        self._pending: dict[str, str] = {}
        self.reproducible = True

    # ---- the stream ---------------------------------------------------------------------

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self._feed(memoryview(data))
        return data

    def readinto(self, buf: memoryview | bytearray) -> int:
        n = self.raw.readinto(buf)  # type: ignore[attr-defined]
        if n:
            self._feed(memoryview(buf)[:n])
        return n or 0

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Finish the record (whatever was not read yet is not part of it)."""
        if self._out is None:
            return
        self._flush_raw()
        self._out.write(self._record)
        self._out.close()
        self._out = None  # type: ignore[assignment]

    # ---- the split ----------------------------------------------------------------------

    def _flush_raw(self) -> None:
        if self._raw_buf:
            self._emit(_RAW + struct.pack(">I", len(self._raw_buf)), self._raw_buf)
            self._raw_buf.clear()

    def _emit(self, head: bytes, body: bytes | bytearray) -> None:
        record = self._record
        record += head
        record += body
        if len(record) >= _COPY:
            self._out.write(record)
            record.clear()

    def _feed(self, data: memoryview) -> None:
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == "trailer":
                self._raw_buf += data[pos:]
                if len(self._raw_buf) > 1 << 20:
                    self._flush_raw()
                return
            if state == "payload":
                take = min(self._left, end - pos)
                pos += take
                self._left -= take
                if self._left == 0:
                    self._state = "pad" if self._pad else "header"
                    self._left = self._pad
                continue
            if state in ("meta", "pad"):
                take = min(self._left, end - pos)
                chunk = data[pos: pos + take]
                self._raw_buf += chunk
                if state == "meta":
                    self._meta += chunk
                pos += take
                self._left -= take
                if self._left == 0:
                    if state == "meta":
                        self._end_meta()
                    self._state = "header"
                continue
            if not self._block and end - pos >= BLOCK:  # a whole header in this chunk: no copying
                pos += BLOCK
                self._header(bytes(data[pos - BLOCK: pos]))
                continue
            take = min(BLOCK - len(self._block), end - pos)
            self._block += data[pos: pos + take]
            pos += take
            if len(self._block) == BLOCK:
                self._header(bytes(self._block))
                self._block.clear()

    def _header(self, block: bytes) -> None:
        self._raw_buf += block
        if block.count(0) == BLOCK:
            self._state = "trailer"  # the end marker and whatever padding follows: raw
            return
        typeflag = block[156:157]
        size = _number(block[124:136])
        if "size" in self._pending:
            try:
                size = int(self._pending["size"])
            except ValueError:
                self.reproducible = False
        pad = -size % BLOCK
        if typeflag in _META_TYPES:
            self._meta_type, self._meta = typeflag, bytearray()
            self._state, self._left = ("meta", size + pad) if size + pad else ("header", 0)
            self._meta_len = size
            if not size:
                self._end_meta()
            return
        name = self._pending.get("path")
        if name is None:
            prefix = block[345:500].split(b"\0", 1)[0] if block[257:262] == b"ustar" else b""
            base = block[0:100].split(b"\0", 1)[0]
            name = (prefix + b"/" + base if prefix else base).decode("utf-8", "surrogateescape")
        self._pending = {}
        if typeflag not in _FILE_TYPES:
            if size:  # sparse files and other payload-carrying types: kept raw, never rebuilt
                self.reproducible = False
                self._state, self._left = "meta", size + pad
                self._meta_type, self._meta_len, self._meta = b"?", size, bytearray()
            return
        if size == 0:
            return
        self._flush_raw()
        encoded = name.encode("utf-8", "surrogateescape")
        self._emit(_FILE + struct.pack(">QH", size, len(encoded)), encoded)
        self._state, self._left, self._pad = "payload", size, pad

    def _end_meta(self) -> None:
        body = bytes(self._meta[: self._meta_len])
        if self._meta_type == b"x":
            self._pending.update(_pax_fields(body))
        elif self._meta_type == b"L":
            self._pending["path"] = body.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        self._meta = bytearray()


def _open_in(root_fd: int, rel: str) -> int:
    """An fd of regular file `rel` under the rootfs, never following a symlink on the way."""
    try:
        parts = list(clean_name(rel))
    except UnsafeArchive as err:
        raise NotReproducible(str(err)) from None
    if not parts:
        raise NotReproducible(f"{rel!r} names no file")
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


def reassemble(record: Path, rootfs: Path, out: BinaryIO) -> None:
    """Write the layer tar `record` describes, with file contents from `rootfs`, to `out`.

    Raises NotReproducible when a recorded file is missing or its size changed.
    """
    root_fd = os.open(os.fspath(rootfs), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with gzip.open(record, "rb") as rec:
            while True:
                kind = rec.read(1)
                if not kind:
                    break
                if kind == _RAW:
                    (length,) = struct.unpack(">I", rec.read(4))
                    out.write(rec.read(length))
                elif kind == _FILE:
                    size, nlen = struct.unpack(">QH", rec.read(10))
                    name = rec.read(nlen).decode("utf-8", "surrogateescape")
                    _copy_file(root_fd, name, size, out)
                else:
                    raise NotReproducible(f"corrupt layer record {record}")
    except (OSError, EOFError, struct.error) as err:
        raise NotReproducible(f"layer record {record}: {err}") from None
    finally:
        os.close(root_fd)


def _copy_file(root_fd: int, name: str, size: int, out: BinaryIO) -> None:
    try:
        fd = _open_in(root_fd, name)
    except OSError as err:
        raise NotReproducible(f"{name}: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_size != size:
            raise NotReproducible(f"{name}: {st.st_size} bytes, the layer had {size}")
        left = size
        while left:
            chunk = os.read(fd, min(left, _COPY))
            if not chunk:
                raise NotReproducible(f"{name}: shrank while being read")
            out.write(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
