"""Helpers shared by the archive tests: crafted tars, tree snapshots, a breakout sandbox."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class E:
    """One crafted tar entry (type defaults to a regular file)."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 1_600_000_000
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] = field(default_factory=dict)


def make_tar(entries: list[E], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """An uncompressed tar holding exactly `entries`, names written verbatim (no sanitising)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.type
            info.linkname = e.linkname
            info.mode = e.mode
            info.uid, info.gid = e.uid, e.gid
            info.mtime = e.mtime
            info.devmajor, info.devminor = e.devmajor, e.devminor
            info.pax_headers = dict(e.pax)
            info.size = len(e.data) if e.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
            tf.addfile(info, io.BytesIO(e.data) if info.size else None)
    return buf.getvalue()


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything observable about a tree (root included): metadata, mtimes, contents, link targets."""
    out: dict[str, tuple] = {}

    def one(path: Path, rel: str) -> None:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            extra: object = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            extra = os.readlink(path)
        else:
            extra = st.st_rdev
        out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                    st.st_mtime_ns, st.st_nlink if not stat.S_ISDIR(st.st_mode) else 0, extra)

    one(root, ".")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            one(p, str(p.relative_to(root)))
    return out


@dataclass
class Sandbox:
    """`dest/` to extract into, next to a `victim/` tree that must never change (moby's testBreakout)."""

    base: Path
    dest: Path
    victim: Path
    before: dict[str, tuple]

    def victim_untouched(self) -> None:
        assert snapshot(self.victim) == self.before, "a file outside the rootfs was modified"
        # nothing new appeared next to dest either
        assert sorted(p.name for p in self.base.iterdir()) == ["dest", "victim"]


def sandbox(tmp_path: Path) -> Sandbox:
    base = tmp_path / "sb"
    dest = base / "dest"
    victim = base / "victim"
    dest.mkdir(parents=True)
    victim.mkdir()
    (victim / "hello").write_bytes(b"hello, victim\n")
    (victim / "sub").mkdir()
    (victim / "sub" / "file").write_bytes(b"deeper\n")
    os.utime(victim / "hello", ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    os.utime(victim / "sub", ns=(1_500_000_000_000_000_001, 1_500_000_000_000_000_001))
    os.utime(victim, ns=(1_500_000_000_000_000_002, 1_500_000_000_000_000_002))
    return Sandbox(base, dest, victim, snapshot(victim))

