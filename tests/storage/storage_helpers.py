"""Shared set-up for the directory-driver tests (overlay, vfs): a driver on a fresh home, no mounts left behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pydock.devmapper.dirdriver import DirectoryDeviceSet
from pydock.utils.mount import MNT_DETACH, mounts_under, umount


def driver_fixtures(*classes: type[DirectoryDeviceSet]):
    """The `home` and `ds` fixtures of a test module (assign both: `home, ds = driver_fixtures(...)`).

    `home` is a fresh driver home under tmp_path that fails the test if anything under tmp_path is
    still mounted afterwards; `ds` is a driver of each of `classes` on it, shut down afterwards."""

    @pytest.fixture
    def home(tmp_path: Path) -> Iterator[Path]:
        yield tmp_path / "home"
        leftover = mounts_under(tmp_path)
        for path in leftover:
            umount(path, MNT_DETACH)
        assert not leftover, f"test left mounts: {leftover}"

    @pytest.fixture(params=classes, ids=[cls.name for cls in classes])
    def ds(request: pytest.FixtureRequest, home: Path) -> Iterator[DirectoryDeviceSet]:
        ds = request.param(home)
        yield ds
        ds.shutdown()

    return home, ds
