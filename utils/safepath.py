"""Paths inside a tree pydock does not trust (a container's rootfs, a layer being archived), resolved so
that no symlink, `..` or /proc magic link ever leads out of it: the one resolver every caller uses.

Two rules:
- **in root** (the container's view): symlinks are followed, but an absolute target or a `..` is taken
  relative to the root, as chroot would (openat2 `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`);
- **beneath** (a tree walked as files: diff, archive): no symlink in any component at all and never
  above the start (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`); a symlink is an entry, never a way.

openat2(2) does the lookup where the kernel has it (5.6+). Elsewhere, or with PYDOCK_NO_OPENAT2=1, a
component-by-component walk does: each step is one `openat(O_PATH|O_NOFOLLOW)` relative to a directory
fd we hold, symlinks are read and re-resolved by us, and `..` pops our own stack of fds, so a concurrent
rename cannot walk us out. Creating (mkdir -p, touch) always walks: every missing component is made with
mkdirat/openat(O_EXCL|O_NOFOLLOW) inside the directory fd it belongs to.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Union

from pydock.utils import openat2 as _o2

log = logging.getLogger(__package__)

#: set to 1 to resolve with the walk even where the kernel has openat2 (old-kernel behaviour, tests)
NO_OPENAT2_ENV = "PYDOCK_NO_OPENAT2"
MAX_SYMLINKS = 40  # the kernel's MAXSYMLINKS
_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_IN_ROOT = _o2.RESOLVE_IN_ROOT | _o2.RESOLVE_NO_MAGICLINKS
_BENEATH = _o2.RESOLVE_BENEATH | _o2.RESOLVE_NO_SYMLINKS | _o2.RESOLVE_NO_MAGICLINKS
_EAGAIN_TRIES = 8  # openat2 says EAGAIN when a rename raced an IN_ROOT/BENEATH lookup
_MAKE_TRIES = 64  # creations lost to a concurrent remover before we give up (EAGAIN)

Root = Union[int, str, os.PathLike]


@dataclass(frozen=True)
class Found:
    """A resolved path: its canonical container path (no symlink, no `..`) and its type bits."""

    path: str
    mode: int

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


@functools.cache
def kernel_resolution() -> bool:
    """Whether lookups go through openat2 (else the walk): the kernel has it and PYDOCK_NO_OPENAT2 is not 1.
    Decided once per process (`kernel_resolution.cache_clear()` after changing the variable)."""
    return os.environ.get(NO_OPENAT2_ENV) != "1" and _o2.supported()


def kind_of(mode: int) -> str:
    """"a fifo", "a directory", ... for messages about an entry of the wrong type."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file"),
                       (stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "an unknown file type"


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


@contextmanager
def _root_fd(root: Root) -> Iterator[int]:
    """An fd for `root` (pydock's own path, so following it is fine); a given fd is borrowed."""
    if isinstance(root, int):
        yield root
        return
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _kernel(dir_fd: int, rel: str, flags: int, resolve: int) -> int | None:
    """openat2, retried on EAGAIN; None when the kernel path is off or kept racing (then the walk decides)."""
    if not kernel_resolution():
        return None
    for _ in range(_EAGAIN_TRIES):
        try:
            return _o2.openat2(dir_fd, rel, flags | os.O_CLOEXEC, 0, resolve)
        except OSError as err:
            if err.errno != errno.EAGAIN:
                raise
    return None


class _Walk:
    """One resolution below `root_fd`: the stack of directory fds from the root down (the root's not owned)."""

    def __init__(self, root_fd: int, beneath: bool, mounts: Mapping[str, int | None] | None = None) -> None:
        self.root_fd = root_fd
        self.beneath = beneath
        self.mounts = mounts or {}
        self.fds: list[int] = []
        self.names: list[str] = []
        self.links = 0
        self.makes = 0

    @property
    def cur(self) -> int:
        return self.fds[-1] if self.fds else self.root_fd

    def up(self) -> None:
        if not self.fds:
            if self.beneath:
                raise OSError(errno.EXDEV, "path escapes its directory", "..")
            return  # `..` of the root is the root, as in chroot
        os.close(self.fds.pop())
        self.names.pop()

    def close(self) -> None:
        """Close the fds (the names stay: `path` is still the answer)."""
        while self.fds:
            os.close(self.fds.pop())

    def to_root(self) -> None:
        self.close()
        self.names.clear()

    def _link(self, name: str, todo: list[str]) -> None:
        """Expand symlink `name` of the current directory onto `todo` (a stack: next component last)."""
        if self.beneath:
            raise OSError(errno.ELOOP, "path goes through a symlink", name)
        self.links += 1
        if self.links > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name)
        target = os.readlink(name, dir_fd=self.cur)
        if target.startswith("/"):  # absolute: relative to the root, never the host
            self.to_root()
        todo.extend(reversed(_split(target)))

    def _make(self, name: str, kind: str, mode: int, uid: int, gid: int) -> None:
        """Create missing `name` in the current directory (a lost race is fine: the caller looks again)."""
        self.makes += 1
        if self.makes > _MAKE_TRIES:
            raise OSError(errno.EAGAIN, "the path keeps changing while it is created", name)
        try:
            if kind == "dir":
                os.mkdir(name, 0o700, dir_fd=self.cur)
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.cur)
            else:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK
                             | os.O_CLOEXEC, 0o600, dir_fd=self.cur)
        except FileExistsError:  # made (or a link put there) meanwhile: the caller looks at it again
            log.debug("%s appeared while it was being created", name)
            return
        try:
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)  # exact, whatever the umask
        finally:
            os.close(fd)

    def run(self, path: str, *, follow: bool = True, create: str | None = None, mode: int = 0o755,
            file_mode: int = 0o644, uid: int = -1, gid: int = -1, lexical: bool = False) -> int | None:
        """Resolve `path`: an owned O_PATH fd of the target (self.names is its canonical path), or None
        with `lexical` when a component is missing (self.names then ends with the missing tail).
        `create` ("dir"/"file") makes what is missing: intermediate directories `mode` (owned uid:gid),
        the last component a directory or an empty `file_mode` file."""
        todo = list(reversed(_split(path)))
        while todo:
            part = todo.pop()
            if part == "..":
                self.up()
                continue
            last = not todo
            try:
                fd = os.open(part, _PATH, dir_fd=self.cur)
            except FileNotFoundError:
                if self.mounts and self._enter_missing_mount_point(part):
                    continue
                if create is None:
                    if lexical:
                        self._lexical_tail(part, todo)
                        return None
                    raise
                self._make(part, create if last else "dir", file_mode if last and create == "file" else mode,
                           uid, gid)
                todo.append(part)
                continue
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode) and (follow or not last):
                os.close(fd)
                self._link(part, todo)
                continue
            if stat.S_ISDIR(st.st_mode):
                self.fds.append(fd)
                self.names.append(part)
                if self.mounts:
                    self._enter_mount()
                continue
            if not last:
                os.close(fd)
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/".join([*self.names, part]))
            self.names.append(part)
            return fd
        return os.open(".", os.O_PATH | os.O_CLOEXEC, dir_fd=self.cur)

    def _mounted_at(self, path: str) -> int | None:
        """A new fd of what the caller says is mounted at canonical `path`, None if nothing is; OSError EXDEV
        for a mount it cannot reach."""
        if path not in self.mounts:
            return None
        source = self.mounts[path]
        if source is None:
            raise OSError(errno.EXDEV, "a mount pydock cannot reach from the host", path)
        return os.dup(source)

    def _enter_mount(self) -> None:
        """Continue in what is mounted at the directory just entered: the container's view, where the
        rootfs's own directory there is hidden."""
        fd = self._mounted_at(self.path)
        if fd is not None:
            os.close(self.fds[-1])
            self.fds[-1] = fd

    def _enter_missing_mount_point(self, part: str) -> bool:
        """A mount point the root does not have yet (a container never started) still leads to its mount."""
        fd = self._mounted_at("/" + "/".join([*self.names, part]))
        if fd is None:
            return False
        self.fds.append(fd)
        self.names.append(part)
        return True

    def _lexical_tail(self, part: str, todo: list[str]) -> None:
        """Missing `part`: the rest of the path can only be spelled out (`..` clamped at the root)."""
        self.close()
        self.names.append(part)
        for rest in reversed(todo):
            if rest == "..":
                if self.names:
                    self.names.pop()
            else:
                self.names.append(rest)

    @property
    def path(self) -> str:
        return "/" + "/".join(self.names)


def _reopen(fd: int, flags: int) -> int:
    """A new fd with `flags` on what O_PATH `fd` refers to, through /proc (no path lookup, no race)."""
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)


# ---- in root: the container's view ------------------------------------------------------------------

def open_in_root(root: Root, path: str, flags: int = os.O_PATH, *, follow: bool = True) -> int:
    """An fd for container path `path` below `root`, symlinks resolved inside the root.

    `flags` as for os.open (O_CLOEXEC is added); `follow=False` opens a trailing symlink itself (O_PATH)
    or fails with ELOOP. Opening a fifo or device for reading can block or have effects: for an entry of
    unknown type open O_PATH, check `os.fstat`, then `reopen` (read_in_root does exactly that).
    """
    with _root_fd(root) as rfd:
        rel = "/".join(_split(path)) or "."
        fd = _kernel(rfd, rel, flags | (0 if follow else os.O_NOFOLLOW), _IN_ROOT)
        if fd is not None:
            return fd
        walk = _Walk(rfd, beneath=False)
        try:
            target = walk.run(path, follow=follow)
        finally:
            walk.close()
        assert target is not None
        if flags & os.O_PATH:
            return target
        try:
            if stat.S_ISLNK(os.fstat(target).st_mode):
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            return _reopen(target, flags)
        finally:
            os.close(target)


def reopen(fd: int, flags: int) -> int:
    """Open what O_PATH `fd` refers to with `flags` (after its type was checked with fstat)."""
    return _reopen(fd, flags)


def open_in_mounts(root: Root, path: str, mounts: Mapping[str, int | None], *,
                   follow: bool = True) -> tuple[int, str]:
    """(O_PATH fd, canonical container path) of `path` resolved as open_in_root does, but through the
    container's directory mounts: entering the canonical path of a key of `mounts` continues in its directory
    fd (a volume's source), as the container sees it; `..` out of it and absolute symlinks lead back to the
    root. A key mapped to None is a mount not reachable from here: entering it is OSError EXDEV. Always the
    walk (openat2 knows nothing of these mounts)."""
    with _root_fd(root) as rfd:
        walk = _Walk(rfd, beneath=False, mounts=mounts)
        try:
            fd = walk.run(path, follow=follow)
        finally:
            walk.close()
        assert fd is not None
        return fd, walk.path


def lookup_in_root(root: Root, path: str) -> str:
    """The canonical container path `path` stands for: symlinks resolved inside the root, a missing tail
    kept as written (`..` in it applied lexically). Nothing is created; nothing outside is looked at."""
    with _root_fd(root) as rfd:
        walk = _Walk(rfd, beneath=False)
        try:
            fd = walk.run(path, lexical=True)
            if fd is not None:
                os.close(fd)
            return walk.path
        finally:
            walk.close()


def make_dirs_in_root(root: Root, path: str, mode: int = 0o755, uid: int = -1, gid: int = -1) -> Found:
    """`mkdir -p` of a container path inside the root (symlinks on the way resolved inside it); the
    directories made get `mode` and owner uid:gid (-1: unchanged). NotADirectoryError if something other
    than a directory is in the way."""
    with _root_fd(root) as rfd:
        walk = _Walk(rfd, beneath=False)
        try:
            fd = walk.run(path, create="dir", mode=mode, uid=uid, gid=gid)
            assert fd is not None
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, f"not a directory but {kind_of(st.st_mode)}", walk.path)
            return Found(walk.path, st.st_mode)
        finally:
            walk.close()


def make_file_in_root(root: Root, path: str, mode: int = 0o644, dir_mode: int = 0o755) -> Found:
    """Make an empty file at a container path if nothing is there (parents made `dir_mode`), as a mount
    point; whatever already exists there (a directory too) is left alone and reported in `Found.mode`."""
    with _root_fd(root) as rfd:
        walk = _Walk(rfd, beneath=False)
        try:
            fd = walk.run(path, create="file", mode=dir_mode, file_mode=mode)
            assert fd is not None
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            return Found(walk.path, st.st_mode)
        finally:
            walk.close()


def read_in_root(root: Root, path: str, limit: int) -> bytes:
    """The contents of regular file `path` inside the root, at most `limit` bytes.

    FileNotFoundError when missing; OSError EINVAL when it is not a regular file (a fifo would block, a
    device could be endless), EFBIG when larger than `limit`. The read never blocks (O_NONBLOCK).
    """
    fd = open_in_root(root, path, os.O_PATH)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"not a regular file but {kind_of(st.st_mode)}", path)
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
        rfd = _reopen(fd, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    finally:
        os.close(fd)
    try:
        if not stat.S_ISREG(os.fstat(rfd).st_mode):  # cannot change through an fd, but cheap to be sure
            raise OSError(errno.EINVAL, "not a regular file", path)
        chunks = []
        got = 0
        while got <= limit:
            chunk = os.read(rfd, min(1 << 16, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:  # grew since the fstat
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
        return b"".join(chunks)
    finally:
        os.close(rfd)


# ---- beneath: a tree walked as files -----------------------------------------------------------------

def open_beneath(dir_fd: int, rel: str, flags: int) -> int:
    """An fd for `rel` below `dir_fd` reached through real directories only: ELOOP if any component is a
    symlink (a trailing one is opened itself with O_PATH, else ELOOP), EXDEV if `..` climbs above."""
    flags |= os.O_NOFOLLOW
    fd = _kernel(dir_fd, rel.lstrip("/") or ".", flags, _BENEATH)  # the kernel takes `a//b`, `./a` as they are
    if fd is not None:
        return fd
    parts = _split(rel)
    walk = _Walk(dir_fd, beneath=True)
    try:
        for part in parts[:-1]:
            if part == "..":
                walk.up()
                continue
            try:
                nfd = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=walk.cur)
            except OSError as err:
                if err.errno in (errno.ENOTDIR, errno.ELOOP) and \
                        stat.S_ISLNK(os.stat(part, dir_fd=walk.cur, follow_symlinks=False).st_mode):
                    raise OSError(errno.ELOOP, "path goes through a symlink", part) from None
                raise
            walk.fds.append(nfd)
            walk.names.append(part)
        last = parts[-1] if parts else "."
        if last == "..":
            walk.up()
            last = "."
        return os.open(last, flags | os.O_CLOEXEC, dir_fd=walk.cur)
    finally:
        walk.close()


def lstat_beneath(dir_fd: int, rel: str) -> os.stat_result:
    """lstat of `rel` below `dir_fd`, through real directories only (see open_beneath)."""
    fd = open_beneath(dir_fd, rel, os.O_PATH)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)
