"""The embedded `busybox` image: a rootfs built from the host's statically linked busybox.

Like Docker pulling a missing `busybox`, pydock builds it locally when first asked for it. The
tarball is deterministic (sorted entries, fixed mtimes, numeric root ownership), so one host
always produces the same bytes and therefore the same image id.

    python -m pydock.graph.busybox > busybox.tar      (what hack/mkimage-busybox.sh runs)
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import struct
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pydock.utils.errors import NotFound
from pydock.utils.fileutil import flocked

if TYPE_CHECKING:
    from pydock.graph.image import Image
    from pydock.graph.lookup import ImageStore

BUSYBOX = Path("/bin/busybox")
BUSYBOX_ENV = "PYDOCK_BUSYBOX"
PACKAGE = "busybox-static"
REPO, TAG = "busybox", "latest"

#: every entry's mtime: 2013-11-25 00:00:00 UTC (Docker 0.7.0's release day), for reproducible bytes.
MTIME = 1385337600

CONFIG = {
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "Cmd": ["/bin/sh"],
}

DIRS: dict[str, int] = {
    "bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "lib": 0o755, "proc": 0o555,
    "root": 0o700, "sbin": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755,
    "usr/sbin": 0o755, "var": 0o755, "var/log": 0o755, "var/run": 0o755, "var/tmp": 0o1777,
}

FILES: dict[str, str] = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
}

_PT_INTERP = 3


def busybox_path() -> Path:
    return Path(os.environ.get(BUSYBOX_ENV) or BUSYBOX)


def is_static_elf(data: bytes) -> bool:
    """True for an ELF executable without a PT_INTERP header (no dynamic loader needed)."""
    if data[:4] != b"\x7fELF" or len(data) < 64:
        return False
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack_from(endian + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    else:
        phoff, = struct.unpack_from(endian + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x2A)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(data):
            return False
        p_type, = struct.unpack_from(endian + "I", data, off)
        if p_type == _PT_INTERP:
            return False
    return True


def load_busybox(path: Path | None = None) -> bytes:
    """The busybox binary's bytes, after checking it exists and is statically linked."""
    path = path or busybox_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{path} not found: install the {PACKAGE} package to build the busybox image") from None
    if not is_static_elf(data):
        raise NotFound(f"{path} is not a statically linked executable: install the {PACKAGE} "
                       "package to build the busybox image")
    return data


def applets(path: Path | None = None) -> list[str]:
    """Applet paths relative to / (`bin/sh`, `usr/bin/[` ...) from `busybox --list-full`."""
    path = path or busybox_path()
    try:
        out = subprocess.run([str(path), "--list-full"], check=True, capture_output=True,
                             timeout=30).stdout.decode()
    except (OSError, subprocess.SubprocessError) as err:
        raise NotFound(f"{path} --list-full failed ({err}): install the {PACKAGE} package") from None
    names = set()
    for line in out.split():
        name = posixpath.normpath(line.strip().lstrip("/"))
        if name and not name.startswith("..") and name != "bin/busybox" and "/" in name:
            names.add(name)
    return sorted(names)


def _info(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = linkname
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build_busybox_tar(out: BinaryIO, busybox: Path | None = None) -> None:
    """Write the busybox rootfs as an uncompressed, reproducible tar to `out`."""
    binary = load_busybox(busybox)
    links = applets(busybox)
    dirs = dict(DIRS)
    for link in links:  # any extra parents busybox wants (e.g. usr/local/bin)
        parent = posixpath.dirname(link)
        while parent and parent not in dirs:
            dirs[parent] = 0o755
            parent = posixpath.dirname(parent)
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for d in sorted(dirs):
        entries.append((_info(d, tarfile.DIRTYPE, dirs[d]), None))
    files: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {
        "bin/busybox": (_info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), binary),
    }
    for name, text in FILES.items():
        data = text.encode()
        files[name] = (_info(name, tarfile.REGTYPE, 0o644, len(data)), data)
    for link in links:
        if link in files:
            continue
        target = posixpath.relpath("bin/busybox", posixpath.dirname(link))
        files[link] = (_info(link, tarfile.SYMTYPE, 0o777, linkname=target), None)
    entries.extend(files[name] for name in sorted(files))
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def busybox_tar_bytes(busybox: Path | None = None) -> bytes:
    buf = io.BytesIO()
    build_busybox_tar(buf, busybox)
    return buf.getvalue()


def build_busybox(store: ImageStore, busybox: Path | None = None) -> Image:
    """Register the busybox rootfs as a base image (id = sha256 of its tar) and tag it busybox:latest."""
    data = busybox_tar_bytes(busybox)
    image_id = hashlib.sha256(data).hexdigest()
    graph = store.graph
    if graph.exists(image_id):
        image = graph.get(image_id)
    else:
        image = graph.register(io.BytesIO(data), image_id=image_id, config=dict(CONFIG),
                               comment=f"Imported from {busybox or busybox_path()} ({PACKAGE})")
    store.tags.set(REPO, TAG, image.id, force=True)
    return image


def ensure_busybox(store: ImageStore, busybox: Path | None = None) -> Image:
    """busybox:latest, building it first if it is missing (serialised across processes)."""
    with flocked(store.graph.tmp / ".busybox.lock"):
        image_id = store.tags.get(REPO, TAG)
        if image_id and store.graph.exists(image_id):
            return store.graph.get(image_id)
        return build_busybox(store, busybox)


def main(argv: list[str] | None = None) -> int:
    """Write the busybox tarball to stdout or to the file named by the first argument."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print("usage: python -m pydock.graph.busybox [OUT.tar]   (stdout when OUT is omitted or -)")
        return 0
    try:
        data = busybox_tar_bytes()
    except NotFound as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    if args and args[0] != "-":
        Path(args[0]).write_bytes(data)
    else:
        if sys.stdout.isatty():
            print("Error: refusing to write a tarball to a terminal; redirect stdout or name a file",
                  file=sys.stderr)
            return 1
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
