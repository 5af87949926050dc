"""`cp` between a container and the host, and what the Engine API's `/containers/{id}/archive` serves:
Docker's rules (pkg/archive/copy.go, daemon/archive.go) on pydock's safe tar writer and layer applier.

Every container path is resolved inside the rootfs (utils/safepath: a symlink to `/etc` or `../../..`
means the container's, never the host's); what is read or written then goes through the fd found, never
through a path looked up again, so a container swapping a directory for a symlink meanwhile cannot lead
pydock out. A stopped container's rootfs is mounted through the storage driver for the copy and put back
after it, on error too; a running one's is already mounted (the driver counts the reference).
Paths are resolved as the container sees them: on a volume or bind, in its source (entered through an fd,
symlinks still resolved inside the container); a tmpfs is refused by name, pydock cannot reach it.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from pydock.archive.apply import CopyOptions, apply_layer
from pydock.archive.tar import Graft, write_entry
from pydock.devmapper.driver import Driver
from pydock.runtime.container import Container
from pydock.utils import safepath
from pydock.utils.errors import ArchiveError, Conflict, InvalidArgument, NotFound

log = logging.getLogger(__package__)

_PIPE_CHUNK = 1 << 16

# Go's os.FileMode type and special bits (what Docker's path stat carries in `mode`)
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE, _GO_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_GO_SETUID, _GO_SETGID, _GO_CHARDEV, _GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


class ReadOnly(Conflict):
    """The container's rootfs (`--read-only`) or the volume a copy would write to is read-only (HTTP 403)."""


# ---- Docker's path spelling rules ------------------------------------------------------------------

def go_clean(path: str) -> str:
    """Go's path.Clean: `..` and `.` applied lexically, no trailing slash, "" -> "."."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def go_base(path: str) -> str:
    """Go's path.Base: the last element after trailing slashes are dropped; "/" for "/", "." for ""."""
    if not path:
        return "."
    stripped = path.rstrip("/")
    return posixpath.basename(stripped) if stripped else "/"


def specifies_current_dir(path: str) -> bool:
    return go_base(path) == "."


def has_trailing_sep(path: str) -> bool:
    return path.endswith("/")


def preserve_trailing(cleaned: str, original: str) -> str:
    """Docker's PreserveTrailingDotOrSeparator: `dir/.` and `dir/` keep meaning "contents" and "a directory"."""
    if specifies_current_dir(original) and not specifies_current_dir(cleaned):
        cleaned = cleaned.rstrip("/") + "/."
    if has_trailing_sep(original) and not has_trailing_sep(cleaned):
        cleaned += "/"
    return cleaned


def container_abs(path: str) -> str:
    """The container path as Docker considers it: absolute, cleaned, a trailing `/` or `/.` kept."""
    return preserve_trailing(go_clean("/" + path), path)


def split_dir_entry(path: str) -> tuple[str, str]:
    """Docker's SplitPathDirEntry: (parent, entry); `dir/.` gives (dir, ".")."""
    cleaned = go_clean(path)
    if specifies_current_dir(path):
        cleaned = cleaned.rstrip("/") + "/."
    return posixpath.dirname(cleaned) or ".", go_base(cleaned)


def asserts_directory(path: str) -> bool:
    return has_trailing_sep(path) or specifies_current_dir(path)


# ---- the stat Docker sends in X-Docker-Container-Path-Stat ----------------------------------------

def go_mode(mode: int) -> int:
    """An st_mode as Go's os.FileMode (permission bits plus Go's own type and special bits)."""
    out = mode & 0o777
    for test, bit in ((stat.S_ISDIR, _GO_DIR), (stat.S_ISLNK, _GO_SYMLINK), (stat.S_ISBLK, _GO_DEVICE),
                      (stat.S_ISCHR, _GO_DEVICE | _GO_CHARDEV), (stat.S_ISFIFO, _GO_PIPE),
                      (stat.S_ISSOCK, _GO_SOCKET)):
        if test(mode):
            out |= bit
    for unix, bit in ((stat.S_ISUID, _GO_SETUID), (stat.S_ISGID, _GO_SETGID), (stat.S_ISVTX, _GO_STICKY)):
        if mode & unix:
            out |= bit
    return out


def go_time(ns: int) -> str:
    """RFC 3339 with Go's trimmed nanoseconds (time.Time's JSON), in UTC."""
    sec, frac = divmod(ns, 1_000_000_000)
    text = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{text}.{digits}Z" if digits else f"{text}Z"


@dataclass(frozen=True)
class PathStat:
    """What Docker reports about a container path: its name as asked, lstat facts, and for a symlink
    its target fully resolved inside the container."""

    name: str
    size: int
    mode: int  # st_mode
    mtime_ns: int
    link_target: str = ""

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "mode": go_mode(self.mode), "mtime": go_time(self.mtime_ns),
                "linkTarget": self.link_target}


# ---- a container's files -----------------------------------------------------------------------------

@dataclass
class Source:
    """An entry to archive: (directory fd, name in it or "."), the name its top entry gets, its stat."""

    dir_fd: int
    entry: str
    arcname: str
    stat: PathStat
    grafts: dict[str, Graft] = field(default_factory=dict)  # the container's mounts below it

    def write(self, out: BinaryIO) -> None:
        """The entry as a tar stream (its top entry named `arcname`, the rest below it, mounts included)."""
        write_entry(self.dir_fd, self.entry, self.arcname, out, self.grafts)


@dataclass(frozen=True)
class Mount:
    """Something mounted over the container's rootfs: its canonical container path, the host path of what
    is mounted there (None: nothing the host can reach: a tmpfs, a volume whose source is gone), whether a
    copy may write to it."""

    dest: str
    source: str | None
    writable: bool
    is_dir: bool


@dataclass
class ContainerFiles:
    """A container's rootfs opened for copying (see `opened`): paths resolved as the container sees them,
    its volumes and binds included."""

    container: Container
    name: str  # as the user gave it: Docker's messages name it so
    root_fd: int
    mounts: list[Mount] = field(default_factory=list)
    mount_fds: dict[str, int | None] = field(default_factory=dict)  # directory mounts: dest -> source fd
    on_event: Callable[[str], None] | None = None

    # -- paths
    def _missing(self, path: str) -> NotFound:
        return NotFound(f"Could not find the file {path} in container {self.name}")

    def _unreachable(self, asked: str, dest: str) -> InvalidArgument:
        return InvalidArgument(f"cannot copy {asked}: it is on {dest}, a mount of container {self.name} that "
                               "pydock cannot reach from the host (a tmpfs, or a volume whose source is gone)")

    def _mount_of(self, canonical: str) -> Mount | None:
        """The mount `canonical` is on (the deepest), None for the rootfs."""
        best = None
        for m in self.mounts:
            if canonical == m.dest or canonical.startswith(m.dest.rstrip("/") + "/"):
                if best is None or len(m.dest) > len(best.dest):
                    best = m
        return best

    def _resolve(self, path: str, asked: str, follow: bool = True) -> tuple[int, str]:
        """(O_PATH fd, canonical path) of container path `path`, through its mounts as the container sees it."""
        try:
            return safepath.open_in_mounts(self.root_fd, path, self.mount_fds, follow=follow)
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing(asked) from None
        except OSError as err:
            if err.errno == errno.EXDEV:
                raise self._unreachable(asked, str(err.filename)) from None
            raise InvalidArgument(f"cannot copy {asked} of container {self.name}: {err.strerror or err}") from None

    def _open_dir(self, path: str, asked: str, not_dir: str = "") -> tuple[int, str]:
        """_resolve for a directory; a non-directory is missing unless `not_dir` says what else it is."""
        fd, canonical = self._resolve(path, asked)
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            raise InvalidArgument(not_dir) if not_dir else self._missing(asked)
        return fd, canonical

    def _path_stat(self, name: str, st: os.stat_result, abs_path: str) -> PathStat:
        target = ""
        if stat.S_ISLNK(st.st_mode):
            try:
                fd, target = self._resolve(abs_path, abs_path)
                os.close(fd)
            except (NotFound, InvalidArgument):  # dangling, a loop, onto a tmpfs: where it points, spelled out
                target = safepath.lookup_in_root(self.root_fd, abs_path)
        return PathStat(name, st.st_size, st.st_mode, st.st_mtime_ns, target)

    def _mount_point(self, mount: Mount, asked: str) -> tuple[int, str]:
        """(directory fd, entry) of what is mounted at `mount.dest`, to read it as the container would."""
        if mount.source is None:
            raise self._unreachable(asked, mount.dest)
        if mount.is_dir:
            fd = self.mount_fds[mount.dest]
            assert fd is not None
            return os.dup(fd), "."
        directory, entry = os.path.split(mount.source)
        try:
            return os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), entry
        except OSError:
            raise self._unreachable(asked, mount.dest) from None

    def _grafts(self, canonical: str, fds: ExitStack) -> dict[str, Graft]:
        """The mounts below directory `canonical`, by path relative to it, to archive in place of the rootfs's
        mount points (a mount the host cannot reach keeps the rootfs's own directory)."""
        out: dict[str, Graft] = {}
        prefix = canonical.rstrip("/") + "/"
        for m in self.mounts:
            if not m.dest.startswith(prefix) or m.source is None:
                continue
            try:
                fd, entry = self._mount_point(m, m.dest)
            except InvalidArgument:
                continue  # gone since it was looked at: the rootfs's mount point is archived
            fds.callback(os.close, fd)
            out[m.dest[len(prefix):]] = (fd, entry)
        return out

    @contextmanager
    def source(self, path: str) -> Iterator[Source]:
        """The container path to archive (Docker's ResolvePath: the parent resolved, the last element
        as it is unless written `x/` or `x/.`); its fds live for the block."""
        abs_path = container_abs(path)
        parent, base = abs_path.rsplit("/", 1)
        with ExitStack() as fds:
            dir_fd, canonical = self._open_dir(parent or "/", path)
            fds.callback(os.close, dir_fd)
            entry = "." if base in ("", ".") else base
            if entry != ".":
                canonical = posixpath.join(canonical, entry)
                mount = self._mount_of(canonical)
                if mount is not None and mount.dest == canonical:  # the entry is a mount point
                    dir_fd, entry = self._mount_point(mount, path)
                    fds.callback(os.close, dir_fd)
            try:
                st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise self._missing(path) from None
            name = go_base(abs_path)
            grafts = self._grafts(canonical, fds) if stat.S_ISDIR(st.st_mode) else {}
            yield Source(dir_fd, entry, name, self._path_stat(name, st, abs_path), grafts)

    def stat(self, path: str) -> PathStat:
        """Docker's StatPath of a container path (HEAD /archive, `cp` deciding what goes where)."""
        with self.source(path) as src:
            return src.stat

    def archive(self, path: str, out: BinaryIO) -> PathStat:
        """Write `path` as a tar to `out`, its top entry named as Docker names it (`cp CONTAINER:SRC -`)."""
        with self.source(path) as src:
            src.write(out)
        self.record("archive-path")
        return src.stat

    def extract(self, path: str, stream: BinaryIO, *, copy_uid_gid: bool = False,
                no_overwrite_dir_non_dir: bool = False) -> None:
        """Extract tar `stream` into container directory `path` (its last element followed too, as Docker
        does; on a volume, into the volume): every entry stays below it and on the same mount; owned by root
        unless `copy_uid_gid` keeps the tar's owners."""
        fd, base = self._open_dir(container_abs(path), path, f"extraction point is not a directory: {path}")
        try:
            mount = self._mount_of(base)
            if mount is None and self.container.hostconfig.get("ReadonlyRootfs"):
                raise ReadOnly(f"container rootfs is marked read-only: cannot copy into {self.name}:{path}")
            if mount is not None and not mount.writable:
                raise ReadOnly(f"mounted volume is marked read-only: cannot copy into {self.name}:{path}")

            def check(parts: tuple[str, ...]) -> None:
                other = self._mount_of(posixpath.join(base, *parts))
                if other is not mount:
                    shown = posixpath.join(container_abs(path), *parts)
                    where = other.dest if other is not None else mount.dest if mount is not None else "/"
                    raise InvalidArgument(f"cannot copy {shown} into container {self.name}: it crosses the mount "
                                          f"at {where} (copy into the mount's own path)")

            options = CopyOptions(owner=None if copy_uid_gid else (0, 0),
                                  no_overwrite_dir_non_dir=no_overwrite_dir_non_dir, check=check)
            apply_layer(Path(f"/proc/self/fd/{fd}"), stream, copy=options)
        finally:
            os.close(fd)
        self.record("extract-to-dir")

    def record(self, action: str) -> None:
        """Docker's event for a copy (`archive-path`, `extract-to-dir`), through the Runtime's journal."""
        if self.on_event is not None:
            self.on_event(action)


def _mounts(root_fd: int, c: Container) -> list[Mount]:
    """What the container has mounted over its rootfs, at canonical container paths: pydock's own files
    (once written), its volumes and binds, its tmpfs mounts (unreachable)."""
    own = (("/etc/hostname", c.hostname_path), ("/etc/hosts", c.hosts_path),
           ("/etc/resolv.conf", c.resolv_conf_path), ("/.dockerenv", c.env_path))
    wanted: list[tuple[str, str | None, bool]] = [(dest, str(src), False) for dest, src in own if src.exists()]
    wanted += [(dest, src if os.path.exists(src) else None, bool(c.volumes_rw.get(dest, True)))
               for dest, src in c.volumes.items()]
    wanted += [(dest, None, False) for dest in c.hostconfig.get("Tmpfs") or {}]
    out = []
    for dest, source, writable in wanted:
        try:
            canonical = safepath.lookup_in_root(root_fd, dest)
        except OSError as err:  # a file where a directory was expected: nothing can be mounted there
            log.debug("mount point %s of %s not resolvable (%s); not a mount", dest, c.short_id, err)
            continue
        out.append(Mount(canonical, source, writable, source is None or os.path.isdir(source)))
    return out


@contextmanager
def opened(driver: Driver, c: Container, name: str,
           on_event: Callable[[str], None] | None = None) -> Iterator[ContainerFiles]:
    """The container's rootfs for the block: mounted through the driver (`get`, and `put` after the block
    on every path), opened as a root fd everything below is resolved against; its directory mounts'
    sources opened too (a volume removed meanwhile is a missing path)."""
    with driver.mounted(c.id) as rootfs, ExitStack() as fds:
        root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        fds.callback(os.close, root_fd)
        mounts = _mounts(root_fd, c)
        mount_fds: dict[str, int | None] = {}
        for m in mounts:
            if m.source is None:
                mount_fds[m.dest] = None
            elif m.is_dir:
                try:
                    fd = os.open(m.source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError as err:  # removed since it was looked at: unreachable, as if gone before
                    log.debug("volume source %s of %s: %s", m.source, c.short_id, err)
                    mount_fds[m.dest] = None
                    continue
                fds.callback(os.close, fd)
                mount_fds[m.dest] = fd
        yield ContainerFiles(c, name, root_fd, mounts, mount_fds, on_event)


# ---- the host side of `pydock cp` ------------------------------------------------------------------

@dataclass(frozen=True)
class Destination:
    """Where a copy goes (Docker's CopyInfo of the destination): the path, and whether it exists and is a
    directory."""

    path: str
    exists: bool = False
    is_dir: bool = False


def prepare(src_is_dir: bool, src_base: str, dst: Destination) -> tuple[str, str]:
    """Docker's PrepareArchiveCopy: (directory to extract into, name of the archive's top entry)."""
    dst_dir, dst_base = split_dir_entry(dst.path)
    if dst.exists and dst.is_dir:
        return dst.path, src_base
    if dst.exists and src_is_dir:
        raise InvalidArgument(f"cannot copy a directory onto {dst.path}: it is not a directory")
    if not dst.exists and not src_is_dir and asserts_directory(dst.path):
        raise InvalidArgument(f"no such directory: {dst.path}")
    return dst_dir, dst_base


def host_destination(path: str) -> Destination:
    """Docker's CopyInfoDestinationPath on the host: a symlink is followed (up to 10 times); a missing
    destination is fine when its parent is a directory."""
    original = path
    for _ in range(11):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            parent, _base = split_dir_entry(path)
            try:
                pst = os.stat(parent)
            except OSError as err:
                raise InvalidArgument(f"cannot copy to {original}: stat {parent}: "
                                      f"{(err.strerror or str(err)).lower()}") from None
            if not stat.S_ISDIR(pst.st_mode):
                raise InvalidArgument(f"cannot copy to {original}: {parent} is not a directory")
            return Destination(path)
        if not stat.S_ISLNK(st.st_mode):
            return Destination(path, True, stat.S_ISDIR(st.st_mode))
        target = os.readlink(path)
        path = target if target.startswith("/") else posixpath.join(split_dir_entry(path)[0], target)
    raise InvalidArgument(f"cannot copy to {original}: too many symlinks")


@dataclass(frozen=True)
class HostSource:
    """A host entry to copy (Docker's CopyInfoSourcePath): its directory, its name there ("." for the
    directory itself), whether it is a directory, and the name the copy takes if not its own."""

    directory: str
    entry: str
    is_dir: bool
    rebase: str | None = None


def host_source(path: str, follow_link: bool) -> HostSource:
    """The last element is archived as it is (a symlink as a symlink) unless `follow_link` or a trailing
    `/` asks for what it points to; the copy then keeps the name given."""
    resolved = path
    if follow_link or has_trailing_sep(path):
        resolved = os.path.realpath(path)
        if specifies_current_dir(path):
            resolved += "/."
    directory, entry = split_dir_entry(resolved)
    try:
        st = os.stat(directory) if entry == "." else os.lstat(os.path.join(directory, entry))
        if has_trailing_sep(path):
            os.stat(path)  # ENOTDIR for `file/`
    except OSError as err:
        raise NotFound(f"lstat {path}: {(err.strerror or str(err)).lower()}") from None
    rebase = go_base(path) if go_base(path) != go_base(resolved) else None
    return HostSource(directory, entry, stat.S_ISDIR(st.st_mode), rebase)


def pipe_through(produce: Callable[[BinaryIO], None], consume: Callable[[BinaryIO], None]) -> None:
    """Run `produce` (writing a tar) in a thread feeding `consume` (reading it) through a pipe; the first
    real error of either is raised, the other side is ended (a broken pipe after a consumer's failure is
    no error of its own)."""
    rfd, wfd = os.pipe()
    reader = os.fdopen(rfd, "rb", buffering=_PIPE_CHUNK)
    writer = os.fdopen(wfd, "wb", buffering=_PIPE_CHUNK)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            produce(writer)
            writer.flush()
        except BrokenPipeError:
            log.debug("cp: the reading side stopped; the archive is not written further")
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            failure.append(err)
        finally:
            try:
                writer.close()
            except BrokenPipeError:
                log.debug("cp: the reading side stopped before the archive was flushed")

    thread = threading.Thread(target=run, name="cp-archive", daemon=True)
    thread.start()
    try:
        consume(reader)
    except BaseException:
        first = list(failure)  # a producer that failed already ended the stream: its error is the cause
        reader.close()  # the producer's next write fails (EPIPE): it ends
        thread.join()
        if first:
            raise first[0] from None
        if failure:
            log.debug("cp: the archive's writer stopped after the reader failed: %s", failure[0])
        raise
    reader.close()
    thread.join()
    if failure:
        raise failure[0]


def copy_out(files: ContainerFiles, src: str, dst: str, *, follow_link: bool = False, archive: bool = False) -> None:
    """`pydock cp CONTAINER:SRC DST`: files on the host get the caller's owner unless `archive`."""
    arcname = None
    if follow_link:
        st = files.stat(src)
        if st.is_symlink:
            target = st.link_target
            if specifies_current_dir(src):
                target = target.rstrip("/") + "/."
            elif has_trailing_sep(src):
                target += "/"
            src, arcname = target, go_base(src) if go_base(src) != go_base(target) else None
    dst = preserve_trailing(os.path.abspath(dst), dst)
    target_info = host_destination(dst)
    with files.source(src) as source:
        top = arcname or source.arcname
        dst_dir, top = prepare(source.stat.is_dir, top, target_info)
        source.arcname = top
        owner = None if archive else (os.getuid(), os.getgid())
        options = CopyOptions(owner=owner, no_overwrite_dir_non_dir=True)
        try:
            dir_path = Path(dst_dir)
            pipe_through(source.write, lambda stream: apply_layer(dir_path, stream, copy=options))
        except ArchiveError as err:
            raise ArchiveError(f"cannot copy {src} to {dst}: {err}") from None
    files.record("archive-path")


def container_destination(files: ContainerFiles, dst: str) -> Destination:
    """What the docker CLI learns about a container destination by stat-ing it: a symlink is followed
    once (to its fully resolved target); it must be a directory or a regular file if it exists."""
    try:
        st = files.stat(dst)
    except NotFound:
        return Destination(dst)
    path = dst
    if st.is_symlink:
        path = st.link_target
        try:
            st = files.stat(path)
        except NotFound:
            return Destination(path)
    if not (st.is_dir or stat.S_ISREG(st.mode)):
        raise InvalidArgument(f'destination "{files.name}:{dst}" must be a directory or a regular file')
    return Destination(path, True, st.is_dir)


def copy_in(files: ContainerFiles, src: str, dst: str, *, follow_link: bool = False, archive: bool = False,
            stdin: BinaryIO | None = None) -> None:
    """`pydock cp SRC CONTAINER:DST` (SRC `-`: a tar on `stdin` into an existing directory): owned by root
    in the container unless `archive` keeps the source's owners."""
    target_info = container_destination(files, dst)
    if src == "-":
        if not target_info.is_dir:
            raise InvalidArgument(f'destination "{files.name}:{dst}" must be a directory')
        assert stdin is not None
        files.extract(target_info.path, stdin, copy_uid_gid=archive, no_overwrite_dir_non_dir=True)
        return
    source = host_source(src, follow_link)
    dst_dir, top = prepare(source.is_dir, source.rebase or source.entry, target_info)
    try:
        dfd = os.open(source.directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise NotFound(f"lstat {src}: {(err.strerror or str(err)).lower()}") from None
    try:
        pipe_through(lambda out: write_entry(dfd, source.entry, top, out),
                     lambda stream: files.extract(dst_dir, stream, copy_uid_gid=archive,
                                                  no_overwrite_dir_non_dir=True))
    except ArchiveError as err:
        raise ArchiveError(f"cannot copy {src} to {files.name}:{dst}: {err}") from None
    finally:
        os.close(dfd)

