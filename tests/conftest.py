"""Suite-wide rules (where dm tests run, which skips are allowed, the session leak check) and the fixtures
every directory shares: the busybox rootfs built from the host's busybox-static, a CLI root with it, and
the tmux terminal of the CLI's and the API's interactive tests."""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from interactive.tty_helpers import NO_TMUX, TMUX, Tmux

from pydock.runtime.testing import leaks
from root_helpers import empty_runtime

IN_UML = os.environ.get("PYDOCK_IN_UML") == "1"
REQUIRE_DM = os.environ.get("PYDOCK_REQUIRE_DM") == "1"
# hack/make.sh test sets both: a skipped dm/lxc/network test or a leaked resource fails the run.
STRICT_SKIPS = os.environ.get("PYDOCK_STRICT_SKIPS") == "1"
LEAKCHECK = os.environ.get("PYDOCK_LEAKCHECK") == "1"
_TIERED = ("dm", "lxc", "network")


def _dm_missing_reason() -> str | None:
    """None when this kernel has a usable dm thin-pool, else the missing feature in one line."""
    from pydock.runtime.kernelcheck import device_mapper

    feature = device_mapper()
    if feature.found:
        return None
    return (f"device-mapper thin-pool is missing from this kernel ({feature.detail}); "
            "hack/make.sh test runs these tests inside User-Mode Linux")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip_root = pytest.mark.skip(reason="pydock's tests need root (mounts, loop devices, lxc)")
        for item in items:
            item.add_marker(skip_root)
        return
    if not any(item.get_closest_marker("dm") for item in items):
        return
    reason = _dm_missing_reason()
    if reason is None:
        return
    if REQUIRE_DM:
        config._pydock_dm_missing = reason  # type: ignore[attr-defined]
        return
    for item in items:
        if item.get_closest_marker("dm"):
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_setup(item: pytest.Item) -> None:
    missing = getattr(item.config, "_pydock_dm_missing", None)
    if missing and item.get_closest_marker("dm"):
        pytest.fail(f"PYDOCK_REQUIRE_DM=1 but {missing}", pytrace=False)


_skipped_tiered: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and any(k in report.keywords for k in _TIERED):
        _skipped_tiered.append(report.nodeid)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._pydock_before = leaks.snapshot()  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def say(text: str) -> None:
        if reporter is not None:
            reporter.write_line(text)

    if STRICT_SKIPS and _skipped_tiered:
        say(f"FAILED: {len(_skipped_tiered)} dm/lxc/network test(s) were skipped; this run must execute them:")
        for nodeid in _skipped_tiered:
            say(f"  {nodeid}")
        session.exitstatus = 1
    before = getattr(session.config, "_pydock_before", None)
    if before is None:
        return
    found = leaks.snapshot().leaks_since(before)
    if found:
        say(("FAILED: " if LEAKCHECK else "WARNING: ") + "resources left behind by this test session:")
        say(leaks.format_leaks(found))
        if LEAKCHECK:
            session.exitstatus = 1


@pytest.fixture(autouse=True)
def _free_tmp_path_in_uml(request: pytest.FixtureRequest):
    """Inside UML, /tmp is memory: drop each test's tmp_path (sparse pool files, images) once its
    fixtures are torn down, so the dm tier's footprint stays one test deep rather than the whole run."""
    yield
    path = request.node.funcargs.get("tmp_path") if IN_UML else None
    if path is None:
        return
    from pydock.utils.mounttable import mounts_under

    if not mounts_under(path):  # a leaked mount stays for the leak check to report, files and all
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def unique_prefix() -> str:
    """A short name no other test (or concurrent run) uses: for dm prefixes, lxc names, bridges."""
    return "pt" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def busybox_tar() -> bytes:
    """The busybox rootfs tarball, built once per session from the host's busybox-static."""
    from pydock.graph.busybox import busybox_tar_bytes

    return busybox_tar_bytes()


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory, busybox_tar: bytes) -> Path:
    """The same tarball as a file, for commands (`pydock import`, `podman import`) that read one."""
    path = tmp_path_factory.mktemp("busybox") / "rootfs.tar"
    path.write_bytes(busybox_tar)
    return path


@pytest.fixture
def cli_root(tmp_path: Path, busybox_tar: bytes) -> Iterator[Path]:
    """A root on the overlay driver with busybox imported, for tests that drive the `pydock` command;
    emptied and its store shut down afterwards."""
    from pydock.runtime.runtime import Runtime

    root = tmp_path / "cliroot"
    with Runtime(root, "overlay", bridge="none") as r:
        r.images.import_(io.BytesIO(busybox_tar), repo="busybox", tag="latest")
    try:
        yield root
    finally:
        r = Runtime(root, "overlay", bridge="none")
        try:
            empty_runtime(r)
        finally:
            r.close()
            r.driver.shutdown()


@pytest.fixture
def term() -> Iterator[Tmux]:
    """A real terminal (a private tmux server) for the interactive tests of the CLI and of the API."""
    if TMUX is None:
        pytest.skip(NO_TMUX)
    t = Tmux()
    try:
        yield t
    finally:
        t.close()
