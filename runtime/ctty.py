"""The first instructions of a container's processes that lxc cannot give them: a working directory and
the user's supplementary groups for `exec`, and (`-t`) the terminal made the controlling one, as runc
does before its exec.

lxc-start puts the pty on the command's stdio but never makes it a controlling terminal (a shell
says "can't access tty; job control turned off" and ^C reaches nobody), and lxc-attach has neither a
working-directory option nor one for groups (it clears them). Only the process itself can do these, so
it first runs a static x86-64 program assembled here (no toolchain, no host binary):
`/dev/.ctty [@UID,GID,G1,G2...] DIR CMD ARGS...` sets the groups, gid and uid when given (an exec
attached as root: the switch happens here, groups first, as runc does), does chdir(DIR), setsid(),
ioctl(0, TIOCSCTTY) (both harmless where they do not apply) and execs CMD. pydock writes it to
`<root>/init/pydock-ctty` and lxc bind-mounts it read-only at /dev/.ctty in every container; after its
exec /proc/self/exe is the command, as without it.
"""

from __future__ import annotations

import logging
import os
import struct
from datetime import datetime
from pathlib import Path

from pydock.utils.errors import InvalidArgument
from pydock.utils.fileutil import atomic_write
from pydock.utils.paths import RootLayout

log = logging.getLogger(__package__)

CTTY_PATH = "/dev/.ctty"
#: the program takes at most 255 ids: a uid, a gid and the groups
MAX_GROUPS = 253
_BASE = 0x400000
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")

#: [with argv[1] = "@UID,GID,G1,G2...": setgroups(G...), setresgid(GID), setresuid(UID), then argv shifted by
#: one]; chdir(argv[1]) or exit 126; setsid(); ioctl(0, TIOCSCTTY, 0); execve(argv[2], &argv[2], envp);
#: exit_group(ENOENT ? 127 : 126)
_CODE = bytes.fromhex(
    "4c8b2c24"        # mov r13, [rsp] (argc)
    "4e8d74ec10"      # lea r14, [rsp+r13*8+16] (envp)
    "4c8d7c2408"      # lea r15, [rsp+8] (&argv[0]; moves on by one past the credentials)
    "498b7708"        # mov rsi, [r15+8] (argv[1])
    "803e40"          # cmp byte [rsi], '@'
    "757f"            # jne workdir
    "4881ec00040000"  # sub rsp, 1024 (room for 256 ids)
    "4889e3"          # mov rbx, rsp
    "31c9"            # xor ecx, ecx (ids parsed)
    "48ffc6"          # inc rsi (past '@')
    "31c0"            # next: xor eax, eax
    "0fb616"          # digit: movzx edx, byte [rsi]
    "83ea30"          # sub edx, '0'
    "83fa09"          # cmp edx, 9
    "770a"            # ja end (not a digit: ',' or the end)
    "6bc00a"          # imul eax, eax, 10
    "01d0"            # add eax, edx
    "48ffc6"          # inc rsi
    "ebeb"            # jmp digit
    "89048b"          # end: mov [rbx+rcx*4], eax
    "ffc1"            # inc ecx
    "81f900010000"    # cmp ecx, 256
    "0f8389000000"    # jae fail
    "803e00"          # cmp byte [rsi], 0
    "7405"            # je parsed
    "48ffc6"          # inc rsi (past ',')
    "ebce"            # jmp next
    "83f902"          # parsed: cmp ecx, 2 (a uid and a gid at least)
    "727a"            # jb fail
    "8d79fe"          # lea edi, [rcx-2] (how many groups)
    "488d7308"        # lea rsi, [rbx+8] (the groups)
    "b874000000"      # mov eax, 116 (setgroups)
    "0f05"            # syscall
    "85c0"            # test eax, eax
    "7568"            # jnz fail
    "8b7b04"          # mov edi, [rbx+4] (gid)
    "89fe"            # mov esi, edi
    "89fa"            # mov edx, edi
    "b877000000"      # mov eax, 119 (setresgid)
    "0f05"            # syscall
    "85c0"            # test eax, eax
    "7556"            # jnz fail
    "8b3b"            # mov edi, [rbx] (uid)
    "89fe"            # mov esi, edi
    "89fa"            # mov edx, edi
    "b875000000"      # mov eax, 117 (setresuid)
    "0f05"            # syscall
    "85c0"            # test eax, eax
    "7545"            # jnz fail
    "4983c708"        # add r15, 8 (argv shifted past the credentials)
    "498b7f08"        # workdir: mov rdi, [r15+8] (argv[1], the directory)
    "b850000000"      # mov eax, 80 (chdir)
    "0f05"            # syscall
    "85c0"            # test eax, eax
    "7532"            # jnz fail
    "b870000000"      # mov eax, 112 (setsid; fails harmlessly if lxc made us a session leader already)
    "0f05"            # syscall
    "31ff"            # xor edi, edi (fd 0, the pty)
    "be0e540000"      # mov esi, 0x540e (TIOCSCTTY; fails harmlessly without a terminal)
    "31d2"            # xor edx, edx (no steal)
    "b810000000"      # mov eax, 16 (ioctl)
    "0f05"            # syscall
    "498d7710"        # lea rsi, [r15+16] (&argv[2])
    "488b3e"          # mov rdi, [rsi] (argv[2])
    "4c89f2"          # mov rdx, r14 (envp)
    "b83b000000"      # mov eax, 59 (execve)
    "0f05"            # syscall
    "bf7f000000"      # mov edi, 127
    "83f8fe"          # cmp eax, -ENOENT
    "7405"            # je exit
    "bf7e000000"      # fail: mov edi, 126
    "b8e7000000"      # exit: mov eax, 231 (exit_group)
    "0f05"            # syscall
)


def program() -> bytes:
    """The ELF executable: a header, a read+execute load segment, a non-executable stack."""
    code_at = _EHDR.size + 2 * _PHDR.size
    size = code_at + len(_CODE)
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    ehdr = _EHDR.pack(ident, 2, 0x3E, 1, _BASE + code_at, _EHDR.size, 0, 0, _EHDR.size, _PHDR.size, 2, 0, 0, 0)
    load = _PHDR.pack(1, 5, 0, _BASE, _BASE, size, size, 0x1000)
    stack = _PHDR.pack(0x6474E551, 6, 0, 0, 0, 0, 0, 16)  # PT_GNU_STACK, RW
    return ehdr + load + stack + _CODE


def supported() -> bool:
    return os.uname().machine == "x86_64"


def ctty_binary(layout: RootLayout) -> Path | None:
    """pydock's copy of the program for this root, or None where it has none (not x86-64: the command
    then runs without a controlling terminal, as before)."""
    if not supported():
        log.debug("no controlling-terminal step for %s: job control stays off in -t containers",
                  os.uname().machine)
        return None
    data = program()
    dest = layout.init / "pydock-ctty"
    try:
        current = dest.read_bytes()
    except FileNotFoundError:
        current = None
    if current != data:  # first use, or written by another version of pydock
        layout.init.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(dest, data, 0o555, durable=False)
    return dest


def started_with_current(layout: RootLayout, started_at: datetime | None) -> bool:
    """Whether a container started at `started_at` holds this version's program (bind-mounted at its start:
    one started before an upgrade rewrote the file keeps the old one, which knows no credentials)."""
    try:
        written = (layout.init / "pydock-ctty").stat().st_mtime
    except FileNotFoundError:
        return False
    return started_at is not None and started_at.timestamp() >= written


def ctty_argv(argv: tuple[str, ...], workdir: str = ".", *,
              credentials: tuple[int, int, tuple[int, ...]] | None = None) -> tuple[str, ...]:
    """`argv` run through the program, in `workdir` (a container path; "." stays where it is); with
    `credentials` (uid, gid, supplementary groups), as that user (the program must start as root)."""
    if credentials is None:
        return (CTTY_PATH, workdir, *argv)
    uid, gid, groups = credentials
    if len(groups) > MAX_GROUPS:
        raise InvalidArgument(f"at most {MAX_GROUPS} supplementary groups (this user has {len(groups)})")
    ids = ",".join(str(i) for i in (uid, gid, *groups))
    return (CTTY_PATH, f"@{ids}", workdir, *argv)
