"""Fixtures for the Engine API tests: one `pydock serve` subprocess per test module on a private root and
unix socket, driven by the real docker CLI and the real docker SDK (in whichever python has it).

Containers run with `--net none` (no bridge, no netns needed), except on `netns_server`, which runs in a
network namespace of its own. The busybox image is built by the server itself the first time a client
asks for it, as a user would see it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import DOCKER, NO_DOCKER, Server, served


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if DOCKER is None:
        pytest.skip(NO_DOCKER)
    with served(tmp_path_factory.mktemp("api")) as srv:
        yield srv


@pytest.fixture(scope="module")
def netns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server inside a network namespace of its own: the bridges, veths and rules it makes die with it."""
    if DOCKER is None:
        pytest.skip(NO_DOCKER)
    with served(tmp_path_factory.mktemp("apinet"), in_netns=True) as srv:
        yield srv
