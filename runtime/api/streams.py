"""Docker's stream format for logs and attach: each record an 8-byte header (stream id, length) and
its text; with a tty, the raw text alone. Both clients pick the format from the container's
`Config.Tty`; the content type only echoes it. Also the pump between a hijacked connection and a
supervisor's attach session (attach with stdin, exec start)."""

from __future__ import annotations

import logging
import selectors
import socket
import struct
from collections.abc import Callable, Iterable

from pydock.runtime import attach
from pydock.runtime.api.httpd import ClientTimeout, Handler, peer_gone
from pydock.runtime.attach import AttachSession
from pydock.runtime.detachkeys import DetachScanner
from pydock.runtime.jsonlog import LogRecord
from pydock.runtime.state import format_time

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW_STREAM = "application/vnd.docker.raw-stream"
STREAM_IDS = {"stdin": 0, "stdout": 1, "stderr": 2}
#: a non-follow copy gathers frames up to this many bytes per write.
BATCH_BYTES = 64 * 1024
_CHUNK = 65536

log = logging.getLogger(__package__)


def content_type(tty: bool) -> str:
    return RAW_STREAM if tty else MULTIPLEXED


def frame(stream: str, data: bytes, tty: bool) -> bytes:
    """One record in Docker's stream format (raw bytes with a tty)."""
    if tty:
        return data
    return struct.pack(">BxxxL", STREAM_IDS[stream], len(data)) + data


def encode(rec: LogRecord, tty: bool, timestamps: bool = False) -> bytes:
    """A log record as a frame; with `timestamps`, its RFC 3339 time and a space before the text."""
    text = f"{format_time(rec.time)} {rec.log}" if timestamps else rec.log
    return frame(rec.stream, text.encode("utf-8", "surrogateescape"), tty)


def copy(records: Iterable[LogRecord], write: Callable[[bytes], None], tty: bool, *, timestamps: bool = False,
         live: bool = True) -> None:
    """Write the records as frames: each at once when `live` (a follower waits between records),
    else gathered into larger writes."""
    if live:
        for rec in records:
            write(encode(rec, tty, timestamps))
        return
    batch: list[bytes] = []
    size = 0
    for rec in records:
        data = encode(rec, tty, timestamps)
        batch.append(data)
        size += len(data)
        if size >= BATCH_BYTES:
            write(b"".join(batch))
            batch, size = [], 0
    if batch:
        write(b"".join(batch))


# ---- hijacked sessions (attach, exec start) -----------------------------------------------------

def buffered_input(h: Handler) -> bytes:
    """What the client sent after its request's head that the request reader already holds (a client
    may write stdin before it reads our answer): read without waiting for the socket."""
    policy = h.policy
    saved = policy.deadline
    policy.deadline = 0.0  # a read from the socket itself would now fail at once instead of blocking
    try:
        return h.rfile.read1(65536)
    except ClientTimeout:  # the usual case: the reader held nothing past the head
        return b""
    finally:
        policy.deadline = saved
        policy.timed_out = False


def pump(client: socket.socket, session: AttachSession, *, tty: bool, stdin: bool,
         detach_keys: bytes | None = None, early: bytes = b"") -> str:
    """Copy a hijacked connection to an attach session and back until one of them ends: the client's
    bytes are the command's stdin (`stdin`; its half-close is the end of stdin: the supervisor applies
    StdinOnce), the session's output goes out as Docker's stream frames. With a tty and stdin, the
    `detach_keys` end the session and leave the command running, as dockerd's attach.

    Returns how it ended: "exit" (the command ended), "closed" (the supervisor ended the session),
    "detached" or "gone" (the client closed its connection)."""
    scanner = DetachScanner(detach_keys) if tty and stdin and detach_keys else None
    sel = selectors.DefaultSelector()
    sel.register(session.fileno(), selectors.EVENT_READ, "session")
    reading = stdin
    if reading:
        sel.register(client, selectors.EVENT_READ, "client")
    try:
        if stdin and early and _forward(session, scanner, early):
            return "detached"
        while True:
            ready = sel.select(1.0)
            if not reading and not ready and peer_gone(client, False):
                return "gone"
            for key, _ in ready:
                if key.data == "client":
                    try:
                        data = client.recv(_CHUNK)
                    except OSError as err:  # a reset: the end of its stdin, as a close is
                        log.debug("attached client's input ended: %s", err)
                        data = b""
                    if data:
                        if _forward(session, scanner, data):
                            return "detached"
                        continue
                    sel.unregister(client)
                    reading = False
                    try:
                        session.close_stdin()
                    except OSError as err:
                        log.debug("end of stdin not passed on: %s", err)
                    continue
                for kind, payload in session.poll():
                    if kind == attach.EXIT:
                        return "exit"
                    if kind in attach.KIND_STREAM:
                        try:
                            client.sendall(frame(attach.KIND_STREAM[kind], payload, tty))
                        except OSError as err:
                            log.debug("attached client gone: %s", err)
                            return "gone"
                if session.closed:
                    return "closed"
    finally:
        sel.close()


def _forward(session: AttachSession, scanner: DetachScanner | None, data: bytes) -> bool:
    """`data` to the command's stdin; True when it completed the detach keys (what came before them
    is sent, what follows them is not)."""
    detached = False
    if scanner is not None:
        data, detached = scanner.feed(data)
    try:
        session.send_stdin(data)
    except OSError as err:  # the supervisor is going: its EXIT or EOF ends the pump
        log.debug("stdin not passed on: %s", err)
    return detached
