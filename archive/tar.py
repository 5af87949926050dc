"""Write a directory tree (or a list of paths in it) as a streamed tar: numeric owners, hard
links, devices, xattrs, nanosecond mtimes, plus synthetic whiteout files.

Replaces Docker 0.7's `tar --numeric-owner -T - -c` (archive.go TarFilter). The tree is read
through directory fds opened with O_NOFOLLOW, so a symlink swapped into the tree (e.g. by a
running container) is archived as a symlink and never followed to host files; files are opened
O_NONBLOCK and checked with fstat, so a fifo or device swapped in for a file is archived as what
it is, never read (a fifo would block a commit forever).
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import stat
import tarfile
import time
from pathlib import Path
from typing import BinaryIO, Iterable, Mapping

from pydock.archive.compression import Compression, compress_stream
from pydock.utils.errors import ArchiveError

log = logging.getLogger(__package__)
BLOCKSIZE = tarfile.BLOCKSIZE
RECORDSIZE = tarfile.RECORDSIZE
XATTR_PAX_PREFIX = "SCHILY.xattr."
WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
WHITEOUT_MODE = 0o600

_COPY_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOATIME = getattr(os, "O_NOATIME", 0)  # archiving must not look like the container read its files
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | _NOATIME
_ZERO_BLOCK = bytes(BLOCKSIZE)


def xattr_allowed(name: str) -> bool:
    """Whether an xattr travels in layers: file capabilities and user.*, never host labels.

    security.selinux/ima/evm belong to the host that wrote the file, trusted.* and system.*
    could carry overlayfs or ACL state an image must not inject.
    """
    return name == "security.capability" or name.startswith("user.")


def _pax_mtime(mtime_ns: int) -> str:
    """The pax `mtime` record for an exact nanosecond timestamp ("-0.5" is half a second before 1970)."""
    sign = "-" if mtime_ns < 0 else ""
    sec, ns = divmod(abs(mtime_ns), 1_000_000_000)
    return f"{sign}{sec}.{ns:09d}".rstrip("0") if ns else f"{sign}{sec}"


def _pax_record(key: str, value: bytes) -> bytes:
    """One "<len> key=value\\n" record; the length counts its own digits."""
    body = b" " + key.encode("utf-8") + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode("ascii") + body


def _ascii_stub(text: str, limit: int) -> str:
    """What a pax-unaware reader sees in the ustar field when the real value lives in a pax record."""
    return "".join(c if " " <= c < "\x7f" else "_" for c in text)[:limit]


_USTAR_MAGIC = b"ustar\x0000"
_PAX_NAME = b"././@PaxHeader"


def _ustar(name: bytes, typeflag: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
           linkname: bytes = b"", devmajor: int = 0, devminor: int = 0) -> bytes:
    """One POSIX ustar header block; every field must already fit (see `header`)."""
    buf = bytearray(BLOCKSIZE)
    buf[0 : len(name)] = name
    buf[100:108] = b"%07o\0" % mode
    buf[108:116] = b"%07o\0" % uid
    buf[116:124] = b"%07o\0" % gid
    buf[124:136] = b"%011o\0" % size
    buf[136:148] = b"%011o\0" % mtime
    buf[148:156] = b"        "  # checksum is computed over spaces here
    buf[156:157] = typeflag
    buf[157 : 157 + len(linkname)] = linkname
    buf[257:265] = _USTAR_MAGIC
    if typeflag in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        buf[329:337] = b"%07o\0" % devmajor
        buf[337:345] = b"%07o\0" % devminor
    buf[148:156] = b"%06o\0 " % sum(buf)
    return bytes(buf)


_MAX7 = 0o7777777
_MAX11 = 8**11 - 1


def header(name: str, typeflag: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0, size: int = 0,
           mtime: int = 0, linkname: str = "", devmajor: int = 0, devminor: int = 0,
           pax: dict[str, str] | None = None) -> bytes:
    """Header blocks for one entry: a pax extended header when anything overflows ustar, then ustar.

    Owners are numeric only (empty uname/gname: never a host name lookup). `pax` values are
    str (binary xattr values carried with surrogateescape) and are written as raw bytes;
    unlike tarfile's PAX writer this never adds `hdrcharset=BINARY`, which GNU tar warns about
    on every entry with a file capability.
    """
    pax = dict(pax) if pax else {}
    if typeflag == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    raw_name = name.encode("utf-8", "surrogateescape")
    if len(raw_name) > 100 or not name.isascii():
        pax.setdefault("path", name)
        raw_name = _ascii_stub(name, 100).encode("ascii")
    raw_link = linkname.encode("utf-8", "surrogateescape")
    if len(raw_link) > 100 or not linkname.isascii():
        pax.setdefault("linkpath", linkname)
        raw_link = _ascii_stub(linkname, 100).encode("ascii")
    if not 0 <= uid <= _MAX7:
        pax.setdefault("uid", str(uid))
        uid = 0
    if not 0 <= gid <= _MAX7:
        pax.setdefault("gid", str(gid))
        gid = 0
    if not 0 <= size <= _MAX11:
        pax.setdefault("size", str(size))
        size = 0
    if not 0 <= mtime <= _MAX11:
        pax.setdefault("mtime", str(mtime))
        mtime = 0
    if not (0 <= devmajor <= _MAX7 and 0 <= devminor <= _MAX7):
        raise ArchiveError(f"cannot archive {name!r}: device number {devmajor}:{devminor} out of range")
    main = _ustar(raw_name, typeflag, mode & 0o7777, uid, gid, size, mtime, raw_link, devmajor, devminor)
    if not pax:
        return main
    data = b"".join(_pax_record(k, v.encode("utf-8", "surrogateescape")) for k, v in pax.items())
    ext = _ustar(_PAX_NAME, tarfile.XHDTYPE, 0o644, 0, 0, len(data), mtime)
    return ext + data + bytes(-len(data) % BLOCKSIZE) + main


def pax_header(info: tarfile.TarInfo) -> bytes:
    """`header` for a tarfile.TarInfo (its pax_headers included)."""
    return header(info.name, info.type, info.mode, info.uid, info.gid, info.size, int(info.mtime),
                  info.linkname, info.devmajor, info.devminor, info.pax_headers)


def _norm_include(path: str) -> str:
    """An include path relative to the root: leading `/` dropped, `.`/`..` resolved lexically."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ArchiveError(f"cannot archive {path!r}: path escapes the root")
            parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    """GNU tar's default (unanchored) --exclude: a glob matching the path from any component on.

    "*.pyc" and "cache" match at any depth, "user/*" matches "home/user/notes"; matching a
    directory prunes everything under it.
    """
    if not patterns or not rel:
        return False
    parts = rel.split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    for pat in patterns:
        pat = pat.strip("/")
        if pat.startswith("./"):
            pat = pat[2:]
        if not pat:
            continue
        for tail in tails:
            if fnmatch.fnmatchcase(tail, pat):
                return True
    return False


class _TarWriter:
    """Emits tar entries for files found through directory fds; tracks hard links by inode."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.links: dict[tuple[int, int], str] = {}
        self.buf = bytearray(_COPY_CHUNK)
        self.written = 0

    def _write(self, data) -> None:
        self.out.write(data)
        self.written += len(data)

    def finish(self) -> None:
        """End-of-archive marker (two zero blocks), padded to a full record like tar(1)."""
        self._write(_ZERO_BLOCK * 2)
        rem = self.written % RECORDSIZE
        if rem:
            self._write(bytes(RECORDSIZE - rem))

    def add(self, dir_fd: int, name: str, arcname: str, st: os.stat_result) -> bool:
        """Archive entry `name` of `dir_fd` as `arcname`; True if it is a directory to descend into.

        `st` is its lstat from the listing. The tree may be a running container's: a file is opened
        without following or blocking and archived from its fstat, and whatever took its place
        meanwhile (a fifo, a device, a symlink, nothing) is archived as what it is now, never read.
        """
        if not stat.S_ISREG(st.st_mode):
            return self._add_other(dir_fd, name, arcname, st)
        try:
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
            except PermissionError:  # O_NOATIME needs ownership or CAP_FOWNER
                fd = os.open(name, _FILE_FLAGS & ~_NOATIME, dir_fd=dir_fd)
        except FileNotFoundError:
            log.debug("archive: %r vanished since it was listed; not archived", arcname)
            return False
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            log.debug("archive: %r became a symlink since it was listed; archived as one", arcname)
            try:
                now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            return False if stat.S_ISREG(now.st_mode) else self._add_other(dir_fd, name, arcname, now)
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):
            os.close(fd)
            log.debug("archive: %r is no longer a regular file; archived as what it is", arcname)
            return self._add_other(dir_fd, name, arcname, now)
        return self._add_file(fd, arcname, now)

    def _add_file(self, fd: int, arcname: str, st: os.stat_result) -> bool:
        """Archive the open regular file `fd` (closed here) with the metadata of its fstat."""
        perm = stat.S_IMODE(st.st_mode)
        uid, gid = st.st_uid, st.st_gid
        sec, ns = divmod(st.st_mtime_ns, 1_000_000_000)
        pax: dict[str, str] = {"mtime": _pax_mtime(st.st_mtime_ns)} if ns else {}
        try:
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self.links.get(key)
                if first is not None:
                    self._write(header(arcname, tarfile.LNKTYPE, perm, uid, gid, 0, sec, first, pax=pax))
                    return False
                self.links[key] = arcname
            self._xattrs(fd, pax)
            self._write(header(arcname, tarfile.REGTYPE, perm, uid, gid, st.st_size, sec, pax=pax))
            self._copy(fd, st.st_size, arcname)
        finally:
            os.close(fd)
        return False

    def _add_other(self, dir_fd: int, name: str, arcname: str, st: os.stat_result) -> bool:
        """Archive a non-regular entry (directory, symlink, device, fifo) from its stat; never opened."""
        mode = st.st_mode
        perm = stat.S_IMODE(mode)
        uid, gid = st.st_uid, st.st_gid
        sec, ns = divmod(st.st_mtime_ns, 1_000_000_000)
        pax: dict[str, str] = {"mtime": _pax_mtime(st.st_mtime_ns)} if ns else {}
        linkname = ""
        devmajor = devminor = 0
        if stat.S_ISDIR(mode):
            typeflag = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            typeflag = tarfile.SYMTYPE
            try:
                linkname = os.readlink(name, dir_fd=dir_fd)
            except OSError as e:  # removed or replaced since it was listed (a running container)
                if e.errno not in (errno.ENOENT, errno.EINVAL):
                    raise
                log.debug("archive: symlink %r changed since it was listed (%s); not archived", arcname, e.strerror)
                return False
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            typeflag = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            devmajor, devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            typeflag = tarfile.FIFOTYPE
        else:  # sockets (and anything newer) are not archivable, like GNU tar
            log.debug("not archiving %r: a socket (or another type tar cannot carry)", arcname)
            return False
        if typeflag != tarfile.SYMTYPE:
            self._xattrs_at(dir_fd, name, pax)
        self._write(header(arcname, typeflag, perm, uid, gid, 0, sec, linkname, devmajor, devminor, pax))
        return typeflag == tarfile.DIRTYPE

    def _xattrs(self, fd: int, pax: dict[str, str]) -> None:
        try:
            names = os.listxattr(fd)
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                return  # a filesystem without xattrs: none to carry
            raise
        for attr in names:
            if xattr_allowed(attr):
                try:
                    value = os.getxattr(fd, attr)
                except OSError as e:
                    if e.errno == errno.ENODATA:
                        log.debug("xattr %s vanished between listing and reading it", attr)
                        continue
                    raise
                pax[XATTR_PAX_PREFIX + attr] = value.decode("utf-8", "surrogateescape")

    def _xattrs_at(self, dir_fd: int, name: str, pax: dict[str, str]) -> None:
        """xattrs of a non-regular entry, reached through its parent fd (opening a fifo would block)."""
        path = f"/proc/self/fd/{dir_fd}/{name}" if name != "." else f"/proc/self/fd/{dir_fd}"
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                return  # a filesystem without xattrs: none to carry
            if e.errno == errno.ENOENT:  # removed since it was listed (a running container): archived bare
                log.debug("xattrs of %r: %s", name, e.strerror)
                return
            raise
        for attr in names:
            if xattr_allowed(attr):
                try:
                    value = os.getxattr(path, attr, follow_symlinks=False)
                except OSError as e:
                    if e.errno == errno.ENODATA:
                        log.debug("xattr %s of %r vanished between listing and reading it", attr, name)
                        continue
                    raise
                pax[XATTR_PAX_PREFIX + attr] = value.decode("utf-8", "surrogateescape")

    def _copy(self, fd: int, size: int, arcname: str) -> None:
        """Copy exactly `size` bytes of file data (zero-padded if the file shrank) plus block padding."""
        buf = self.buf
        view = memoryview(buf)
        left = size
        while left:
            n = os.readv(fd, [view[: min(left, len(buf))]])
            if n == 0:  # shrank while archiving: pad like GNU tar so the stream stays valid
                while left:
                    chunk = min(left, len(buf))
                    self._write(bytes(chunk))
                    left -= chunk
                break
            self._write(view[:n])
            left -= n
        pad = -size % BLOCKSIZE
        if pad:
            self._write(_ZERO_BLOCK[:pad])

    def add_empty(self, arcname: str, mode: int, mtime: int) -> None:
        """An empty root-owned regular file that exists only in the stream (whiteouts)."""
        self._write(header(arcname, tarfile.REGTYPE, mode, 0, 0, 0, mtime))


#: (directory fd, name in it; "." for the directory itself) of what stands at a path below an archived tree
Graft = tuple[int, str]


def _walk(writer: _TarWriter, dir_fd: int, prefix: str, rel: str, excludes: tuple[str, ...],
          grafts: Mapping[str, Graft] | None = None) -> None:
    """Archive everything below the open directory `dir_fd`: sorted, depth first, dirs before contents.

    An explicit stack instead of recursion, so deep trees cannot hit Python's recursion limit.
    The caller keeps ownership of `dir_fd` (and of the grafts' fds); fds opened here are closed here.
    `grafts` puts another entry in place of the one at a path (relative to `rel`'s start): a container's
    mounts, archived as the container sees them.
    """

    def listing(fd: int) -> list[os.DirEntry]:
        with os.scandir(fd) as it:
            return sorted(it, key=lambda e: e.name, reverse=True)  # pop() from the end = sorted order

    stack: list[tuple[int, list[os.DirEntry], str, str]] = [(dir_fd, listing(dir_fd), prefix, rel)]
    try:
        while stack:
            fd, entries, prefix, rel = stack[-1]
            if not entries:
                stack.pop()
                if fd != dir_fd:
                    os.close(fd)
                continue
            entry = entries.pop()
            name = entry.name
            child_rel = f"{rel}/{name}" if rel else name
            if _excluded(child_rel, excludes):
                continue
            at_fd, at_name = fd, name
            if grafts and child_rel in grafts:
                at_fd, at_name = grafts[child_rel]
            try:
                st = os.stat(at_name, dir_fd=at_fd, follow_symlinks=False) if at_fd != fd \
                    else entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed since the listing (a running container)
                log.debug("archive: %r vanished since it was listed; not archived", child_rel)
                continue
            arcname = f"{prefix}/{name}" if prefix else name
            if writer.add(at_fd, at_name, arcname, st):
                try:
                    sub = os.open(at_name, _DIR_FLAGS, dir_fd=at_fd)
                except OSError as e:
                    if e.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                        raise ArchiveError(f"cannot archive {child_rel!r}: {e.strerror}") from None
                    log.debug("archive: directory %r changed since it was listed (%s); its contents are "
                              "not archived", child_rel, e.strerror)
                    continue
                try:
                    stack.append((sub, listing(sub), arcname, child_rel))
                except BaseException:
                    os.close(sub)
                    raise
    finally:
        for fd, _, _, _ in stack:
            if fd != dir_fd:
                os.close(fd)


def _open_parent(root_fd: int, rel: str) -> tuple[int, str]:
    """(fd of the directory holding `rel`, base name), walking with O_NOFOLLOW from the root."""
    parts = rel.split("/")
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def write_tar(
    root: Path,
    out: BinaryIO,
    *,
    includes: list[str] | None = None,
    excludes: Iterable[str] = (),
    recursive: bool = True,
    compression: Compression = Compression.NONE,
    whiteouts: Iterable[str] = (),
    missing_ok: bool = False,
) -> None:
    """Stream `root` (or `includes` relative to it) as a tar into `out`, optionally compressed.

    `whiteouts` are extra empty 0600 root-owned files ("dir/.wh.name") that exist only in the
    stream. Names in the archive are relative ("./..." when including the root itself). An include
    that is missing (or has a symlink on its way) is an ArchiveError unless `missing_ok` (the includes
    come from a diff of a running container, which may have removed them since).
    """
    excl = tuple(excludes)
    try:
        root_fd = os.open(os.fspath(root), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise ArchiveError(f"cannot archive {os.fspath(root)}: {e.strerror}") from None
    sink = compress_stream(out, compression)
    try:
        _write_all(root_fd, sink, includes, excl, recursive, whiteouts, missing_ok)
    except OSError as e:
        raise ArchiveError(f"cannot archive {os.fspath(root)}: {e.strerror or e}") from None
    finally:
        os.close(root_fd)
        sink.close()


def _write_all(root_fd: int, sink: BinaryIO, includes: list[str] | None, excl: tuple[str, ...],
               recursive: bool, whiteouts: Iterable[str], missing_ok: bool) -> None:
    """Emit the includes (walked through O_NOFOLLOW fds), the synthetic whiteouts and the end marker."""
    writer = _TarWriter(sink)
    for inc in includes if includes is not None else ["."]:
        rel = _norm_include(inc)
        if not rel:
            st = os.stat(root_fd)
            writer.add(root_fd, ".", ".", st)
            if recursive:
                _walk(writer, root_fd, ".", "", excl)
            continue
        if _excluded(rel, excl):
            continue
        try:
            dfd, name = _open_parent(root_fd, rel)
        except OSError as e:
            if missing_ok and e.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                log.debug("archive: %r is gone (%s); not archived", inc, e.strerror)
                continue
            raise ArchiveError(f"cannot archive {inc!r}: {e.strerror}") from None
        try:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except OSError as e:
                if missing_ok and e.errno == errno.ENOENT:
                    log.debug("archive: %r is gone; not archived", inc)
                    continue
                raise ArchiveError(f"cannot archive {inc!r}: {e.strerror}") from None
            if writer.add(dfd, name, rel, st) and recursive:
                sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
                try:
                    _walk(writer, sub, rel, rel, excl)
                finally:
                    os.close(sub)
        finally:
            os.close(dfd)
    now = int(time.time())
    for wh in whiteouts:
        rel = _norm_include(wh)
        if not rel:
            raise ArchiveError(f"invalid whiteout path {wh!r}")
        writer.add_empty(rel, WHITEOUT_MODE, now)
    writer.finish()


def write_entry(dir_fd: int, name: str, arcname: str, out: BinaryIO,
                grafts: Mapping[str, Graft] | None = None) -> None:
    """Stream entry `name` of directory `dir_fd` ("." for the directory itself) as `arcname`, and for a
    directory everything below it as `arcname/...`, read like write_tar (O_NOFOLLOW fds: a symlink is
    archived as one, never followed); `grafts` (paths relative to the entry) as in _walk. `cp` and the
    archive API name the top entry as Docker does."""
    writer = _TarWriter(out)
    try:
        if name == ".":
            sub = os.open(".", _DIR_FLAGS, dir_fd=dir_fd)
            try:
                if writer.add(sub, ".", arcname, os.fstat(sub)):
                    _walk(writer, sub, arcname, "", (), grafts)
            finally:
                os.close(sub)
        else:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if writer.add(dir_fd, name, arcname, st):
                sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    _walk(writer, sub, arcname, "", (), grafts)
                finally:
                    os.close(sub)
    except OSError as e:
        raise ArchiveError(f"cannot archive {arcname!r}: {e.strerror or e}") from None
    writer.finish()
