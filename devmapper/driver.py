"""Docker's graphdriver over any DeviceSet: callers ask for an id's filesystem and give it back.

`get(id)` mounts the device once at `<home>/mnt/<id>` and counts a reference; `put(id)` drops one
and, at zero, unmounts and deactivates the device. Callers never choose mount paths and never
decide when a device is deactivated (docker07.md §1.6: Docker 0.7.0's driver mounted at
`<home>/mnt/<id>`; 0.8 added the Get/Put reference counts).

pydock has no daemon, so the counts are shared by processes: `pydock start` gets a rootfs and its
forked monitor puts it; a concurrent `pydock diff` gets and puts the same mount. Each id has one
small file `<home>/mnt/.refs/<id>` holding `<count> <ro|rw>`, read and rewritten in place under an
flock on that same file. Lock order: that file first, then the DeviceSet's own lock (taken inside
its calls), never the other way round. A count is believed only while `<home>/mnt/<id>` really is
a mountpoint: after a reboot, a crash that lost the mount, or an umount behind the driver's back,
the next `get` starts from zero. Every call touches one id's files; nothing but `shutdown` looks
at every id.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NamedTuple

from pydock.devmapper.deviceset import BASE_HASH, DeviceSet
from pydock.devmapper.dirstore import is_hash, validate_hash
from pydock.utils import mount as kmount
from pydock.utils import mounttable
from pydock.utils.errors import Conflict, NotFound, PydockError, StorageError
from pydock.utils.fileutil import flocked

log = logging.getLogger(__package__)

RO, RW = "ro", "rw"
#: below the driver home: the mountpoints, and (hidden, so no device id can name it) the counts.
MNT_DIR = "mnt"
REFS_DIR = ".refs"


def _mount_id(path: Path) -> int | None:
    """The id of the mount `path` resolves into (/proc/self/fdinfo: O(1), where mountinfo is O(mounts));
    None on kernels that do not report it (before 3.15)."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"mnt_id:"):
                    return int(line.split()[1])
    finally:
        os.close(fd)
    return None


def is_mounted(path: Path) -> bool:
    """Whether something is mounted exactly at `path` (a bind mount of the same filesystem counts)."""
    try:
        own, above = _mount_id(path), _mount_id(path.parent)
    except FileNotFoundError:
        return False
    if own is None or above is None:
        return mounttable.is_mountpoint(path)
    return own != above


class _Refs(NamedTuple):
    """What an id's count file says, judged against the mount table."""

    count: int      # references believed (0 whenever the mountpoint is not mounted)
    mode: str       # RO / RW as decided by the first get; "" when unknown
    mounted: bool   # <home>/mnt/<id> is a mountpoint right now
    stale: int      # a recorded count that was not believed because the mount is gone, else 0


def _parse(data: bytes, where: Path) -> tuple[int, str]:
    fields = data.split(b"\n", 1)[0].split()
    if not fields:
        return 0, ""
    try:
        count, mode = int(fields[0]), fields[1].decode()
        if count < 0 or mode not in (RO, RW):
            raise ValueError(mode)
    except (ValueError, IndexError, UnicodeDecodeError):
        log.warning("driver: unreadable reference count %r in %s; counting from 0", data[:40], where)
        return 0, ""
    return count, mode


class Driver:
    """Mount-by-id with reference counts shared by processes, over any DeviceSet (see the module doc)."""

    def __init__(self, deviceset: DeviceSet, home: str | os.PathLike, *, owns_deviceset: bool = False) -> None:
        """`home` must be private to this view of the store (a PrefixedDeviceSet gets the runtime's
        own home); `owns_deviceset` makes close() close the DeviceSet too."""
        self.deviceset = deviceset
        self.name: str = deviceset.name
        (Path(home) / MNT_DIR / REFS_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home = Path(os.path.realpath(home))
        self._mnt = self.home / MNT_DIR
        self._refs = self._mnt / REFS_DIR
        self._owns_deviceset = owns_deviceset

    # ---- devices ---------------------------------------------------------------------------------

    def create(self, id: str, parent: str | None, durable: bool = True) -> None:
        """A new device, a snapshot of `parent` (None: the empty base); not initialized, not mounted;
        `durable=False`: a scratch device (see DeviceSet.add_device)."""
        self.deviceset.add_device(validate_hash(id), parent or BASE_HASH, durable=durable)

    def set_initialized(self, id: str) -> None:
        """Mark the content complete (an uninitialized device is garbage to rebuild)."""
        self.deviceset.set_initialized(validate_hash(id))

    def exists(self, id: str) -> bool:
        return is_hash(id) and self.deviceset.has_device(id)  # an id that cannot name one names none

    def initialized(self, id: str) -> bool:
        """Whether the device exists with its content complete (set_initialized)."""
        return is_hash(id) and self.deviceset.has_initialized_device(id)

    def list(self) -> list[str]:
        """Every device's id, the base excluded."""
        return self.deviceset.list()

    def status(self) -> list[tuple[str, str]]:
        """(name, value) lines for `pydock info`."""
        return list(self.deviceset.status())

    # ---- mounts ------------------------------------------------------------------------------------

    def mountpoint(self, id: str) -> Path:
        """Where `get(id)` mounts the device (nothing is mounted by asking)."""
        return self._mnt / validate_hash(id)

    def references(self, id: str) -> int:
        """The references held on `id` by every process (0 unless it is really mounted)."""
        path = self.mountpoint(id)
        try:
            data = (self._refs / id).read_bytes()
        except FileNotFoundError:
            return 0
        count, _mode = _parse(data, self._refs / id)
        return count if is_mounted(path) else 0

    def get(self, id: str, readonly: bool = False) -> Path:
        """Mount the device at `<home>/mnt/<id>` unless it is mounted already, count one reference, and
        return that path. The first get decides the mode: a read-only get shares a read-write mount,
        a read-write get of a read-only mount is refused (StorageError)."""
        path = self.mountpoint(id)
        want = RO if readonly else RW
        with self._locked(id) as fd:
            refs = self._read(fd, id)
            if refs.mounted and refs.count == 0 and refs.mode != want:
                # mounted but unheld, in another mode or an unknown one: a get killed between its mount
                # and its count, or a put whose unmount failed. Start over in the mode asked for.
                log.debug("driver %s: %s is mounted with no reference (mode %r); remounting it %s",
                          self.name, path, refs.mode, want)
                self._detach(id)
                refs = _Refs(0, "", False, 0)
            if refs.mounted:
                if refs.mode == RO and want == RW:
                    raise StorageError(f"can't mount {id} read-write: it is mounted read-only at {path} "
                                       f"({refs.count} reference(s)); put those first")
                self._write(fd, refs.count + 1, refs.mode)
                return path
            self._mkdir(path)
            try:
                self.deviceset.mount_device(id, path, readonly=readonly)
            except BaseException:
                self._forget(id)
                raise
            self._write(fd, 1, want)
            return path

    def put(self, id: str) -> None:
        """Drop one reference; the last one unmounts and deactivates the device. NotFound when no
        reference is held; an unmount that fails (busy) drops the reference and raises StorageError,
        leaving the mount for a later put, get or release."""
        path = self.mountpoint(id)
        with self._locked(id) as fd:
            refs = self._read(fd, id)
            if not refs.mounted:
                self._forget(id)
                if not refs.stale:
                    raise NotFound(f"can't put {id}: it is not mounted (no reference is held)")
                self._deactivate(id)  # unmounted behind our back: finish what the last put would do
                return
            if refs.count > 1:
                self._write(fd, refs.count - 1, refs.mode)
                return
            try:
                self.deviceset.unmount_device(id, path, deactivate=True)
            except BaseException:
                if refs.count:
                    self._write(fd, 0, refs.mode)
                raise
            self._forget(id)

    def release(self, id: str) -> None:
        """Drop every reference now (crash recovery: the holders are gone): unmount, lazily if busy,
        and deactivate. Nothing held is no error."""
        with self._locked(id) as fd:
            self._release(fd, id)

    def remove(self, id: str) -> None:
        """Release the device, then delete it; NotFound if there is none."""
        with self._locked(id) as fd:
            self._release(fd, id, deactivate=False)  # remove_device deactivates on its own
            self.deviceset.remove_device(id)

    @contextmanager
    def mounted(self, id: str, readonly: bool = False) -> Iterator[Path]:
        """`get` for the block, `put` after it (a put that fails after a failing block is only logged,
        so the block's own error is the one raised)."""
        path = self.get(id, readonly=readonly)
        try:
            yield path
        except BaseException:
            try:
                self.put(id)
            except PydockError as err:
                log.warning("driver %s: put of %s after a failure: %s", self.name, id, err)
            raise
        self.put(id)

    # ---- life cycle ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Forget this object (it keeps no fds of its own; an owned DeviceSet is closed). Mounts and
        counts stay: they may belong to running containers."""
        if self._owns_deviceset:
            closer = getattr(self.deviceset, "close", None)
            if closer is not None:
                closer()

    def shutdown(self) -> None:
        """Release every id under `<home>/mnt`, then shut the DeviceSet down."""
        names: set[str] = set()
        for directory in (self._mnt, self._refs):
            try:
                names.update(n for n in os.listdir(directory) if not n.startswith("."))
            except FileNotFoundError:
                log.debug("driver %s: %s is gone; nothing to release there", self.name, directory)
        for id in sorted(names):
            try:
                self.release(id)
            except PydockError as err:
                log.warning("driver %s: shutdown could not release %s: %s", self.name, id, err)
        self.deviceset.shutdown()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the count files ----------------------------------------------------------------------------

    @contextmanager
    def _locked(self, id: str) -> Iterator[int]:
        """The id's count file, opened and flocked. A file unlinked by its last holder while we
        waited is not the id's file any more: lock the one now at that path instead."""
        ref = self._refs / id
        while True:
            with ExitStack() as stack:
                try:
                    fd = stack.enter_context(flocked(ref))
                except OSError as err:
                    raise StorageError(f"can't lock the reference count of {id} ({ref}): "
                                       f"{err.strerror or err}") from err
                try:
                    current = os.path.samestat(os.fstat(fd), os.stat(ref))
                except FileNotFoundError:
                    current = False
                if current:
                    yield fd
                    return
            log.debug("driver %s: the count file of %s was replaced while waiting for it", self.name, id)

    def _read(self, fd: int, id: str) -> _Refs:
        count, mode = _parse(os.pread(fd, 64, 0), self._refs / id)
        path = self._mnt / id
        if is_mounted(path):
            return _Refs(count, mode, True, 0)
        if count:
            log.warning("driver %s: %s had %d reference(s) but %s is not mounted (reboot, crash or an "
                        "unmount behind the driver's back); counting from 0", self.name, id, count, path)
        return _Refs(0, "", False, count)

    def _write(self, fd: int, count: int, mode: str) -> None:
        """Rewrite in place (the flock is on this inode); a reader ignores anything after the first line."""
        data = f"{count} {mode}\n".encode()
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        except OSError as err:
            raise StorageError(f"driver {self.name}: can't record a reference count: {err.strerror or err}") from err

    def _forget(self, id: str) -> None:
        """Nothing held, nothing mounted: drop the count file and the empty mountpoint (lock held)."""
        (self._refs / id).unlink(missing_ok=True)
        path = self._mnt / id
        try:
            os.rmdir(path)
        except FileNotFoundError:
            return
        except OSError as err:
            log.debug("driver %s: kept the mountpoint %s: %s", self.name, path, err.strerror)

    @staticmethod
    def _mkdir(path: Path) -> None:
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            if path.is_symlink() or not path.is_dir():
                raise StorageError(f"mountpoint {path} exists and is not a directory") from None
        except OSError as err:
            raise StorageError(f"can't make the mountpoint {path}: {err.strerror or err}") from err

    # ---- undoing mounts -----------------------------------------------------------------------------

    def _release(self, fd: int, id: str, deactivate: bool = True) -> None:
        refs = self._read(fd, id)
        if refs.mounted:
            log.debug("driver %s: releasing %s (%d reference(s))", self.name, id, refs.count)
            self._detach(id)
        if deactivate:
            self._deactivate(id)
        self._forget(id)

    def _detach(self, id: str) -> None:
        """Unmount `<home>/mnt/<id>` through the DeviceSet, else lazily (MNT_DETACH: busy, or a mount the
        DeviceSet no longer knows about)."""
        path = self._mnt / id
        try:
            self.deviceset.unmount_device(id, path, deactivate=True)
            return
        except PydockError as err:
            log.warning("driver %s: unmounting %s failed (%s); detaching it lazily", self.name, path, err)
        try:
            kmount.umount(path, kmount.MNT_DETACH)
        except OSError as err:
            if is_mounted(path):
                raise StorageError(f"can't unmount {path}: {os.strerror(err.errno or 0)}") from err
            log.debug("driver %s: %s went away meanwhile: %s", self.name, path, err)

    def _deactivate(self, id: str) -> None:
        """Deactivate the device unless something else still has it mounted (another view or path)."""
        try:
            if self.deviceset.has_activated_device(id):
                self.deviceset.deactivate_device(id)
        except Conflict as err:
            log.debug("driver %s: %s stays active: %s", self.name, id, err)
        except PydockError as err:
            log.warning("driver %s: could not deactivate %s: %s", self.name, id, err)
