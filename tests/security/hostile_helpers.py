"""Pieces the hostile-input tests share: hand-made image tarballs (busybox plus whatever an attacker
puts in), the `pydock` CLI on a private root (overlay on the host, devicemapper inside UML), a host
directory whose untouchedness is the assertion, and memory measurements of a process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

#: the storage drivers the image and archive cases run on (devicemapper only inside UML: hack/dmkernel.sh)
DRIVERS = ["overlay", pytest.param("devicemapper", marks=pytest.mark.dm)]
#: a small pool for devicemapper roots (UML keeps the loop files in memory)
DM_SMALL = ["--storage-opt", "dm.loopdatasize=2G", "--storage-opt", "dm.loopmetadatasize=128M",
            "--storage-opt", "dm.basesize=256M"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYDOCK_", "DOCKER_"))}


def pydock_argv(root: Path, driver: str) -> list[str]:
    sizes = DM_SMALL if driver == "devicemapper" else []
    return [sys.executable, "-m", "pydock.cli.main", "-g", str(root), "-s", driver, "-b", "none", *sizes]


@dataclass
class Store:
    """A pydock root on one driver, with busybox imported; `store("run", ...)` runs the CLI on it."""

    root: Path
    driver: str

    def __call__(self, *args: str, input: bytes | None = None, timeout: float = 120,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*pydock_argv(self.root, self.driver), *args], input=input, capture_output=True,
                              timeout=timeout, env={**clean_env(), **(env or {})})

    def ok(self, *args: str, **kw) -> str:
        """Run the CLI and insist on exit 0; its stdout."""
        p = self(*args, **kw)
        assert p.returncode == 0, f"pydock {' '.join(args)} -> {p.returncode}: {p.stderr.decode()}"
        return p.stdout.decode()

    def import_tar(self, data: bytes, ref: str) -> None:
        self.ok("import", "-", ref, input=data)


def busybox_tar() -> bytes:
    from pydock.graph.busybox import busybox_tar_bytes

    return busybox_tar_bytes()


@dataclass(frozen=True)
class Extra:
    """One entry an attacker adds to busybox's rootfs: a symlink, a directory, a file or a fifo."""

    name: str
    kind: str = "symlink"  # symlink | dir | file | fifo | chr
    target: str = ""  # symlink target
    data: bytes = b""
    dev: tuple[int, int] = (0, 0)


def image_tar(extras: Iterable[Extra], base: bytes | None = None) -> bytes:
    """busybox's rootfs with every top-level or exact path named in `extras` replaced by the extras."""
    extras = list(extras)
    names = {e.name.strip("/") for e in extras}
    src = tarfile.open(fileobj=io.BytesIO(base if base is not None else busybox_tar()))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as out:
        for m in src.getmembers():
            name = m.name.lstrip("./")
            if any(name == n or name.startswith(n + "/") for n in names):
                continue
            out.addfile(m, src.extractfile(m) if m.isreg() else None)
        for e in extras:
            info = tarfile.TarInfo(e.name.strip("/"))
            info.mode = 0o755 if e.kind == "dir" else 0o644
            if e.kind == "symlink":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, e.target, 0o777
                out.addfile(info)
            elif e.kind == "dir":
                info.type = tarfile.DIRTYPE
                out.addfile(info)
            elif e.kind == "fifo":
                info.type = tarfile.FIFOTYPE
                out.addfile(info)
            elif e.kind == "chr":
                info.type, (info.devmajor, info.devminor) = tarfile.CHRTYPE, e.dev
                out.addfile(info)
            else:
                info.size = len(e.data)
                out.addfile(info, io.BytesIO(e.data))
    return buf.getvalue()


def make_store(root: Path, driver: str) -> Store:
    store = Store(root, driver)
    store.import_tar(busybox_tar(), "busybox")
    return store


def teardown_store(store: Store) -> None:
    """Every container and image gone, the driver shut down (no mounts or devices left)."""
    from pydock.runtime.runtime import Runtime

    if not store.root.exists():
        return
    rt = Runtime(store.root, store.driver, bridge="none")
    try:
        for c in rt.containers(all=True):
            rt.remove(c, force=True, volumes=True)
        for _ in range(3):  # parents go once their children have
            for image in rt.images.graph.list():
                try:
                    rt.images.graph.delete(image.id)
                except Exception:  # noqa: BLE001 - a parent still in use: the next pass takes it
                    continue
        assert not rt.images.graph.list(), f"images left in {store.root}"
    finally:
        try:
            rt.driver.shutdown()
        finally:
            rt.close()


@contextmanager
def held_store(tmp_path_factory: pytest.TempPathFactory, driver: str) -> Iterator[Store]:
    """A root on `driver`, busybox imported, torn down after the block."""
    s = make_store(tmp_path_factory.mktemp(f"hostile-{driver}") / "root", driver)
    try:
        yield s
    finally:
        teardown_store(s)


@pytest.fixture(scope="module", params=DRIVERS)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A root per driver per module."""
    with held_store(tmp_path_factory, request.param) as s:
        yield s


def tree(path: Path) -> list[str]:
    """Everything below `path` (what a watched directory must still be: usually nothing)."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def status_kib(pid: int, field: str) -> int:
    """A `VmRSS`/`VmHWM`-style field of /proc/<pid>/status, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.fixture(scope="module")
def overlay_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A root on overlay, for what does not depend on the storage driver."""
    with held_store(tmp_path_factory, "overlay") as s:
        yield s


def container_state(store: Store, cid: str) -> dict:
    """The container's State as pydock records it (MonitorPid included)."""
    import json

    return json.loads((store.root / "containers" / cid / "config.json").read_text())["State"]


@pytest.fixture(scope="module")
def dm_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A root on devicemapper (inside UML)."""
    with held_store(tmp_path_factory, "devicemapper") as s:
        yield s
