"""The userland proxy for published TCP ports, as Docker's docker-proxy.

A published port is DNAT rules, but the kernel drops a DNATed packet to 127/8 that would leave on the
bridge, so `curl localhost:8080` (and any `-p 127.0.0.1:...`) cannot be forwarded that way. A listener
on the published address, held by the container's monitor while the container runs, relays those
connections instead; other traffic is still DNATed before it reaches the listener.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from pydock.links.ports import ADDRESS_TAKEN, bind_address, in_use_on_host

log = logging.getLogger(__package__)

#: bytes moved per read, each way
CHUNK = 64 * 1024
#: how long a connection to the container may take before the client's is closed
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Route:
    """One published TCP port: where the host listens and where the container serves."""

    host_ip: str
    host_port: int
    container_ip: str
    container_port: int


def bind(route: Route) -> socket.socket:
    """The listening socket for `route`; Conflict if a host program holds the address already."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port just let go of is usable again
        sock.bind(bind_address(route.host_ip, route.host_port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        if err.errno in ADDRESS_TAKEN:
            raise in_use_on_host(route.host_ip, route.host_port) from None
        raise
    return sock


class PortProxy:
    """Listeners bound at once (so a taken port fails the start); relaying from `start()` to `stop()`,
    one thread per listener and per connection."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.listeners: list[tuple[socket.socket, Route]] = []
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False
        try:
            for route in routes:
                self.listeners.append((bind(route), route))
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        """Relay from now on (in the process that will stop it: threads do not survive a fork)."""
        for sock, route in self.listeners:
            threading.Thread(target=self._accept, args=(sock, route), daemon=True,
                             name=f"proxy-{route.host_port}").start()

    def stop(self) -> None:
        """Stop listening and cut every relayed connection."""
        with self._lock:
            self._stopped = True
            conns = list(self._conns)
        for sock, _ in self.listeners:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the accept
            except OSError:
                pass
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.close()

    def close(self) -> None:
        """Let go of the listeners (the starter's copies, once the monitor holds its own)."""
        for sock, _ in self.listeners:
            sock.close()

    def _track(self, conn: socket.socket) -> bool:
        with self._lock:
            if self._stopped:
                return False
            self._conns.add(conn)
            return True

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)
        conn.close()

    def _accept(self, listener: socket.socket, route: Route) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            threading.Thread(target=self._relay, args=(client, route), daemon=True,
                             name=f"proxy-{route.host_port}-conn").start()

    def _relay(self, client: socket.socket, route: Route) -> None:
        if not self._track(client):
            client.close()
            return
        try:
            backend = socket.create_connection((route.container_ip, route.container_port), CONNECT_TIMEOUT)
        except OSError as err:
            log.debug("proxy %s:%s -> %s:%s: %s", route.host_ip, route.host_port, route.container_ip,
                      route.container_port, err)
            self._untrack(client)
            return
        if not self._track(backend):
            backend.close()
            self._untrack(client)
            return
        try:
            _pump(client, backend)
        finally:
            self._untrack(backend)
            self._untrack(client)


def _pump(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until both are done; an end of input on one side is passed on as a half-close."""
    peer = {a: b, b: a}
    with selectors.DefaultSelector() as sel:
        for s in (a, b):
            s.setblocking(True)
            sel.register(s, selectors.EVENT_READ)
        open_reads = 2
        while open_reads:
            for key, _ in sel.select():
                src = key.fileobj
                try:
                    data = src.recv(CHUNK)
                    if data:
                        peer[src].sendall(data)
                        continue
                    peer[src].shutdown(socket.SHUT_WR)
                except OSError:
                    return  # reset, or stopped: both are closed by the caller
                sel.unregister(src)
                open_reads -= 1
