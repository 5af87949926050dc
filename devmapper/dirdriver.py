"""The body shared by the directory drivers (overlay, vfs): the home lock, activation and mount bookkeeping.

A directory driver differs only in how a device hash maps to what is on disk (a layer id, a rootfs
path), how that is mounted, and how its mounts look in mountinfo. Those are the hooks below; every
DeviceSet call built around them (refusals while mounted, counted mounts, activation, shutdown) is
written once here, so both drivers keep the same semantics and error messages.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from pydock.devmapper import dirstore
from pydock.devmapper.deviceset import BASE_HASH
from pydock.utils import mount as kmount
from pydock.utils import fileutil, mounttable
from pydock.utils.mounttable import MountEntry
from pydock.utils.errors import Conflict, InvalidArgument, NotFound, StorageError

log = logging.getLogger(__package__)

#: what a driver's records call a device on disk (overlay: layer id; vfs: the rootfs directory).
Key = TypeVar("Key")
#: tells whether a mountinfo entry is one of the mounts asked about.
MountMatcher = Callable[[MountEntry], bool]


class DirectoryDeviceSet(Generic[Key]):
    """A DeviceSet whose devices are directories under one home; subclasses fill in the driver hooks."""

    #: driver name shown by `pydock info`, also used in log lines.
    name: str

    def __init__(self, home: str | os.PathLike) -> None:
        home = Path(home)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.home = Path(os.path.realpath(home))
        self._devices = self.home / "devices"
        self._lock = dirstore.HomeLock(self.home / ".lock")
        self._mounts = dirstore.MountCounter()
        self._active: set[str] = set()
        self._active_lock = threading.Lock()
        with self._lock.held():
            self._devices.mkdir(exist_ok=True, mode=0o700)
            self._prepare_home()

    # ---- driver hooks --------------------------------------------------------------------------

    def _prepare_home(self) -> None:
        """Name and create the driver's own directories and repair crash leftovers (home lock held)."""
        raise NotImplementedError

    def _lookup(self, hash: str) -> Key | None:
        """The device's key, or None when there is no such device (InvalidArgument for a bad hash)."""
        raise NotImplementedError

    def _meta_file(self, key: Key) -> Path | None:
        """The device's meta.json, or None for a device that has none and is always initialized."""
        raise NotImplementedError

    def _device_tree(self, key: Key) -> Path:
        """The directory holding the device's data (nothing may be mounted inside it on removal)."""
        raise NotImplementedError

    def _mount(self, key: Key, target: str, readonly: bool) -> None:
        """Mount the device at the existing directory `target`; OSError carries the kernel's errno."""
        raise NotImplementedError

    def _mount_matcher(self, key: Key, entries: list[MountEntry]) -> MountMatcher:
        """Which entries of `entries` are mounts of the device (made by any process)."""
        raise NotImplementedError

    def _home_matcher(self, entries: list[MountEntry]) -> MountMatcher:
        """Which entries of `entries` are mounts of any device of this home."""
        raise NotImplementedError

    def _drop_record(self, hash: str, key: Key, entries: list[MountEntry]) -> Callable[[], None] | None:
        """Take the device's name away (the commit point of removal, home lock held); return any
        slow clean-up to run after the lock is released. `entries`: the mount table as read under that
        lock, with nothing mounted at or inside the device's tree."""
        raise NotImplementedError

    # ---- records -------------------------------------------------------------------------------

    def _require(self, hash: str, message: str = "Unknown device {hash}") -> Key:
        key = self._lookup(hash)
        if key is None:
            raise NotFound(message.format(hash=hash))
        return key

    def _read_meta(self, path: Path) -> dict:
        try:
            return fileutil.read_json(path)
        except (OSError, ValueError) as err:
            raise StorageError(f"{self.name}: device record {path} is unreadable: {err}") from err

    def _mounted_at(self, key: Key, entries: list[MountEntry] | None = None) -> list[str]:
        """Mountpoints of the device, in every process's mounts (`entries`: a mountinfo() already read)."""
        entries = mounttable.mountinfo() if entries is None else entries
        is_ours = self._mount_matcher(key, entries)
        return [e.mountpoint for e in entries if is_ours(e)]

    def _all_mounts(self) -> list[str]:
        """Every mount of any device of this home (all processes), deepest and latest first."""
        entries = mounttable.mountinfo()
        is_ours = self._home_matcher(entries)
        found = [e.mountpoint for e in entries if is_ours(e)]
        return sorted(reversed(found), key=lambda p: p.count("/"), reverse=True)

    # ---- the DeviceSet protocol ----------------------------------------------------------------

    def mount_device(self, hash: str, path: str | os.PathLike, readonly: bool = False) -> None:
        """Mount the device's tree at `path`; counted for shutdown() and marks the device active."""
        with self._lock.held():
            key = self._require(hash)
            target = dirstore.mount_target(path)
            try:
                self._mount(key, target, readonly)
            except OSError as err:
                how = " read-only" if readonly else ""
                raise StorageError(f"Error mounting '{hash}'{how} on '{path}': "
                                   f"{os.strerror(err.errno) if err.errno else err}") from err
            self._mounts.add(hash, target)
            with self._active_lock:
                self._active.add(hash)

    def unmount_device(self, hash: str, path: str | os.PathLike, deactivate: bool = True) -> None:
        """Undo one mount_device at `path` (also one made by another process)."""
        with self._lock.held():
            key = self._require(hash)
            real = os.path.realpath(path)
            entries = mounttable.mountinfo()
            top = dirstore.top_mount_at(real, entries)
            if top is None:
                raise StorageError(f"Error unmounting '{hash}': {path} is not mounted")
            if not self._mount_matcher(key, entries)(top):
                raise StorageError(f"Error unmounting '{hash}': {path} is not a mount of this device")
            dirstore.umount_checked(real, f"'{hash}'", kmount.umount)
            self._mounts.drop(hash, real)
            # the table as it is now: the mounts of this home change only under its lock, held here
            if deactivate and not self._mounted_at(key, [e for e in entries if e is not top]):
                with self._active_lock:
                    self._active.discard(hash)

    def deactivate_device(self, hash: str) -> None:
        """Forget the device's activation (a directory has no kernel object to release); refuses while mounted."""
        with self._lock.held():
            key = self._require(hash, "hash {hash} doesn't exist")
            mounted = self._mounted_at(key)
            if mounted:
                raise Conflict(f"device {hash or '(base)'} is mounted at {mounted[0]}")
            with self._active_lock:
                self._active.discard(hash)

    def set_initialized(self, hash: str) -> None:
        with self._lock.held():
            meta_file = self._meta_file(self._require(hash))
            if meta_file is None:
                return
            meta = self._read_meta(meta_file)
            if not meta.get("initialized"):
                meta["initialized"] = True
                fileutil.write_json_atomic(meta_file, meta, durable=meta.get("durable", True))

    def remove_device(self, hash: str) -> None:
        """Delete the device; refuses while it, or anything inside its tree, is mounted."""
        if hash == BASE_HASH:
            raise InvalidArgument("the base device cannot be removed")
        with self._lock.held():
            key = self._require(hash, "hash {hash} doesn't exist")
            entries = mounttable.mountinfo()
            mounted = self._mounted_at(key, entries)
            if mounted:
                raise Conflict(f"device {hash} is mounted at {mounted[0]}")
            inside = mounttable.mounts_under(self._device_tree(key), entries)
            if inside:
                raise Conflict(f"device {hash}: {inside[0]} is mounted inside its tree")
            finish = self._drop_record(hash, key, entries)
            with self._active_lock:
                self._active.discard(hash)
        if finish is not None:
            finish()

    def _probe(self, hash: str) -> Key | None:
        """_lookup for the boolean probes: a hash that can't name a device names none, and an unreadable
        record is logged and taken as no device."""
        try:
            return self._lookup(hash)
        except InvalidArgument:
            return None
        except StorageError as err:
            log.warning("%s: treating %s as absent: %s", self.name, hash, err)
            return None

    def has_device(self, hash: str) -> bool:
        return self._probe(hash) is not None

    def has_initialized_device(self, hash: str) -> bool:
        key = self._probe(hash)
        if key is None:
            return False
        meta_file = self._meta_file(key)
        try:
            return meta_file is None or bool(self._read_meta(meta_file).get("initialized"))
        except StorageError as err:
            log.warning("%s: treating %s as uninitialized: %s", self.name, hash, err)
            return False

    def has_activated_device(self, hash: str) -> bool:
        """True between a mount and the deactivating unmount/deactivate (or while mounted anywhere)."""
        key = self._probe(hash)
        if key is None:
            return False
        with self._active_lock:
            if hash in self._active:
                return True
        return bool(self._mounted_at(key))

    def shutdown(self) -> None:
        """Unmount every mount of this home's devices (errors logged, not raised) and forget activations."""
        dirstore.unmount_all(self._mounts, self._all_mounts, self.name)
        with self._active_lock:
            self._active.clear()

    def close(self) -> None:
        """Forget this instance's bookkeeping; mounts stay for whichever process unmounts them later."""
        self._mounts.clear()
