"""Listening unix sockets whose file appears only once they take connections.

bind() makes the socket file and listen() follows; a client that waits for the file and connects in
between is refused (ECONNREFUSED). So the socket is bound and listening under a staging name beside its
path first, and only then published at the path. One place for it: the API server's socket and every
container supervisor's attach socket.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

#: sun_path's size on Linux, its terminating NUL included
UNIX_PATH_MAX = 108


def listen_then_publish(sock: socket.socket, path: str, backlog: int, *, replace: bool = False) -> None:
    """Bind `sock` (AF_UNIX, unbound) under `.<name>.<pid>` beside `path`, listen, then publish it at `path`:
    linked (FileExistsError if something holds `path`: a server that took it meanwhile keeps it), or with
    `replace`, renamed over what is there (for a caller whose lock makes it the path's only owner). The
    staging name never outlives the call. A staging path too long for sun_path is bound at `path` directly."""
    directory, name = os.path.split(path)
    staging = os.path.join(directory, f".{name}.{os.getpid()}")
    if len(os.fsencode(staging)) >= UNIX_PATH_MAX:
        if replace:
            Path(path).unlink(missing_ok=True)
        sock.bind(path)
        sock.listen(backlog)
        return
    Path(staging).unlink(missing_ok=True)  # left by a process with our pid that was killed between bind and publish
    sock.bind(staging)
    published = False
    try:
        sock.listen(backlog)
        if replace:
            os.rename(staging, path)
            published = True
        else:
            os.link(staging, path)
    finally:
        if not published:
            Path(staging).unlink(missing_ok=True)
