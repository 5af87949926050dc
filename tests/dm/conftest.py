"""Fixtures for the device-mapper tier: small pools under tmp_path, torn down and leak-checked per test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dm_helpers import Pool, dm_names, loops_backing, write

from pydock.utils.mount import MNT_DETACH, umount

from pydock.utils.mounttable import mounts_under


@pytest.fixture
def pool(tmp_path: Path, unique_prefix: str) -> Iterator[Pool]:
    p = Pool(tmp_path / "devicemapper", unique_prefix, tmp_path / "mnt")
    p.scratch.mkdir()
    try:
        yield p
    finally:
        for path in mounts_under(tmp_path):
            umount(path, MNT_DETACH)
        if not p.opened and (p.home / "data").exists():
            p.open()  # a test that only used children: tear their pool down too
        for ds in reversed(p.opened):
            ds.shutdown()
        left = dm_names(p.prefix)
        loops = loops_backing(p.home)
        if left:  # never leave devices behind, even when the test failed
            for name in sorted(left, key=lambda n: n.endswith("-pool")):
                subprocess.run(["dmsetup", "remove", "-f", name], capture_output=True,
                               env={**os.environ, "DM_DISABLE_UDEV": "1"})
        assert not left, f"dm devices left behind: {left}"
        assert not loops, f"loop devices left behind: {loops}"


@pytest.fixture
def ds(pool: Pool):
    return pool.open()


@pytest.fixture
def make(pool: Pool) -> Callable:
    """make(ds, hash, parent, files): add, fill through a mount, mark initialized."""
    from pydock.devmapper.deviceset import mounted

    def _make(ds, hash: str, parent: str, files: dict[str, str]) -> None:
        ds.add_device(hash, parent)
        with mounted(ds, hash, pool.mnt(f"build-{hash}")) as root:
            for rel, text in files.items():
                write(root, rel, text)
        ds.set_initialized(hash)

    return _make
