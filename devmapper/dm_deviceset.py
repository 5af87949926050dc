"""DeviceSetDM: the device-mapper thin-pool DeviceSet (policy: which record, which pool step, when).

Order of every change (so a crash anywhere is recoverable by a table lookup at start-up):
  1. pool.json gets the *open transaction* (op, thin id, new transaction id) and the bumped
     next thin id, and the journal gets a line, before any pool message is sent;
  2. the device record moves to an in-between state (CREATING / DELETING);
  3. the pool message (create_snap / create_thin / delete);
  4. the device record reaches its final state (or is deleted);
  5. `set_transaction_id old new`, then the open transaction is cleared.
At start-up an open transaction is rolled back (create) or forward (delete), devices left in
between states are reconciled with the kernel, and mounts/activations left by a killed process
are undone. Thin ids only ever grow and are persisted before use, so an id the pool may hold is
never handed out again (and EEXIST from the pool skips to the next id as a last resort).

Access is serialized by a thread lock plus an exclusive flock on `<home>/lock`, so several
pydock processes can share one pool. Per-device state lives on disk, not in memory.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydock.utils.errors import Conflict, InvalidArgument, KernelFeatureMissing, NotFound, StorageError

from .deviceset import BASE_HASH
from .kernel import blockdev, dm
from pydock.utils import mount as kmount
from pydock.utils import mounttable
from .metadata import (DeferredRecord, DeviceRecord, JournalEntry, MetadataStore, OpenTransaction, PoolRecord, State,
                       is_valid_hash)
from .pool import METADATA_BLOCK_BYTES, ThinPool

log = logging.getLogger(__package__)

GiB = 1 << 30
MiB = 1 << 20
FAULT_ENV = "PYDOCK_DM_FAULT"
MAX_THIN_ID = (1 << 24) - 1


def _fault(step: str) -> None:
    """Crash-test hook: PYDOCK_DM_FAULT=<step> kills this process with SIGKILL at that step."""
    if os.environ.get(FAULT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def default_prefix(home: Path) -> str:
    """`pydock-<major>:<minor>-<inode>` of the home dir (Docker 0.7.0: one pool per root)."""
    st = os.stat(home)
    return f"pydock-{os.major(st.st_dev)}:{os.minor(st.st_dev)}-{st.st_ino}"


def _mkfs(node: Path) -> None:
    """Format the base device (lazy init off so the first container write is not slow)."""
    base = ["mkfs.ext4", "-q", "-F", "-m", "0"]
    for opts in ("discard,lazy_itable_init=0,lazy_journal_init=0", "discard,lazy_itable_init=0"):
        r = subprocess.run([*base, "-E", opts, str(node)], capture_output=True, text=True, close_fds=True)
        if r.returncode == 0:
            return
    raise StorageError(f"mkfs.ext4 {node} failed: {r.stderr.strip() or r.returncode}")


class DeviceSetDM:
    """Copy-on-write devices as thin snapshots in one loop-backed dm thin pool."""

    name = "devicemapper"

    def __init__(self, home: str | os.PathLike, *, prefix: str | None = None, data_size: int = 100 * GiB,
                 metadata_size: int = 2 * GiB, base_size: int = 10 * GiB, min_free_percent: float = 10) -> None:
        self.home = Path(home)
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        self.prefix = prefix or default_prefix(self.home)
        if len(self.prefix) > 60 or not self.prefix or "/" in self.prefix:
            raise InvalidArgument(f"invalid device-mapper prefix {self.prefix!r}")
        self.data_size, self.metadata_size, self.base_size = data_size, metadata_size, base_size
        self.min_free_percent = min_free_percent
        self.data_file = self.home / "data"
        self.metadata_file = self.home / "metadata"
        self._tlock = threading.RLock()
        self._lock_fd = os.open(self.home / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._depth = 0
        self._pid = os.getpid()
        self._closed = False
        try:
            dm.ensure_control()
            self.ctl = dm.Control()
        except OSError as e:
            os.close(self._lock_fd)
            raise KernelFeatureMissing(f"device-mapper unavailable: {e.strerror or e}") from None
        self.store = MetadataStore(self.home)
        self.pool = ThinPool(self.ctl, self.prefix, self.data_file, self.metadata_file)
        self._ready = False
        try:
            with self._locked():
                self._init()
            self._ready = True
        except BaseException:
            self.ctl.close()
            os.close(self._lock_fd)
            raise

    # -- locking -------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Thread lock + exclusive flock on <home>/lock (re-entrant within this object)."""
        if self._pid != os.getpid():
            self._after_fork()
        with self._tlock:
            if self._closed:
                raise StorageError(f"device set {self.home} is shut down")
            if self._depth == 0:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                if self._depth == 1 and self._ready and not self.pool.exists():
                    self._init()  # another process shut the pool down: bring it back (same files)
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                raise
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _after_fork(self) -> None:
        """A forked child (e.g. a container monitor) must not share the parent's flock.

        flock belongs to the open file description, which fork shares: reopen the lock file so
        parent and child exclude each other, and start with a fresh thread lock.
        """
        inherited = self._lock_fd
        self._lock_fd = os.open(self.home / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(inherited)  # the parent's lock (if held) stays: it keeps its own descriptor
        self._tlock = threading.RLock()
        self._depth = 0
        self._pid = os.getpid()

    # -- names -----------------------------------------------------------------------------
    def dm_name(self, hash: str) -> str:
        return f"{self.prefix}-{'base' if hash == BASE_HASH else hash}"

    def hash_of_dm_name(self, name: str) -> str | None:
        """The hash a dm name `<prefix>-<hash>` belongs to (None for the pool and foreign names)."""
        head = self.prefix + "-"
        if not name.startswith(head):
            return None
        rest = name[len(head):]
        if rest == "pool" or rest.startswith("-") or not rest:
            return None
        return BASE_HASH if rest == "base" else rest

    # -- initialisation and recovery -------------------------------------------------------
    def _init(self) -> None:
        fresh = False
        for f, size in ((self.data_file, self.data_size), (self.metadata_file, self.metadata_size)):
            if not f.exists():
                fresh = True
                fd = os.open(f, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    os.ftruncate(fd, size)  # sparse
                finally:
                    os.close(fd)
        if fresh:  # brand-new pool metadata: any old records describe nothing
            for p in (self.store.pool_file, self.store.journal_file):
                p.unlink(missing_ok=True)
            for d in (self.store.devices_dir, self.store.live_dir, self.store.deferred_dir):
                for n in os.listdir(d):
                    (d / n).unlink()
        if not self.pool.exists():
            self.pool.create()
        self._recover()
        self._setup_base()

    def _recover(self) -> None:
        mnt = self.home / "mnt-base"
        if mnt.exists() and mounttable.is_mountpoint(mnt):  # killed while preparing the base fs
            kmount.umount(mnt, kmount.MNT_DETACH)
        kernel_tid = self.pool.status().transaction_id
        rec = self.store.pool()
        if rec is None or (rec.next_thin_id > 0 and not self.store.exists(BASE_HASH)):
            rec = self._rebuild(kernel_tid, rec)  # pool.json or the device records were lost
        if rec.open is not None:
            self._finish_open(rec, kernel_tid)
            rec = self.store.pool()
            kernel_tid = self.pool.status().transaction_id
        if rec.transaction_id != kernel_tid:
            self.store.put_pool(PoolRecord(kernel_tid, rec.next_thin_id, None))
        self._reconcile_live()
        self._reap_deferred()
        self._reap_stray_mappings()
        try:
            big = self.store.journal_file.stat().st_size > (256 << 10)
        except FileNotFoundError:
            big = False
        if big:  # mostly deleted devices: rewrite it from the records (rare, O(n))
            live, top = self.store.replay()
            if self.store.journal_lines() > 4 * len(live) + 256:
                self.store.compact_journal([r for h in self.store.hashes() if (r := self.store.get(h))], top)

    def _rebuild(self, kernel_tid: int, old: PoolRecord | None) -> PoolRecord:
        """Metadata was lost: rebuild the thin id -> hash mapping from journal, records and dm names.

        The pool has no "list thin ids" message, so each candidate id is probed by loading a
        thin table for it. The newest id wins when a hash was reused.
        """
        entries, top = self.store.replay()
        known = {r.thin_id: r for h in self.store.hashes() if (r := self.store.get(h))}
        pending = {d.thin_id for d in self.store.deferred()}
        top = max([top, *pending])
        active = {}
        for name, tid, size in self._our_mappings():
            h = self.hash_of_dm_name(name)
            if h is not None:
                active[tid] = (h, size)
        for tid, (h, size) in active.items():
            if tid not in entries and tid not in known:
                entries[tid] = JournalEntry(tid, h, None, size, True)
        for tid, e in sorted(entries.items(), reverse=True):
            top = max(top, tid)
            if tid in known or tid in pending or self.store.exists(e.hash):
                continue
            if self.pool.thin_exists(tid):
                self.store.put(DeviceRecord(e.hash, tid, e.size, e.parent, State.CREATED, e.initialized,
                                            kernel_tid))
            else:
                self.store.journal("delete", tid)
        top = max([top, *known.keys()])
        nxt = max(top + 1, old.next_thin_id if old else 0)
        while nxt <= MAX_THIN_ID and self.pool.thin_exists(nxt):  # ids used after the journal was lost
            nxt += 1
        # an open transaction survives: it is settled next, with the pool's transaction id
        rec = PoolRecord(old.transaction_id if old else kernel_tid, nxt, old.open if old else None)
        self.store.put_pool(rec)
        return rec

    def _finish_open(self, rec: PoolRecord, kernel_tid: int) -> None:
        """Roll the crashed process's open transaction back (create) or forward (delete)."""
        txn = rec.open
        assert txn is not None
        if txn.op == "create" and kernel_tid == txn.transaction_id:
            dev = self.store.get(txn.hash or "")
            if dev is not None:  # everything but clearing the transaction happened
                self.store.put(dev.evolve(state=State.CREATED, transaction_id=kernel_tid))
        else:
            try:
                self.pool.delete(txn.thin_id, missing_ok=True)
            except dm.DMError as e:  # still open under some mapping: keep the id, flag the device
                log.warning("devicemapper %s: can't finish deleting thin device %d (%s): %s; keeping its id",
                            self.prefix, txn.thin_id, txn.hash or "removed", e.strerror)
                dev = self.store.get(txn.hash) if txn.hash is not None else None
                if dev is not None:
                    self.store.put(dev.evolve(state=State.FAULTY, error=f"delete failed: {e.strerror}"))
                self.store.put_pool(PoolRecord(kernel_tid, max(rec.next_thin_id, txn.thin_id + 1), None))
                return
            try:
                self.store.journal("delete", txn.thin_id)
            except OSError as e:  # only a rebuild reads it, and a rebuild probes the pool for the id anyway
                log.warning("devicemapper %s: journal entry for deleting thin device %d not written: %s",
                            self.prefix, txn.thin_id, e.strerror or e)
            if txn.hash is not None:
                dev = self.store.get(txn.hash)
                if dev is not None and dev.thin_id == txn.thin_id:
                    self.store.delete(txn.hash)
            else:
                self.store.drop_deferred(txn.thin_id)
        self.store.put_pool(PoolRecord(kernel_tid, max(rec.next_thin_id, txn.thin_id + 1), None))

    def _reconcile_live(self) -> None:
        """Undo mounts/activations a killed process left; settle in-between states."""
        mounted: dict[str, list[str]] = {}
        for e in mounttable.mountinfo():
            mounted.setdefault(e.major_minor, []).append(e.mountpoint)
        for dev in self.store.live():
            name = self.dm_name(dev.hash)
            info = self.ctl.info(name)
            if dev.state in (State.CREATING, State.DELETING):
                # no open transaction covers it (that was settled already): keep the id, flag it
                self.store.put(dev.evolve(state=State.FAULTY, mounts={},
                                          error=f"left {dev.state.value} by a crashed process"))
                if info is not None:
                    self.pool.deactivate(name)
                continue
            actual = Counter(mounted.get(info.major_minor, []) if info else [])
            mounts = {p: min(n, actual[p]) for p, n in dev.mounts.items() if actual[p]}
            p = dev.mounting
            if p and actual[p] > mounts.get(p, 0):
                # mount(2) done by a process killed before it recorded it: undo that one only
                # (other unrecorded mounts, e.g. someone's bind mount, are not ours to touch)
                try:
                    kmount.umount(p)
                except OSError as e:
                    log.warning("devicemapper %s: unrecorded mount %s of %s is busy (%s); detaching it",
                                self.prefix, p, dev.hash, e.strerror)
                    kmount.umount(p, kmount.MNT_DETACH)
            state = dev.state if dev.state == State.FAULTY else State.CREATED
            if info is not None:
                info = self.ctl.info(name)
                if not mounts and info is not None and info.open_count == 0:
                    self.pool.deactivate(name)
                elif info is not None and state != State.FAULTY:
                    state = State.ACTIVE
            if mounts != dev.mounts or state != dev.state or dev.mounting:
                self.store.put(dev.evolve(state=state, mounts=mounts, mounting=""))

    def _our_mappings(self) -> list[tuple[str, int, int]]:
        """(dm name, thin id, bytes) of every thin mapping on our pool (not just name-alike ones)."""
        if not self.pool.exists():
            return []
        out = []
        for dev in self.ctl.list_devices():
            if not dev.name.startswith(self.prefix + "-") or dev.name == self.pool.name:
                continue
            try:
                t = self.ctl.table(dev.name)
            except OSError as e:
                log.debug("devicemapper %s: skipping %s, its table is unreadable (%s)", self.prefix, dev.name,
                          e.strerror)
                continue
            if len(t) == 1 and t[0].type == "thin" and t[0].params.split()[0] == self.pool.major_minor:
                out.append((dev.name, int(t[0].params.split()[1]), t[0].length * 512))
        return out

    def _reap_stray_mappings(self) -> None:
        """Remove idle mappings and /dev/mapper nodes of ours that no live record explains."""
        for name, _thin_id, _size in self._our_mappings():
            if "--del-" in name:
                continue
            h = self.hash_of_dm_name(name)
            rec = self._record(h) if h is not None else None
            if rec is not None and rec.state in (State.ACTIVE, State.FAULTY):
                continue
            info = self.ctl.info(name)
            if info is not None and info.open_count == 0:
                self.pool.deactivate(name)
        try:
            nodes = os.listdir(self.pool.node("").parent)
        except OSError as e:
            log.debug("devicemapper %s: no stray nodes removed, can't list them: %s", self.prefix, e.strerror)
            nodes = []
        for n in nodes:
            if n.startswith(self.prefix + "-") and n != self.pool.name and not self.ctl.exists(n):
                try:
                    blockdev.remove_node(self.pool.node(n))
                except OSError as e:
                    log.debug("devicemapper %s: stray node %s stays: %s", self.prefix, n, e.strerror)

    def _mapped_thin(self, name: str) -> int | None:
        """The thin id dm device `name` maps, or None if it does not exist."""
        try:
            t = self.ctl.table(name)
        except dm.DMError as e:
            if e.errno == errno.ENXIO:
                return None
            raise
        return int(t[0].params.split()[1]) if len(t) == 1 and t[0].type == "thin" else None

    def _reap_deferred(self) -> None:
        """Delete thin ids whose deferred dm removal the kernel has completed."""
        for d in self.store.deferred():
            if self.ctl.exists(d.dm_name):
                continue  # still held open somewhere
            orig = self.dm_name(d.hash)
            if self._mapped_thin(orig) == d.thin_id:
                # killed between recording the removal and the rename: finish it once unused
                info = self.ctl.info(orig)
                if info is not None and info.open_count:
                    continue
                try:
                    self.pool.deactivate(orig, defer=False)
                except dm.DMError as e:
                    log.debug("devicemapper %s: deferred removal of %s waits (%s)", self.prefix, orig, e.strerror)
                    continue
            rec = self._record(d.hash)
            self._delete_thin(d.thin_id, d.hash if rec is not None and rec.thin_id == d.thin_id else None)
            self.store.drop_deferred(d.thin_id)

    def _setup_base(self) -> None:
        base = self.store.get(BASE_HASH)
        if base is not None and base.initialized and base.state != State.FAULTY:
            return
        if base is not None:
            self._remove(BASE_HASH, base)
        thin_id = self._create_thin_record(BASE_HASH, None, self.base_size)
        node = self.pool.activate(self.dm_name(BASE_HASH), thin_id, self.base_size)
        try:
            _fault("base:activated")
            _mkfs(node)
            # the device root is the rootfs: no lost+found in it
            mnt = self.home / "mnt-base"
            mnt.mkdir(mode=0o700, exist_ok=True)
            kmount.mount(node, mnt, "ext4", kmount.MS_MGC_VAL)
            try:
                _fault("base:mounted")
                (mnt / "lost+found").rmdir()
                os.chmod(mnt, 0o755)
            finally:
                kmount.umount(mnt)
                mnt.rmdir()
        finally:
            self.pool.deactivate(self.dm_name(BASE_HASH))
        rec = self.store.get(BASE_HASH)
        self.store.put(rec.evolve(initialized=True))
        self.store.journal("init", thin_id)

    # -- the transaction protocol -----------------------------------------------------------
    def _settle_open(self) -> None:
        """Settle an open transaction left by a failed operation of this process (as a restart would)."""
        rec = self.store.pool()
        if rec is not None and rec.open is not None:
            self._finish_open(rec, self.pool.status().transaction_id)

    @contextmanager
    def _settling(self, what: str) -> Iterator[None]:
        """Any failure inside a transaction settles it at once; OS errors become StorageError."""
        try:
            yield
        except BaseException as err:
            try:
                self._settle_open()
            except Exception as settle_err:  # noqa: BLE001 - the next start settles it; report the first error
                log.warning("devicemapper %s: settling the failed transaction failed too (the next start "
                            "retries): %s", self.prefix, settle_err)
            if isinstance(err, OSError):
                raise StorageError(f"{what}: {err.strerror or err}") from None
            raise

    def _begin(self, op: str, thin_id: int, hash: str | None, parent: str | None = None,
               size: int = 0) -> PoolRecord:
        self._settle_open()
        rec = self.store.pool() or PoolRecord()
        tid = self.pool.status().transaction_id  # the kernel's, should anyone have moved it
        nxt = max(rec.next_thin_id, thin_id + 1)
        txn = OpenTransaction(op, thin_id, hash, tid + 1, parent, size)
        self.store.put_pool(PoolRecord(tid, nxt, txn))
        return PoolRecord(tid, nxt, txn)

    def _commit(self, before: PoolRecord, step: str) -> None:
        new = before.transaction_id + 1
        try:
            self.pool.set_transaction_id(before.transaction_id, new)
        except dm.DMError as e:  # the open transaction stays: the next start settles it
            raise StorageError(f"thin pool {self.pool.name}: set_transaction_id {before.transaction_id} "
                               f"{new} failed: {e.strerror}") from None
        _fault(step)
        cur = self.store.pool()
        self.store.put_pool(PoolRecord(new, cur.next_thin_id if cur else before.next_thin_id, None))

    def _create_thin_record(self, hash: str, parent: DeviceRecord | None, size: int) -> int:
        """Allocate an id, record, message the pool (create_thin or create_snap), commit."""
        op = "add" if parent is not None else "base"
        for _ in range(64):
            pool = self.store.pool() or PoolRecord()
            thin_id = pool.next_thin_id
            if thin_id > MAX_THIN_ID:
                raise StorageError(f"thin pool {self.pool.name} ran out of device ids")
            before = self._begin("create", thin_id, hash, parent.hash if parent else None, size)
            with self._settling(f"can't create device {hash or 'base'}"):
                if self._create_step(op, before, thin_id, hash, parent, size):
                    return thin_id
        raise StorageError(f"thin pool {self.pool.name}: no free device id found")

    def _create_step(self, op: str, before: PoolRecord, thin_id: int, hash: str, parent: DeviceRecord | None,
                     size: int) -> bool:
        """One attempt at `thin_id`; False when the pool already holds that id (try the next)."""
        _fault(f"{op}:txn")
        self.store.journal("create", thin_id, hash=hash, parent=parent.hash if parent else None, size=size)
        rec = DeviceRecord(hash, thin_id, size, parent.hash if parent else None, State.CREATING, False,
                           before.transaction_id + 1)
        self.store.put(rec)
        _fault(f"{op}:record")
        try:
            if parent is None:
                self.pool.create_thin(thin_id)
            else:
                self.pool.create_snap(thin_id, parent.thin_id, self.dm_name(parent.hash))
        except dm.DMError as e:
            self.store.delete(hash)
            self.store.journal("delete", thin_id)
            self.store.put_pool(PoolRecord(before.transaction_id, thin_id + 1, None))
            if e.errno == errno.EEXIST:
                return False  # the pool holds this id already (metadata lost): never reuse it
            what = f"snapshot '{hash}' (dev: {thin_id}) from '{parent.hash}' (dev: {parent.thin_id})" \
                if parent else f"base device (dev: {thin_id})"
            raise StorageError(f"failed to create {what}: {e.strerror}") from None
        _fault(f"{op}:snap")
        self.store.put(rec.evolve(state=State.CREATED))
        _fault(f"{op}:created")
        self._commit(before, f"{op}:tid")
        return True

    def _delete_thin(self, thin_id: int, hash: str | None) -> None:
        before = self._begin("delete", thin_id, hash)
        with self._settling(f"can't remove device {hash}"):
            self._delete_step(before, thin_id, hash)

    def _delete_step(self, before: PoolRecord, thin_id: int, hash: str | None) -> None:
        _fault("remove:txn")
        if hash is not None:
            rec = self.store.get(hash)
            if rec is not None:
                self.store.put(rec.evolve(state=State.DELETING))
        _fault("remove:record")
        try:
            self.pool.delete(thin_id, missing_ok=True)
        except dm.DMError as e:  # e.g. EBUSY: still mapped under another name; undo, keep the id
            if hash is not None and (rec := self.store.get(hash)) is not None:
                self.store.put(rec.evolve(state=State.CREATED))
            self.store.put_pool(PoolRecord(before.transaction_id, self.store.pool().next_thin_id, None))
            raise StorageError(f"can't delete thin device {thin_id} ({hash or 'removed'}) from pool "
                               f"{self.pool.name}: {e.strerror}") from None
        _fault("remove:delete")
        self.store.journal("delete", thin_id)
        if hash is not None:
            self.store.delete(hash)
        _fault("remove:unlinked")
        self._commit(before, "remove:tid")

    # -- helpers -----------------------------------------------------------------------------
    def _valid(self, hash: str) -> bool:
        """Usable as a file name and, with the prefix, as a dm name (< DM_NAME_LEN bytes)."""
        return is_valid_hash(hash) and len(self.dm_name(hash).encode()) < dm.DM_NAME_LEN

    def _record(self, hash: str) -> DeviceRecord | None:
        return self.store.get(hash) if self._valid(hash) else None

    def _get(self, hash: str, msg: str = "Unknown device %s") -> DeviceRecord:
        rec = self._record(hash)
        if rec is None or rec.state in (State.CREATING, State.DELETING):
            raise NotFound(msg % hash)
        return rec

    def _mounted_at(self, dev: DeviceRecord) -> dict[str, int]:
        """The recorded mounts of `dev` that are still real (mountinfo says so)."""
        if not dev.mounts:
            return {}
        info = self.ctl.info(self.dm_name(dev.hash))
        if info is None:
            return {}
        actual = Counter(e.mountpoint for e in mounttable.mountinfo() if e.major_minor == info.major_minor)
        return {p: min(n, actual[p]) for p, n in dev.mounts.items() if actual[p]}

    # -- DeviceSet -------------------------------------------------------------------------
    def add_device(self, hash: str, base_hash: str, durable: bool = True) -> None:
        # every device is durable here: the pool's metadata journal is shared by all of them
        if not self._valid(hash):
            raise InvalidArgument(f"invalid device hash {hash!r}")
        if hash == BASE_HASH:
            raise InvalidArgument("the base device can't be added")
        with self._locked():
            self._reap_deferred()
            if self.store.exists(hash):
                raise Conflict(f"hash {hash} already exists")
            parent = self._record(base_hash)
            if parent is None or parent.state in (State.CREATING, State.DELETING):
                raise NotFound(f"Error adding device for '{hash}': can't find device for parent '{base_hash}'")
            if parent.state == State.FAULTY:
                raise StorageError(f"Error adding device for '{hash}': parent '{base_hash}' is faulty "
                                   f"({parent.error}); remove it")
            if self.ctl.exists(self.dm_name(hash)):
                raise Conflict(f"device-mapper device {self.dm_name(hash)} already exists")
            self.pool.check_free(self.min_free_percent)
            self._create_thin_record(hash, parent, parent.size)

    def set_initialized(self, hash: str) -> None:
        with self._locked():
            rec = self._get(hash)
            if not rec.initialized:
                self.store.put(rec.evolve(initialized=True))
                self.store.journal("init", rec.thin_id)

    def mount_device(self, hash: str, path: str | os.PathLike, readonly: bool = False) -> None:
        path = os.path.realpath(path)
        with self._locked():
            rec = self._get(hash)
            if rec.state == State.FAULTY:
                raise StorageError(f"device {hash} is faulty ({rec.error}); remove it")
            mounts = self._mounted_at(rec)
            name = self.dm_name(hash)
            was_active = self.ctl.exists(name)
            self.store.put(rec.evolve(state=State.ACTIVE if was_active else State.ACTIVATING, mounts=mounts,
                                      mounting=path))
            try:
                node = self.pool.activate(name, rec.thin_id, rec.size)
            except OSError as e:
                self.store.put(rec.evolve(state=State.CREATED, mounts=mounts, mounting=""))
                raise StorageError(f"Error activating devmapper device for '{hash}': {e.strerror or e}") from None
            _fault("mount:activated")
            try:
                self._mount(node, path, readonly, self._mount_entries(name))
            except OSError as e:
                if not was_active:
                    self.pool.deactivate(name)
                self.store.put(rec.evolve(state=State.ACTIVE if was_active else State.CREATED, mounts=mounts,
                                          mounting=""))
                raise StorageError(f"Error mounting '{node}' on '{path}': {e.strerror or e}") from None
            _fault("mount:mounted")
            self.store.put(rec.evolve(state=State.ACTIVE, mounts={**mounts, path: mounts.get(path, 0) + 1},
                                      mounting=""))

    def _mount_entries(self, name: str) -> list[mounttable.MountEntry]:
        info = self.ctl.info(name)
        return [e for e in mounttable.mountinfo() if info and e.major_minor == info.major_minor]

    @staticmethod
    def _mount(node: Path, path: str, readonly: bool, existing: list[mounttable.MountEntry]) -> None:
        """ext4 with discard (none on EINVAL); a device mounted already is bind-mounted from there.

        A second mount(2) of one ext4 device with other ro/rw flags fails with EBUSY, so later
        mounts share the superblock through a bind mount and set their own per-mount ro flag.
        """
        if not existing:
            flags = kmount.MS_MGC_VAL | (kmount.MS_RDONLY if readonly else 0)
            try:
                kmount.mount(node, path, "ext4", flags, "discard")
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                kmount.mount(node, path, "ext4", flags, "")
            return
        src = next((e for e in existing if e.root == "/"), existing[0])
        kmount.mount(src.mountpoint, path, None, kmount.MS_BIND)
        try:
            if readonly:
                kmount.mount(None, path, None, kmount.MS_REMOUNT | kmount.MS_BIND | kmount.MS_RDONLY)
            elif all("ro" in e.options.split(",") for e in existing):
                # the superblock is read-only: make it (and only this mount) writable
                kmount.mount(None, path, None, kmount.MS_REMOUNT, "")
        except OSError:
            kmount.umount(path, kmount.MNT_DETACH)
            raise

    def unmount_device(self, hash: str, path: str | os.PathLike, deactivate: bool = True) -> None:
        path = os.path.realpath(path)
        with self._locked():
            rec = self._get(hash)
            mounts = self._mounted_at(rec)
            if not mounts.get(path):
                if rec.mounts != mounts:
                    self.store.put(rec.evolve(mounts=mounts))
                raise NotFound(f"device {hash} is not mounted at {path}")
            try:
                kmount.umount(path)
            except OSError as e:
                raise StorageError(f"Error unmounting '{path}': {e.strerror or e}") from None
            mounts[path] -= 1
            if not mounts[path]:
                del mounts[path]
            state = rec.state
            if deactivate and not mounts:
                name = self.dm_name(hash)
                info = self.ctl.info(name)
                if info is not None and info.open_count == 0:
                    self._deactivate_quiet(name)
                if not self.ctl.exists(name):
                    state = State.CREATED
            self.store.put(rec.evolve(state=state if state != State.ACTIVATING else State.ACTIVE, mounts=mounts))

    def _deactivate_quiet(self, name: str) -> None:
        """Deactivate after an unmount; a late opener keeps it active (no deferred removal here)."""
        try:
            self.pool.deactivate(name, defer=False)
        except dm.DMError as e:
            if e.errno != errno.EBUSY:
                raise
            log.debug("devicemapper %s: %s stays active, opened again meanwhile", self.prefix, name)

    def deactivate_device(self, hash: str) -> None:
        with self._locked():
            rec = self._record(hash)
            if rec is None:
                raise NotFound(f"hash {hash} doesn't exists")
            if self._mounted_at(rec):
                raise Conflict(f"device {hash} is mounted at {', '.join(self._mounted_at(rec))}")
            try:
                self.pool.deactivate(self.dm_name(hash), defer=False)
            except dm.DMError as e:
                raise StorageError(f"can't deactivate device {hash}: {e.strerror}") from None
            if rec.state in (State.ACTIVE, State.ACTIVATING) or rec.mounts:
                self.store.put(rec.evolve(state=State.CREATED, mounts={}))

    def remove_device(self, hash: str) -> None:
        with self._locked():
            rec = self._record(hash)
            if rec is None or rec.state in (State.CREATING, State.DELETING):
                raise NotFound(f"hash {hash} doesn't exists")
            if hash == BASE_HASH:
                raise Conflict("the base device can't be removed")
            self._reap_deferred()
            self._remove(hash, rec)

    def _remove(self, hash: str, rec: DeviceRecord) -> None:
        mounted = self._mounted_at(rec)
        if mounted:
            raise Conflict(f"device {hash} is mounted at {', '.join(sorted(mounted))}: unmount it before removing")
        name = self.dm_name(hash)
        info = self.ctl.info(name)
        if info is not None:
            try:
                self.pool.deactivate(name, defer=False)
            except dm.DMError as e:
                if e.errno != errno.EBUSY:
                    raise StorageError(f"can't remove device {hash}: {e.strerror}") from None
                # busy (opened from elsewhere): free the name now, let the kernel remove it on
                # last close, and delete the thin id once that has happened
                dname = f"{self.prefix}--del-{rec.thin_id}"
                self.store.put_deferred(DeferredRecord(rec.thin_id, hash, dname))  # before the rename
                self.ctl.rename(name, dname)
                self.pool.node(name).unlink(missing_ok=True)
                if self.pool.deactivate(dname) == "deferred":
                    self.store.journal("delete-deferred", rec.thin_id)
                    self.store.delete(hash)
                    return
                self.store.drop_deferred(rec.thin_id)
        self._delete_thin(rec.thin_id, hash)

    def has_device(self, hash: str) -> bool:
        rec = self._record(hash)
        return rec is not None and rec.state not in (State.CREATING, State.DELETING)

    def has_initialized_device(self, hash: str) -> bool:
        rec = self._record(hash)
        return rec is not None and rec.initialized and rec.state not in (State.CREATING, State.DELETING)

    def has_activated_device(self, hash: str) -> bool:
        return self.has_device(hash) and self.ctl.exists(self.dm_name(hash))

    def list(self) -> list[str]:
        """A directory listing: only the open transaction's device can be half-made (not read per file)."""
        pool = self.store.pool()
        busy = pool.open.hash if pool and pool.open else None
        return sorted(h for h in self.store.hashes() if h != BASE_HASH and h != busy)

    def device_thin_id(self, hash: str) -> int:
        """The pool's id for a device (for tools and tests)."""
        return self._get(hash).thin_id

    def status(self) -> list[tuple[str, str]]:
        with self._locked():
            self._reap_deferred()
            st = self.pool.status()
            pending = self.store.deferred()
        mb = lambda blocks, unit: f"{blocks * unit / MiB:.1f} Mb"  # noqa: E731
        return [
            ("Pool Name", self.pool.name),
            ("Data file", str(self.data_file)),
            ("Metadata file", str(self.metadata_file)),
            ("Data Space Used", mb(st.data_used, st.block_size)),
            ("Data Space Total", mb(st.data_total, st.block_size)),
            ("Metadata Space Used", mb(st.metadata_used, METADATA_BLOCK_BYTES)),
            ("Metadata Space Total", mb(st.metadata_total, METADATA_BLOCK_BYTES)),
            ("Block size", f"{st.block_size // 1024} KiB"),
            ("Deferred Removals Pending", str(len(pending))),
        ]

    def shutdown(self) -> None:
        """Unmount every recorded mount, deactivate every device, then remove the pool."""
        with self._tlock:
            if self._closed:
                return
            self._ready = False  # a pool already gone stays gone
            with self._locked():
                for rec in self.store.live():
                    mounts = self._mounted_at(rec)
                    for p in sorted(mounts, key=lambda p: p.count("/"), reverse=True):
                        for _ in range(mounts[p]):
                            try:
                                kmount.umount(p)
                            except OSError as e:
                                log.warning("devicemapper %s: shutdown found %s busy (%s); detaching it",
                                            self.prefix, p, e.strerror)
                                kmount.umount(p, kmount.MNT_DETACH)
                    if rec.state != State.FAULTY or rec.mounts:
                        state = State.FAULTY if rec.state == State.FAULTY else State.CREATED
                        self.store.put(rec.evolve(state=state, mounts={}))
                for name, _thin_id, _size in self._our_mappings():
                    self.pool.deactivate(name)
                if not self.store.deferred():
                    self.pool.remove()
                self._closed = True
            self._release()

    def close(self) -> None:
        """Release this object's fds; the pool, devices and mounts stay for the next process."""
        with self._tlock:
            if not self._closed:
                self._closed = True
                self._release()

    def _release(self) -> None:
        self.ctl.close()
        os.close(self._lock_fd)

    def __enter__(self) -> DeviceSetDM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
