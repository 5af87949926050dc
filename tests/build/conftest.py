"""Fixtures of the build tests: a pydock root per test (CLI, on each host driver) with the busybox rootfs
imported as the base image, and podman with a store of its own importing the same tar."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from build_helpers import BASE
from images.images_helpers import Podman, Pydock

HOST_DRIVERS = ["overlay", "vfs"]


def check_clean(p: Pydock) -> None:
    """Nothing of a build left mounted under the root."""
    from pydock.utils.mounttable import mounts_under

    left = mounts_under(p.root) if p.root.exists() else []
    assert left == [], f"mounts left under the pydock root: {left}"


@pytest.fixture(params=HOST_DRIVERS)
def pydock(request: pytest.FixtureRequest, tmp_path: Path, busybox_rootfs: Path) -> Iterator[Pydock]:
    p = Pydock(tmp_path / "pydock", request.param)
    p("import", str(busybox_rootfs), BASE)
    yield p
    check_clean(p)


@pytest.fixture
def podman(busybox_rootfs: Path) -> Iterator[Podman]:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: hack/make.sh test installs it (TEST_PACKAGES)")
    p = Podman(Path(tempfile.mkdtemp(prefix="pdk-pm-")))  # podman wants a runroot under 50 characters
    p("import", str(busybox_rootfs), BASE)
    yield p
    p.close()
