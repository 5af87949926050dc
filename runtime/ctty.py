"""The first instructions of a container's processes that lxc cannot give them: a working directory for
`exec`, and (`-t`) the terminal made the controlling one, as runc does before its exec.

lxc-start puts the pty on the command's stdio but never makes it a controlling terminal (a shell
says "can't access tty; job control turned off" and ^C reaches nobody), and lxc-attach has no
working-directory option. Only the process itself can do either, so it first runs a static x86-64
program assembled here (no toolchain, no host binary): `/dev/.ctty DIR CMD ARGS...` does chdir(DIR),
setsid(), ioctl(0, TIOCSCTTY) (both harmless where they do not apply) and execs CMD. pydock writes it
to `<root>/init/pydock-ctty` and lxc bind-mounts it read-only at /dev/.ctty in every
container; after its exec /proc/self/exe is the command, as without it.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

from pydock.utils.fileutil import atomic_write
from pydock.utils.paths import RootLayout

log = logging.getLogger(__package__)

CTTY_PATH = "/dev/.ctty"
_BASE = 0x400000
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")

#: chdir(argv[1]) or exit 126; setsid(); ioctl(0, TIOCSCTTY, 0); execve(argv[2], &argv[2], envp);
#: exit_group(ENOENT ? 127 : 126)
_CODE = bytes.fromhex(
    "488b7c2410"      # mov rdi, [rsp+16] (argv[1], the directory)
    "b850000000"      # mov eax, 80 (chdir)
    "0f05"            # syscall
    "85c0"            # test eax, eax
    "7539"            # jnz fail (to the 126 below)
    "b870000000"      # mov eax, 112 (setsid; fails harmlessly if lxc made us a session leader already)
    "0f05"            # syscall
    "31ff"            # xor edi, edi (fd 0, the pty)
    "be0e540000"      # mov esi, 0x540e (TIOCSCTTY; fails harmlessly without a terminal)
    "31d2"            # xor edx, edx (no steal)
    "b810000000"      # mov eax, 16 (ioctl)
    "0f05"            # syscall
    "488b0c24"        # mov rcx, [rsp] (argc)
    "488d742418"      # lea rsi, [rsp+24] (&argv[2])
    "488b3e"          # mov rdi, [rsi] (argv[2])
    "488d54cc10"      # lea rdx, [rsp+rcx*8+16] (envp)
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


def ctty_argv(argv: tuple[str, ...], workdir: str = ".") -> tuple[str, ...]:
    """`argv` run through the program, in `workdir` (a container path; "." stays where it is)."""
    return (CTTY_PATH, workdir, *argv)
