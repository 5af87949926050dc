"""Helpers for the graph tests: layer tarballs from a spec, tree snapshots, the nothing-left-behind check."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from pydock.utils.paths import RootLayout

HOST_DRIVERS = ["vfs", "overlay"]
#: for the round-trip tests that must also pass on dm-thin (run inside User-Mode Linux)
ALL_DRIVERS = HOST_DRIVERS + [pytest.param("devicemapper", marks=pytest.mark.dm)]

def open_driver(name: str, layout: RootLayout, prefix: str):
    """The root's graph driver, opened the way pydock opens it (small pools for devicemapper)."""
    from pydock.devmapper.drivers import open_driver as open_root_driver

    options = {"prefix": prefix, "data_size": 512 << 20, "metadata_size": 64 << 20, "base_size": 128 << 20}
    driver, _reason = open_root_driver(layout.root, name, **(options if name == "devicemapper" else {}))
    return driver


# ---- layer tarballs ---------------------------------------------------------------------

DIR = object()


class Link(str):
    """A symlink target in a layer spec."""


def layer(spec: dict[str, object], whiteouts: tuple[str, ...] = (), fmt: int = tarfile.GNU_FORMAT) -> bytes:
    """A tar from {path: bytes|str content, DIR, or Link(target)} plus `.wh.` markers for `whiteouts`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for path in sorted(spec):
            value = spec[path]
            info = tarfile.TarInfo(path)
            info.mtime = 1_600_000_000
            if value is DIR:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(value, Link):
                info.type, info.linkname = tarfile.SYMTYPE, str(value)
                tar.addfile(info)
            else:
                data = value.encode() if isinstance(value, str) else bytes(value)  # type: ignore[arg-type]
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        for path in whiteouts:
            head, _, base = path.rpartition("/")
            info = tarfile.TarInfo(f"{head}/.wh.{base}" if head else f".wh.{base}")
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(b""))
    return buf.getvalue()


def snapshot(root: Path) -> dict[str, object]:
    """{relative path: DIR | Link(target) | bytes} of a tree (what a user would see in the rootfs)."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                out[rel] = Link(os.readlink(full))
            elif full.is_dir():
                out[rel] = DIR
            else:
                out[rel] = full.read_bytes()
    return out


def assert_clean(layout: RootLayout, driver, expected_images: int = 0) -> None:
    """Nothing half-registered: no stray graph entries, no scratch dirs, no devices beyond the images."""
    graph_entries = [n for n in os.listdir(layout.graph) if n != "_tmp"]
    assert len(graph_entries) == expected_images, graph_entries
    tmp_entries = [n for n in os.listdir(layout.graph_tmp) if not n.startswith(".")]
    assert tmp_entries == [], tmp_entries
    assert sorted(driver.deviceset.list()) == sorted(graph_entries)
    from pydock.utils.mounttable import mounts_under

    assert [m for m in mounts_under(layout.root) if m != os.path.realpath(layout.root)] == []
    assert [n for n in os.listdir(driver.home / "mnt") if n != ".refs"] == []
