"""Thin-pool operations: create or reuse the pool, send its messages, (de)activate thin devices.

The "operation" room: each method is one pool-level action built from dm/loop ioctls. What to
do when (metadata order, recovery) is decided by dm_deviceset.py.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pydock.utils.errors import PoolFull, StorageError

from .kernel import blockdev, dm, loop

DATA_BLOCK_SECTORS = 128        # 64 KiB blocks: recommended for heavy snapshotting (docker 0.7.0)
LOW_WATER_MARK = 32768          # data blocks (2 GiB at 64 KiB)
METADATA_BLOCK_BYTES = 4096     # thin-pool metadata blocks are always 4 KiB
MAPPER_DIR = Path("/dev/mapper")
REMOVE_RETRIES = 10             # EBUSY retries before asking for deferred removal ...
REMOVE_DELAY = 0.005            # ... 5 ms apart (Docker's later removeDevice)


@dataclass(frozen=True)
class PoolStatus:
    """The thin-pool status line `<tid> <meta used>/<total> <data used>/<total> ...`, decoded."""

    transaction_id: int
    metadata_used: int      # blocks of METADATA_BLOCK_BYTES
    metadata_total: int
    data_used: int          # blocks of block_size bytes
    data_total: int
    block_size: int         # bytes per data block
    read_only: bool
    out_of_space: bool

    @property
    def data_free_percent(self) -> float:
        return 100.0 * (self.data_total - self.data_used) / self.data_total if self.data_total else 0.0

    @property
    def metadata_free_percent(self) -> float:
        return (100.0 * (self.metadata_total - self.metadata_used) / self.metadata_total
                if self.metadata_total else 0.0)


def parse_pool_status(target: dm.Target) -> PoolStatus:
    """Decode a thin-pool status target (Documentation/admin-guide/device-mapper/thin-provisioning)."""
    f = target.params.split()
    if target.type != "thin-pool" or len(f) < 3:
        raise StorageError(f"unexpected thin-pool status {target.line()!r}")
    if f[0] == "Fail":
        raise StorageError("thin pool failed (metadata error): run thin_check")
    tid = int(f[0])
    mu, mt = (int(x) for x in f[1].split("/"))
    du, dt = (int(x) for x in f[2].split("/"))
    block = target.length // dt * 512 if dt else DATA_BLOCK_SECTORS * 512
    mode = f[4] if len(f) > 4 else "rw"
    return PoolStatus(tid, mu, mt, du, dt, block, read_only=mode != "rw", out_of_space=mode == "out_of_data_space")


class ThinPool:
    """One thin pool `<prefix>-pool` backed by loop-attached `data` and `metadata` files."""

    def __init__(self, ctl: dm.Control, prefix: str, data_file: Path, metadata_file: Path) -> None:
        self.ctl = ctl
        self.prefix = prefix
        self.name = f"{prefix}-pool"
        self.data_file = data_file
        self.metadata_file = metadata_file
        self._major_minor: str | None = None

    # -- the pool itself ---------------------------------------------------------------------
    def exists(self) -> bool:
        info = self.ctl.info(self.name)
        if info is not None:
            self._major_minor = info.major_minor
        return info is not None

    @property
    def major_minor(self) -> str:
        if self._major_minor is None:
            info = self.ctl.info(self.name)
            if info is None:
                raise StorageError(f"Non existing device {self.name}")
            self._major_minor = info.major_minor
        return self._major_minor

    def create(self) -> None:
        """Attach both files to loops (autoclear) and load `0 <sectors> thin-pool <meta> <data> 128 32768 1 error_if_no_space`.

        error_if_no_space: a full pool fails writes at once instead of queueing them for 60 s.
        The loop fds stay open until the pool holds the loops; then autoclear ties their
        lifetime to the pool's.
        """
        fds: list[int] = []
        try:
            data_fd, data_loop = loop.attach(self.data_file)
            fds.append(data_fd)
            meta_fd, meta_loop = loop.attach(self.metadata_file)
            fds.append(meta_fd)
            sectors = blockdev.size_bytes(data_loop) // 512
            d, m = os.stat(data_loop).st_rdev, os.stat(meta_loop).st_rdev
            params = (f"{os.major(m)}:{os.minor(m)} {os.major(d)}:{os.minor(d)} "
                      f"{DATA_BLOCK_SECTORS} {LOW_WATER_MARK} 1 error_if_no_space")
            self.ctl.create(self.name)
            try:
                self.ctl.load_table(self.name, [dm.Target(0, sectors, "thin-pool", params)])
                info = self.ctl.resume(self.name)
            except OSError:
                self.ctl.remove(self.name)
                raise
            self._major_minor = info.major_minor
        except OSError as e:
            raise StorageError(f"can't create thin pool {self.name}: {e.strerror or e}") from None
        finally:
            for fd in fds:
                os.close(fd)

    def remove(self) -> str:
        """Remove the pool device (its loops then autoclear): "removed", "absent" or "deferred"."""
        self._major_minor = None
        return self.deactivate(self.name)

    def status(self) -> PoolStatus:
        try:
            targets = self.ctl.table_status(self.name)
        except dm.DMError as e:
            if e.errno == errno.ENXIO:
                raise StorageError(f"Non existing device {self.name}") from None
            raise
        return parse_pool_status(targets[0])

    def check_free(self, min_free_percent: float) -> PoolStatus:
        """Refuse (PoolFull) when free data or metadata space is below the threshold."""
        st = self.status()
        for what, free, used, total, unit in (
                ("data", st.data_free_percent, st.data_used, st.data_total, st.block_size),
                ("metadata", st.metadata_free_percent, st.metadata_used, st.metadata_total, METADATA_BLOCK_BYTES)):
            if free < min_free_percent:
                raise PoolFull(f"thin pool {self.name} is almost full: {free:.1f}% {what} space free "
                               f"({used * unit / 2**20:.1f} of {total * unit / 2**20:.1f} MiB used), "
                               f"minimum is {min_free_percent:g}%")
        if st.read_only or st.out_of_space:
            raise PoolFull(f"thin pool {self.name} is out of space (read-only)")
        return st

    # -- messages --------------------------------------------------------------------------
    def message(self, text: str) -> None:
        self.ctl.message(self.name, text)

    def create_thin(self, thin_id: int) -> None:
        self.message(f"create_thin {thin_id}")

    def create_snap(self, thin_id: int, origin_id: int, origin_dm_name: str | None) -> None:
        """`create_snap` of `origin_id`; an active origin is suspended around it.

        Documentation/admin-guide/device-mapper/thin-provisioning.rst ("Internal snapshots"):
        "If the origin device that you wish to snapshot is active, you must suspend it before
        creating the snapshot to avoid corruption." Suspending also freezes its filesystem.
        """
        suspended = False
        if origin_dm_name and self.ctl.exists(origin_dm_name):
            self.ctl.suspend(origin_dm_name)
            suspended = True
        try:
            self.message(f"create_snap {thin_id} {origin_id}")
        finally:
            if suspended:
                self.ctl.resume(origin_dm_name)

    def delete(self, thin_id: int, missing_ok: bool = False) -> None:
        try:
            self.message(f"delete {thin_id}")
        except dm.DMError as e:
            if not (missing_ok and e.errno == errno.ENODATA):
                raise

    def set_transaction_id(self, old: int, new: int) -> None:
        self.message(f"set_transaction_id {old} {new}")

    def thin_exists(self, thin_id: int) -> bool:
        """Probe: a thin target loads only if the pool holds that id (ENODATA otherwise)."""
        probe = f"{self.prefix}--probe"
        if not self.ctl.exists(probe):
            self.ctl.create(probe)
        try:
            self.ctl.load_table(probe, [dm.Target(0, 8, "thin", f"{self.major_minor} {thin_id}")])
            return True
        except dm.DMError as e:
            if e.errno == errno.ENODATA:
                return False
            raise
        finally:
            self.ctl.remove(probe)

    # -- thin devices ----------------------------------------------------------------------
    def node(self, dm_name: str) -> Path:
        return MAPPER_DIR / dm_name

    def activate(self, dm_name: str, thin_id: int, size: int) -> Path:
        """Map thin `thin_id` as `dm_name` (`0 <size/512> thin <pool> <id>`) and make its node."""
        info = self.ctl.info(dm_name)
        if info is None:
            self.ctl.create(dm_name)
            try:
                self.ctl.load_table(dm_name, [dm.Target(0, size // 512, "thin", f"{self.major_minor} {thin_id}")])
                info = self.ctl.resume(dm_name)
            except OSError:
                self.ctl.remove(dm_name)
                raise
        return blockdev.ensure_node(self.node(dm_name), os.major(info.dev), os.minor(info.dev))

    def deactivate(self, dm_name: str, retries: int = REMOVE_RETRIES, delay: float = REMOVE_DELAY,
                   defer: bool = True) -> str:
        """Remove a mapping: "removed", "absent", or "deferred" when still busy after the retries."""
        for attempt in range(retries + 1):
            try:
                self.ctl.remove(dm_name)
                blockdev.remove_node(self.node(dm_name))
                return "removed"
            except dm.DMError as e:
                if e.errno == errno.ENXIO:
                    blockdev.remove_node(self.node(dm_name))
                    return "absent"
                if e.errno != errno.EBUSY:
                    raise
                if attempt < retries:
                    time.sleep(delay)
        if not defer:
            raise dm.DMError(errno.EBUSY, f"device {dm_name} is busy")
        if self.ctl.remove(dm_name, deferred=True):
            return "deferred"
        blockdev.remove_node(self.node(dm_name))
        return "removed"
