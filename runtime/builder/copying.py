"""COPY and ADD: which files a step takes (globs, directories, symlinks followed only inside their tree),
their checksum for the cache (content and metadata, mtimes aside, as Docker's tarsum), and the layer
that puts them in the image, written as a tar stream for the graph to register.

Docker's copy semantics: a directory's contents are copied (not the directory itself) and its new
destination is made 0755; a file goes into a destination that is a directory (or ends with `/`)
under its own name, else to that path; missing parents are made 0755; owners are root unless
`--chown` (or `COPY --from`, which keeps the image's); ADD unpacks a local tar archive (plain, gzip,
bzip2, xz) into the destination. The destination is resolved in the parent image's rootfs, symlinks
followed inside it, so the layer only names real paths.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import stat
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydock.archive.tar import BLOCKSIZE, WHITEOUT_PREFIX, header
from pydock.runtime.builder.context import SourceTree
from pydock.runtime.rootpath import resolve_in_root
from pydock.utils.errors import InvalidArgument, NotFound

_CHUNK = 1 << 20
_ZEROS = bytes(BLOCKSIZE)


@dataclass(frozen=True)
class Source:
    """One thing a COPY/ADD takes: `rel` in `tree` (symlinks resolved), named `name` as written."""

    tree: SourceTree
    rel: str
    name: str
    st: os.stat_result
    hash: str
    archive: bool = False            # ADD: a local tar archive, unpacked into the destination


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


# ---- finding the sources ------------------------------------------------------------------------------

def _has_wildcards(path: str) -> bool:
    i = 0
    while i < len(path):
        if path[i] == "\\":
            i += 2
            continue
        if path[i] in "*?[":
            return True
        i += 1
    return False


def _glob_regex(component: str) -> re.Pattern[str]:
    """Go's filepath.Match for one path component (`*`, `?`, `[a-z]`, `[^a]`, `\\` escapes)."""
    out = []
    i = 0
    while i < len(component):
        ch = component[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(component):
            i += 1
            out.append(re.escape(component[i]))
        elif ch == "[":
            end = component.find("]", i + 2 if component[i + 1:i + 2] in ("^", "]") else i + 1)
            if end < 0:
                raise InvalidArgument(f"syntax error in pattern {component!r}")
            body = component[i + 1:end]
            out.append("[" + ("^" + re.escape(body[1:]).replace("\\-", "-") if body.startswith("^")
                              else re.escape(body).replace("\\-", "-")) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _matches(tree: SourceTree, pattern: str) -> list[str]:
    """Paths of `tree` matching glob `pattern` (component by component, never crossing `/`), sorted."""
    found = [""]
    for component in pattern.split("/"):
        regex = _glob_regex(component)
        nxt = []
        for base in found:
            directory = tree.root / base if base else tree.root
            if base and (not directory.is_dir() or directory.is_symlink()):
                continue
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                continue
            for name in names:
                rel = f"{base}/{name}" if base else name
                if regex.match(name) and not tree.excluded(rel):
                    nxt.append(rel)
        found = nxt
    return found


def collect(tree: SourceTree, paths: list[str], keyword: str, unpack: bool = False) -> list[Source]:
    """The sources `paths` name in `tree` (globs expanded), each with its checksum; a path outside the
    tree, a missing or excluded one, or a glob matching nothing is an error."""
    out: list[Source] = []
    for path in paths:
        try:
            rel = tree.clean(path)
        except InvalidArgument as err:
            raise InvalidArgument(f"{keyword} failed: {err}") from None
        if _has_wildcards(rel):
            out.extend(_source(tree, match, match, keyword, unpack) for match in _matches(tree, rel))
        else:
            out.append(_source(tree, rel, rel or ".", keyword, unpack))
    if not out:
        raise InvalidArgument(f"{keyword} failed: no source files were specified")
    return out


def _source(tree: SourceTree, rel: str, name: str, keyword: str, unpack: bool) -> Source:
    resolved = tree.resolve(rel) if rel else ""
    st = tree.stat(resolved) if resolved == rel or tree.stat(rel) is not None or not tree.excluded(rel) else None
    if st is None or stat.S_ISLNK(st.st_mode):
        where = "build context or excluded by .dockerignore" if tree.ignore is not None or tree.what == "build context" \
            else tree.what
        raise NotFound(f"{keyword} failed: file not found in {where}: stat {name}: file does not exist")
    if stat.S_ISDIR(st.st_mode):
        digest = hashlib.sha256()
        for entry in tree.walk(resolved):
            digest.update(_entry_hash(tree, entry.rel, _under(resolved, entry.rel), entry.st).encode())
            digest.update(b",")
        return Source(tree, resolved, name, st, "dir:" + digest.hexdigest())
    file_hash = _entry_hash(tree, resolved, posixpath.basename(name), st)
    return Source(tree, resolved, name, st, "file:" + file_hash,
                  archive=unpack and stat.S_ISREG(st.st_mode) and _is_archive(tree, resolved))


def _under(top: str, rel: str) -> str:
    return rel[len(top) + 1:] if top else rel


def _entry_hash(tree: SourceTree, rel: str, name: str, st: os.stat_result) -> str:
    """sha256 of one entry's name, type, mode, owner, size, link target and content (not its mtime)."""
    digest = hashlib.sha256()
    link = os.readlink(tree.root / rel) if stat.S_ISLNK(st.st_mode) else ""
    rdev = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else ""
    digest.update(f"{name}\0{stat.S_IFMT(st.st_mode):o}\0{stat.S_IMODE(st.st_mode):o}\0{st.st_uid}\0{st.st_gid}\0"
                  f"{st.st_size if stat.S_ISREG(st.st_mode) else 0}\0{link}\0{rdev}\0".encode("utf-8", "surrogateescape"))
    if stat.S_ISREG(st.st_mode):
        fd = tree.open(rel)
        try:
            while True:
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
        finally:
            os.close(fd)
    return digest.hexdigest()


def _is_archive(tree: SourceTree, rel: str) -> bool:
    """Whether a regular file is a tar archive, plain or compressed (ADD unpacks those)."""
    fd = tree.open(rel)
    with os.fdopen(fd, "rb") as f:
        try:
            with tarfile.open(fileobj=f, mode="r|*") as tar:
                return tar.next() is not None
        except (tarfile.TarError, OSError, EOFError, ValueError):
            return False


def source_hash(sources: list[Source]) -> str:
    """The checksum the cache compares: a single source's own, several hashed together."""
    if len(sources) == 1:
        return sources[0].hash
    return "multi:" + hashlib.sha256(",".join(s.hash for s in sources).encode()).hexdigest()


# ---- ownership and mode -------------------------------------------------------------------------------

def parse_chmod(spec: str | None) -> int | None:
    if not spec:
        return None
    if not re.fullmatch(r"[0-7]{3,4}", spec):
        raise InvalidArgument(f"invalid --chmod={spec}: only octal modes (e.g. 0755) are supported")
    return int(spec, 8)


def _lookup(root: Path | None, db: str, name: str, kind: str) -> int:
    if name.isdigit():
        return int(name)
    if root is not None:
        try:
            text = resolve_in_root(root, f"/etc/{db}").read_text(errors="replace")
        except (OSError, ValueError):
            text = ""
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
                return int(fields[2])
    raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: can't find {kind} for "
                          f"{'user' if kind == 'uid' else 'group'} {name}: no such {'user' if kind == 'uid' else 'group'}"
                          f": {name}")


def parse_chown(spec: str, root: Path | None) -> Owner:
    """`--chown=user[:group]` by name or number in the image's /etc/passwd and /etc/group (a lone user
    names the group too, as Docker's classic builder reads it)."""
    parts = spec.split(":")
    if len(parts) > 2 or not parts[0]:
        raise InvalidArgument(f"invalid chown string format: {spec}")
    user, group = parts[0], parts[-1] if len(parts) == 2 and parts[1] else parts[0]
    return Owner(_lookup(root, "passwd", user, "uid"), _lookup(root, "group", group, "gid"))


# ---- the layer ----------------------------------------------------------------------------------------

class ChunkReader(io.RawIOBase):
    """A readable stream over a generator of byte chunks (the layer tar, made as it is read)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _Dest:
    """What the layer's destination paths are in the parent rootfs (or in nothing, for scratch)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.made: set[str] = set()   # directories this layer makes

    def resolve(self, path: str) -> str:
        """The container path `path` as a path relative to the rootfs, symlinks resolved inside it."""
        if self.root is None:
            return posixpath.normpath(path).lstrip("/")
        try:
            host = resolve_in_root(self.root, path)
        except ValueError as err:
            raise InvalidArgument(f"destination {path}: {err}") from None
        rel = os.path.relpath(host, self.root)
        return "" if rel == "." else rel

    def kind(self, rel: str) -> str:
        """`dir`, `file` or `missing`."""
        if not rel or rel in self.made:
            return "dir"
        if self.root is None:
            return "missing"
        try:
            st = os.stat(self.root / rel)
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
        return "dir" if stat.S_ISDIR(st.st_mode) else "file"

    def mkdirs(self, rel: str, owner: Owner, now: int, include_last: bool = True) -> Iterator[bytes]:
        """Entries making the missing directories of `rel` (0755, `owner`)."""
        parts = rel.split("/") if rel else []
        upto = len(parts) if include_last else len(parts) - 1
        for i in range(1, upto + 1):
            prefix = "/".join(parts[:i])
            kind = self.kind(prefix)
            if kind == "file":
                raise InvalidArgument(f"cannot copy to /{prefix}: not a directory")
            if kind == "missing":
                self.made.add(prefix)
                yield header(prefix, tarfile.DIRTYPE, 0o755, owner.uid, owner.gid, 0, now)


def layer(parent_root: Path | None, dest: str, sources: list[Source], owner: Owner | None, chmod: int | None,
          keyword: str) -> Iterator[bytes]:
    """The layer tar of a COPY/ADD of `sources` to container path `dest` (made absolute, a trailing `/`
    meaning a directory), on a parent whose rootfs is `parent_root` (None: scratch)."""
    now = int(time.time())
    root_owner = Owner(0, 0)
    target = _Dest(parent_root)
    for src in sources:
        if stat.S_ISDIR(src.st.st_mode):
            rel = target.resolve(dest)
            kind = target.kind(rel)
            if kind == "file":
                raise InvalidArgument(f"{keyword} failed: cannot copy directory {src.name} to {dest}: not a directory")
            if kind == "missing":
                yield from target.mkdirs(rel, root_owner, now, include_last=False)
                target.made.add(rel)
                dir_owner = owner or root_owner
                yield header(rel, tarfile.DIRTYPE, 0o755 if chmod is None else chmod, dir_owner.uid, dir_owner.gid, 0, now)
            yield from _tree(src, rel, owner, chmod, keyword)
        elif src.archive:
            rel = target.resolve(dest)
            if target.kind(rel) == "file":
                raise InvalidArgument(f"{keyword} failed: cannot unpack {src.name} into {dest}: not a directory")
            yield from target.mkdirs(rel, root_owner, now)
            yield from _unpack(src, rel, keyword)
        else:
            rel = target.resolve(dest)
            if dest.endswith("/") or target.kind(rel) == "dir":
                rel = target.resolve(posixpath.join(dest, posixpath.basename(src.name.rstrip("/"))))
            yield from target.mkdirs(rel, owner or root_owner, now, include_last=False)
            if target.kind(rel) == "dir" and rel:
                raise InvalidArgument(f"{keyword} failed: cannot overwrite directory /{rel} with file {src.name}")
            yield from _entry(src.tree, src.rel, rel, src.st, owner, chmod, keyword, {})
    yield _ZEROS * 2


def _tree(src: Source, top: str, owner: Owner | None, chmod: int | None, keyword: str) -> Iterator[bytes]:
    links: dict[tuple[int, int], str] = {}
    for entry in src.tree.walk(src.rel):
        arc = _under(src.rel, entry.rel)
        yield from _entry(src.tree, entry.rel, f"{top}/{arc}" if top else arc, entry.st, owner, chmod, keyword, links)


def _entry(tree: SourceTree, rel: str, arc: str, st: os.stat_result, owner: Owner | None, chmod: int | None,
           keyword: str, links: dict[tuple[int, int], str]) -> Iterator[bytes]:
    """Header and data of one copied entry (a hard link to one copied before within the same tree)."""
    if posixpath.basename(arc).startswith(WHITEOUT_PREFIX):
        raise InvalidArgument(f"{keyword} failed: {rel}: names starting with {WHITEOUT_PREFIX} are reserved "
                              "for layer whiteouts")
    uid, gid = (owner.uid, owner.gid) if owner is not None else (st.st_uid, st.st_gid)
    mode = stat.S_IMODE(st.st_mode) if chmod is None or stat.S_ISLNK(st.st_mode) else chmod
    mtime = int(st.st_mtime)
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFREG:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            yield header(arc, tarfile.LNKTYPE, mode, uid, gid, 0, mtime, links[key])
            return
        links[key] = arc
        yield header(arc, tarfile.REGTYPE, mode, uid, gid, st.st_size, mtime)
        yield from _data(tree, rel, st.st_size)
    elif fmt == stat.S_IFDIR:
        yield header(arc, tarfile.DIRTYPE, mode, uid, gid, 0, mtime)
    elif fmt == stat.S_IFLNK:
        yield header(arc, tarfile.SYMTYPE, 0o777, uid, gid, 0, mtime, os.readlink(tree.root / rel))
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
        yield header(arc, tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE, mode, uid, gid, 0, mtime,
                     devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev))
    elif fmt == stat.S_IFIFO:
        yield header(arc, tarfile.FIFOTYPE, mode, uid, gid, 0, mtime)
    # sockets cannot be carried in a layer; Docker skips them too


def _data(tree: SourceTree, rel: str, size: int) -> Iterator[bytes]:
    """Exactly `size` bytes of the file (zero-padded if it shrank meanwhile), then the block padding."""
    fd = tree.open(rel)
    try:
        left = size
        while left:
            chunk = os.read(fd, min(left, _CHUNK))
            if not chunk:
                yield bytes(left)
                break
            left -= len(chunk)
            yield chunk
    except OSError as err:
        raise InvalidArgument(f"cannot read {rel}: {err.strerror}") from None
    finally:
        os.close(fd)
    if size % BLOCKSIZE:
        yield _ZEROS[: BLOCKSIZE - size % BLOCKSIZE]


def _unpack(src: Source, top: str, keyword: str) -> Iterator[bytes]:
    """ADD of a local archive: its entries moved under `top`, owners and modes as the archive has them."""
    fd = src.tree.open(src.rel)
    with os.fdopen(fd, "rb") as f:
        try:
            with tarfile.open(fileobj=f, mode="r|*") as tar:
                for member in tar:
                    name = _member_name(member.name, src.name, keyword)
                    if not name:
                        continue  # the archive's root: the destination keeps its own
                    info = tarfile.TarInfo(f"{top}/{name}" if top else name)
                    info.type, info.mode, info.uid, info.gid = member.type, member.mode, member.uid, member.gid
                    info.mtime, info.size = int(member.mtime), member.size if member.isreg() else 0
                    info.devmajor, info.devminor = member.devmajor, member.devminor
                    info.linkname = member.linkname
                    if member.islnk():
                        link = _member_name(member.linkname, src.name, keyword)
                        info.linkname = f"{top}/{link}" if top else link
                    info.pax_headers = {k: v for k, v in member.pax_headers.items()
                                        if k.startswith("SCHILY.xattr.") or k == "mtime"}
                    yield header(info.name, info.type, info.mode, info.uid, info.gid, info.size, int(info.mtime),
                                 info.linkname, info.devmajor, info.devminor, info.pax_headers)
                    if member.isreg():
                        data = tar.extractfile(member)
                        left = member.size
                        while left and data is not None:
                            chunk = data.read(min(left, _CHUNK))
                            if not chunk:
                                raise InvalidArgument(f"{keyword} failed: {src.name}: archive ends inside {member.name}")
                            left -= len(chunk)
                            yield chunk
                        if member.size % BLOCKSIZE:
                            yield _ZEROS[: BLOCKSIZE - member.size % BLOCKSIZE]
        except (tarfile.TarError, OSError, EOFError) as err:
            raise InvalidArgument(f"{keyword} failed: cannot unpack {src.name}: {err}") from None


def _member_name(name: str, archive: str, keyword: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"{keyword} failed: {archive}: entry {name!r} leaves the destination")
    if parts and parts[-1].startswith(WHITEOUT_PREFIX):
        raise InvalidArgument(f"{keyword} failed: {archive}: entry {name!r}: names starting with "
                              f"{WHITEOUT_PREFIX} are reserved for layer whiteouts")
    return "/".join(parts)


def normalize_dest(workdir: str, dest: str) -> str:
    """A relative destination is under WORKDIR; a trailing `/` (a directory) is kept."""
    if dest.startswith("/"):
        return dest
    joined = posixpath.normpath(posixpath.join("/", workdir or "/", dest))
    return joined + "/" if dest.endswith("/") and not joined.endswith("/") else joined


def make_dirs(parent_root: Path | None, path: str) -> Iterator[bytes]:
    """WORKDIR's layer: the missing directories of container path `path` (0755, root), or nothing."""
    target = _Dest(parent_root)
    chunks = list(target.mkdirs(target.resolve(path), Owner(0, 0), int(time.time())))
    if chunks:
        yield from chunks
        yield _ZEROS * 2
