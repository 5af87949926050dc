"""Fixtures for the Engine API tests: one `pydock serve` subprocess per test module on a private root and
unix socket, driven by the real docker CLI and the real docker SDK (in whichever python has it).

Containers run with `--net none` (no bridge, no netns needed). The busybox image is built by the
server itself the first time a client asks for it, as a user would see it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import DOCKER, NO_DOCKER, Server, start_server, start_server_in_netns, stop_server
from root_helpers import teardown_root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if DOCKER is None:
        pytest.skip(NO_DOCKER)
    tmp = tmp_path_factory.mktemp("api")
    root, sock = tmp / "root", tmp / "d.sock"
    proc = start_server(root, f"unix://{sock}", wait_for=sock)
    try:
        yield Server(root=root, sock=sock, tmp=tmp, proc=proc)
    finally:
        try:
            err = stop_server(proc)
            assert proc.returncode == 0, f"pydock serve exited {proc.returncode}: {err}"
            assert not sock.exists(), "pydock serve left its socket behind"
        finally:
            teardown_root(root)


@pytest.fixture(scope="module")
def netns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server inside a network namespace of its own: the bridges, veths and rules it makes die with it."""
    if DOCKER is None:
        pytest.skip(NO_DOCKER)
    tmp = tmp_path_factory.mktemp("apinet")
    root, sock = tmp / "root", tmp / "d.sock"
    proc = start_server_in_netns(root, sock)
    srv = Server(root=root, sock=sock, tmp=tmp, proc=proc)
    try:
        yield srv
    finally:
        try:
            ids = srv.docker("ps", "-aq").stdout.decode().split()
            if ids:
                srv.docker("rm", "-f", *ids)  # inside the namespace, by the server that made them
            err = stop_server(proc)
            assert proc.returncode == 0, f"pydock serve exited {proc.returncode}: {err}"
        finally:
            teardown_root(root)
