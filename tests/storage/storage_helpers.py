"""Shared set-up for the storage tests: a store of each driver on a fresh home (`store_fixture`, real
devicemapper inside User-Mode Linux only) and the directory drivers alone (`driver_fixtures`); no mounts
left behind."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pydock.devmapper.deviceset import DeviceSet
from pydock.devmapper.dirdriver import DirectoryDeviceSet
from pydock.utils.mount import MNT_DETACH, umount
from pydock.utils.mounttable import mounts_under

DRIVERS = ["vfs", "overlay", pytest.param("devicemapper", marks=pytest.mark.dm)]
#: small pools: a test's whole store lives in UML's memory-backed /tmp
DM_SIZES = {"data_size": 512 << 20, "metadata_size": 64 << 20, "base_size": 128 << 20}


@dataclass
class Store:
    """One driver home for a test: `open()` gives a (new) DeviceSet instance on it, like a restart;
    `driver()` a graph driver over one. The fixture tears down all of them."""

    driver_name: str
    home: Path
    prefix: str
    scratch: Path
    opened: list[DeviceSet] = field(default_factory=list)
    drivers: list[Any] = field(default_factory=list)

    def _recipe(self) -> tuple[str, str, dict]:
        """(module, class, keyword options) of this store's DeviceSet."""
        if self.driver_name == "vfs":
            return "pydock.devmapper.vfs", "VfsDeviceSet", {}
        if self.driver_name == "overlay":
            return "pydock.devmapper.overlay", "OverlayDeviceSet", {}
        return "pydock.devmapper.dm_deviceset", "DeviceSetDM", {"prefix": self.prefix, **DM_SIZES}

    def open(self) -> DeviceSet:
        module, cls, options = self._recipe()
        ds = getattr(importlib.import_module(module), cls)(self.home, **options)
        self.opened.append(ds)
        return ds

    def open_source(self) -> str:
        """Python source that opens this store's DeviceSet as `ds` in another process (another pydock)."""
        module, cls, options = self._recipe()
        return f"from {module} import {cls}\nds = {cls}({str(self.home)!r}, **{options!r})\n"

    def driver(self, ds: DeviceSet, home: Path | None = None) -> Any:
        """A Driver over `ds` with its mountpoints in `home` (default: the store's home, as open_driver does)."""
        from pydock.devmapper.driver import Driver

        drv = Driver(ds, home or self.home)
        self.drivers.append(drv)
        return drv

    def mountpoint(self, name: str) -> Path:
        path = self.scratch / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def store_fixture():
    """The `store` fixture of a test module (`store = store_fixture()`): one per driver of DRIVERS."""

    @pytest.fixture(params=DRIVERS)
    def store(request: pytest.FixtureRequest, tmp_path: Path, unique_prefix: str) -> Iterator[Store]:
        s = Store(request.param, tmp_path / "home", unique_prefix, tmp_path / "mnt")
        s.scratch.mkdir()
        try:
            yield s
        finally:
            for drv in reversed(s.drivers):  # their references first, the way a runtime shuts down
                drv.shutdown()
            # A failed test may leave mounts: undo them before the driver tears its devices down.
            for path in mounts_under(s.scratch):
                umount(path, MNT_DETACH)
            for ds in reversed(s.opened):
                ds.shutdown()
            leftover = mounts_under(tmp_path)
            for path in leftover:
                umount(path, MNT_DETACH)
            assert not leftover, f"the driver left mounts behind: {leftover}"

    return store


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
