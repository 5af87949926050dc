"""`--init`: the reaping init run as PID 1 in front of the command, as Docker's `docker-init`.

pydock ships no init of its own: it takes a static tini (Docker's docker-init *is* tini) from the
host: Debian's `tini` package (`tini-static`) or Docker's `docker-init`. The binary must be static,
since images need not carry a libc. pydock copies it once to `<root>/init/docker-init-<sha256>`
and lxc bind-mounts that copy read-only at /dev/init, so the container's /proc/1/exe is never a
file the host runs. Without `--init` nothing from the host is mounted or executed in the container.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

from pydock.runtime.lxcconf import INIT_PATH
from pydock.utils.errors import LaunchError
from pydock.utils.fileutil import atomic_write
from pydock.utils.paths import RootLayout

#: names looked up on PATH, then fixed places, in this order
CANDIDATES = ("tini-static", "docker-init")
FIXED_PATHS = (Path("/usr/libexec/docker/docker-init"), Path("/usr/local/libexec/docker/docker-init"))
PT_INTERP = 3
_MAX_SIZE = 16 << 20


def is_static_elf(data: bytes) -> bool:
    """A 64- or 32-bit little-endian ELF executable with no program interpreter (PT_INTERP)."""
    if data[:4] != b"\x7fELF" or len(data) < 64 or data[5] != 1:
        return False
    wide = data[4] == 2
    if wide:
        phoff, = struct.unpack_from("<Q", data, 32)
        phentsize, phnum = struct.unpack_from("<HH", data, 54)
    else:
        phoff, = struct.unpack_from("<I", data, 28)
        phentsize, phnum = struct.unpack_from("<HH", data, 42)
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + 4 > len(data):
            return False
        if struct.unpack_from("<I", data, at)[0] == PT_INTERP:
            return False
    return True


def _candidates() -> list[Path]:
    found = [Path(p) for name in CANDIDATES if (p := shutil.which(name))]
    return list(dict.fromkeys([*found, *FIXED_PATHS]))


def init_binary(layout: RootLayout) -> Path:
    """pydock's read-only copy of the host's static tini for this root; LaunchError if there is none."""
    rejected = []
    for path in _candidates():
        try:
            with open(path, "rb") as f:
                data = f.read(_MAX_SIZE + 1)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as err:
            rejected.append(f"{path} ({err.strerror})")
            continue
        if len(data) > _MAX_SIZE or not is_static_elf(data):
            rejected.append(f"{path} (not a static executable)")
            continue
        dest = layout.init / f"docker-init-{hashlib.sha256(data).hexdigest()[:16]}"
        if not dest.exists():
            layout.init.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(dest, data, 0o555, durable=False)
        return dest
    detail = f" (rejected {', '.join(rejected)})" if rejected else ""
    raise LaunchError(f"--init needs a static tini on this host: install the tini package (tini-static) or "
                      f"docker-init{detail}")


def init_argv(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The command line PID 1 runs with `--init`: tini, then the command."""
    return (INIT_PATH, "--", *argv)
