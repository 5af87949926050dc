"""The attach socket: how a client reaches the stdio of a container (or exec) its supervisor holds.

The supervisor (the detached monitor, the foreground `run`, an exec's monitor) listens on a unix socket
in the container's directory (`attach.sock`, `exec/<id>.sock`), the shape of podman's conmon; a start
can also hand its caller a connection made before the command runs (a socketpair), so an attach
before a start misses nothing. Every client (`pydock attach`, `run -it`, `exec -it`, the Engine API's
hijacked attach) speaks the same framed protocol over it:

    frame = kind (1 byte) | length (4 bytes, big endian) | payload (at most MAX_PAYLOAD bytes)

client -> supervisor: HELLO (JSON: which streams, stdin, logs) first, then STDIN data, STDIN_EOF,
RESIZE (rows, columns as two big-endian u16). supervisor -> client: WELCOME (JSON: `tty`, and the
log's size at the moment the client joined, so a client replaying the log first sees every byte once),
then STDOUT / STDERR data as the command writes it, and EXIT (JSON: `code`) once the run is recorded.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydock.utils.errors import Conflict, PydockError
from pydock.utils.unixlisten import listen_then_publish

HELLO, STDIN, STDIN_EOF, RESIZE = 1, 2, 3, 4
WELCOME, STDOUT, STDERR, EXIT = 10, 11, 12, 13
CLIENT_KINDS = frozenset({HELLO, STDIN, STDIN_EOF, RESIZE})
SERVER_KINDS = frozenset({WELCOME, STDOUT, STDERR, EXIT})
OUTPUT_KIND = {"stdout": STDOUT, "stderr": STDERR}
KIND_STREAM = {STDOUT: "stdout", STDERR: "stderr"}
#: the largest payload either side sends or accepts (a bigger frame ends the connection)
MAX_PAYLOAD = 64 << 10
_HEAD = struct.Struct(">BI")
_SIZE = struct.Struct(">HH")
#: how long a client waits for the supervisor's WELCOME
WELCOME_TIMEOUT = 10.0
SOCKET_NAME = "attach.sock"


class ProtocolError(PydockError):
    """The peer sent something that is not the attach protocol."""


@dataclass(frozen=True)
class Hello:
    """What a client asks for when it joins."""

    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    #: the client replays the log itself: WELCOME carries the log offset, the unlogged line start follows
    logs: bool = False

    def encode(self) -> bytes:
        return frame(HELLO, json.dumps(asdict(self)).encode())

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        try:
            data = json.loads(payload)
        except ValueError:
            raise ProtocolError("attach: HELLO is not JSON") from None
        if not isinstance(data, dict):
            raise ProtocolError("attach: HELLO is not an object")
        return cls(**{k: bool(data.get(k, getattr(cls, k))) for k in ("stdin", "stdout", "stderr", "logs")})


@dataclass(frozen=True)
class Welcome:
    """The supervisor's answer to HELLO."""

    tty: bool
    log_offset: int = 0


def frame(kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"attach frame of {len(payload)} bytes (at most {MAX_PAYLOAD})")
    return _HEAD.pack(kind, len(payload)) + payload


def frames(kind: int, data: bytes) -> bytes:
    """`data` as as many frames of `kind` as it takes."""
    return b"".join(frame(kind, data[i:i + MAX_PAYLOAD]) for i in range(0, len(data), MAX_PAYLOAD)) \
        if data else b""


def resize_frame(rows: int, cols: int) -> bytes:
    return frame(RESIZE, _SIZE.pack(max(0, min(rows, 0xFFFF)), max(0, min(cols, 0xFFFF))))


def parse_resize(payload: bytes) -> tuple[int, int]:
    if len(payload) != _SIZE.size:
        raise ProtocolError("attach: RESIZE needs 4 bytes")
    return _SIZE.unpack(payload)


def exit_frame(code: int) -> bytes:
    return frame(EXIT, json.dumps({"code": code}).encode())


class FrameReader:
    """Splits a byte stream into frames; holds at most one frame's worth of bytes."""

    def __init__(self, kinds: frozenset[int]) -> None:
        self.kinds = kinds
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= _HEAD.size:
            kind, size = _HEAD.unpack_from(self._buf)
            if kind not in self.kinds or size > MAX_PAYLOAD:
                raise ProtocolError(f"attach: unexpected frame (kind {kind}, {size} bytes)")
            if len(self._buf) < _HEAD.size + size:
                break
            out.append((kind, bytes(self._buf[_HEAD.size:_HEAD.size + size])))
            del self._buf[:_HEAD.size + size]
        return out


# ---- the socket's place ------------------------------------------------------------------------

def socket_path(directory: Path, name: str = SOCKET_NAME) -> Path:
    return directory / name


def _short(directory: Path) -> tuple[int, str]:
    """An fd on `directory` and a path through it short enough for sun_path (108 bytes): a container
    directory under a deep root would not fit."""
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return fd, f"/proc/self/fd/{fd}"


def listen(directory: Path, name: str = SOCKET_NAME) -> socket.socket:
    """Listen on `directory/name` (mode 0600); the file appears only once it takes connections, so an
    attach that finds it is never refused. A stale socket of a dead supervisor is replaced: the caller
    holds the lock that makes it the only one."""
    fd, short = _short(directory)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            listen_then_publish(sock, f"{short}/{name}", 16, replace=True)
        except BaseException:
            sock.close()
            raise
        finally:
            os.umask(old)
        sock.setblocking(False)
        return sock
    finally:
        os.close(fd)


def remove_socket(directory: Path, name: str = SOCKET_NAME) -> None:
    """Unlink the supervisor's socket (at the end of the run, or after a crash)."""
    try:
        os.unlink(directory / name)
    except FileNotFoundError:
        pass  # never bound (a launch that failed early) or already gone


def connect(directory: Path, hello: Hello, what: str, name: str = SOCKET_NAME) -> AttachSession:
    """A session with the supervisor listening in `directory`; Conflict if nothing listens there."""
    try:
        fd, short = _short(directory)
    except FileNotFoundError:
        raise Conflict(f"{what} is not running") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(f"{short}/{name}")
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise Conflict(f"{what} is not running") from None
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(fd)
    try:
        sock.sendall(hello.encode())
    except OSError:
        sock.close()
        raise Conflict(f"{what} is not running") from None
    return AttachSession(sock)


# ---- the client --------------------------------------------------------------------------------

class AttachSession:
    """One client connection: read WELCOME, then output frames until EXIT; send stdin and resizes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = FrameReader(SERVER_KINDS)
        self._pending: list[tuple[int, bytes]] = []
        self.welcome: Welcome | None = None
        self.exit_code: int | None = None
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def wait_welcome(self, timeout: float = WELCOME_TIMEOUT) -> Welcome:
        """Block for the supervisor's WELCOME (frames after it stay queued for `poll`)."""
        if self.welcome is not None:
            return self.welcome
        self.sock.settimeout(timeout)
        try:
            while self.welcome is None:
                data = self.sock.recv(MAX_PAYLOAD)
                if not data:
                    raise Conflict("the container's supervisor closed the attach connection")
                self._take(self._reader.feed(data))
        except socket.timeout:
            raise Conflict("the container's supervisor did not answer the attach") from None
        finally:
            self.sock.settimeout(None)
        return self.welcome

    def _take(self, got: list[tuple[int, bytes]]) -> None:
        for kind, payload in got:
            if kind == WELCOME and self.welcome is None:
                data = _json_object(payload)
                self.welcome = Welcome(tty=bool(data.get("tty")), log_offset=int(data.get("log_offset") or 0))
            elif kind == EXIT:
                self.exit_code = int(_json_object(payload).get("code", -1))
                self._pending.append((kind, payload))
            else:
                self._pending.append((kind, payload))

    def poll(self) -> list[tuple[int, bytes]]:
        """The frames that arrived (one recv; call when the socket is readable). An empty list with
        `closed` set means the supervisor is gone."""
        if self._pending:
            out, self._pending = self._pending, []
            return out
        try:
            data = self.sock.recv(MAX_PAYLOAD + 5)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return []
        self._take(self._reader.feed(data))
        out, self._pending = self._pending, []
        return out

    def output(self) -> Iterator[tuple[str, bytes]]:
        """(stream, data) until the supervisor sends EXIT or goes (blocking)."""
        self.wait_welcome()
        while not self.closed:
            for kind, payload in self.poll():
                if kind == EXIT:
                    return
                if kind in KIND_STREAM:
                    yield KIND_STREAM[kind], payload

    def send_stdin(self, data: bytes) -> None:
        if data:
            self.sock.sendall(frames(STDIN, data))

    def close_stdin(self) -> None:
        self.sock.sendall(frame(STDIN_EOF))

    def resize(self, rows: int, cols: int) -> None:
        self.sock.sendall(resize_frame(rows, cols))

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def __enter__(self) -> AttachSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except ValueError:
        raise ProtocolError("attach: a control frame is not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("attach: a control frame is not an object")
    return data
