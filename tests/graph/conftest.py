"""Fixtures for the image-graph tests: a fresh root per test on vfs, overlay (host) or devicemapper (UML)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from graph_helpers import HOST_DRIVERS, open_driver

from pydock.utils.paths import RootLayout


@pytest.fixture(params=HOST_DRIVERS)
def driver_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def layout(tmp_path: Path) -> RootLayout:
    return RootLayout(tmp_path / "root")


@pytest.fixture
def driver(driver_name: str, layout: RootLayout, unique_prefix: str) -> Iterator:
    driver = open_driver(driver_name, layout, unique_prefix)
    try:
        yield driver
    finally:
        driver.shutdown()


@pytest.fixture
def store(layout: RootLayout, driver):
    from pydock.graph.lookup import ImageStore

    return ImageStore(layout, driver)


@pytest.fixture
def graph(store):
    return store.graph
