"""Volumes: directories under `<root>/volumes` that outlive containers, as Docker's `local` driver keeps them.

A named volume (`volume create NAME`, `-v NAME:/ctr`) is `volumes/<name>/_data` with its record in
`volumes/<name>/volume.json`; an anonymous one (`-v /ctr`, an image's VOLUME) is `volumes/<64 hex>`, the
data directly in it, removed with its container by `rm -v` and `--rm`. A new or empty volume gets the
image's content at its mount point on creation (Docker's copy-up), read through the container's rootfs
with every path resolved inside it.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydock.runtime.state import format_time, parse_time, utcnow
from pydock.utils.errors import Conflict, InvalidArgument, NotFound, PydockError
from pydock.utils.fileutil import atomic_write
from pydock.utils.ids import generate_id

if TYPE_CHECKING:
    from datetime import datetime
    from pydock.runtime.runtime import Runtime

log = logging.getLogger(__package__)

#: Docker's local volume names
NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
RECORD = "volume.json"
DATA = "_data"


@dataclass(frozen=True)
class VolumeInfo:
    """One volume as `volume ls/inspect` show it."""

    name: str
    mountpoint: Path
    created: datetime | None
    labels: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False

    def to_api(self) -> dict[str, Any]:
        """The Engine API's Volume object."""
        return {"Name": self.name, "Driver": "local", "Mountpoint": str(self.mountpoint),
                "CreatedAt": format_time(self.created), "Labels": dict(self.labels) or None, "Scope": "local",
                "Options": None}


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise InvalidArgument(f"{name!r} includes invalid characters for a local volume name, only "
                              "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed. If you intended to pass a host directory, "
                              "use absolute path")
    return name


class VolumeStore:
    """The volumes of one root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _private_root(self) -> None:
        """`volumes/` is 0700 like `containers/`: no host user reaches a volume's contents."""
        self.root.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)

    def create(self, name: str | None = None, labels: dict[str, str] | None = None) -> tuple[VolumeInfo, bool]:
        """(the volume, whether it was made now). Creating an existing name returns it unchanged, as Docker
        does; without a name a random 64-hex one is given."""
        name = check_name(name) if name else generate_id()
        self._private_root()
        home = self.root / name
        try:
            home.mkdir(mode=0o700)
        except FileExistsError:
            return self.get(name), False
        try:
            (home / DATA).mkdir(mode=0o755)
            os.chmod(home / DATA, 0o755)  # exactly, whatever the umask: the container's users may enter
            record = {"Name": name, "CreatedAt": format_time(utcnow()), "Labels": dict(labels or {})}
            atomic_write(home / RECORD, json.dumps(record).encode(), 0o600)
        except BaseException:
            import shutil  # lazy: only a failed create cleans up; keeps shutil off every command that parses options

            shutil.rmtree(home, ignore_errors=True)
            raise
        return self.get(name), True

    def anonymous(self) -> Path:
        """A fresh anonymous volume's directory."""
        self._private_root()
        path = self.root / generate_id()
        path.mkdir(mode=0o700)
        os.chmod(path, 0o755)
        return path

    def get(self, name: str) -> VolumeInfo:
        home = self.root / name
        if "/" in name or name in ("", ".", "..") or not home.is_dir():
            raise NotFound(f"get {name}: no such volume")
        try:
            record = json.loads((home / RECORD).read_bytes())
        except FileNotFoundError:  # an anonymous volume: the data is the directory itself
            from datetime import datetime  # lazy: only an anonymous volume's time comes from its mtime

            return VolumeInfo(name, home, datetime.fromtimestamp(home.stat().st_mtime).astimezone(), anonymous=True)
        except (OSError, ValueError) as err:
            raise PydockError(f"volume {name}: unreadable record: {err}") from None
        return VolumeInfo(name, home / DATA, parse_time(record.get("CreatedAt")), dict(record.get("Labels") or {}))

    def list(self) -> list[VolumeInfo]:
        try:
            names = sorted(n for n in os.listdir(self.root) if not n.startswith("."))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            try:
                out.append(self.get(name))
            except NotFound:
                continue  # removed meanwhile
        return out

    def owner_of(self, path: str | Path) -> VolumeInfo | None:
        """The volume a container's mount source is, if it is one."""
        path = Path(path)
        if path.parent == self.root:
            name = path.name
        elif path.name == DATA and path.parent.parent == self.root:
            name = path.parent.name
        else:
            return None
        try:
            return self.get(name)
        except NotFound:
            return None

    def delete(self, info: VolumeInfo) -> None:
        """Remove the volume's directory (the caller checked nothing uses it)."""
        home = self.root / info.name
        trash = self.root / f".removing-{info.name}-{os.urandom(4).hex()}"
        try:
            os.rename(home, trash)  # one step: never a half-removed volume under its name
        except FileNotFoundError:
            raise NotFound(f"get {info.name}: no such volume") from None
        import shutil  # lazy: see create

        shutil.rmtree(trash, ignore_errors=True)


def users(rt: Runtime) -> dict[str, list[str]]:
    """Volume name -> ids of the containers (any state) that mount it."""
    out: dict[str, list[str]] = {}
    for c in rt.containers(all=True):
        for source in c.volumes.values():
            info = rt.volumes.owner_of(source)
            if info is not None:
                out.setdefault(info.name, []).append(c.id)
    return out


def matching(rt: Runtime, filters: list[tuple[str, str]]) -> list[VolumeInfo]:
    """The volumes `volume ls --filter` keeps: every filter must hold (dangling=true|false: used by no
    container or not, name=SUBSTRING, label=K or K=V, driver=local)."""
    for key, value in filters:
        if key not in ("dangling", "name", "label", "driver"):
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "dangling" and value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={value}'")
    used = users(rt) if any(key == "dangling" for key, _ in filters) else {}
    out = []
    for info in rt.volumes.list():
        keep = True
        for key, value in filters:
            if key == "dangling":
                keep &= (info.name not in used) == (value.lower() in ("true", "1"))
            elif key == "name":
                keep &= value in info.name
            elif key == "driver":
                keep &= value == "local"
            else:
                k, sep, v = value.partition("=")
                keep &= k in info.labels and (not sep or info.labels[k] == v)
        if keep:
            out.append(info)
    return out


def remove(rt: Runtime, name: str, force: bool = False) -> None:
    """`volume rm`: refused while a container uses it; with `force` a missing one is not an error."""
    try:
        info = rt.volumes.get(name)
    except NotFound:
        if force:
            return
        raise
    holders = users(rt).get(name)
    if holders:
        raise Conflict(f"remove {name}: volume is in use - [{', '.join(holders)}]")
    rt.volumes.delete(info)


def prune(rt: Runtime, *, all_: bool = False) -> tuple[list[str], int]:
    """`volume prune`: (names removed, bytes freed) of the unused anonymous volumes, with `all_` of every
    unused one (Docker 23's rule)."""
    from pydock.archive.changes import tree_size  # lazy: the archive package, only for prune

    used = users(rt)
    removed, freed = [], 0
    for info in rt.volumes.list():
        if info.name in used or not (all_ or info.anonymous):
            continue
        try:
            size = tree_size(info.mountpoint)
        except PydockError as err:
            log.debug("volume %s: size unknown (%s)", info.name, err)
            size = 0
        rt.volumes.delete(info)
        removed.append(info.name)
        freed += size
    return removed, freed


def copy_up(rootfs: Path, target: str, volume: Path) -> None:
    """Copy the image's content at container path `target` into the empty `volume`, owners, modes and
    times kept: what the command would have seen there without the volume. Symlinks on the way resolve
    inside `rootfs`; a missing path or a non-directory leaves the volume empty."""
    from pydock.archive.apply import apply_layer  # lazy: the archive package, only with a volume to fill
    from pydock.archive.tar import write_tar  # lazy: see above
    from pydock.utils.safepath import open_in_root  # lazy: ctypes (openat2), only with a volume to fill
    import threading  # lazy: see above

    try:
        fd = open_in_root(rootfs, target, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as err:
        log.debug("copy-up of %s skipped: %s", target, err)
        return
    try:
        if not os.listdir(fd):
            return
        read, write = os.pipe2(os.O_CLOEXEC)
        failure: list[BaseException] = []

        def produce() -> None:
            try:
                with open(write, "wb") as sink:
                    write_tar(Path(f"/proc/self/fd/{fd}"), sink)
            except BaseException as err:  # reported by the consumer's thread
                failure.append(err)

        producer = threading.Thread(target=produce, name="copy-up", daemon=True)
        producer.start()
        try:
            with open(read, "rb") as source:
                apply_layer(volume, source)
        finally:
            producer.join()
        if failure:
            raise failure[0]
    finally:
        os.close(fd)
