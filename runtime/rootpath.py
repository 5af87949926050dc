"""Paths inside a container rootfs, resolved on the host as the container would see them.

Symlinks are followed inside the root (an absolute link target is relative to the rootfs, `..` stops
at the root), so a hostile image can never make pydock look at, create or bind over a host path.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

from pydock.utils.errors import InvalidArgument, LaunchError

MAX_SYMLINKS = 40


class CommandNotFound(LaunchError):
    """The command does not exist in the container (exit status 127, like a shell)."""

    exit_code = 127


class CommandNotExecutable(LaunchError):
    """The command exists but cannot be executed (exit status 126, like a shell)."""

    exit_code = 126


def resolve_in_root(root: Path, path: str, *, follow_last: bool = True) -> Path:
    """The host path of container path `path` under `root`, symlinks resolved within the root."""
    root = Path(root)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if follow_last or parts:
            try:
                st = os.lstat(candidate)
            except FileNotFoundError:
                resolved.append(part)
                continue
            except NotADirectoryError:
                raise ValueError(f"{path}: not a directory") from None
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise ValueError(f"{path}: too many levels of symbolic links")
                target = os.readlink(candidate)
                if target.startswith("/"):
                    resolved = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
        resolved.append(part)
    return root.joinpath(*resolved)


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
            host = resolve_in_root(root, cand)
            st = os.stat(host)
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(st.st_mode) and _executable_by(st, uid, gids):
            check_interpreter(root, host, cand)
            return cand
        denied = denied or cand
    if denied is not None:
        raise CommandNotExecutable(f"{denied}: permission denied (not an executable file)")
    raise CommandNotFound(f"{argv0}: executable file not found in $PATH" if "/" not in argv0
                          else f"{argv0}: no such file or directory")


def _elf_interpreter(head: bytes, f) -> str | None:
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


def check_interpreter(root: Path, host: Path, path: str) -> None:
    """Refuse before launch what the kernel would refuse with ENOENT at exec (which lxc reports as an
    ambiguous 255): a `#!` interpreter or an ELF loader missing from the rootfs -> 127."""
    try:
        with open(host, "rb") as f:
            head = f.read(128)
            if head.startswith(b"#!"):
                line = head[2:].split(b"\n", 1)[0].strip()
                interp = line.split()[0].decode(errors="replace") if line else ""
            elif head.startswith(b"\x7fELF"):
                interp = _elf_interpreter(head, f) or ""
            else:
                return
    except OSError:
        return
    if not interp or not interp.startswith("/"):
        return
    try:
        target = resolve_in_root(root, interp)
        ok = target.is_file()
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise CommandNotFound(f"{path}: no such file or directory (its interpreter {interp} is missing)")


def container_path(path: str, what: str) -> str:
    """Validate an absolute, normalized path inside the container."""
    if not path.startswith("/"):
        raise InvalidArgument(f"The {what} is invalid. It needs to be an absolute path.")
    return os.path.normpath(path)


def ensure_dir_in_root(root: Path, path: str, uid: int = 0, gid: int = 0) -> Path:
    """mkdir -p a container path inside the rootfs (symlinks resolved in the root), as Docker does for -w."""
    host = resolve_in_root(root, path)
    if host.exists() and not host.is_dir():
        raise LaunchError(f"Cannot use {path} as the working directory: not a directory")
    if not host.exists():
        host.mkdir(parents=True, mode=0o755)
        if uid or gid:
            os.chown(host, uid, gid)
    return host


def ensure_file_in_root(root: Path, path: str) -> Path:
    """Create an empty file (and parents) at a container path, as a bind-mount target."""
    host = resolve_in_root(root, path)
    if not host.exists():
        host.parent.mkdir(parents=True, exist_ok=True)
        host.touch()
    return host
