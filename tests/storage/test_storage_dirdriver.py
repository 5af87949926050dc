"""What the directory drivers (overlay, vfs) share beyond the DeviceSet contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from pydock.devmapper.deviceset import BASE_HASH
from pydock.devmapper.dirdriver import DirectoryDeviceSet
from pydock.utils.mounttable import is_mountpoint
from pydock.devmapper.overlay import OverlayDeviceSet
from pydock.devmapper.vfs import VfsDeviceSet
from pydock.utils.errors import StorageError
from storage_helpers import driver_fixtures

home, ds = driver_fixtures(VfsDeviceSet, OverlayDeviceSet)


def test_unmount_refuses_a_mount_that_is_not_the_devices(ds: DirectoryDeviceSet, tmp_path: Path) -> None:
    ds.add_device("a", BASE_HASH)
    ds.add_device("b", BASE_HASH)
    target = tmp_path / "m"
    target.mkdir()
    ds.mount_device("a", target)
    try:
        with pytest.raises(StorageError, match="not a mount of this device"):
            ds.unmount_device("b", target)
        assert is_mountpoint(target)
    finally:
        ds.unmount_device("a", target)
