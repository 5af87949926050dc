"""The "vfs" DeviceSet: every device is a full copy of its parent directory, mounted with a bind mount.

Slow and space-hungry, but it works on any filesystem and any kernel. On-disk layout of the home:

    .lock                         flock serialising metadata changes across processes
    base/rootfs                   the base device "" (an empty directory)
    devices/<hash>/rootfs         the device's tree (bind-mounted as the rootfs)
    devices/<hash>/meta.json      {"parent", "initialized"}
    tmp/<pid>-<rand>/             copies being built and trees being deleted (renames are the commit points)

Copies use `cp -a --reflink=auto`, which keeps owners, modes, times, hard links, device nodes, fifos,
symlinks and extended attributes (and shares blocks on btrfs/xfs). A child is a true snapshot:
later writes to the parent never show in it.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import subprocess
from pathlib import Path

from pydock.devmapper import dirstore
from pydock.devmapper.deviceset import BASE_HASH
from pydock.devmapper.dirdriver import DirectoryDeviceSet, MountMatcher
from pydock.utils import mount as kmount
from pydock.utils.mounttable import MountEntry
from pydock.utils import fileutil
from pydock.utils.errors import Conflict, NotFound, StorageError
from pydock.utils.process import pid_alive

log = logging.getLogger(__package__)


class VfsDeviceSet(DirectoryDeviceSet[Path]):
    """Full directory copies, bind-mounted; see the module docstring for layout and semantics.

    A device's key is its rootfs directory."""

    name = "vfs"
    _tmp: Path
    _base: Path

    def _prepare_home(self) -> None:
        self._tmp = self.home / "tmp"
        self._base = self.home / "base"
        for d in (self._tmp, self._base):
            d.mkdir(exist_ok=True, mode=0o700)
        (self._base / "rootfs").mkdir(exist_ok=True, mode=0o755)
        self._collect_garbage()

    # ---- records -------------------------------------------------------------------------------

    def _device_dir(self, hash: str) -> Path:
        if hash == BASE_HASH:
            return self._base
        return self._devices / dirstore.validate_hash(hash)

    def _lookup(self, hash: str) -> Path | None:
        """The device's rootfs, or None when there is no such device."""
        device = self._device_dir(hash)
        if hash == BASE_HASH or (device / "meta.json").exists():
            return device / "rootfs"
        return None

    def _meta_file(self, rootfs: Path) -> Path | None:
        return None if rootfs.parent == self._base else rootfs.parent / "meta.json"

    def _device_tree(self, rootfs: Path) -> Path:
        return rootfs.parent

    def _scratch(self) -> Path:
        return self._tmp / f"{os.getpid()}-{os.urandom(4).hex()}"

    def _collect_garbage(self) -> None:
        """Delete copies and deletions left in tmp/ by processes that died half-way."""
        for entry in os.listdir(self._tmp):
            pid = entry.split("-", 1)[0]
            if pid.isdigit() and pid_alive(int(pid)):
                continue  # still being built or deleted by a live process
            try:
                dirstore.remove_tree(self._tmp / entry)
            except (Conflict, StorageError) as err:
                log.warning("vfs: keeping leftover %s: %s", entry, err)

    # ---- mounts --------------------------------------------------------------------------------

    def _mount_matcher(self, rootfs: Path, entries: list[MountEntry]) -> MountMatcher:
        ident = dirstore.bind_identity(rootfs, entries)
        real = os.path.realpath(rootfs)
        return lambda e: ident is not None and (e.major_minor, e.root) == ident and e.mountpoint != real

    def _home_matcher(self, entries: list[MountEntry]) -> MountMatcher:
        devices = dirstore.bind_identity(self._devices, entries)
        base = dirstore.bind_identity(self._base / "rootfs", entries)
        if devices is None:
            return lambda e: False
        dev, inside = devices[0], devices[1].rstrip("/") + "/"
        return lambda e: e.major_minor == dev and (e.root.startswith(inside) or (e.major_minor, e.root) == base)

    def _mount(self, rootfs: Path, target: str, readonly: bool) -> None:
        """Bind-mount the device's tree; read-only: bind, then remount the bind read-only."""
        kmount.mount(rootfs, target, None, kmount.MS_BIND)
        if readonly:
            try:
                kmount.mount(None, target, None, kmount.MS_REMOUNT | kmount.MS_BIND | kmount.MS_RDONLY)
            except OSError:
                kmount.umount(target)
                raise

    # ---- devices -------------------------------------------------------------------------------

    def add_device(self, hash: str, base_hash: str, durable: bool = True) -> None:
        """Copy `base_hash`'s tree into a new device; not initialized (`durable`: its records are fsynced;
        the copy itself never is)."""
        final = self._device_dir(dirstore.validate_hash(hash))
        source = self._lookup(base_hash)
        if source is None:
            raise NotFound(f"Unknown base hash {base_hash}")
        if os.path.lexists(final):
            raise Conflict(f"hash {hash} already exists")
        scratch = self._scratch()
        try:
            scratch.mkdir(mode=0o700)
            proc = subprocess.run(["cp", "-a", "--reflink=auto", "--", str(source), str(scratch / "rootfs")],
                                  capture_output=True, text=True, close_fds=True)
            if proc.returncode != 0:
                detail = (proc.stderr.strip().splitlines() or ["cp failed"])[0]
                raise StorageError(f"cannot copy {base_hash or '(base)'} into {hash}: {detail}")
            fileutil.write_json_atomic(scratch / "meta.json", {"parent": base_hash, "initialized": False,
                                                               **({} if durable else {"durable": False})},
                                       durable=durable)
            with self._lock.held():
                if self._lookup(base_hash) is None:
                    raise NotFound(f"Unknown base hash {base_hash}")
                try:
                    os.rename(scratch, final)
                except OSError as err:
                    if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                        raise Conflict(f"hash {hash} already exists") from err
                    raise StorageError(f"cannot add device {hash}: {err.strerror}") from err
                if durable:
                    fileutil.fsync_dir(self._devices)
        finally:
            if scratch.exists():
                try:
                    dirstore.remove_tree(scratch)
                except (Conflict, StorageError) as err:
                    log.warning("vfs: could not clean up %s: %s", scratch, err)

    def _drop_record(self, hash: str, rootfs: Path, entries: list[MountEntry]) -> functools.partial[None]:
        """Move the device's tree into tmp/ (the commit point); deleting it there can wait for the unlock.

        Children are independent copies and keep working."""
        doomed = self._scratch()
        try:
            os.rename(rootfs.parent, doomed)
            fileutil.fsync_dir(self._devices)
        except OSError as err:
            raise StorageError(f"cannot remove device {hash}: {err.strerror}") from err
        return functools.partial(self._delete_tree, hash, doomed)

    def _delete_tree(self, hash: str, doomed: Path) -> None:
        try:
            dirstore.remove_tree(doomed)
        except (Conflict, StorageError) as err:  # the device is gone; the next start retries the delete
            log.warning("vfs: could not delete the tree of %s: %s", hash, err)

    def list(self) -> list[str]:
        return sorted(n for n in os.listdir(self._devices)
                      if not n.startswith(".") and (self._devices / n / "meta.json").exists())

    def status(self) -> list[tuple[str, str]]:
        return [("Root Dir", str(self.home)), ("Devices", str(len(self.list())))]
