"""The "overlay" DeviceSet: each device is a directory layer stacked on its parent's chain with overlayfs.

On-disk layout of the driver home (one place for every path):

    .lock                       flock serialising metadata changes across processes
    empty/                      always-empty bottom lowerdir (overlayfs wants two lowerdirs without an upper)
    layers/<lid>/diff           the layer's own files (the upperdir of its read-write mounts)
    layers/<lid>/work           overlayfs workdir for read-write mounts
    layers/<lid>/meta.json      {"hash", "parent" (parent's lid, "" for the base), "initialized",
                                 "durable": false only for a scratch device: see add_device}
    layers/<lid>/children/<c>   an empty file per layer <c> stacked on it (no directory: none), so
                                removing a device checks its own chain, not every layer of the root
    devices/<hash> -> ../layers/<lid>   the device table; creating/removing this symlink is the commit point
    pending/<lid>               a layer being made or removed; one left at open means a crash there
    trash/<lid>.<random>        a removed layer, renamed here at once and deleted after the command's
                                answer (dirstore.discard_tree); what a crash left, at the next open
    .children-indexed           every layer's children are recorded (written by the first full collection)

The base device (hash "") is layer `base`, an empty directory. A read-write mount of device D is
`lowerdir=<parent chain diffs>:empty,upperdir=D/diff,workdir=D/work`; a read-only mount is
`lowerdir=D/diff:<parent chain diffs>:empty` with no upper. The mount source is the layer directory,
so mountinfo tells which device is mounted where, from any process.

Removing a device whose children still exist (dm-thin allows deleting an origin with live snapshots)
removes the device name at once but keeps the layer's data until the last descendant is gone,
because children read it as a lowerdir. Unlike dm-thin snapshots, a child sees later writes to its
parent's layer wherever it has not shadowed them; images are immutable once initialized, so
pydock never relies on either behaviour.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from pydock.devmapper import dirstore
from pydock.devmapper.deviceset import BASE_HASH
from pydock.devmapper.dirdriver import DirectoryDeviceSet, MountMatcher
from pydock.utils import mount as kmount
from pydock.utils import afterwards, fileutil, mounttable
from pydock.utils.mounttable import MountEntry
from pydock.utils.errors import Conflict, NotFound, StorageError

log = logging.getLogger(__package__)

BASE_LAYER = "base"
#: marker in the driver home: every layer's children are recorded in `layers/<lid>/children/`.
_INDEXED = ".children-indexed"
#: deepest chain accepted (overlayfs stacks at most 500 lowerdirs; older kernels far fewer), and the
#: relative lowerdir list must fit in one page of mount data.
MAX_DEPTH = 160
#: mount(2) copies at most one page of option data.
_MOUNT_DATA_MAX = 4000


class OverlayDeviceSet(DirectoryDeviceSet[str]):
    """Directory layers combined by overlayfs; see the module docstring for layout and semantics.

    A device's key is its layer id."""

    name = "overlay"
    _layers: Path
    _empty: Path
    _trash: Path

    def _prepare_home(self) -> None:
        self._layers = self.home / "layers"
        self._empty = self.home / "empty"
        self._layers.mkdir(exist_ok=True, mode=0o700)
        self._empty.mkdir(exist_ok=True, mode=0o755)
        if not (self._layers / BASE_LAYER / "meta.json").exists():
            dirstore.remove_tree(self._layer_dir(BASE_LAYER))  # a crash while creating it
            self._make_layer(BASE_LAYER, BASE_HASH, "", root_mode=(0o755, 0, 0), initialized=True)
        self._pending = self.home / "pending"
        self._pending.mkdir(exist_ok=True, mode=0o700)
        self._trash = self.home / "trash"  # removed layers, until deleted after the answer (dirstore.discard_tree)
        afterwards.later(lambda: afterwards.empty_trash(self._trash))  # what a crash left there
        # a full collection reads every layer's record: only when a crash may have left garbage (or
        # once, to index the children of a root made before they were recorded)
        if os.listdir(self._pending) or not (self.home / _INDEXED).exists():
            self._collect_garbage()

    # ---- records -------------------------------------------------------------------------------

    def _layer_dir(self, lid: str) -> Path:
        return self._layers / lid

    def _meta_file(self, lid: str) -> Path:
        return self._layer_dir(lid) / "meta.json"

    def _device_tree(self, lid: str) -> Path:
        return self._layer_dir(lid)

    def _meta(self, lid: str) -> dict:
        return self._read_meta(self._meta_file(lid))

    def _lookup(self, hash: str) -> str | None:
        """The layer id of device `hash`, or None when there is no such device."""
        if hash == BASE_HASH:
            return BASE_LAYER
        dirstore.validate_hash(hash)
        try:
            target = os.readlink(f"{self._devices}/{hash}")  # not Path's `/`: listings ask for every image
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StorageError(f"cannot read device record {hash}: {err.strerror}") from err
        return os.path.basename(target.rstrip("/"))

    def _chain(self, lid: str) -> list[str]:
        """Layer ids from `lid` down to the base layer."""
        chain = [lid]
        while chain[-1] != BASE_LAYER:
            parent = self._meta(chain[-1]).get("parent") or BASE_LAYER
            if parent in chain or len(chain) > MAX_DEPTH + 1:
                raise StorageError(f"overlay layer chain of {lid} is corrupt (loop or too deep)")
            chain.append(parent)
        return chain

    def _make_layer(self, lid: str, hash: str, parent: str, *, root_mode: tuple[int, int, int],
                    initialized: bool, durable: bool = True) -> None:
        layer = self._layer_dir(lid)
        layer.mkdir(mode=0o700)
        diff = layer / "diff"
        diff.mkdir()
        mode, uid, gid = root_mode
        os.chown(diff, uid, gid)
        os.chmod(diff, mode)
        (layer / "work").mkdir(mode=0o700)
        fileutil.write_json_atomic(self._meta_file(lid),
                                   {"hash": hash, "parent": parent, "initialized": initialized,
                                    **({} if durable else {"durable": False})}, durable=durable)

    def _durable(self, lid: str) -> bool:
        """Whether the layer's records and data are flushed (all but a scratch device's; see add_device)."""
        try:
            return self._meta(lid).get("durable", True) is not False
        except StorageError:
            return True

    def _children_dir(self, lid: str) -> Path:
        return self._layer_dir(lid) / "children"

    def _has_children(self, lid: str) -> bool:
        """Whether a layer still stacks on `lid` (entries of layers that are gone are dropped)."""
        try:
            entries = os.listdir(self._children_dir(lid))
        except FileNotFoundError:
            return False
        for child in entries:
            if os.path.lexists(self._layer_dir(child)):
                return True
            _unlink(self._children_dir(lid) / child)
        return False

    def _collect_chain(self, lid: str, entries: list[MountEntry]) -> None:
        """After `lid`'s device went: delete it, then each parent, while no device names it and nothing
        else stacks on it (what a full collection would delete of this chain, without reading the others).
        `entries`: the mount table read under the home lock, still held."""
        while lid != BASE_LAYER:
            try:
                meta: dict | None = self._meta(lid)
            except (OSError, ValueError, StorageError) as err:
                log.debug("overlay: layer %s has no readable meta.json: %s", lid, err)
                meta = None
            if meta and meta.get("hash") and self._probe(meta["hash"]) == lid:
                return  # still a device (an image under many containers: its children are not listed)
            if self._has_children(lid):
                return
            parent = (meta or {}).get("parent") or BASE_LAYER
            try:
                dirstore.discard_tree(self._layer_dir(lid), self._trash, entries)
            except (Conflict, StorageError) as err:
                log.warning("overlay: keeping unreferenced layer %s: %s", lid, err)
                return
            _unlink(self._children_dir(parent) / lid)
            lid = parent

    def _collect_garbage(self) -> None:
        """Delete layers no device names and no surviving layer builds on (crash leftovers, removed parents),
        record every survivor in its parent's children, and clear the pending marks."""
        metas: dict[str, dict | None] = {}
        for entry in os.listdir(self._layers):
            if entry == BASE_LAYER or entry.startswith("."):
                continue
            try:
                metas[entry] = fileutil.read_json(self._meta_file(entry))
            except (OSError, ValueError) as err:  # half-made or half-deleted: garbage unless named
                log.debug("overlay: layer %s has no readable meta.json: %s", entry, err)
                metas[entry] = None
        while True:
            parents = {m.get("parent") for m in metas.values() if m}
            dead = [lid for lid, m in metas.items()
                    if lid not in parents and (m is None or not m.get("hash") or self._probe(m["hash"]) != lid)]
            if not dead:
                break
            for lid in dead:
                try:
                    dirstore.remove_tree(self._layer_dir(lid))
                except (Conflict, StorageError) as err:
                    log.warning("overlay: keeping unreferenced layer %s: %s", lid, err)
                metas.pop(lid)
        expected: dict[str, set[str]] = {}
        for lid, m in metas.items():
            expected.setdefault((m or {}).get("parent") or BASE_LAYER, set()).add(lid)
        for lid in [BASE_LAYER, *metas]:
            kids = expected.get(lid, set())
            try:
                recorded = set(os.listdir(self._children_dir(lid)))
            except FileNotFoundError:
                recorded = set()
            if kids - recorded:
                self._children_dir(lid).mkdir(mode=0o700, exist_ok=True)
            for child in kids - recorded:
                _record(self._children_dir(lid) / child)
            for child in recorded - kids:
                _unlink(self._children_dir(lid) / child)
        for entry in os.listdir(self._pending):
            _unlink(self._pending / entry)
        (self.home / _INDEXED).touch()

    # ---- mounts --------------------------------------------------------------------------------

    def _mount_source(self, lid: str) -> str:
        return str(self._layer_dir(lid))

    def _mount_matcher(self, lid: str, entries: list[MountEntry]) -> MountMatcher:
        source = self._mount_source(lid)
        return lambda e: e.fstype == "overlay" and e.source == source

    def _home_matcher(self, entries: list[MountEntry]) -> MountMatcher:
        lead = str(self._layers) + "/"
        return lambda e: e.fstype == "overlay" and e.source.startswith(lead)

    def _mount_data(self, chain: list[str], readonly: bool, base: str) -> str:
        prefix = base + "/" if base else ""
        def diff(lid: str) -> str:
            return f"{prefix}layers/{lid}/diff"
        empty = f"{prefix}empty"
        if readonly:
            return "lowerdir=" + ":".join([diff(lid) for lid in chain] + [empty])
        own = chain[0]
        lower = ":".join([diff(lid) for lid in chain[1:]] + [empty])
        return f"lowerdir={lower},upperdir={diff(own)},workdir={prefix}layers/{own}/work"

    def _mount(self, lid: str, target: str, readonly: bool) -> None:
        """Read-write: the device's own diff is the upper layer; read-only: no upper layer at all (EROFS).

        A scratch device's read-write mount is `volatile` (Linux 5.10+; plain where the kernel refuses
        it): its unmount then skips the sync of the whole upper filesystem that overlayfs does otherwise
        (a `--rm` run paid two syncs of the host's filesystem for data it deletes right after). A
        volatile mount leaves `work/work/incompat/volatile`, which makes the kernel refuse the next mount
        of that layer; it only matters for a scratch device kept after all (a `--rm` container whose
        removal failed, started again) and is cleared before any read-write mount."""
        chain = self._chain(lid)
        if not readonly:
            self._clear_volatile(lid)
        if not readonly and not self._durable(lid):
            try:
                self._mount_chain(lid, chain, target, False, ",volatile")
                return
            except OSError as err:
                if err.errno != errno.EINVAL:
                    raise
                log.debug("overlay: volatile mount of %s refused (%s); mounting it plainly", lid, err)
        self._mount_chain(lid, chain, target, readonly, "")

    def _clear_volatile(self, lid: str) -> None:
        """Drop the mark a volatile mount of the layer left, which would make the kernel refuse the next."""
        incompat = self._layer_dir(lid) / "work" / "work" / "incompat"
        if os.path.lexists(incompat):
            log.debug("overlay: layer %s was mounted volatile; clearing %s", lid, incompat)
            dirstore.remove_tree(incompat)

    def _mount_chain(self, lid: str, chain: list[str], target: str, readonly: bool, extra: str) -> None:
        flags = kmount.MS_RDONLY if readonly else 0
        data = self._mount_data(chain, readonly, str(self.home)) + extra
        source = self._mount_source(lid)
        if len(data) <= _MOUNT_DATA_MAX and not any(c in str(self.home) for c in ":,\\"):
            kmount.mount(source, target, "overlay", flags, data)
            return
        # Too long for one page of mount data, or the home's path holds overlayfs's separators: name
        # the layers relative to the home, from a child process that has chdir'ed there (chdir in
        # this process would race with other threads).
        data = self._mount_data(chain, readonly, "") + extra
        if len(data) > _MOUNT_DATA_MAX:
            raise OSError(errno.E2BIG, f"{len(chain)} layers do not fit in one overlayfs mount")
        dirstore.mount_from(self.home, source, target, "overlay", flags, data)

    # ---- devices -------------------------------------------------------------------------------

    def add_device(self, hash: str, base_hash: str, durable: bool = True) -> None:
        """New empty layer on top of `base_hash`'s chain; not initialized.

        Its records are fsynced in the order crash recovery relies on (pending mark, the parent's
        children mark, meta.json, then the device link, the commit point). A scratch device
        (`durable=False`) skips every flush: a crash may lose or tear any of them, which the next
        open's collection (the pending mark) or its container's removal by crash recovery cleans."""
        dirstore.validate_hash(hash)
        with self._lock.held():
            parent = self._lookup(base_hash)
            if parent is None:
                raise NotFound(f"Unknown base hash {base_hash}")
            if os.path.lexists(self._devices / hash):
                raise Conflict(f"hash {hash} already exists")
            depth = len(self._chain(parent))
            if depth > MAX_DEPTH:
                raise StorageError(f"cannot add {hash}: the overlay chain would be {depth + 1} layers deep "
                                   f"(at most {MAX_DEPTH})")
            st = os.stat(self._layer_dir(parent) / "diff")
            while True:
                lid = os.urandom(5).hex()
                if not os.path.lexists(self._layer_dir(lid)):
                    break
            try:
                _record(self._pending / lid, durable)  # a crash from here on: the next open collects
                self._children_dir(parent).mkdir(mode=0o700, exist_ok=True)
                _record(self._children_dir(parent) / lid, durable)
                self._make_layer(lid, hash, parent, root_mode=(st.st_mode & 0o7777, st.st_uid, st.st_gid),
                                 initialized=False, durable=durable)
                os.symlink(f"../layers/{lid}", self._devices / hash)
                if durable:
                    fileutil.fsync_dir(self._devices)
            except BaseException as err:
                try:
                    dirstore.remove_tree(self._layer_dir(lid))
                    _unlink(self._children_dir(parent) / lid)
                    _unlink(self._pending / lid)
                except Exception as cleanup_err:  # noqa: BLE001 - the original error matters more; GC retries later
                    log.warning("overlay: could not clean up layer %s: %s", lid, cleanup_err)
                if isinstance(err, OSError):
                    raise StorageError(f"cannot add device {hash}: {err.strerror or err}") from err
                raise
            _unlink(self._pending / lid)

    def _drop_record(self, hash: str, lid: str, entries: list[MountEntry]) -> None:
        """Unlink the device's name; its layer stays on disk only while descendants still stack on it.
        (A scratch device's removal is not flushed either: see add_device.)"""
        durable = self._durable(lid)
        _record(self._pending / lid, durable)  # a crash before the layer is gone: the next open collects
        try:
            os.unlink(self._devices / hash)
            if durable:
                fileutil.fsync_dir(self._devices)
        except OSError as err:
            _unlink(self._pending / lid)
            raise StorageError(f"cannot remove device {hash}: {err.strerror}") from err
        self._collect_chain(lid, entries)
        _unlink(self._pending / lid)

    def list(self) -> list[str]:
        return sorted(n for n in os.listdir(self._devices) if not n.startswith("."))

    def status(self) -> list[tuple[str, str]]:
        layers = sum(1 for n in os.listdir(self._layers) if not n.startswith("."))
        return [("Root Dir", str(self.home)), ("Devices", str(len(self.list()))),
                ("Layers on disk", str(layers)), ("Backing Filesystem", _fstype(self.home))]


def _record(path: Path, durable: bool = True) -> None:
    """Create the empty marker `path`, durably (its directory fsynced) unless told otherwise."""
    fileutil.write_new(path, b"", durable=False)
    if durable:
        fileutil.fsync_dir(path.parent)


def _unlink(path: Path) -> None:
    """Remove a marker file that may already be gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        log.debug("overlay: %s was already gone", path)


def _fstype(path: Path) -> str:
    """Filesystem type holding `path` (what overlayfs's upper layers live on)."""
    holder = dirstore.mount_holding(path, mounttable.mountinfo())
    return holder.fstype if holder else "unknown"
