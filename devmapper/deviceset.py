"""The DeviceSet protocol: copy-on-write block or directory storage for images and containers.

Every image and container gets a device named by its hash, created as a snapshot of its parent
(`""` is the base device: an empty filesystem). Device roots are the rootfs itself (no
`lost+found`, no wrapper directory), on every driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

BASE_HASH = ""


@runtime_checkable
class DeviceSet(Protocol):
    """Storage for image/container filesystems; see docker07.md §2 for the semantics of each call."""

    #: driver name shown by `pydock info` ("devicemapper", "overlay", "vfs").
    name: str

    def add_device(self, hash: str, base_hash: str, durable: bool = True) -> None:
        """Create device `hash` as a snapshot of `base_hash` (`""` = base). Not initialized, not active.
        `durable=False` makes a scratch device (a `--rm` container's): nothing of it need survive a
        crash, so the driver may skip flushing its records and data (a crash may leave it half made or
        half removed, for the container's own crash recovery to remove)."""

    def set_initialized(self, hash: str) -> None:
        """Mark the device's content complete; uninitialized devices are garbage to rebuild."""

    def mount_device(self, hash: str, path: str | Path, readonly: bool = False) -> None:
        """Activate if needed and mount the device's root at `path` (counted, pair with unmount)."""

    def unmount_device(self, hash: str, path: str | Path, deactivate: bool = True) -> None:
        """Undo one `mount_device` at `path`; deactivate the device when asked and no mount remains."""

    def deactivate_device(self, hash: str) -> None:
        """Release kernel resources for the device (dm mapping) but keep its data."""

    def remove_device(self, hash: str) -> None:
        """Delete the device and its data. Refuses (Conflict) while it is mounted."""

    def has_device(self, hash: str) -> bool: ...

    def has_initialized_device(self, hash: str) -> bool: ...

    def has_activated_device(self, hash: str) -> bool: ...

    def list(self) -> list[str]:
        """Hashes of every device, base excluded."""

    def status(self) -> list[tuple[str, str]]:
        """(name, value) lines for `pydock info`."""

    def shutdown(self) -> None:
        """Unmount every counted mount and deactivate every device (then the pool, for devicemapper)."""


@contextmanager
def mounted(ds: DeviceSet, hash: str, path: str | Path, readonly: bool = False,
            deactivate: bool = True) -> Iterator[Path]:
    """Mount `hash` at `path` for the duration of the block; the unmount can't be forgotten."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    ds.mount_device(hash, path, readonly=readonly)
    try:
        yield path
    finally:
        ds.unmount_device(hash, path, deactivate=deactivate)
