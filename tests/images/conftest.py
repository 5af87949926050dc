"""Fixtures for the image tests: a pydock root per test (CLI), podman with a store of its own, the
busybox rootfs tar pydock builds (the base every peer image is made from; nothing from the internet)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from images_helpers import Podman, Pydock, Registry

HOST_DRIVERS = ["overlay", "vfs"]


@pytest.fixture(params=HOST_DRIVERS)
def pydock(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pydock]:
    p = Pydock(tmp_path / "pydock", request.param, env={"DOCKER_CONFIG": str(tmp_path / "docker-config")})
    yield p
    from pydock.utils.mounttable import mounts_under

    left = mounts_under(p.root) if p.root.exists() else []
    assert left == [], f"mounts left under the pydock root: {left}"


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: hack/make.sh test installs it (TEST_PACKAGES)")
    p = Podman(Path(tempfile.mkdtemp(prefix="pdk-pm-")))  # podman wants a runroot under 50 characters
    yield p
    p.close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    if shutil.which("docker-registry") is None:
        pytest.fail("docker-registry is missing: hack/make.sh test installs it (TEST_PACKAGES)")
    reg = Registry(tmp_path / "registry")
    yield reg
    reg.close()


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry", users={"alice": "s3cret"})
    yield reg
    reg.close()


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry", users={"alice": "s3cret"}, token=True)
    yield reg
    reg.close()


@pytest.fixture
def peer_image(podman: Podman, busybox_rootfs: Path, tmp_path: Path) -> str:
    """`localhost/multi:1` built by podman: busybox plus two layers (a whiteout, a symlink), a config."""
    podman("import", str(busybox_rootfs), "localhost/bbase:latest")
    return podman.build(tmp_path / "ctx", "localhost/multi:1", MULTI_CONTAINERFILE)


MULTI_CONTAINERFILE = """FROM localhost/bbase:latest
RUN mkdir -p /data && echo one > /data/one && rm /bin/vi && chmod 0750 /data
RUN echo two > /data/two && ln -s one /data/link && mkdir /data/empty
ENV FOO=bar
WORKDIR /data
LABEL org.example.kind=test
EXPOSE 8080/tcp
VOLUME /vol
STOPSIGNAL SIGINT
CMD ["cat", "/data/one"]
"""
