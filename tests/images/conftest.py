"""Fixtures for the image tests: a pydock root per test (CLI), podman with a store of its own, the
busybox rootfs tar pydock builds (the base every peer image is made from; nothing from the internet)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from images_helpers import PYDOCK, Podman, Registry, run

HOST_DRIVERS = ["overlay", "vfs"]


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pydock.graph.busybox import busybox_tar_bytes

    path = tmp_path_factory.mktemp("busybox") / "rootfs.tar"
    path.write_bytes(busybox_tar_bytes())
    return path


class Pydock:
    """`pydock -g ROOT -s DRIVER -b none ...` as a user runs it; `prefix` (nsenter) to run it elsewhere."""

    def __init__(self, root: Path, driver: str, extra: list[str] | None = None, prefix: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root, self.driver, self.extra, self.prefix = root, driver, extra or [], prefix or []
        self.env = env or {}

    def __call__(self, *args: str, ok: bool | None = True, stdin: bytes | None = None, timeout: float = 300,
                 env: dict[str, str] | None = None):
        return run([*self.prefix, PYDOCK, "-g", str(self.root), "-s", self.driver, "-b", "none", *self.extra, *args],
                   ok=ok, stdin=stdin, timeout=timeout, env={**self.env, **(env or {})})

    def inside(self, prefix: list[str]) -> "Pydock":
        """The same pydock root, commands run under `prefix` (e.g. in the registry's namespace)."""
        return Pydock(self.root, self.driver, self.extra, prefix, self.env)

    @contextmanager
    def mounted(self, image_id: str) -> Iterator[Path]:
        """The image's rootfs, read-only, through pydock's own driver."""
        from pydock.devmapper.drivers import open_driver

        driver, _ = open_driver(self.root, self.driver)
        try:
            with driver.mounted(image_id, readonly=True) as rootfs:
                yield rootfs
        finally:
            driver.close()

    def inspect(self, ref: str) -> dict:
        return json.loads(self("inspect", ref).out)[0]

    def image_id(self, ref: str) -> str:
        return self.inspect(ref)["id"]


@pytest.fixture(params=HOST_DRIVERS)
def pydock(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pydock]:
    p = Pydock(tmp_path / "pydock", request.param, env={"DOCKER_CONFIG": str(tmp_path / "docker-config")})
    yield p
    from pydock.utils.mount import mounts_under

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
