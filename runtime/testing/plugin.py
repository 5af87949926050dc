"""pytest plugin for suites that embed pydock: one shared storage pool per session, a prefixed
Runtime per test, and a session finish that tears everything down and fails on leaks.

Enable with `-p pydock` (or let the installed `pytest11` entry point load it): nothing happens
unless a test asks for `pydock_runtime` or `pydock_store`, so unrelated suites are untouched.

    def test_echo(pydock_runtime):
        code, out, err = pydock_runtime.run("busybox", ["echo", "hi"])
        assert (code, out) == (0, b"hi\\n")
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Small pool sizes for tests (docker07.md §1.2: Docker's own tests shrank them the same way).
DM_TEST_SIZES = {"data_size": 2 << 30, "metadata_size": 128 << 20, "base_size": 256 << 20}


@dataclass
class SharedStore:
    """The session's storage: one DeviceSet (one pool, one mkfs) and the busybox layer built once."""

    root: Path
    deviceset: Any
    driver: str
    reason: str
    busybox_id: str = ""
    counters: dict[str, int] = field(default_factory=lambda: {"runtimes": 0, "busybox_builds": 0})

    @property
    def template(self) -> Path:
        """A Runtime root holding the shared images' metadata (their devices live in the store)."""
        return self.root / "template"

    def build_busybox(self) -> None:
        """Import busybox once, unprefixed, into the store; every test runtime snapshots from it."""
        from pydock.graph.busybox import build_busybox_tar  # lazy: the plugin loads in every pytest session; pydock only when a fixture is used
        from pydock.runtime.runtime import Runtime  # lazy: the plugin loads in every pytest session; pydock only when a fixture is used

        buf = io.BytesIO()
        build_busybox_tar(buf)
        with Runtime(self.template, deviceset=self.deviceset, bridge="none") as rt:
            image = rt.images.import_(io.BytesIO(buf.getvalue()), repo="busybox", tag="latest")
        self.busybox_id = image.id
        self.counters["busybox_builds"] += 1

    def seed(self, root: Path) -> None:
        """Give a new Runtime root the shared images' metadata (graph entries and tags)."""
        from pydock.utils.paths import RootLayout  # lazy: the plugin loads in every pytest session; pydock only when a fixture is used

        src, dst = RootLayout(self.template), RootLayout(root)
        dst.graph.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src.graph / self.busybox_id, dst.graph / self.busybox_id)
        shutil.copy2(src.repositories(self.driver), dst.repositories(self.driver))

    def close(self) -> None:
        self.deviceset.shutdown()


_STORES: list[SharedStore] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pydock")
    group.addoption("--pydock-driver", default=None,
                    help="storage driver for pydock_runtime (default: PYDOCK_DRIVER or the best available)")
    group.addoption("--pydock-no-leakcheck", action="store_true",
                    help="do not fail the session when pydock fixtures leave mounts/devices behind")
    parser.addini("pydock_driver", "storage driver for pydock_runtime", default="")


def _driver_choice(config: pytest.Config) -> str | None:
    return (config.getoption("--pydock-driver") or config.getini("pydock_driver")
            or os.environ.get("PYDOCK_DRIVER") or None)


@pytest.fixture(scope="session")
def pydock_store(request: pytest.FixtureRequest) -> Iterator[SharedStore]:
    """One pool (or overlay/vfs root) for the whole session, created once and torn down at the end."""
    from pydock.devmapper.drivers import open_deviceset  # lazy: the plugin loads in every pytest session; pydock only when a fixture is used
    from pydock.runtime.testing import leaks  # lazy: the plugin loads in every pytest session; pydock only when a fixture is used

    before = leaks.snapshot()
    root = Path(tempfile.mkdtemp(prefix="pydock-store-"))
    driver = _driver_choice(request.config)
    deviceset, reason = open_deviceset(root, driver, **_dm_test_options(driver))
    store = SharedStore(root=root, deviceset=deviceset, driver=deviceset.name, reason=reason)
    _STORES.append(store)
    try:
        store.build_busybox()
        yield store
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)
        found = leaks.snapshot().leaks_since(before)
        if found and not request.config.getoption("--pydock-no-leakcheck"):
            request.config._pydock_plugin_leaks = leaks.format_leaks(found)  # type: ignore[attr-defined]


def _dm_test_options(driver: str | None) -> dict:
    """Small sizes and a unique pool prefix, for the devicemapper driver only (auto-selection may pick another)."""
    if driver is None:
        from pydock.runtime.kernelcheck import device_mapper  # lazy: the plugin loads in every pytest session; pydock only when a fixture is used

        driver = "devicemapper" if device_mapper().found else "overlay"
    if driver != "devicemapper":
        return {}
    return {**DM_TEST_SIZES, "prefix": "pydock-test-" + uuid.uuid4().hex[:6]}


@pytest.fixture
def pydock_runtime(pydock_store: SharedStore, tmp_path: Path) -> Iterator[Any]:
    """A Runtime of its own (root under tmp_path, device names under a unique prefix) on the shared store,
    with the session's `busybox:latest` visible; every container, image and device it made goes at teardown."""
    from pydock.devmapper.prefixed import PrefixedDeviceSet  # lazy: the plugin loads in every pytest session; pydock only when a fixture is used
    from pydock.runtime.runtime import Runtime  # lazy: the plugin loads in every pytest session; pydock only when a fixture is used

    prefix = "t" + uuid.uuid4().hex[:10]
    deviceset = PrefixedDeviceSet(pydock_store.deviceset, prefix, shared={pydock_store.busybox_id})
    pydock_store.counters["runtimes"] += 1
    root = tmp_path / "pydock"
    pydock_store.seed(root)
    rt = Runtime(root, deviceset=deviceset, bridge="none")
    try:
        yield rt
    finally:
        try:
            for container in rt.containers(all=True):
                rt.remove(container, force=True)
            for image in rt.images.graph.list():
                rt.images.graph.delete(image.id)
        finally:
            try:
                for hash_ in deviceset.list():
                    rt.driver.remove(hash_)  # a shared device only leaves this view
            finally:
                rt.driver.shutdown()  # this runtime's mounts, then the view's own devices; the pool stays
                rt.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for store in _STORES:
        terminalreporter.write_line(
            f"pydock: shared {store.driver} store: {store.counters['runtimes']} test runtimes, "
            f"busybox built {store.counters['busybox_builds']}x ({store.reason})")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    report = getattr(session.config, "_pydock_plugin_leaks", None)
    if report:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("pydock: resources left behind by pydock fixtures:\n" + report)
        session.exitstatus = 1
