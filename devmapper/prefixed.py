"""A namespace inside a shared DeviceSet: every device hash gets `<prefix>-`, the base "" is shared.

This is Docker's test wrapper (docker07.md §2): per-test runtimes share one pool (one mkfs, one
base device) without their device names colliding. Unlike Docker's no-op, shutdown() here undoes
this wrapper's own mounts and activations, and never touches the pool or other prefixes' devices.
Prefixes are compared textually, so pick prefixes where none is another's prefix plus "-"
("a" and "a-b" would see each other's devices in list()).

`shared` hashes are devices of the store itself (e.g. a busybox image built once per test
session) that this view reads unprefixed: they can be mounted and snapshotted, never changed or
deleted through the view; removing one only drops it from the view.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from pydock.devmapper.deviceset import BASE_HASH, DeviceSet
from pydock.devmapper.dirstore import MountCounter
from pydock.utils.errors import Conflict, InvalidArgument, NotFound, PydockError

log = logging.getLogger(__package__)

_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class PrefixedDeviceSet:
    """DeviceSet view of `inner` restricted to the devices named `<prefix>-<hash>`."""

    def __init__(self, inner: DeviceSet, prefix: str, shared: Iterable[str] = ()) -> None:
        if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
            raise InvalidArgument(f"invalid device prefix {prefix!r} (letters, digits, '_', '.', '-'; at most 64)")
        self.inner = inner
        self.prefix = prefix
        self.name = inner.name
        self.shared = set(shared)
        self._mounts = MountCounter()

    def _full(self, hash: str) -> str:
        return hash if hash == BASE_HASH or hash in self.shared else f"{self.prefix}-{hash}"

    def add_device(self, hash: str, base_hash: str, durable: bool = True) -> None:
        if not hash:
            raise InvalidArgument("invalid device hash ''")
        if hash in self.shared:
            raise Conflict(f"hash {hash} already exists (a shared device of the store)")
        self.inner.add_device(self._full(hash), self._full(base_hash), durable=durable)

    def set_initialized(self, hash: str) -> None:
        if hash in self.shared:
            return  # shared devices are complete by construction
        self.inner.set_initialized(self._full(hash))

    def mount_device(self, hash: str, path: str | os.PathLike, readonly: bool = False) -> None:
        self.inner.mount_device(self._full(hash), path, readonly=readonly)
        self._mounts.add(hash, os.path.realpath(path))

    def unmount_device(self, hash: str, path: str | os.PathLike, deactivate: bool = True) -> None:
        self.inner.unmount_device(self._full(hash), path, deactivate=deactivate)
        self._mounts.drop(hash, os.path.realpath(path))

    def deactivate_device(self, hash: str) -> None:
        self.inner.deactivate_device(self._full(hash))

    def remove_device(self, hash: str) -> None:
        if hash in self.shared:
            self.shared.discard(hash)  # the store owns it; this view just stops seeing it
            return
        self.inner.remove_device(self._full(hash))

    def has_device(self, hash: str) -> bool:
        return self.inner.has_device(self._full(hash))

    def has_initialized_device(self, hash: str) -> bool:
        return self.inner.has_initialized_device(self._full(hash))

    def has_activated_device(self, hash: str) -> bool:
        return self.inner.has_activated_device(self._full(hash))

    def list(self) -> list[str]:
        return sorted(self._own() + [h for h in self.shared if self.inner.has_device(h)])

    def _own(self) -> list[str]:
        lead = self.prefix + "-"
        return [h[len(lead):] for h in self.inner.list() if h.startswith(lead) and len(h) > len(lead)]

    def status(self) -> list[tuple[str, str]]:
        return [*self.inner.status(), ("Device Prefix", self.prefix)]

    def close(self) -> None:
        """Forget this wrapper's bookkeeping; its mounts and the shared store stay as they are."""
        self._mounts.clear()

    def shutdown(self) -> None:
        """Unmount this wrapper's counted mounts and deactivate its own devices; the pool stays up."""
        for hash, path, count in self._mounts.items():
            for _ in range(count):
                try:
                    self.unmount_device(hash, Path(path), deactivate=True)
                except NotFound as err:  # unmounted (or removed) by another process, e.g. a forked monitor
                    log.debug("prefixed %s: %s (%s) already gone at shutdown: %s", self.prefix, path, hash, err)
                    self._mounts.drop(hash, os.path.realpath(path))
                    break
                except PydockError as err:
                    log.warning("prefixed %s: shutdown could not unmount %s (%s): %s", self.prefix, path, hash, err)
                    break
        for hash in self._own():
            try:
                if self.has_activated_device(hash):
                    self.deactivate_device(hash)
            except PydockError as err:
                log.warning("prefixed %s: shutdown could not deactivate %s: %s", self.prefix, hash, err)
