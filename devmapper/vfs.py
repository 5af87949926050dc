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
import logging
import os
import secrets
import subprocess
import threading
from pathlib import Path

from pydock.devmapper import dirstore
from pydock.runtime import fileutil
from pydock.devmapper.deviceset import BASE_HASH
from pydock.devmapper.kernel import mount as kmount
from pydock.runtime.errors import Conflict, InvalidArgument, NotFound, StorageError

log = logging.getLogger(__name__)


class VfsDeviceSet:
    """Full directory copies, bind-mounted; see the module docstring for layout and semantics."""

    name = "vfs"

    def __init__(self, home: str | os.PathLike) -> None:
        home = Path(home)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.home = Path(os.path.realpath(home))
        self._devices = self.home / "devices"
        self._tmp = self.home / "tmp"
        self._base = self.home / "base"
        self._lock = dirstore.HomeLock(self.home / ".lock")
        self._mounts = dirstore.MountCounter()
        self._active: set[str] = set()
        self._active_lock = threading.Lock()
        with self._lock.held():
            for d in (self._devices, self._tmp, self._base):
                d.mkdir(exist_ok=True, mode=0o700)
            (self._base / "rootfs").mkdir(exist_ok=True, mode=0o755)
            self._collect_garbage()

    # ---- records -------------------------------------------------------------------------------

    def _device_dir(self, hash: str) -> Path:
        if hash == BASE_HASH:
            return self._base
        return self._devices / dirstore.validate_hash(hash)

    def _exists(self, hash: str) -> bool:
        return hash == BASE_HASH or (self._device_dir(hash) / "meta.json").exists()

    def _require(self, hash: str, message: str = "Unknown device {hash}") -> Path:
        if not self._exists(hash):
            raise NotFound(message.format(hash=hash))
        return self._device_dir(hash) / "rootfs"

    def _scratch(self) -> Path:
        return self._tmp / f"{os.getpid()}-{secrets.token_hex(4)}"

    def _collect_garbage(self) -> None:
        """Delete copies and deletions left in tmp/ by processes that died half-way."""
        for entry in os.listdir(self._tmp):
            pid = entry.split("-", 1)[0]
            if pid.isdigit() and dirstore.pid_alive(int(pid)):
                continue  # still being built or deleted by a live process
            try:
                dirstore.remove_tree(self._tmp / entry)
            except (Conflict, StorageError) as err:
                log.warning("vfs: keeping leftover %s: %s", entry, err)

    # ---- mounts --------------------------------------------------------------------------------

    def _mounted_at(self, rootfs: Path) -> list[str]:
        entries = kmount.mountinfo()
        ident = dirstore.bind_identity(rootfs, entries)
        if ident is None:
            return []
        return [e.mountpoint for e in entries
                if (e.major_minor, e.root) == ident and e.mountpoint != os.path.realpath(rootfs)]

    def mount_device(self, hash: str, path: str | os.PathLike, readonly: bool = False) -> None:
        """Bind-mount the device's tree at `path` (read-only: bind, then remount read-only)."""
        with self._lock.held():
            rootfs = self._require(hash)
            target = dirstore.mount_target(path)
            try:
                kmount.mount(rootfs, target, None, kmount.MS_BIND)
            except OSError as err:
                raise StorageError(f"Error mounting '{hash}' on '{path}': {os.strerror(err.errno or 0)}") from err
            if readonly:
                try:
                    kmount.mount(None, target, None, kmount.MS_REMOUNT | kmount.MS_BIND | kmount.MS_RDONLY)
                except OSError as err:
                    kmount.umount(target)
                    raise StorageError(f"Error mounting '{hash}' read-only on '{path}': "
                                       f"{os.strerror(err.errno or 0)}") from err
            self._mounts.add(hash, target)
            with self._active_lock:
                self._active.add(hash)

    def unmount_device(self, hash: str, path: str | os.PathLike, deactivate: bool = True) -> None:
        """Undo one mount_device at `path` (also one made by another process)."""
        with self._lock.held():
            rootfs = self._require(hash)
            real = os.path.realpath(path)
            entries = kmount.mountinfo()
            top = dirstore.top_mount_at(real, entries)
            if top is None:
                raise StorageError(f"Error unmounting '{hash}': {path} is not mounted")
            if (top.major_minor, top.root) != dirstore.bind_identity(rootfs, entries):
                raise StorageError(f"Error unmounting '{hash}': {path} is not a mount of this device")
            dirstore.umount_checked(real, f"'{hash}'", kmount.umount)
            self._mounts.drop(hash, real)
            if deactivate and not self._mounted_at(rootfs):
                with self._active_lock:
                    self._active.discard(hash)

    def deactivate_device(self, hash: str) -> None:
        """Forget the device's activation (vfs has no kernel object to release); refuses while mounted."""
        with self._lock.held():
            rootfs = self._require(hash, "hash {hash} doesn't exist")
            mounted = self._mounted_at(rootfs)
            if mounted:
                raise Conflict(f"device {hash or '(base)'} is mounted at {mounted[0]}")
            with self._active_lock:
                self._active.discard(hash)

    # ---- devices -------------------------------------------------------------------------------

    def add_device(self, hash: str, base_hash: str) -> None:
        """Copy `base_hash`'s tree into a new device; not initialized."""
        final = self._device_dir(dirstore.validate_hash(hash))
        if not self._exists(base_hash):
            raise NotFound(f"Unknown base hash {base_hash}")
        if os.path.lexists(final):
            raise Conflict(f"hash {hash} already exists")
        source = self._device_dir(base_hash) / "rootfs"
        scratch = self._scratch()
        try:
            scratch.mkdir(mode=0o700)
            proc = subprocess.run(["cp", "-a", "--reflink=auto", "--", str(source), str(scratch / "rootfs")],
                                  capture_output=True, text=True, close_fds=True)
            if proc.returncode != 0:
                detail = (proc.stderr.strip().splitlines() or ["cp failed"])[0]
                raise StorageError(f"cannot copy {base_hash or '(base)'} into {hash}: {detail}")
            fileutil.write_json_atomic(scratch / "meta.json", {"parent": base_hash, "initialized": False})
            with self._lock.held():
                if not self._exists(base_hash):
                    raise NotFound(f"Unknown base hash {base_hash}")
                try:
                    os.rename(scratch, final)
                except OSError as err:
                    if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                        raise Conflict(f"hash {hash} already exists") from err
                    raise StorageError(f"cannot add device {hash}: {err.strerror}") from err
                fileutil.fsync_dir(self._devices)
        finally:
            if scratch.exists():
                try:
                    dirstore.remove_tree(scratch)
                except (Conflict, StorageError) as err:
                    log.warning("vfs: could not clean up %s: %s", scratch, err)

    def set_initialized(self, hash: str) -> None:
        with self._lock.held():
            if hash == BASE_HASH:
                return
            self._require(hash)
            meta_path = self._device_dir(hash) / "meta.json"
            meta = fileutil.read_json(meta_path)
            if not meta.get("initialized"):
                meta["initialized"] = True
                fileutil.write_json_atomic(meta_path, meta)

    def remove_device(self, hash: str) -> None:
        """Delete the device and its tree; refuses while it is mounted. Children are independent copies."""
        if hash == BASE_HASH:
            raise InvalidArgument("the base device cannot be removed")
        with self._lock.held():
            rootfs = self._require(hash, "hash {hash} doesn't exist")
            mounted = self._mounted_at(rootfs)
            if mounted:
                raise Conflict(f"device {hash} is mounted at {mounted[0]}")
            inside = kmount.mounts_under(self._device_dir(hash))
            if inside:
                raise Conflict(f"device {hash}: {inside[0]} is mounted inside its tree")
            doomed = self._scratch()
            try:
                os.rename(self._device_dir(hash), doomed)
                fileutil.fsync_dir(self._devices)
            except OSError as err:
                raise StorageError(f"cannot remove device {hash}: {err.strerror}") from err
            with self._active_lock:
                self._active.discard(hash)
        try:
            dirstore.remove_tree(doomed)
        except (Conflict, StorageError) as err:  # the device is gone; the next start retries the delete
            log.warning("vfs: could not delete the tree of %s: %s", hash, err)

    def has_device(self, hash: str) -> bool:
        try:
            return self._exists(hash)
        except InvalidArgument:
            return False

    def has_initialized_device(self, hash: str) -> bool:
        if hash == BASE_HASH:
            return True
        try:
            return bool(fileutil.read_json(self._device_dir(hash) / "meta.json").get("initialized"))
        except (InvalidArgument, OSError, ValueError):
            return False

    def has_activated_device(self, hash: str) -> bool:
        """True between a mount and the deactivating unmount/deactivate (or while mounted anywhere)."""
        try:
            if not self._exists(hash):
                return False
        except InvalidArgument:
            return False
        with self._active_lock:
            if hash in self._active:
                return True
        return bool(self._mounted_at(self._device_dir(hash) / "rootfs"))

    def list(self) -> list[str]:
        return sorted(n for n in os.listdir(self._devices)
                      if not n.startswith(".") and (self._devices / n / "meta.json").exists())

    def status(self) -> list[tuple[str, str]]:
        return [("Root Dir", str(self.home)), ("Devices", str(len(self.list())))]

    def _all_mounts(self) -> list[str]:
        """Every bind mount of any device of this home (all processes), deepest and latest first."""
        entries = kmount.mountinfo()
        devices = dirstore.bind_identity(self._devices, entries)
        base = dirstore.bind_identity(self._base / "rootfs", entries)
        found = []
        for e in entries:
            if devices and e.major_minor == devices[0] and (e.root.startswith(devices[1].rstrip("/") + "/")
                                                            or (e.major_minor, e.root) == base):
                found.append(e.mountpoint)
        return sorted(reversed(found), key=lambda p: p.count("/"), reverse=True)

    def shutdown(self) -> None:
        """Unmount every mount of this home's devices (errors logged, not raised) and forget activations."""
        dirstore.unmount_all(self._mounts, self._all_mounts, "vfs")
        with self._active_lock:
            self._active.clear()

    def close(self) -> None:
        """Forget this instance's bookkeeping; mounts stay for whichever process unmounts them later."""
        for hash, path, count in self._mounts.items():
            for _ in range(count):
                self._mounts.drop(hash, path)
