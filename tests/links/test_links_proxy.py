"""The userland proxy on real loopback sockets: it relays both ways, passes a half-close on, refuses a
taken port, and `stop` lets the port go and cuts what it relays."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from pydock.links.proxy import PortProxy, Route
from pydock.utils.errors import Conflict


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A backend that echoes each connection upper-cased until its client half-closes, then says bye."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data.upper())
                conn.sendall(b"|bye")

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.shutdown(socket.SHUT_RDWR)
    server.close()


def test_it_relays_both_ways_and_passes_a_half_close_on(echo_server: int) -> None:
    port = _free_port()
    proxy = PortProxy([Route("127.0.0.1", port, "127.0.0.1", echo_server)])
    proxy.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"x" * 300_000)  # more than one read's worth
            c.shutdown(socket.SHUT_WR)  # the backend sees the end of input and answers after it
            got = c.makefile("rb").read()
        assert got == b"X" * 300_000 + b"|bye"
    finally:
        proxy.stop()


def test_stop_lets_the_port_go_and_cuts_open_connections(echo_server: int) -> None:
    port = _free_port()
    proxy = PortProxy([Route("127.0.0.1", port, "127.0.0.1", echo_server)])
    proxy.start()
    held = socket.create_connection(("127.0.0.1", port), timeout=5)
    held.sendall(b"a")
    assert held.recv(1) == b"A"
    proxy.stop()
    assert held.recv(100) == b""  # cut: no "|bye", the backend never saw an end of input
    held.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    with socket.socket() as s:  # free for anyone (a server's SO_REUSEADDR passes the cut connection's
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT, never a listener)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_a_taken_port_is_a_conflict_and_binds_nothing_else() -> None:
    free, taken = _free_port(), socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    with taken:
        port = taken.getsockname()[1]
        with pytest.raises(Conflict, match=f"^Bind for 127.0.0.1:{port} failed: port is already in use on the host$"):
            PortProxy([Route("127.0.0.1", free, "127.0.0.1", 1), Route("127.0.0.1", port, "127.0.0.1", 1)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", free))  # the first listener was let go again


def test_a_backend_that_refuses_closes_the_client(echo_server: int) -> None:
    port, nowhere = _free_port(), _free_port()
    proxy = PortProxy([Route("127.0.0.1", port, "127.0.0.1", nowhere)])
    proxy.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            assert c.recv(10) == b""
    finally:
        proxy.stop()
