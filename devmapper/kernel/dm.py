"""Device-mapper ioctls on /dev/mapper/control (linux/dm-ioctl.h), typed results, no policy.

Every call is one ioctl on a close-on-exec fd: no process is spawned and nothing waits for udev.
Field names in comments are those of `struct dm_ioctl` and friends in the kernel header.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__package__)

CONTROL = Path("/dev/mapper/control")

# struct dm_ioctl: version[3] data_size data_start target_count open_count flags event_nr padding
#                  dev name[DM_NAME_LEN=128] uuid[DM_UUID_LEN=129] data[7]   (sizeof == 312)
_HDR = struct.Struct("<3I I I I i I I I Q 128s 129s 7s")
# struct dm_target_spec: sector_start length status next target_type[DM_MAX_TYPE_NAME=16]
_SPEC = struct.Struct("<Q Q i I 16s")
DM_NAME_LEN = 128
DM_UUID_LEN = 129
_VERSION = (4, 0, 0)  # oldest interface we speak; the kernel answers with its own

# ioctl command numbers (enum in dm-ioctl.h), encoded as _IOWR(DM_IOCTL=0xfd, nr, struct dm_ioctl)
DM_VERSION_CMD = 0
DM_REMOVE_ALL_CMD = 1
DM_LIST_DEVICES_CMD = 2
DM_DEV_CREATE_CMD = 3
DM_DEV_REMOVE_CMD = 4
DM_DEV_RENAME_CMD = 5
DM_DEV_SUSPEND_CMD = 6
DM_DEV_STATUS_CMD = 7
DM_DEV_WAIT_CMD = 8
DM_TABLE_LOAD_CMD = 9
DM_TABLE_CLEAR_CMD = 10
DM_TABLE_DEPS_CMD = 11
DM_TABLE_STATUS_CMD = 12
DM_LIST_VERSIONS_CMD = 13
DM_TARGET_MSG_CMD = 14

# dm_ioctl.flags bits
DM_READONLY_FLAG = 1 << 0
DM_SUSPEND_FLAG = 1 << 1
DM_PERSISTENT_DEV_FLAG = 1 << 3
DM_STATUS_TABLE_FLAG = 1 << 4
DM_ACTIVE_PRESENT_FLAG = 1 << 5
DM_INACTIVE_PRESENT_FLAG = 1 << 6
DM_BUFFER_FULL_FLAG = 1 << 8
DM_SKIP_BDGET_FLAG = 1 << 9
DM_NOFLUSH_FLAG = 1 << 11
DM_UEVENT_GENERATED_FLAG = 1 << 13
DM_DATA_OUT_FLAG = 1 << 16
DM_DEFERRED_REMOVE = 1 << 17


def _iowr(nr: int) -> int:
    return (3 << 30) | (_HDR.size << 16) | (0xFD << 8) | nr


class DMError(OSError):
    """A device-mapper ioctl failed; `errno` is the kernel's answer (ENXIO: no such device, EBUSY...)."""


@dataclass(frozen=True)
class DeviceInfo:
    """What DM_DEV_STATUS says about one mapped device."""

    name: str
    uuid: str
    dev: int            # dm_ioctl.dev (use os.major/os.minor)
    open_count: int     # dm_ioctl.open_count: openers of the block device (mounts count)
    target_count: int   # dm_ioctl.target_count of the live table
    flags: int          # dm_ioctl.flags

    @property
    def suspended(self) -> bool:
        return bool(self.flags & DM_SUSPEND_FLAG)

    @property
    def live_table(self) -> bool:
        return bool(self.flags & DM_ACTIVE_PRESENT_FLAG)

    @property
    def deferred_remove(self) -> bool:
        return bool(self.flags & DM_DEFERRED_REMOVE)

    @property
    def major_minor(self) -> str:
        return f"{os.major(self.dev)}:{os.minor(self.dev)}"


@dataclass(frozen=True)
class Target:
    """One line of a table or status: `<start> <length> <type> <params>` (struct dm_target_spec)."""

    start: int
    length: int
    type: str
    params: str

    def line(self) -> str:
        return f"{self.start} {self.length} {self.type} {self.params}"


@dataclass(frozen=True)
class ListedDevice:
    """One record of DM_LIST_DEVICES (struct dm_name_list)."""

    name: str
    dev: int


@dataclass(frozen=True)
class TargetVersion:
    """One record of DM_LIST_VERSIONS (struct dm_target_versions)."""

    name: str
    version: tuple[int, int, int]


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _align8(n: int) -> int:
    return (n + 7) & ~7


class Control:
    """An open /dev/mapper/control; every method is one ioctl (retried only on DM_BUFFER_FULL)."""

    def __init__(self, path: str | os.PathLike = CONTROL) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the one primitive ------------------------------------------------------------------
    def _ioctl(self, cmd: int, *, name: str = "", uuid: str = "", flags: int = 0, dev: int = 0,
               payload: bytes = b"", target_count: int = 0, out_size: int = 0,
               what: str = "") -> tuple[tuple, bytearray]:
        """Issue `cmd`; returns (header fields, whole buffer). Grows the buffer on DM_BUFFER_FULL."""
        if len(name.encode()) >= DM_NAME_LEN:
            raise DMError(errno.ENAMETOOLONG, f"device-mapper name too long: {name!r}")
        size = _align8(_HDR.size + len(payload)) + out_size
        while True:
            buf = bytearray(size)
            _HDR.pack_into(buf, 0, *_VERSION, size, _HDR.size, target_count, 0, flags, 0, 0, dev,
                           name.encode(), uuid.encode(), b"")
            buf[_HDR.size:_HDR.size + len(payload)] = payload
            try:
                fcntl.ioctl(self.fd, _iowr(cmd), buf, True)
            except OSError as e:
                target = what or name or "device-mapper"
                raise DMError(e.errno, f"{_CMD_NAMES.get(cmd, cmd)} {target}: {os.strerror(e.errno)}") from None
            hdr = _HDR.unpack_from(buf, 0)
            if hdr[7] & DM_BUFFER_FULL_FLAG:  # flags
                size *= 4
                continue
            return hdr, buf

    # -- typed calls ------------------------------------------------------------------------
    def version(self) -> tuple[int, int, int]:
        """DM_VERSION: the kernel's ioctl interface version."""
        hdr, _ = self._ioctl(DM_VERSION_CMD)
        return hdr[0], hdr[1], hdr[2]

    def create(self, name: str, uuid: str = "", readonly: bool = False) -> DeviceInfo:
        """DM_DEV_CREATE: a mapped device with no table yet (load one, then resume)."""
        hdr, _ = self._ioctl(DM_DEV_CREATE_CMD, name=name, uuid=uuid,
                             flags=DM_READONLY_FLAG if readonly else 0)
        return self._info(hdr)

    def remove(self, name: str, deferred: bool = False) -> bool:
        """DM_DEV_REMOVE; with `deferred`, a busy device is removed by the kernel on last close.

        Returns True when the kernel scheduled a deferred removal instead of removing now.
        """
        hdr, _ = self._ioctl(DM_DEV_REMOVE_CMD, name=name, flags=DM_DEFERRED_REMOVE if deferred else 0)
        return deferred and bool(hdr[7] & DM_DEFERRED_REMOVE) and self.exists(name)

    def rename(self, name: str, new_name: str) -> None:
        """DM_DEV_RENAME: the new name is a C string in the data area."""
        self._ioctl(DM_DEV_RENAME_CMD, name=name, payload=new_name.encode() + b"\0",
                    what=f"{name} -> {new_name}")

    def cancel_deferred_remove(self, name: str) -> None:
        """DM_TARGET_MSG "@cancel_deferred_remove" (handled by dm-ioctl itself)."""
        self.message(name, "@cancel_deferred_remove")

    def suspend(self, name: str, noflush: bool = False) -> None:
        """DM_DEV_SUSPEND with DM_SUSPEND_FLAG: quiesce I/O (flushes unless noflush)."""
        self._ioctl(DM_DEV_SUSPEND_CMD, name=name,
                    flags=DM_SUSPEND_FLAG | (DM_NOFLUSH_FLAG if noflush else 0))

    def resume(self, name: str) -> DeviceInfo:
        """DM_DEV_SUSPEND without DM_SUSPEND_FLAG: resume, swapping in a loaded inactive table."""
        hdr, _ = self._ioctl(DM_DEV_SUSPEND_CMD, name=name)
        return self._info(hdr)

    def status(self, name: str) -> DeviceInfo:
        """DM_DEV_STATUS; raises DMError(ENXIO) when no such device exists."""
        hdr, _ = self._ioctl(DM_DEV_STATUS_CMD, name=name)
        return self._info(hdr)

    def info(self, name: str) -> DeviceInfo | None:
        """DM_DEV_STATUS, or None when the device does not exist."""
        try:
            return self.status(name)
        except DMError as e:
            if e.errno == errno.ENXIO:
                return None
            raise

    def exists(self, name: str) -> bool:
        return self.info(name) is not None

    def load_table(self, name: str, targets: list[Target], readonly: bool = False) -> None:
        """DM_TABLE_LOAD: stage `targets` as the inactive table (dm_target_spec.next is relative)."""
        payload = bytearray()
        for t in targets:
            params = t.params.encode() + b"\0"
            rec = _align8(_SPEC.size + len(params))
            spec = bytearray(rec)
            _SPEC.pack_into(spec, 0, t.start, t.length, 0, rec, t.type.encode())
            spec[_SPEC.size:_SPEC.size + len(params)] = params
            payload += spec
        self._ioctl(DM_TABLE_LOAD_CMD, name=name, payload=bytes(payload), target_count=len(targets),
                    flags=DM_READONLY_FLAG if readonly else 0)

    def _targets(self, name: str, flags: int) -> list[Target]:
        hdr, buf = self._ioctl(DM_TABLE_STATUS_CMD, name=name, flags=flags, out_size=4096)
        data_start, count = hdr[4], hdr[5]
        out, off = [], 0
        for _ in range(count):
            start, length, _status, nxt, ttype = _SPEC.unpack_from(buf, data_start + off)
            params = _cstr(bytes(buf[data_start + off + _SPEC.size:data_start + nxt]))
            out.append(Target(start, length, _cstr(ttype), params))
            off = nxt  # output specs: next is relative to the start of the data area
        return out

    def table_status(self, name: str) -> list[Target]:
        """DM_TABLE_STATUS: each target's status line (thin-pool: `<tid> <meta used>/<total> ...`)."""
        return self._targets(name, 0)

    def table(self, name: str) -> list[Target]:
        """DM_TABLE_STATUS with DM_STATUS_TABLE_FLAG: the live table as loaded."""
        return self._targets(name, DM_STATUS_TABLE_FLAG)

    def list_devices(self) -> list[ListedDevice]:
        """DM_LIST_DEVICES: every mapped device (struct dm_name_list; next is relative)."""
        hdr, buf = self._ioctl(DM_LIST_DEVICES_CMD, out_size=8192)
        off = hdr[4]
        out: list[ListedDevice] = []
        if hdr[3] <= off:
            return out
        while True:
            dev, nxt = struct.unpack_from("<QI", buf, off)
            if dev == 0 and not out and nxt == 0 and buf[off + 12] == 0:
                return out  # "nl->dev = 0: flags no data"
            out.append(ListedDevice(_cstr(bytes(buf[off + 12:off + 12 + DM_NAME_LEN])), dev))
            if nxt == 0:
                return out
            off += nxt

    def list_versions(self) -> list[TargetVersion]:
        """DM_LIST_VERSIONS: loaded target types (struct dm_target_versions; next is relative)."""
        hdr, buf = self._ioctl(DM_LIST_VERSIONS_CMD, out_size=4096)
        off = hdr[4]
        out: list[TargetVersion] = []
        while True:
            nxt, a, b, c = struct.unpack_from("<4I", buf, off)
            out.append(TargetVersion(_cstr(bytes(buf[off + 16:off + 16 + 32])), (a, b, c)))
            if nxt == 0:
                return out
            off += nxt

    def message(self, name: str, message: str, sector: int = 0) -> str:
        """DM_TARGET_MSG (struct dm_target_msg: sector, message); returns any DM_DATA_OUT text."""
        payload = struct.pack("<Q", sector) + message.encode() + b"\0"
        hdr, buf = self._ioctl(DM_TARGET_MSG_CMD, name=name, payload=payload, out_size=256,
                               what=f"{name} message {message!r}")
        if hdr[7] & DM_DATA_OUT_FLAG:
            return _cstr(bytes(buf[hdr[4]:]))
        return ""

    @staticmethod
    def _info(hdr: tuple) -> DeviceInfo:
        return DeviceInfo(name=_cstr(hdr[11]), uuid=_cstr(hdr[12]), dev=hdr[10], open_count=hdr[6],
                          target_count=hdr[5], flags=hdr[7])


_CMD_NAMES = {DM_VERSION_CMD: "DM_VERSION", DM_LIST_DEVICES_CMD: "DM_LIST_DEVICES",
              DM_DEV_CREATE_CMD: "DM_DEV_CREATE", DM_DEV_REMOVE_CMD: "DM_DEV_REMOVE", DM_DEV_RENAME_CMD: "DM_DEV_RENAME",
              DM_DEV_SUSPEND_CMD: "DM_DEV_SUSPEND", DM_DEV_STATUS_CMD: "DM_DEV_STATUS",
              DM_TABLE_LOAD_CMD: "DM_TABLE_LOAD", DM_TABLE_STATUS_CMD: "DM_TABLE_STATUS",
              DM_LIST_VERSIONS_CMD: "DM_LIST_VERSIONS", DM_TARGET_MSG_CMD: "DM_TARGET_MSG"}


def _misc_minor(name: str = "device-mapper") -> int | None:
    """The misc minor the kernel gave `name` (/proc/misc), or None if it is not registered."""
    try:
        with open("/proc/misc", encoding="ascii") as f:
            for line in f:
                minor, _, dev = line.strip().partition(" ")
                if dev == name:
                    return int(minor)
    except OSError as e:
        log.debug("dm: /proc/misc is unreadable, taking %s as unregistered: %s", name, e.strerror)
    return None


def ensure_control() -> Path:
    """Make sure /dev/mapper/control exists (mknod it from /proc/misc when no udev made it)."""
    if CONTROL.is_char_device():
        return CONTROL
    minor = _misc_minor()
    if minor is None:
        raise FileNotFoundError(errno.ENOENT, "device-mapper missing from this kernel (not in /proc/misc)")
    CONTROL.parent.mkdir(mode=0o755, exist_ok=True)
    try:
        os.mknod(CONTROL, 0o600 | stat.S_IFCHR, os.makedev(10, minor))
    except FileExistsError:  # another process made it meanwhile
        if not CONTROL.is_char_device():
            raise
    return CONTROL


def _thin_module_present() -> bool:
    """Whether dm-thin-pool could be autoloaded (listed in modules.dep/modules.builtin)."""
    base = Path("/lib/modules") / os.uname().release
    for f in ("modules.builtin", "modules.dep"):
        try:
            if "dm-thin-pool.ko" in (base / f).read_text(errors="replace"):
                return True
        except OSError as e:
            log.debug("dm: %s is unreadable: %s", base / f, e.strerror)
    return False


def thin_pool_available() -> tuple[bool, str]:
    """Cheap probe: (True, why) when /dev/mapper/control answers and the thin-pool target exists."""
    if not CONTROL.exists() and _misc_minor() is None:
        return False, "device-mapper missing from this kernel (no /dev/mapper/control, not in /proc/misc)"
    try:
        ensure_control()
        with Control() as ctl:
            versions = ctl.list_versions()
    except OSError as e:
        return False, f"device-mapper unusable: {e.strerror or e}"
    for v in versions:
        if v.name == "thin-pool":
            return True, "/dev/mapper/control and thin-pool present"
    if _thin_module_present():
        return True, "/dev/mapper/control present, thin-pool module loadable"
    return False, "device-mapper present but the thin-pool target is missing"
