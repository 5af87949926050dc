"""Fixtures for the interactive tests: a root on the overlay driver with busybox imported (the tmux
terminal, `term`, is the suite's: tests/conftest.py)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def busybox_tar() -> bytes:
    from pydock.graph.busybox import busybox_tar_bytes

    return busybox_tar_bytes()


@pytest.fixture
def root(tmp_path: Path, busybox_tar: bytes) -> Iterator[Path]:
    from pydock.runtime.runtime import Runtime

    root = tmp_path / "root"
    with Runtime(root, "overlay", bridge="none") as r:
        r.images.import_(io.BytesIO(busybox_tar), repo="busybox", tag="latest")
    try:
        yield root
    finally:
        r = Runtime(root, "overlay", bridge="none")
        try:
            for c in r.containers(all=True):
                r.remove(c, force=True, volumes=True)
            for image in r.images.graph.list():
                r.images.graph.delete(image.id)
        finally:
            r.close()
            r.driver.shutdown()
