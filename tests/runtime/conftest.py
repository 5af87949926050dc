"""Fixtures for the runtime tests: real lxc, real cgroups, the embedded busybox image.

One storage pool per driver per session (devicemapper only inside UML), a PrefixedDeviceSet and a
fresh root per test, `bridge="none"` (bridge/veth tests live in tests/links inside their own netns).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from root_helpers import empty_runtime

HAVE_LXC = shutil.which("lxc-start") is not None
DRIVERS = ["overlay", pytest.param("devicemapper", marks=pytest.mark.dm)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAVE_LXC:
        return
    skip = pytest.mark.skip(reason="lxc-start is not installed (apt-get install lxc)")
    for item in items:
        if item.get_closest_marker("lxc") and "tests/runtime/" in str(item.fspath):
            item.add_marker(skip)


class _Stores:
    """Session-wide DeviceSets, opened on first use per driver, shut down at the end."""

    def __init__(self) -> None:
        self.open: dict[str, tuple[Path, Any]] = {}

    def get(self, driver: str) -> Any:
        if driver not in self.open:
            from pydock.devmapper.drivers import open_deviceset
            from pydock.runtime.testing.plugin import DM_TEST_SIZES

            root = Path(tempfile.mkdtemp(prefix=f"pydock-rt-{driver}-"))
            opts = {**DM_TEST_SIZES, "prefix": "pydock-rt-" + uuid.uuid4().hex[:6]} if driver == "devicemapper" else {}
            ds, _reason = open_deviceset(root, driver, **opts)
            self.open[driver] = (root, ds)
        return self.open[driver][1]

    def close(self) -> None:
        for root, ds in self.open.values():
            try:
                ds.shutdown()
            finally:
                shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def stores() -> Iterator[_Stores]:
    s = _Stores()
    try:
        yield s
    finally:
        s.close()


def teardown_runtime(rt: Any, deviceset: Any | None = None) -> None:
    """Remove every container and image the runtime made, then close it (and its prefixed devices)."""
    try:
        empty_runtime(rt)
    finally:
        rt.close()
        if deviceset is not None:
            for hash_ in deviceset.list():
                deviceset.remove_device(hash_)


@pytest.fixture(params=DRIVERS)
def rt(request: pytest.FixtureRequest, stores: _Stores, tmp_path: Path, busybox_tar: bytes) -> Iterator[Any]:
    """A Runtime on its own root, sharing the session's pool through a unique device prefix."""
    from pydock.devmapper.prefixed import PrefixedDeviceSet
    from pydock.runtime.runtime import Runtime

    ds = PrefixedDeviceSet(stores.get(request.param), "r" + uuid.uuid4().hex[:10])
    runtime = Runtime(tmp_path / "root", deviceset=ds, bridge="none")
    runtime.images.import_(io.BytesIO(busybox_tar), repo="busybox", tag="latest")
    try:
        yield runtime
    finally:
        teardown_runtime(runtime, ds)


def pydock(root: Path, *args: str, input: bytes | None = None, timeout: float = 60,
           check: bool = False) -> subprocess.CompletedProcess:
    """Run the `pydock` CLI on `root` (overlay) and capture its output."""
    cmd = [sys.executable, "-m", "pydock.cli.main", "-g", str(root), "-s", "overlay", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK_")}
    proc = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {proc.returncode}: {proc.stderr.decode()}")
    return proc


@pytest.fixture
def cli(cli_root: Path):
    """`cli("ps", "-a")` -> CompletedProcess."""
    def call(*args: str, **kw: Any) -> subprocess.CompletedProcess:
        return pydock(cli_root, *args, **kw)
    return call
