"""Apply a layer tar onto a rootfs safely: every entry, link target and whiteout stays inside it.

Docker 0.7's ApplyLayer ran `tar -x` and then walked the tree for `.wh.` files. This does the
same job entry by entry without tarfile's extraction code (and its filters, which reject what
rootfs layers need: absolute symlinks, devices, setuid) and without the kernel ever following a
symlink found in the rootfs: paths are walked one component at a time through directory fds
opened with O_NOFOLLOW, and symlinks met on the way are resolved by us *inside* the root
(absolute targets and `..` are clamped to it, like securejoin). That defeats CVE-2014-6407/9356
style entries and the two-layer "plant `x -> /`, then write `x/file`" attack.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tarfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Union

from pydock.archive.compression import Compression, codec_errors, detect, open_once, read_head
from pydock.archive.tar import (
    WHITEOUT_META_PREFIX,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
    XATTR_PAX_PREFIX,
    xattr_allowed,
)
from pydock.utils.errors import ArchiveError, UnsafeArchive
from pydock.utils.humanize import human_size

log = logging.getLogger(__package__)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_SYMLINKS = 40  # like the kernel's MAXSYMLINKS
_COPY_CHUNK = 1 << 20
_FD_CACHE = 64
_MAX_ID = 0xFFFFFFFE  # 0xFFFFFFFF is chown's "leave unchanged"
_NS = 1_000_000_000
_GNU_VOLHDR = b"V"

Parts = tuple[str, ...]


class _Missing(Exception):
    """A path component does not exist (only raised when not creating)."""


@dataclass(frozen=True)
class LayerLimits:
    """What one layer may make apply_layer spend; past any of these it fails with ArchiveError and the
    caller discards the half-applied layer. The defaults are far above real layers (the largest
    distribution and SDK layers have a few hundred thousand entries and names under 300 bytes)."""

    #: bytes of header data per member: pax records, GNU long names, sparse maps (Go's archive/tar
    #: limit since CVE-2022-2879); also bounds a GNU sparse map to ~43 000 extents
    header_bytes: int = 1 << 20
    #: extension headers (pax, global pax, GNU LongName/LongLink) chained before one member
    header_chain: int = 32
    #: members in the layer (whiteouts and repeated headers count)
    entries: int = 1_000_000
    #: bytes of one path or link target (PATH_MAX: what the kernel accepts in one call)
    name_bytes: int = 4096
    #: bytes of all member names together: what the applier remembers per entry is bounded by it
    total_name_bytes: int = 256 << 20
    #: free space the layer must leave on the destination filesystem: this fraction of it...
    reserve_fraction: float = 0.05
    #: ...but never more than this (big filesystems keep 1 GiB spare)
    reserve_max: int = 1 << 30


DEFAULT_LIMITS = LayerLimits()


@dataclass(frozen=True)
class CopyOptions:
    """Extracting a copy (`cp`, the archive API) rather than a layer, as Docker's Untar does: `.wh.` names
    are plain files, the "." entry of an existing directory is skipped, and optionally every entry gets
    one owner, a directory and a non-directory never replace each other, and `check` sees each entry's
    canonical path (parts below the destination, symlinks already resolved) before it is written and
    raises to refuse it."""

    owner: tuple[int, int] | None = None
    no_overwrite_dir_non_dir: bool = False
    check: Callable[[Parts], None] | None = None


# --------------------------------------------------------------------------- reading


class _Reader:
    """Position-counting reader over the decompressed layer; stream/codec failures become ArchiveError."""

    def __init__(self, src: BinaryIO, label: str = "", header_limit: int = DEFAULT_LIMITS.header_bytes) -> None:
        self.src = src
        self.label = label  # "gzip", "xz"...: named in codec errors
        self.pos = 0
        self.pending = b""  # a header block handed back for tarfile's parser to read again
        self.errors = codec_errors() + (OSError, ValueError)
        self.header_limit = header_limit
        self.header_bytes = 0  # read() bytes since the current member's first header block

    def _fail(self, e: BaseException) -> ArchiveError:
        msg = str(e) or type(e).__name__
        codec = f"{self.label}: " if self.label else ""
        return ArchiveError(f"invalid tar stream: {codec}{msg} (after {self.pos} bytes)")

    def read(self, n: int = -1) -> bytes:
        """Exactly `n` bytes unless the stream ends (what tarfile's header parser expects). Only headers
        are read this way (data goes through readinto), so this is where their budget is kept."""
        if n < 0 or self.header_bytes + n > self.header_limit:
            raise ArchiveError(f"invalid tar stream: the headers of the member at offset {self.pos} take more "
                               f"than {self.header_limit} bytes (pax records, long names or sparse maps)")
        self.header_bytes += n
        chunks = []
        got = 0
        if self.pending:
            head, self.pending = self.pending[:n], self.pending[n:]
            chunks.append(head)
            got = len(head)
        try:
            while got < n:
                chunk = self.src.read(n - got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except self.errors as e:
            raise self._fail(e) from None
        self.pos += got
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def unread(self, block: bytes) -> None:
        """Hand back the block just read so the next read() returns it again."""
        self.pending = block + self.pending
        self.pos -= len(block)

    def tell(self) -> int:
        return self.pos

    def readinto(self, view: memoryview) -> int:
        """Fill `view` completely; returns fewer bytes only at end of stream."""
        got = 0
        size = len(view)
        if self.pending:
            got = min(size, len(self.pending))
            view[:got] = self.pending[:got]
            self.pending = self.pending[got:]
            self.pos += got
            if got == size:
                return got
        try:
            while got < size:
                n = self.src.readinto(view[got:])  # type: ignore[attr-defined]
                if not n:
                    break
                got += n
        except self.errors as e:
            raise self._fail(e) from None
        self.pos += got
        return got

    def skip_to(self, offset: int, buf: memoryview) -> None:
        """Discard data up to stream offset `offset` (rest of a member plus block padding)."""
        while self.pos < offset:
            want = min(offset - self.pos, len(buf))
            if self.readinto(buf[:want]) < want:
                raise ArchiveError(f"invalid tar stream: unexpected end of data at offset {self.pos}")


class _TarState:
    """The few attributes `tarfile.TarInfo.fromtarfile` reads from a TarFile, plus our chain count."""

    def __init__(self, fileobj: _Reader, max_chain: int) -> None:
        self.fileobj = fileobj
        self.encoding = "utf-8"
        self.errors = "surrogateescape"
        self.pax_headers: dict[str, str] = {}
        self.offset = 0
        self.chain = 0
        self.max_chain = max_chain


class _TarInfo(tarfile.TarInfo):
    """tarfile's parser, counting headers: pax and GNU long-name headers parse the next one by recursion
    (`self.fromtarfile`), so 5000 chained ones would end in RecursionError instead of a clean refusal."""

    @classmethod
    def fromtarfile(cls, tarfile: _TarState) -> tarfile.TarInfo:  # type: ignore[override]
        tarfile.chain += 1
        if tarfile.chain > tarfile.max_chain:
            raise ArchiveError(f"invalid tar stream: more than {tarfile.max_chain} extension headers chained "
                               f"before one member (at offset {tarfile.fileobj.pos})")
        return super().fromtarfile(tarfile)  # type: ignore[arg-type]


class _Entry:
    """A plain ustar member parsed by the fast path; quacks like the bits of TarInfo we use."""

    __slots__ = ("name", "linkname", "mode", "uid", "gid", "size", "mtime", "type",
                 "devmajor", "devminor", "pax_headers", "sparse")

    def __init__(self) -> None:
        self.pax_headers: dict[str, str] = {}
        self.sparse = None

    def isreg(self) -> bool:
        return self.type in _REG_TYPES

    def isdir(self) -> bool:
        return self.type == tarfile.DIRTYPE

    def issym(self) -> bool:
        return self.type == tarfile.SYMTYPE

    def islnk(self) -> bool:
        return self.type == tarfile.LNKTYPE

    def ischr(self) -> bool:
        return self.type == tarfile.CHRTYPE

    def isblk(self) -> bool:
        return self.type == tarfile.BLKTYPE

    def isfifo(self) -> bool:
        return self.type == tarfile.FIFOTYPE


_REG_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_FAST_TYPES = frozenset(
    (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE,
     tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE)
)
_POSIX_MAGIC = b"ustar\x0000"


def _octal(field: bytes) -> int:
    """A NUL/space-terminated octal header number (ValueError for base-256 or junk: slow path)."""
    if field[0] & 0x80:
        raise ValueError("base-256 number")
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


def _fast_header(buf: bytes) -> _Entry | None:
    """Parse a plain ustar/GNU header without extensions; None means "let tarfile do it"."""
    typ = buf[156:157]
    if typ not in _FAST_TYPES:
        return None
    try:
        if _octal(buf[148:156]) != sum(buf) - sum(buf[148:156]) + 256:
            return None  # bad or signed checksum: tarfile decides
        e = _Entry()
        e.mode = _octal(buf[100:108])
        e.uid = _octal(buf[108:116])
        e.gid = _octal(buf[116:124])
        e.size = _octal(buf[124:136])
        e.mtime = _octal(buf[136:148])
        if typ == tarfile.CHRTYPE or typ == tarfile.BLKTYPE:
            e.devmajor = _octal(buf[329:337])
            e.devminor = _octal(buf[337:345])
        else:
            e.devmajor = e.devminor = 0
    except ValueError:
        return None
    name = buf[0:100].split(b"\0", 1)[0]
    if buf[257:265] == _POSIX_MAGIC and buf[345]:
        name = buf[345:500].split(b"\0", 1)[0] + b"/" + name
    e.name = name.decode("utf-8", "surrogateescape")
    e.linkname = buf[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    if typ == tarfile.AREGTYPE and e.name.endswith("/"):
        typ = tarfile.DIRTYPE
    if typ == tarfile.DIRTYPE:
        e.name = e.name.rstrip("/")
    e.type = typ
    return e


#: pax records the fast path leaves to tarfile: sparse files and a declared header charset
_PAX_SLOW_PREFIXES = ("GNU.sparse.", "hdrcharset")
#: a pax header larger than this (huge xattrs, long names) goes through tarfile's parser
_PAX_FAST_MAX = 16 * tarfile.BLOCKSIZE


def _pax_records(buf: bytes) -> dict[str, str] | None:
    """The records of a pax extended header ("<len> <key>=<value>\n" each), decoded as tarfile decodes
    them; None for anything that is not well framed or that tarfile treats specially (its parser then
    decides, and reports what is wrong)."""
    out: dict[str, str] = {}
    pos, end = 0, len(buf)
    while pos < end and buf[pos]:
        space = buf.find(b" ", pos, pos + 21)
        digits = buf[pos:space]
        if space < 0 or not digits.isdigit():
            return None
        stop = pos + int(digits)
        if stop - pos < 5 or stop > end or buf[stop - 1] != 0x0A:
            return None
        key, eq, value = buf[space + 1: stop - 1].partition(b"=")
        if not key or not eq:
            return None
        try:
            keyword = key.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if keyword.startswith(_PAX_SLOW_PREFIXES):
            return None
        out[keyword] = value.decode("utf-8", "surrogateescape")
        pos = stop
    return out


def _apply_pax(e: _Entry, pax: dict[str, str]) -> bool:
    """Patch a fast-parsed header with its pax records as tarfile's _apply_pax_info does; False where
    tarfile would substitute 0 for an unparsable number (it then parses the member itself)."""
    for key in ("size", "uid", "gid"):
        value = pax.get(key)
        if value is not None:
            if not (value.isascii() and value.isdigit()):
                return False
            setattr(e, key, int(value))
    value = pax.get("mtime")
    if value is not None:
        try:
            e.mtime = float(value)  # type: ignore[assignment]
        except ValueError:
            return False
    value = pax.get("path")
    if value is not None:
        e.name = value.rstrip("/")
    value = pax.get("linkpath")
    if value is not None:
        e.linkname = value
    e.pax_headers = pax
    return True


def _fast_pax(reader: _Reader, xblock: bytes) -> _Entry | None:
    """A member made of one pax extended header (`xblock`, already read) and a plain ustar header, as
    GNU tar --format=posix and most rootfs tarballs write them; None (with every byte handed back to
    `reader`) for anything else, which tarfile's parser then reads."""
    taken = [xblock]
    entry = None
    try:
        if _octal(xblock[148:156]) == sum(xblock) - sum(xblock[148:156]) + 256:
            size = _octal(xblock[124:136])
            padded = -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            if padded <= _PAX_FAST_MAX:
                data = reader.read(padded)
                taken.append(data)
                pax = _pax_records(data[:size]) if len(data) == padded else None
                if pax is not None:
                    block = reader.read(tarfile.BLOCKSIZE)
                    taken.append(block)
                    if len(block) == tarfile.BLOCKSIZE:
                        entry = _fast_header(block)
                        if entry is not None and not _apply_pax(entry, pax):
                            entry = None
    except ValueError:  # a base-256 or junk number in the pax header's own fields
        entry = None
    if entry is None:
        reader.unread(b"".join(taken))
        reader.header_bytes = 0  # tarfile reads the same bytes again, counted once
    return entry


# A parsed header: our fast-path record or, for anything unusual, tarfile's own TarInfo.
Member = Union[_Entry, tarfile.TarInfo]


def _members(reader: _Reader, scratch: memoryview, max_chain: int = DEFAULT_LIMITS.header_chain) -> Iterator[Member]:
    """Tar headers in stream order; the caller may consume each member's data before the next.

    Plain ustar headers (the bulk of any layer) are parsed here; pax, GNU long names, sparse
    files and anything odd go through `tarfile.TarInfo.fromtarfile`.
    """
    state = _TarState(reader, max_chain)
    while True:
        reader.skip_to(state.offset, scratch)
        at = reader.pos
        reader.header_bytes = 0
        state.chain = 0
        if not state.pax_headers:  # global pax headers would have to be merged: slow path
            block = reader.read(tarfile.BLOCKSIZE)
            entry = None
            if len(block) == tarfile.BLOCKSIZE:
                if block[156:157] == tarfile.XHDTYPE:
                    entry = _fast_pax(reader, block)  # hands every byte back when it returns None
                else:
                    entry = _fast_header(block)
                    if entry is None:
                        reader.unread(block)
                        reader.header_bytes = 0
            else:
                reader.unread(block)
            if entry is not None:
                state.offset = reader.pos
                if entry.type in _REG_TYPES:
                    state.offset += -(-entry.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                yield entry
                continue
        try:
            member = _TarInfo.fromtarfile(state)
        except tarfile.EOFHeaderError:
            return
        except tarfile.EmptyHeaderError:
            if at == 0:
                raise ArchiveError("invalid tar stream: empty input") from None
            raise ArchiveError(
                f"invalid tar stream: unexpected end of data after {at} bytes (no end-of-archive marker)"
            ) from None
        except tarfile.TruncatedHeaderError:
            raise ArchiveError(f"invalid tar stream: truncated header at offset {at}") from None
        except tarfile.InvalidHeaderError as e:
            if at == 0:
                raise ArchiveError("invalid tar stream: not a tar archive (bad header checksum)") from None
            raise ArchiveError(f"invalid tar stream: corrupt header at offset {at}: {e}") from None
        except tarfile.HeaderError as e:
            raise ArchiveError(f"invalid tar stream: corrupt header at offset {at}: {e}") from None
        except (ValueError, UnicodeError, IndexError) as e:
            raise ArchiveError(f"invalid tar stream: corrupt header at offset {at}: {e}") from None
        if member.sparse is not None:
            _check_sparse(member, state.offset - member.offset_data)
        yield member


def _check_sparse(m: tarfile.TarInfo, stored: int) -> None:
    """A sparse map must describe data inside the file, in order, and no more than the member stores;
    otherwise copying it would read into the next headers or seek anywhere."""
    end = 0
    total = 0
    for offset, numbytes in m.sparse:  # type: ignore[union-attr]
        if offset < 0 or numbytes < 0 or offset + numbytes > m.size or (numbytes and offset < end):
            raise ArchiveError(f"invalid tar stream: {m.name!r}: bad sparse map (extent {offset}+{numbytes} "
                               f"of a {m.size}-byte file)")
        if numbytes:  # GNU tar pads its map with empty extents: they carry no data, in any order
            end = offset + numbytes
            total += numbytes
    if total > stored:
        raise ArchiveError(f"invalid tar stream: {m.name!r}: the sparse map needs {total} bytes of data, "
                           f"the member stores {stored}")


# --------------------------------------------------------------------------- names and metadata


def clean_name(name: str, entry: str | None = None, limit: int = DEFAULT_LIMITS.name_bytes) -> Parts:
    """Components of a tar name (or, with `entry`, a link target) relative to the root.

    UnsafeArchive if it contains NUL or its `..` components climb above the root; ArchiveError if it is
    longer than `limit` bytes (PATH_MAX: no system call would take it).
    """
    shown = entry if entry is not None else name
    what = "path" if entry is None else f"link target {name!r}"
    if "\x00" in name:
        raise UnsafeArchive(f"unsafe layer entry {shown!r}: {what} contains NUL")
    if len(name) > limit // 4 and len(name.encode("utf-8", "surrogateescape")) > limit:
        raise ArchiveError(f"cannot extract {shown[:100]!r}...: {what} is longer than {limit} bytes")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafeArchive(f"unsafe layer entry {shown!r}: {what} escapes the root")
            parts.pop()
            continue
        parts.append(part)
    return tuple(parts)


def _pax_ns(value: str | None) -> int | None:
    """Exact nanoseconds from a pax time record ("1700000000.123456789"); None if absent/bad."""
    if value is None:
        return None
    try:
        neg = value.startswith("-")
        sec, _, frac = value.lstrip("-").partition(".")
        ns = int(sec) * _NS + (int((frac + "000000000")[:9]) if frac else 0)
        return -ns if neg else ns
    except ValueError:
        return None


def _times(member: Member) -> tuple[int, int]:
    """(atime_ns, mtime_ns) of a member; atime defaults to mtime like GNU tar's extraction."""
    pax = member.pax_headers
    mtime = _pax_ns(pax.get("mtime")) if pax else None
    if mtime is None:
        mtime = int(member.mtime) * _NS
    atime = _pax_ns(pax.get("atime")) if pax else None
    return (mtime if atime is None else atime), mtime


def _owner(member: Member) -> tuple[int, int]:
    uid, gid = member.uid, member.gid
    if not (isinstance(uid, int) and isinstance(gid, int) and 0 <= uid <= _MAX_ID and 0 <= gid <= _MAX_ID):
        raise UnsafeArchive(f"unsafe layer entry {member.name!r}: invalid owner {uid}:{gid}")
    return uid, gid


def _xattrs(member: Member) -> list[tuple[str, bytes]]:
    if not member.pax_headers:
        return []
    out = []
    for key, value in member.pax_headers.items():
        if key.startswith(XATTR_PAX_PREFIX):
            attr = key[len(XATTR_PAX_PREFIX):]
            if xattr_allowed(attr):
                out.append((attr, value.encode("utf-8", "surrogateescape")))
    return out


def _set_xattrs(target, attrs: list[tuple[str, bytes]], follow: bool = True) -> None:
    for attr, value in attrs:
        try:
            os.setxattr(target, attr, value, follow_symlinks=follow)
        except OSError as e:
            # The filesystem or node type does not take this xattr: tar(1) warns and goes on.
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                raise
            log.debug("xattr %s not set on %s: %s (the filesystem or node type does not take it)", attr,
                      f"fd {target}" if isinstance(target, int) else target, e.strerror)


# --------------------------------------------------------------------------- in-root path resolution


class _Root:
    """Resolves directories inside a root fd; the kernel never follows a symlink on the way."""

    def __init__(self, root_fd: int) -> None:
        self.fd = root_fd
        self.cache: OrderedDict[Parts, tuple[int, Parts]] = OrderedDict()
        self.stale: list[int] = []

    def dir(self, parts: Parts, create: bool, entry: str) -> tuple[int, Parts]:
        """(fd, canonical parts) of directory `parts`; the fd stays owned by this object."""
        hit = self.cache.get(parts)
        if hit is not None:
            self.cache.move_to_end(parts)
            return hit
        start_fd, start_canon, rest = self.fd, (), parts
        for i in range(len(parts) - 1, 0, -1):  # resume from the deepest cached ancestor
            prefix = self.cache.get(parts[:i])
            if prefix is not None:
                start_fd, start_canon = prefix
                rest = parts[i:]
                break
        fd, canon = self._walk(rest, create, entry, start_fd, start_canon)
        self.remember(parts, fd, canon)
        return fd, canon

    def remember(self, parts: Parts, fd: int, canon: Parts) -> None:
        old = self.cache.pop(parts, None)
        if old is not None:
            self.stale.append(old[0])
        self.cache[parts] = (fd, canon)
        while len(self.cache) > _FD_CACHE:
            _, (ofd, _) = self.cache.popitem(last=False)
            self.stale.append(ofd)

    def invalidate(self) -> None:
        """Forget every cached directory (after a directory or symlink was removed or replaced)."""
        self.stale.extend(fd for fd, _ in self.cache.values())
        self.cache.clear()

    def release(self) -> None:
        """Close fds invalidated during the last entry (callers may have still been using them)."""
        for fd in self.stale:
            os.close(fd)
        self.stale.clear()

    def close(self) -> None:
        self.invalidate()
        self.release()

    def _walk(self, parts: Parts, create: bool, entry: str, start_fd: int,
              start_canon: Parts) -> tuple[int, Parts]:
        """Open directory `parts` below `start_fd` one component at a time: (owned fd, canonical parts).

        Only one directory fd is held at a time (a hostile 100 000-level path cannot exhaust
        fds): `..` is opened through the kernel, which is exact because every component of
        `canon` is a real directory (symlinks were resolved by us, never by the kernel), and
        clamped at the root because `canon` is relative to it.
        """
        cur = os.dup(start_fd)
        canon: list[str] = list(start_canon)
        todo = list(reversed(parts))
        links = 0
        try:
            while todo:
                part = todo.pop()
                if part in ("", "."):
                    continue
                if part == "..":  # clamped at the root, like chroot
                    if canon:
                        nfd = os.open("..", _DIR_FLAGS, dir_fd=cur)
                        os.close(cur)
                        cur = nfd
                        canon.pop()
                    continue
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=cur)
                except OSError as e:
                    if e.errno == errno.ENOENT:
                        if not create:
                            raise _Missing("/".join(canon + [part])) from None
                        try:
                            os.mkdir(part, 0o755, dir_fd=cur)
                        except FileExistsError:
                            pass  # made meanwhile by another process: the open below checks it is a directory
                        nfd = os.open(part, _DIR_FLAGS, dir_fd=cur)
                    elif e.errno in (errno.ELOOP, errno.ENOTDIR):
                        st = os.stat(part, dir_fd=cur, follow_symlinks=False)
                        if not stat.S_ISLNK(st.st_mode):
                            if not create:
                                raise _Missing("/".join(canon + [part])) from None
                            raise ArchiveError(
                                f"cannot extract {entry!r}: /{'/'.join(canon + [part])} is not a directory"
                            ) from None
                        links += 1
                        if links > _MAX_SYMLINKS:
                            raise ArchiveError(
                                f"cannot extract {entry!r}: too many levels of symbolic links"
                            ) from None
                        target = os.readlink(part, dir_fd=cur)
                        if target.startswith("/"):  # absolute: relative to the rootfs, never the host
                            nfd = os.dup(self.fd)
                            os.close(cur)
                            cur = nfd
                            canon.clear()
                        todo.extend(reversed(target.split("/")))
                        continue
                    else:
                        raise
                os.close(cur)
                cur = nfd
                canon.append(part)
        except BaseException:
            os.close(cur)
            raise
        return cur, tuple(canon)


# --------------------------------------------------------------------------- the applier


def _key(parts: Parts) -> str:
    """A path as the applier remembers it: one string (a tuple per entry costs several times more)."""
    return "/".join(parts)


def _unkey(key: str) -> Parts:
    return tuple(key.split("/")) if key else ()


class _Applier:
    """Extracts one layer under `root_fd`, then applies its whiteouts and directory times.

    Everything it remembers per entry is keyed by path, so repeating a header costs no memory, and the
    number and total name length of the entries are capped (LayerLimits): its memory is bounded.
    """

    def __init__(self, root_fd: int, limits: LayerLimits = DEFAULT_LIMITS, copy: CopyOptions | None = None) -> None:
        self.copy = copy
        self.root = _Root(root_fd)
        self.root_fd = root_fd
        self.limits = limits
        self.buf = bytearray(_COPY_CHUNK)
        self.view = memoryview(self.buf)
        self.written: set[str] = set()
        self.dir_times: dict[str, tuple[int, int]] = {}
        self.whiteouts: set[str] = set()
        self.opaque: set[str] = set()
        self.parent_times: dict[str, tuple[int, int]] = {}
        self.bytes = 0
        self.entries = 0
        self.name_bytes = 0
        self.space_left, self.reserve, self.block = self._space_budget()

    def _space_budget(self) -> tuple[int, int, int]:
        """(bytes the layer may still use, the reserve it must leave, the block size) on the destination."""
        st = os.fstatvfs(self.root_fd)
        total = st.f_blocks * st.f_frsize
        reserve = min(int(total * self.limits.reserve_fraction), self.limits.reserve_max)
        return st.f_bavail * st.f_frsize - reserve, reserve, max(st.f_bsize, 512)

    def _use_space(self, m: Member, nbytes: int) -> None:
        """Charge `nbytes` of file data (whole blocks) against the free space; refuse past the reserve."""
        self.space_left -= -(-nbytes // self.block) * self.block
        if self.space_left < 0:
            raise ArchiveError(f"cannot extract {m.name!r}: the layer needs more space than its filesystem has "
                               f"free beyond a {human_size(self.reserve)} reserve")

    def _count(self, m: Member) -> None:
        self.entries += 1
        if self.entries > self.limits.entries:
            raise ArchiveError(f"invalid layer: more than {self.limits.entries} entries")
        self.name_bytes += len(m.name) + len(m.linkname)
        if self.name_bytes > self.limits.total_name_bytes:
            raise ArchiveError(f"invalid layer: its entries' names take more than "
                               f"{human_size(self.limits.total_name_bytes)}")

    # ---- driving

    def run(self, reader: _Reader) -> int:
        limit = self.limits.name_bytes
        for member in _members(reader, self.view, self.limits.header_chain):
            self._count(member)
            if member.type == _GNU_VOLHDR:
                log.debug("layer: skipping the volume label %r (`tar -V`; GNU tar skips it too)", member.name)
                continue
            name = member.name
            parts = clean_name(name, limit=limit)
            if member.islnk() or member.issym():
                if member.islnk():
                    clean_name(member.linkname, name, limit)
                elif len(member.linkname) > limit // 4 and len(member.linkname.encode("utf-8", "surrogateescape")) > limit:
                    raise ArchiveError(f"cannot extract {name[:100]!r}: its symlink target is longer than {limit} bytes")
            if self.copy is None and self._layer_meta(parts, name):
                continue  # a copy has no whiteouts: every name is a file's
            try:
                self.extract(member, parts, reader)
            except OSError as e:
                raise ArchiveError(f"cannot extract {name!r}: {e.strerror or e}") from None
            except (ValueError, OverflowError) as e:  # device numbers, times, modes out of range
                raise ArchiveError(f"cannot extract {name!r}: {e}") from None
            finally:
                self.root.release()
        try:
            self.apply_whiteouts()
            self.restore_times()
        except OSError as e:
            raise ArchiveError(f"cannot apply layer: {e.strerror or e}: {e.filename or ''}") from None
        finally:
            self.root.release()
        return self.bytes

    def close(self) -> None:
        self.root.close()

    def _layer_meta(self, parts: Parts, name: str) -> bool:
        """Note a whiteout or opaque marker (applied after the entries); True for those and aufs metadata."""
        if parts and parts[0].startswith(WHITEOUT_META_PREFIX):
            log.debug("layer: dropping aufs metadata %r (.wh..wh.aufs, .wh..wh.orph/, .wh..wh.plnk/)", name)
            return True
        base = parts[-1] if parts else ""
        if not base.startswith(WHITEOUT_PREFIX):
            return False
        if base == WHITEOUT_OPAQUE:
            self.opaque.add(_key(parts[:-1]))
        elif not base.startswith(WHITEOUT_META_PREFIX):
            victim = base[len(WHITEOUT_PREFIX):]
            if victim in ("", ".", ".."):
                raise UnsafeArchive(f"unsafe layer entry {name!r}: invalid whiteout")
            self.whiteouts.add(_key(parts[:-1] + (victim,)))
        return True

    # ---- entries

    def extract(self, m: Member, parts: Parts, reader: _Reader) -> None:
        uid, gid = _owner(m)
        if self.copy is not None and self.copy.owner is not None:
            uid, gid = self.copy.owner
        mode = m.mode & 0o7777
        if not parts:
            if not m.isdir():
                raise UnsafeArchive(f"unsafe layer entry {m.name!r}: would replace the root directory")
            if self.copy is not None:
                return  # a copy into an existing directory leaves the directory itself alone
            os.fchown(self.root_fd, uid, gid)
            os.fchmod(self.root_fd, mode)
            _set_xattrs(self.root_fd, _xattrs(m))
            self.dir_times[""] = _times(m)
            self.written.add("")
            return
        pfd, pcanon = self.root.dir(parts[:-1], True, m.name)
        self._note_parent(pfd, pcanon)  # so a lower dir we only add to keeps its mtime
        name = parts[-1]
        canon = pcanon + (name,)
        if self.copy is not None:
            self._check_copy(m, pfd, name, canon)
        if m.isreg():
            self._file(m, pfd, name, uid, gid, mode, reader)
        elif m.isdir():
            self._dir(m, parts, pfd, name, canon, uid, gid, mode)
        elif m.issym():
            self._symlink(m, pfd, name, uid, gid)
        elif m.islnk():
            if not self._hardlink(m, pfd, name, canon):
                return
        elif m.ischr() or m.isblk() or m.isfifo():
            self._node(m, pfd, name, uid, gid, mode)
        else:
            raise ArchiveError(f"cannot extract {m.name!r}: unsupported tar entry type {m.type!r}")
        self.written.add(_key(canon))

    def _check_copy(self, m: Member, pfd: int, name: str, canon: Parts) -> None:
        """A copy's own rules for the entry about to be written at `canon` (Docker's messages)."""
        assert self.copy is not None
        if self.copy.check is not None:
            self.copy.check(canon)
        if not self.copy.no_overwrite_dir_non_dir:
            return
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        path = "/".join(canon)  # relative to the destination the caller names
        if stat.S_ISDIR(st.st_mode) and not m.isdir():
            raise ArchiveError(f"cannot overwrite directory {path!r} with non-directory {m.name!r}")
        if not stat.S_ISDIR(st.st_mode) and m.isdir():
            raise ArchiveError(f"cannot overwrite non-directory {path!r} with directory {m.name!r}")

    def _clear_slot(self, pfd: int, name: str, keep_dir: bool) -> bool:
        """Remove whatever is at `name` (never following it); True if an existing dir was kept."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            remove_tree(pfd, name)
            self.root.invalidate()
        else:
            os.unlink(name, dir_fd=pfd)
            if stat.S_ISLNK(st.st_mode):
                self.root.invalidate()
        return False

    def _file(self, m: Member, pfd: int, name: str, uid: int, gid: int, mode: int, reader: _Reader) -> None:
        try:
            fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=pfd)
        except FileExistsError:
            self._clear_slot(pfd, name, keep_dir=False)
            fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=pfd)
        try:
            if m.sparse is not None:
                self._copy_sparse(m, fd, reader)
            else:
                self._use_space(m, m.size)
                self._copy(m, fd, m.size, reader)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)  # after chown: chown clears setuid/setgid
            attrs = _xattrs(m)
            if attrs:
                _set_xattrs(fd, attrs)  # after data and chown, which both drop security.capability
            os.utime(fd, ns=_times(m))
        finally:
            os.close(fd)

    def _copy(self, m: Member, fd: int, size: int, reader: _Reader) -> None:
        view = self.view
        left = size
        while left:
            want = min(left, len(view))
            n = reader.readinto(view[:want])
            if n < want:
                raise ArchiveError(f"invalid tar stream: unexpected end of data in {m.name!r}")
            chunk = view[:n]
            while chunk:
                chunk = chunk[os.write(fd, chunk):]
            left -= n
        self.bytes += size

    def _copy_sparse(self, m: Member, fd: int, reader: _Reader) -> None:
        self._use_space(m, sum(n for _, n in m.sparse))  # the holes cost nothing
        for offset, numbytes in m.sparse:
            os.lseek(fd, offset, os.SEEK_SET)
            self._copy(m, fd, numbytes, reader)
        os.ftruncate(fd, m.size)

    def _dir(self, m: Member, parts: Parts, pfd: int, name: str, canon: Parts, uid: int, gid: int, mode: int) -> None:
        if not self._clear_slot(pfd, name, keep_dir=True):
            os.mkdir(name, 0o700, dir_fd=pfd)
        dfd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        try:
            os.fchown(dfd, uid, gid)
            os.fchmod(dfd, mode)
            _set_xattrs(dfd, _xattrs(m))
        except BaseException:
            os.close(dfd)
            raise
        self.root.remember(parts, dfd, canon)  # the next entries most likely go inside it
        self.dir_times[_key(canon)] = _times(m)  # a repeated header: the last one's times win

    def _symlink(self, m: Member, pfd: int, name: str, uid: int, gid: int) -> None:
        target = m.linkname
        if not target or "\x00" in target:
            raise UnsafeArchive(f"unsafe layer entry {m.name!r}: invalid symlink target {target!r}")
        self._clear_slot(pfd, name, keep_dir=False)
        os.symlink(target, name, dir_fd=pfd)
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        os.utime(name, ns=_times(m), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, m: Member, pfd: int, name: str, canon: Parts) -> bool:
        tparts = clean_name(m.linkname, m.name)
        if not tparts:
            raise UnsafeArchive(f"unsafe layer entry {m.name!r}: hard link to the root directory")
        try:
            tfd, tcanon = self.root.dir(tparts[:-1], False, m.name)
            tst = os.stat(tparts[-1], dir_fd=tfd, follow_symlinks=False)
        except (_Missing, FileNotFoundError):
            raise ArchiveError(
                f"cannot extract {m.name!r}: hard link target {m.linkname!r} not found in the layer"
            ) from None
        if stat.S_ISDIR(tst.st_mode):
            raise UnsafeArchive(f"unsafe layer entry {m.name!r}: hard link to directory {m.linkname!r}")
        if tcanon + (tparts[-1],) == canon:
            return False  # a link to itself: nothing to do
        # Keep the target's directory fd alive even if clearing the slot invalidates the cache.
        tfd = os.dup(tfd)
        try:
            self._clear_slot(pfd, name, keep_dir=False)
            os.link(tparts[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)
        return True

    def _node(self, m: Member, pfd: int, name: str, uid: int, gid: int, mode: int) -> None:
        self._clear_slot(pfd, name, keep_dir=False)
        if m.isfifo():
            os.mkfifo(name, 0o600, dir_fd=pfd)
        else:
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        _chmod_at(pfd, name, mode)
        attrs = _xattrs(m)
        if attrs:
            _set_xattrs(f"/proc/self/fd/{pfd}/{name}", attrs, follow=False)
        os.utime(name, ns=_times(m), dir_fd=pfd, follow_symlinks=False)

    # ---- whiteouts and times

    def _note_parent(self, pfd: int, pcanon: Parts) -> None:
        key = _key(pcanon)
        if key not in self.parent_times:
            st = os.stat(pfd)
            self.parent_times[key] = (st.st_atime_ns, st.st_mtime_ns)

    def _remove(self, pfd: int, name: str) -> None:
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            remove_tree(pfd, name)
            self.root.invalidate()
        else:
            os.unlink(name, dir_fd=pfd)
            if stat.S_ISLNK(st.st_mode):
                self.root.invalidate()

    def apply_whiteouts(self) -> None:
        for key in self.whiteouts:
            parts = _unkey(key)
            entry = f"{key.rpartition('/')[0]}/{WHITEOUT_PREFIX}{parts[-1]}".lstrip("/")
            try:
                pfd, pcanon = self.root.dir(parts[:-1], False, entry)
                canon = pcanon + (parts[-1],)
                if _key(canon) in self.written:
                    continue  # this layer's own entry wins over its whiteout
                os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
            except (_Missing, FileNotFoundError):
                log.debug("layer: whiteout %r hides nothing (no such path below)", entry)
                continue
            pfd = os.dup(pfd)
            try:
                self._note_parent(pfd, pcanon)
                self._remove(pfd, parts[-1])
            finally:
                os.close(pfd)
                self.root.release()
        if self.opaque:
            keep_under: set[str] = set()  # the directories above what this layer wrote
            for path in self.written:
                pos = path.find("/")
                keep_under.add("")
                while pos >= 0:
                    keep_under.add(path[:pos])
                    pos = path.find("/", pos + 1)
            for key in self.opaque:
                parts = _unkey(key)
                entry = f"{key}/{WHITEOUT_OPAQUE}".lstrip("/")
                try:
                    dfd, dcanon = self.root.dir(parts, False, entry)
                except _Missing:  # a whiteout of this layer removed the directory again
                    log.debug("layer: opaque marker %r: its directory is gone", entry)
                    continue
                self._note_parent(dfd, dcanon)
                self._clear_opaque(dcanon, keep_under)

    def _clear_opaque(self, dcanon: Parts, keep_under: set[str]) -> None:
        """Remove everything under an opaque dir that this layer did not itself write."""
        todo = [dcanon]
        while todo:  # explicit stack: the layer decides how deep this goes
            canon_dir = todo.pop()
            try:
                dfd = os.dup(self.root.dir(canon_dir, False, "/".join(canon_dir))[0])
            except _Missing:  # removed while clearing a directory listed before it
                continue
            try:
                for name in os.listdir(dfd):
                    canon = canon_dir + (name,)
                    key = _key(canon)
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                    is_dir = stat.S_ISDIR(st.st_mode)
                    if key in self.written and not is_dir:
                        continue
                    if is_dir and (key in self.written or key in keep_under):
                        todo.append(canon)
                        continue
                    self._remove(dfd, name)
            finally:
                os.close(dfd)
                self.root.release()

    def restore_times(self) -> None:
        """Lower dirs we wrote into or removed from get their times back; layer dirs get theirs, last.

        Docker 0.7 restored only whiteout parents; also restoring dirs that merely gained or
        replaced an entry makes `commit` then `diff` against the image report nothing.
        """
        todo = [(key, times) for key, times in self.parent_times.items() if key not in self.dir_times]
        todo.extend(self.dir_times.items())
        for key, (atime, mtime) in todo:
            canon = _unkey(key)
            if not canon:
                os.utime(self.root_fd, ns=(atime, mtime))
                continue
            try:
                pfd, _ = self.root.dir(canon[:-1], False, "/".join(canon))
                st = os.stat(canon[-1], dir_fd=pfd, follow_symlinks=False)
            except (_Missing, FileNotFoundError):  # a whiteout of this layer removed it: no times to restore
                continue
            if stat.S_ISDIR(st.st_mode):
                os.utime(canon[-1], ns=(atime, mtime), dir_fd=pfd, follow_symlinks=False)


def remove_tree(pfd: int, name: str) -> None:
    """`rm -rf` of directory `name` under `pfd`: never follows symlinks, holds one fd, no recursion.

    shutil.rmtree recurses (RecursionError past ~1000 levels) and keeps an fd per level; a
    hostile layer can nest far deeper than that.
    """
    fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
    below: list[str] = []  # names from `name` down to the directory `fd` refers to
    try:
        while True:
            sub = None
            with os.scandir(fd) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if sub is not None:
                nfd = os.open(sub, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
                below.append(sub)
                continue
            if not below:
                break
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            os.rmdir(below.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=pfd)


def _chmod_at(pfd: int, name: str, mode: int) -> None:
    """chmod a just-created non-symlink entry without following a symlink at `name`."""
    try:
        os.chmod(name, mode, dir_fd=pfd, follow_symlinks=False)
    except (NotImplementedError, OSError) as e:
        if isinstance(e, OSError) and e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            os.chmod(f"/proc/self/fd/{fd}", mode)
        finally:
            os.close(fd)


def apply_layer(dest: Path, stream: BinaryIO, limits: LayerLimits = DEFAULT_LIMITS, *,
                copy: CopyOptions | None = None) -> int:
    """Extract the (optionally compressed) layer `stream` onto rootfs `dest`, then apply its whiteouts
    (with `copy`: extract a copy into directory `dest`, see CopyOptions).

    Returns the number of regular-file data bytes written. Raises ArchiveError for an unreadable
    stream or one past `limits` (headers, entries, names, free space), and UnsafeArchive (naming the
    entry) for one that tries to leave `dest`; in every case nothing outside `dest` has been written.
    """
    try:
        root_fd = os.open(os.fspath(dest), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise ArchiveError(f"cannot apply layer to {os.fspath(dest)}: {e.strerror}") from None
    try:
        applier = _Applier(root_fd, limits, copy)
    except OSError as e:  # statvfs
        os.close(root_fd)
        raise ArchiveError(f"cannot apply layer to {os.fspath(dest)}: {e.strerror}") from None
    try:
        return applier.run(_open_layer(stream, limits))
    finally:
        applier.close()
        os.close(root_fd)


def _open_layer(stream: BinaryIO, limits: LayerLimits = DEFAULT_LIMITS) -> _Reader:
    """A reader of the layer's tar bytes, decompressing in-process whatever was sniffed (once)."""
    try:
        head, rest = read_head(stream)
        comp = detect(head)
        label = "" if comp is Compression.NONE else comp.name.lower()
        return _Reader(open_once(rest, comp), label, limits.header_bytes)
    except (OSError, ValueError) + codec_errors() as e:  # type: ignore[operator]
        raise ArchiveError(f"invalid tar stream: {e}") from None
