"""Paths inside a container rootfs, resolved on the host as the container would see them: the command
(PATH search, its interpreter), the working directory and the bind-mount targets.

Every lookup goes through utils/safepath.py: symlinks are followed inside the root (an absolute link
target is relative to the rootfs, `..` stops at the root), so a hostile image can never make pydock
look at, create or bind over a host path.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import stat
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from pydock.runtime.lxcconf import Bind
from pydock.utils.errors import InvalidArgument, LaunchError
from pydock.utils.safepath import lookup_in_root, make_dirs_in_root, make_file_in_root, open_in_root, reopen

log = logging.getLogger(__package__)


class CommandNotFound(LaunchError):
    """The command does not exist in the container (exit status 127, like a shell)."""

    exit_code = 127


class CommandNotExecutable(LaunchError):
    """The command exists but cannot be executed (exit status 126, like a shell)."""

    exit_code = 126


def resolve_in_root(root: Path, path: str) -> Path:
    """The host path of container path `path` under `root`, symlinks resolved within the root (a missing
    tail kept as written). ValueError for a symlink loop or a non-directory in the middle."""
    try:
        canonical = lookup_in_root(root, path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ValueError(f"{path}: too many levels of symbolic links") from None
        if err.errno == errno.ENOTDIR:
            raise ValueError(f"{path}: not a directory") from None
        raise
    return Path(root).joinpath(canonical.lstrip("/"))


def _executable_by(st: os.stat_result, uid: int, gids: tuple[int, ...]) -> bool:
    if uid == 0:
        return bool(st.st_mode & 0o111)
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid in gids:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def look_path(root: Path, argv0: str, env_path: str, uid: int = 0, gids: tuple[int, ...] = (0,)) -> str:
    """The container path the kernel would execute for `argv0` (PATH search for bare names).

    CommandNotFound (127) when nothing matches; CommandNotExecutable (126) when only
    non-executable files or directories match.
    """
    if not argv0:
        raise CommandNotFound("No command specified")
    if "/" in argv0:
        candidates = [argv0 if argv0.startswith("/") else "/" + argv0]
    else:
        candidates = [f"{d.rstrip('/') or ''}/{argv0}" if d.startswith("/") else f"/{d}/{argv0}"
                      for d in (env_path or "").split(":") if d]
    denied = None
    for cand in candidates:
        try:
            fd = open_in_root(root, cand, os.O_PATH)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and _executable_by(st, uid, gids):
                check_interpreter(root, fd, cand)
                return cand
        finally:
            os.close(fd)
        denied = denied or cand
    if denied is not None:
        raise CommandNotExecutable(f"{denied}: permission denied (not an executable file)")
    raise CommandNotFound(f"{argv0}: executable file not found in $PATH" if "/" not in argv0
                          else f"{argv0}: no such file or directory")


def _elf_interpreter(head: bytes, f: BinaryIO) -> str | None:
    """PT_INTERP of a 64/32-bit little/big-endian ELF file (the dynamic loader it needs), or None."""
    if len(head) < 52:
        return None
    is64 = head[4] == 2
    end = "<" if head[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack_from(end + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(end + "HH", head, 54)
    else:
        phoff, = struct.unpack_from(end + "I", head, 28)
        phentsize, phnum = struct.unpack_from(end + "HH", head, 42)
    if not phnum or phentsize < (56 if is64 else 32) or phnum > 256:
        return None
    f.seek(phoff)
    table = f.read(phentsize * phnum)
    for i in range(phnum):
        entry = table[i * phentsize:(i + 1) * phentsize]
        if len(entry) < phentsize:
            break
        p_type, = struct.unpack_from(end + "I", entry, 0)
        if p_type != 3:  # PT_INTERP
            continue
        if is64:
            offset, = struct.unpack_from(end + "Q", entry, 8)
            size, = struct.unpack_from(end + "Q", entry, 32)
        else:
            offset, = struct.unpack_from(end + "I", entry, 4)
            size, = struct.unpack_from(end + "I", entry, 16)
        f.seek(offset)
        return f.read(min(size, 4096)).split(b"\0", 1)[0].decode(errors="replace")
    return None


def check_interpreter(root: Path, fd: int, path: str) -> None:
    """Refuse before launch what the kernel would refuse with ENOENT at exec (which lxc reports as an
    ambiguous 255): a `#!` interpreter or an ELF loader missing from the rootfs -> 127. `fd` is an O_PATH
    fd of the regular file `path`."""
    try:
        with os.fdopen(reopen(fd, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY), "rb") as f:
            head = f.read(128)
            if head.startswith(b"#!"):
                line = head[2:].split(b"\n", 1)[0].strip()
                interp = line.split()[0].decode(errors="replace") if line else ""
            elif head.startswith(b"\x7fELF"):
                interp = _elf_interpreter(head, f) or ""
            else:
                return
    except OSError as err:  # unreadable: exec decides
        log.debug("%s: its header could not be read (%s); the kernel decides at exec", path, err)
        return
    if not interp or not interp.startswith("/"):
        return
    try:
        ifd = open_in_root(root, interp, os.O_PATH)
    except OSError:
        ok = False
    else:
        try:
            ok = stat.S_ISREG(os.fstat(ifd).st_mode)
        finally:
            os.close(ifd)
    if not ok:
        raise CommandNotFound(f"{path}: no such file or directory (its interpreter {interp} is missing)")


def container_path(path: str, what: str) -> str:
    """Validate an absolute, normalized path inside the container."""
    if not path.startswith("/"):
        raise InvalidArgument(f"The {what} is invalid. It needs to be an absolute path.")
    return os.path.normpath(path)


def in_proc(path: str) -> bool:
    """Whether a (normalized, absolute) container path is /proc or below it: never a working directory
    or a mount target (`/proc/self/fd/N` reaches whatever fd the runtime leaked, CVE-2024-21626)."""
    return path == "/proc" or path.startswith("/proc/")


def check_workdir(path: str) -> str:
    """A working directory as given by the user or the image: absolute, normalized, not in /proc."""
    workdir = container_path(path, "working directory")
    if in_proc(workdir):
        raise InvalidArgument(f"The working directory {path} is invalid: it is inside /proc")
    return workdir


def mount_point_in_root(root: Path, path: str) -> str:
    """mkdir -p a mount point (`--tmpfs`) inside the rootfs, symlinks resolved in the root; its canonical
    container path, never under /proc."""
    try:
        found = make_dirs_in_root(root, path, 0o755)
    except OSError as err:
        raise LaunchError(f"Cannot mount at {path}: {err.strerror or err}") from None
    if in_proc(found.path):
        raise LaunchError(f"Cannot mount at {path}: it leads into /proc ({found.path})")
    return found.path


def ensure_dir_in_root(root: Path, path: str, uid: int = 0, gid: int = 0) -> str:
    """mkdir -p the working directory inside the rootfs as Docker does for -w (symlinks resolved in the
    root, the directories made owned by uid:gid); returns its canonical container path, the one lxc
    should chdir to (no symlink left for anything to follow)."""
    try:
        found = make_dirs_in_root(root, check_workdir(path), 0o755, uid, gid)
    except InvalidArgument as err:
        raise LaunchError(str(err)) from None
    except OSError as err:
        raise LaunchError(f"Cannot use {path} as the working directory: {err.strerror or err}") from None
    if in_proc(found.path):
        raise LaunchError(f"Cannot use {path} as the working directory: it leads into /proc ({found.path})")
    return found.path


def prepare_binds(root: Path, binds: Sequence[Bind]) -> tuple[Bind, ...]:
    """The binds with their targets made inside the rootfs and rewritten to canonical container paths.

    A target below an earlier directory bind is made inside that bind's source (what lxc will find
    there once it is mounted). lxc then finds every target in place with no symlink on the way, so it
    neither creates anything (it would follow an image's symlinks out of the rootfs) nor refuses.
    """
    done: list[tuple[str, Bind]] = []  # (canonical target, bind) of the directory binds so far
    out = []
    for b in binds:
        target = container_path(b.target, f"mount target {b.target!r}")
        if in_proc(target):
            raise LaunchError(f"Cannot mount {b.source} on {b.target}: the target is inside /proc")
        try:
            canonical = _prepare_target(root, target, b, done)
        except OSError as err:
            raise LaunchError(f"Cannot mount {b.source} on {b.target}: {err.strerror or err}") from None
        if in_proc(canonical):
            raise LaunchError(f"Cannot mount {b.source} on {b.target}: it leads into /proc ({canonical})")
        if not b.is_file:
            done.append((canonical, b))
        out.append(dataclasses.replace(b, target=canonical))
    return tuple(out)


def _prepare_target(root: Path, target: str, b: Bind, done: list[tuple[str, Bind]]) -> str:
    """Make the mount point of `b` and return its canonical path (see prepare_binds)."""
    where = lookup_in_root(root, target)
    base, inner, rest = "", root, target
    for canonical, outer in reversed(done):  # the most recent enclosing bind is what lxc will see
        if where == canonical or where.startswith(canonical.rstrip("/") + "/"):
            base, inner, rest = canonical.rstrip("/"), outer.source, where[len(canonical):]
            break
    if b.is_file:
        found = make_file_in_root(inner, rest)
        if found.is_dir:
            raise OSError(errno.EISDIR, f"{target} is a directory in the image, the source a file")
    else:
        found = make_dirs_in_root(inner, rest)
    return (base + found.path) if found.path != "/" else (base or "/")
