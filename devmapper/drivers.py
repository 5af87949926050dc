"""Choosing and opening the storage driver of a pydock root: the one whose layers the root holds, else
devicemapper, else overlay, else vfs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pydock.devmapper.deviceset import DeviceSet
from pydock.devmapper.driver import Driver
from pydock.devmapper.dirstore import mount_from
from pydock.utils.fileutil import atomic_write
from pydock.utils.mount import mount, supported_filesystems, umount
from pydock.utils.errors import InvalidArgument, KernelFeatureMissing
from pydock.utils.paths import RootLayout

log = logging.getLogger(__package__)

#: every driver, in order of preference.
DRIVERS = ("devicemapper", "overlay", "vfs")
#: keyword options DeviceSetDM takes; the directory drivers accept and ignore them.
DM_OPTIONS = frozenset({"prefix", "data_size", "metadata_size", "base_size", "min_free_percent"})


#: Docker's `--storage-opt` names for DeviceSetDM's options (sizes take k/m/g/t suffixes).
STORAGE_OPTS = {"dm.basesize": "base_size", "dm.loopdatasize": "data_size",
                "dm.loopmetadatasize": "metadata_size", "dm.min_free_space": "min_free_percent"}
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _parse_size(key: str, text: str) -> int:
    number, unit = text.strip().lower().rstrip("ib").rstrip(), ""
    if number and number[-1] in _UNITS:
        number, unit = number[:-1], number[-1]
    try:
        value = int(float(number) * _UNITS[unit])
    except ValueError:
        raise InvalidArgument(f"invalid size for {key}: {text!r} (e.g. 10G, 512M)") from None
    if value <= 0:
        raise InvalidArgument(f"invalid size for {key}: {text!r} (must be positive)")
    return value


def parse_storage_opts(specs: list[str] | tuple[str, ...]) -> dict:
    """`["dm.basesize=20G", ...]` -> DeviceSetDM keyword options; unknown keys or bad values raise."""
    options: dict = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip().lower()
        if not sep or key not in STORAGE_OPTS:
            raise InvalidArgument(f"unknown storage option {spec!r} (valid: {', '.join(STORAGE_OPTS)}, as KEY=VALUE)")
        if key == "dm.min_free_space":
            try:
                percent = float(value.strip().rstrip("%"))
            except ValueError:
                raise InvalidArgument(f"invalid percentage for {key}: {value!r}") from None
            if not 0 <= percent < 100:
                raise InvalidArgument(f"invalid percentage for {key}: {value!r} (0 to 99)")
            options[STORAGE_OPTS[key]] = percent
        else:
            options[STORAGE_OPTS[key]] = _parse_size(key, value)
    return options


def devicemapper_usable() -> tuple[bool, str]:
    """Whether dm-thin works on this kernel, and the one-line reason (the dm wrapper's probe decides)."""
    try:
        from pydock.devmapper.kernel.dm import thin_pool_available  # lazy: optional (builds without dm); ctypes setup only when probed
    except ImportError:
        if not Path("/dev/mapper/control").exists():
            return False, "device-mapper is missing from this kernel (no /dev/mapper/control)"
        return False, "pydock was built without device-mapper support (pydock.devmapper.kernel.dm missing)"
    result = thin_pool_available()
    if isinstance(result, tuple):
        ok, detail = bool(result[0]), str(result[1])
    else:
        ok, detail = bool(result), ""
    if ok:
        return True, detail or "/dev/mapper/control and thin-pool present"
    return False, detail or "the device-mapper thin-pool target is missing from this kernel"


PROBE_MARKER = ".probed"


def _probe_identity(where: Path) -> str:
    """What a successful probe depends on: the running kernel and the filesystem holding `where`."""
    return f"{os.uname().release} {os.stat(where).st_dev}\n"


def overlay_usable(where: Path) -> tuple[bool, str]:
    """Whether overlayfs is in the kernel and can stack layers on the filesystem holding `where`.

    The test mount costs a few ms (more under load) on every command, so a success is remembered
    in the overlay home (`<where>/overlay/.probed`) for this kernel and filesystem; a reboot into
    another kernel or a root moved to another filesystem probes again."""
    if "overlay" not in supported_filesystems():
        return False, "overlayfs is missing from this kernel (not in /proc/filesystems)"
    marker = RootLayout(where).driver_home("overlay") / PROBE_MARKER
    try:
        if marker.read_text() == _probe_identity(where):
            return True, "overlayfs present"
    except FileNotFoundError:
        log.debug("overlay: no earlier probe recorded in %s", marker)
    except OSError as err:
        log.debug("overlay: probing again, %s is unreadable: %s", marker, err.strerror)
    ok, why = _probe_overlay(where)
    if ok:
        marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(marker, _probe_identity(where).encode(), durable=False)
    return ok, why


def _probe_overlay(where: Path) -> tuple[bool, str]:
    """Mount a two-layer overlay under `where` and write through it."""
    import shutil  # lazy: the probe runs once per root (its marker is kept); not on every command's path
    import tempfile  # lazy: see above

    where.mkdir(parents=True, exist_ok=True)
    probe = Path(tempfile.mkdtemp(prefix=".overlay-probe-", dir=where))
    try:
        for d in ("lower1", "lower2", "upper", "work", "merged"):
            (probe / d).mkdir()
        try:
            if any(c in str(probe) for c in ":,\\"):  # overlayfs separators: name the dirs relatively
                mount_from(probe, "overlay", str(probe / "merged"), "overlay", 0,
                           "lowerdir=lower1:lower2,upperdir=upper,workdir=work")
            else:  # the common case, without the cost of a fork
                mount("overlay", probe / "merged", "overlay", 0,
                      f"lowerdir={probe}/lower1:{probe}/lower2,upperdir={probe}/upper,workdir={probe}/work")
        except OSError as err:
            return False, f"overlayfs cannot use {where} as upper layer ({os.strerror(err.errno or 0)})"
        try:
            (probe / "merged" / "probe").write_text("ok")
        finally:
            umount(probe / "merged")
        return True, "overlayfs present"
    except OSError as err:
        return False, f"overlayfs probe in {where} failed ({err.strerror or err})"
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def prior_drivers(layout: RootLayout) -> list[str]:
    """The drivers whose home in this root holds devices already (Docker's prior-driver rule). Every
    driver keeps one record per device in `<home>/devices`; a dot file there is a write in progress."""
    found = []
    for name in DRIVERS:
        try:
            with os.scandir(layout.driver_home(name) / "devices") as entries:
                if any(not e.name.startswith(".") for e in entries):
                    found.append(name)
        except (FileNotFoundError, NotADirectoryError):
            continue
    return found


def _usable(name: str, layout: RootLayout) -> tuple[bool, str]:
    if name == "devicemapper":
        return devicemapper_usable()
    if name == "overlay":
        return overlay_usable(layout.root)
    return True, "plain directory copies work everywhere"


def _construct(name: str, layout: RootLayout, options: dict) -> DeviceSet:
    home = layout.driver_home(name)
    if name == "devicemapper":
        from pydock.devmapper.dm_deviceset import DeviceSetDM  # lazy: only the chosen driver's module is loaded

        return DeviceSetDM(home, **options)
    if name == "overlay":
        from pydock.devmapper.overlay import OverlayDeviceSet  # lazy: only the chosen driver's module is loaded

        return OverlayDeviceSet(home)
    from pydock.devmapper.vfs import VfsDeviceSet  # lazy: only the chosen driver's module is loaded

    return VfsDeviceSet(home)


def open_deviceset(layout_root: str | os.PathLike, driver: str | None = None, **options) -> tuple[DeviceSet, str]:
    """The DeviceSet for a root and a one-line reason for the choice; KernelFeatureMissing if `driver` can't work."""
    unknown = set(options) - DM_OPTIONS
    if unknown:
        raise InvalidArgument(f"unknown storage option(s): {', '.join(sorted(unknown))}")
    layout = RootLayout(Path(layout_root))
    if driver:
        if driver not in DRIVERS:
            raise InvalidArgument(f"unknown storage driver {driver!r} (valid: {', '.join(DRIVERS)})")
        ok, why = _usable(driver, layout)
        if not ok:
            raise KernelFeatureMissing(f"driver {driver} not supported: {why}")
        return _construct(driver, layout, options), f"{driver}: requested ({why})"
    prior = prior_drivers(layout)
    if len(prior) > 1:
        raise InvalidArgument(f"{layout.root} holds the layers of several storage drivers ({', '.join(prior)}): "
                              "choose one with -s, or remove the others' images and containers")
    if prior:  # the root keeps its driver when another becomes usable (dm-thin loaded later): its images stay
        ok, why = _usable(prior[0], layout)
        if not ok:
            raise KernelFeatureMissing(f"prior storage driver {prior[0]} failed: {why}")
        return _construct(prior[0], layout, options), f"{prior[0]}: the root's layers are there ({why})"
    dm_ok, dm_why = devicemapper_usable()
    if dm_ok:
        return _construct("devicemapper", layout, options), f"devicemapper: {dm_why}"
    ov_ok, ov_why = overlay_usable(layout.root)
    if ov_ok:
        return _construct("overlay", layout, options), f"overlay: {dm_why}"
    return _construct("vfs", layout, options), f"vfs: {dm_why}; {ov_why}"


def open_driver(layout_root: str | os.PathLike, name: str | None = None, **options) -> tuple[Driver, str]:
    """open_deviceset's choice wrapped in a Driver whose mountpoints live in the chosen driver's home
    (`<root>/<driver>/mnt/<id>`); closing the Driver closes the DeviceSet it opened."""
    deviceset, reason = open_deviceset(layout_root, name, **options)
    home = RootLayout(Path(layout_root)).driver_home(deviceset.name)
    try:
        return Driver(deviceset, home, owns_deviceset=True), reason
    except BaseException:
        getattr(deviceset, "close", lambda: None)()
        raise
