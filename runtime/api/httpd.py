"""HTTP plumbing of `pydock serve`: unix/tcp listeners, request parsing (chunked bodies too), JSON and
streamed responses, the hijack (101 UPGRADED) that `docker run`'s attach needs, and telling whether
a client went away.

Standard library only: a threading socketserver with `BaseHTTPRequestHandler` speaking HTTP/1.1 with
keep-alive (the SDK pools connections; wait/attach/follow-logs block their thread). Nothing here knows
Docker's JSON or pydock's containers: the server hands every parsed `Request` to its router.

Every client is bounded (the API gives root, but a stuck or hostile client must not take the server
down; see `Limits`, tunable with PYDOCK_API_LIMITS="head_timeout=10,max_connections=64"): a number
of connections at once (503 past it), a request head within a time and a size (408, 431), a body
that keeps coming (400 and closed when it stalls), a JSON body of bounded size (413/400), strict
Content-Length and chunk sizes (400). On TCP, requests a web browser sends (an Origin or Sec-Fetch-*
header, a Host that is not a loopback name) are refused with 403, so a page cannot POST a container
that bind-mounts the host's /.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import http.client
import io
import ipaddress
import json
import logging
import os
import re
import select
import socket
import socketserver
import stat
import struct
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydock.utils.errors import Conflict, InvalidArgument, PydockError
from pydock.utils.unixlisten import listen_then_publish
from pydock.utils.version import API_VERSION, VERSION

DEFAULT_HOST = "unix:///var/run/pydock.sock"
MIN_API = (1, 24)
MAX_API = tuple(int(x) for x in API_VERSION.split("."))
#: the socket gives root on the host: owner root, group root, mode 0660.
SOCKET_MODE = 0o660
_VERSION_RE = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
_FALSE = frozenset({"", "0", "no", "false", "none"})
_REASONS = {101: "UPGRADED", 200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified",
            400: "Bad Request", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout", 409: "Conflict",
            413: "Payload Too Large", 414: "URI Too Long", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
            505: "HTTP Version Not Supported"}
_COMMON = (f"Api-Version: {API_VERSION}\r\nDocker-Experimental: false\r\nOstype: linux\r\n"
           f"Server: pydock/{VERSION} (linux)\r\n").encode()
_DRAIN_LIMIT = 1 << 20
LIMITS_ENV = "PYDOCK_API_LIMITS"
_MAX_REQUEST_LINE = 65536
_DIGITS = re.compile(r"[0-9]{1,20}")
_HEX = re.compile(r"[0-9a-fA-F]{1,16}")
#: how long an ended attach reads what its client still sends (so our close is not a reset).
HIJACK_LINGER = 2.0

log = logging.getLogger(__package__)


@dataclass(frozen=True)
class Limits:
    """What one client may cost the server."""

    #: connections served at once per listener (each is a thread; `docker run` opens a few, every
    #: attached or waited-for container holds one); past it a client gets 503 and is disconnected
    max_connections: int = 512
    #: a kept-alive connection may sit idle this long between requests (then it is closed)
    idle_timeout: float = 300.0
    #: the request line and headers must arrive within this, from their first byte (408)
    head_timeout: float = 60.0
    #: a request body may pause this long between two reads (uploads of big images are slow, not stalled)
    body_idle_timeout: float = 300.0
    #: bytes of header lines per request (Go's net/http DefaultMaxHeaderBytes; 431); the request line
    #: has BaseHTTPRequestHandler's own 64 KiB limit (414)
    max_head_bytes: int = 1 << 20
    #: a body read whole (JSON) may be at most this big (413); streamed bodies (image tars) are not
    #: limited here, the layer limits bound what they cost
    max_json_body: int = 4 << 20

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults, with `name=value` overrides from PYDOCK_API_LIMITS (comma-separated)."""
        text = os.environ.get(LIMITS_ENV, "").strip()
        if not text:
            return cls()
        known = {f.name: f.type for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for item in text.split(","):
            name, _, value = item.strip().partition("=")
            if name not in known:
                raise InvalidArgument(f"{LIMITS_ENV}: unknown limit {name!r} (known: {', '.join(known)})")
            try:
                number = float(value) if known[name] == "float" else int(value)
            except ValueError:
                raise InvalidArgument(f"{LIMITS_ENV}: {name}={value!r} is not a number") from None
            if number <= 0:
                raise InvalidArgument(f"{LIMITS_ENV}: {name} must be positive")
            values[name] = number
        return cls(**values)


@dataclass(frozen=True)
class Listen:
    """Where to listen: a unix socket path, or a loopback tcp host and port."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.kind == "unix" else f"tcp://{self.host}:{self.port}"


def parse_host(spec: str) -> Listen:
    """`unix:///path` or `tcp://127.0.0.1:PORT`; a non-loopback tcp address is refused (the API is root)."""
    if spec.startswith("unix://"):
        path = spec[len("unix://"):]
        if not path.startswith("/"):
            raise InvalidArgument(f"Invalid socket address {spec}: the path must be absolute (unix:///path)")
        return Listen("unix", path=path)
    if spec.startswith("tcp://"):
        rest = spec[len("tcp://"):]
        parts = urlsplit("//" + rest)
        try:
            port = parts.port
        except ValueError:
            port = None
        host = parts.hostname or ""
        if not host or port is None or parts.path not in ("", "/"):
            raise InvalidArgument(f"Invalid tcp address {spec}: use tcp://127.0.0.1:PORT")
        if not _is_loopback(host):
            raise InvalidArgument(f"Refusing to listen on {spec}: the API gives root on this host, so only "
                                  "loopback addresses (127.0.0.0/8, ::1, localhost) are allowed")
        return Listen("tcp", host=host, port=port)
    raise InvalidArgument(f"Invalid host {spec}: use unix:///path or tcp://127.0.0.1:PORT")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_local_host(header: str) -> bool:
    """Whether a Host header names this machine's loopback: `localhost`, `*.localhost` (RFC 6761), a
    loopback address, each with an optional port."""
    host = header.strip().lower()
    if host.startswith("["):  # [::1]:2375
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bool_value(text: str | None) -> bool:
    """moby's httputils.BoolValue: false iff empty, 0, no, false or none (the SDK also sends True/False)."""
    return text is not None and text.strip().lower() not in _FALSE


# ---- request bodies ---------------------------------------------------------------------------

class BodyReader:
    """The request body as a stream: Content-Length bounded, or de-chunked (`docker import` sends chunked)."""

    def __init__(self, rfile: Any, headers: Any, max_whole: int = Limits.max_json_body) -> None:
        self._rfile = rfile
        self.max_whole = max_whole
        self.chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        lengths = {v.strip() for v in headers.get_all("Content-Length") or ()}
        if len(lengths) > 1:
            raise InvalidArgument(f"Conflicting Content-Length headers: {', '.join(sorted(lengths))}")
        length = lengths.pop() if lengths else None
        if length is not None and not _DIGITS.fullmatch(length):  # no sign, no spaces, no underscores
            raise InvalidArgument(f"Invalid Content-Length: {length!r}")
        self.length = int(length) if length is not None and not self.chunked else None
        self._left = self.length or 0
        self._chunk_left = 0
        self.done = not self.chunked and self._left == 0

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes of the body; all of it with n < 0, but then at most `max_whole` (BodyTooLarge past
        it: a body read whole is held in memory)."""
        if self.done:
            return b""
        if n is None or n < 0:
            parts = []
            total = 0
            while True:
                part = self.read(1 << 16)
                if not part:
                    return b"".join(parts)
                total += len(part)
                if total > self.max_whole:
                    raise BodyTooLarge(f"Request body too large: more than {self.max_whole} bytes")
                parts.append(part)
        if not self.chunked:
            data = self._rfile.read(min(n, self._left))
            if not data:
                raise InvalidArgument("The request body ended early")
            self._left -= len(data)
            self.done = self._left == 0
            return data
        if self._chunk_left == 0:
            line = self._rfile.readline(1024)
            size_text = line.split(b";", 1)[0].strip().decode("ascii", "replace")
            if not _HEX.fullmatch(size_text):  # no sign, no 0x, at most 16 hex digits
                raise InvalidArgument(f"Malformed chunked request body: chunk size {size_text[:20]!r}")
            size = int(size_text, 16)
            if size == 0:
                self._skip_trailers()
                self.done = True
                return b""
            self._chunk_left = size
        data = self._rfile.read(min(n, self._chunk_left))
        if not data:
            raise InvalidArgument("The request body ended early")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._rfile.readline(8)  # CRLF after the chunk
        return data

    def _skip_trailers(self) -> None:
        line = self._rfile.readline(1024)
        while line not in (b"\r\n", b"\n", b""):
            line = self._rfile.readline(1024)

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def drain(self) -> bool:
        """Read the rest (so the connection can serve the next request); False if too much was left."""
        total = 0
        while not self.done:
            data = self.read(1 << 16)
            if not data:
                break
            total += len(data)
            if total > _DRAIN_LIMIT:
                return False
        return True


class BodyTooLarge(InvalidArgument):
    """A body to be read whole is larger than the server allows (Limits.max_json_body)."""


@dataclass
class Request:
    """One parsed API request: method, path without the `/vX.Y` prefix, query, headers, body."""

    method: str
    path: str
    api_version: tuple[int, int]
    query: dict[str, list[str]]
    headers: Any
    body: BodyReader
    params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return list(self.query.get(name) or [])

    def flag(self, name: str, default: bool = False) -> bool:
        values = self.query.get(name)
        return bool_value(values[-1]) if values else default

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        text = self.arg(name)
        if text is None or text == "":
            return default
        try:
            return int(text)
        except ValueError:
            raise InvalidArgument(f"Invalid value for {name}: {text!r} is not an integer") from None

    def json(self) -> Any:
        data = self.body.read()
        if not data.strip():
            return {}
        try:
            return json.loads(data)
        except ValueError as err:
            raise InvalidArgument(f"Invalid JSON body: {err}") from None


# ---- responses --------------------------------------------------------------------------------

class ChunkedWriter:
    """A streamed response body in HTTP/1.1 chunked encoding (headers already sent)."""

    def __init__(self, wfile: Any) -> None:
        self._wfile = wfile
        self.closed = False

    def write(self, data: bytes) -> None:
        if data:
            self._wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._wfile.write(b"0\r\n\r\n")


def peer_gone(sock: socket.socket, half_close_is_gone: bool) -> bool:
    """Whether the client closed its connection (POLLHUP; with `half_close_is_gone`, also when it only
    shut down its sending side, POLLRDHUP)."""
    mask = select.POLLHUP | select.POLLERR
    if half_close_is_gone:
        mask |= getattr(select, "POLLRDHUP", 0x2000)
    try:
        p = select.poll()
        p.register(sock, mask)
        return any(ev & mask for _, ev in p.poll(0))
    except (OSError, ValueError) as err:
        log.debug("poll of a client connection failed (%s): taking the client for gone", err)
        return True


class Hijacked:
    """The raw connection after `101 UPGRADED`: bytes out as they come, until `close()` sends EOF."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def gone(self) -> bool:
        """Whether the client closed the connection. An attaching client half-closes at once (it has no
        stdin to send), so only a full close counts."""
        return peer_gone(self.sock, False)

    def close(self, linger: float = HIJACK_LINGER) -> None:
        """EOF to the client, then read (and drop) what it still sends for a moment: bytes left unread
        would turn our close into a reset, and the client would lose the output's tail."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as err:
            log.debug("hijacked connection already closed by the client (%s)", err)
            return
        deadline = time.monotonic() + linger
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                if not self.sock.recv(65536):
                    return
        except OSError as err:
            log.debug("hijacked connection ended while draining (%s)", err)

    def __enter__(self) -> Hijacked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _HeadTooLarge(http.client.HTTPException):
    """The header lines of one request passed Limits.max_head_bytes (BaseHTTPRequestHandler answers 431)."""


@dataclass
class _ReadPolicy:
    """How long the next read from a client may wait, and how many head bytes it may still send."""

    idle: float | None = None  # per read
    deadline: float | None = None  # time.monotonic() by which the current phase must be done
    head_left: int | None = None  # header bytes left while a head is read, else None
    timed_out: bool = False  # the client let a read time out: the connection is not worth keeping

    def timeout(self) -> float | None:
        if self.deadline is None:
            return self.idle
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.timed_out = True
            raise ClientTimeout("the client took too long to send its request")
        return left if self.idle is None else min(left, self.idle)


class ClientTimeout(InvalidArgument):
    """A client stopped sending in the middle of a request (a route answers 400 and the connection closes)."""


class _TimedSocketReader(io.RawIOBase):
    """The read side of a connection: every recv waits at most what the policy allows, so a client that
    drips a byte at a time cannot hold a thread past the phase's deadline."""

    def __init__(self, sock: socket.socket, policy: _ReadPolicy) -> None:
        super().__init__()
        self._sock = sock
        self._policy = policy

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:  # type: ignore[override]
        wait = self._policy.timeout()
        self._sock.settimeout(wait)
        try:
            return self._sock.recv_into(b)
        except TimeoutError:
            self._policy.timed_out = True
            raise ClientTimeout(f"the client sent nothing for {wait:g} s") from None
        finally:
            self._sock.settimeout(None)  # writes (streams, attach) are never cut short


class _RequestReader(io.BufferedReader):
    """Buffered reads of a connection; header lines count against the policy's head budget."""

    def __init__(self, raw: _TimedSocketReader, policy: _ReadPolicy) -> None:
        super().__init__(raw)
        self._policy = policy

    def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        left = self._policy.head_left
        if left is None:
            return super().readline(size)
        cap = left + 1 if size is None or size < 0 else min(size, left + 1)
        line = super().readline(cap)
        self._policy.head_left = left - len(line)
        if self._policy.head_left < 0:
            raise _HeadTooLarge("the request's headers are too large")
        return line


def _json_error(status: int, message: str) -> bytes:
    """A complete `Connection: close` error response (for refusals before or outside a route)."""
    body = json.dumps({"message": message}).encode() + b"\n"
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n".encode() + _COMMON
            + b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n" + body)


class Handler(BaseHTTPRequestHandler):
    """Parses each request and hands it to the server's router; writes what the route returns."""

    protocol_version = "HTTP/1.1"
    server_version = f"pydock/{VERSION}"
    #: set by a route that wrote its own response (stream, hijack).
    responded: bool = False

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain makefile(); reads go through the timed, budgeted reader
        self.limits: Limits = getattr(self.server, "limits", None) or Limits()
        self.policy = _ReadPolicy()
        self.rfile = _RequestReader(_TimedSocketReader(self.connection, self.policy), self.policy)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError) as err:
            log.debug("client dropped its connection (%s)", err)  # normal for a kept-alive connection

    def handle_one_request(self) -> None:
        """One request off the connection, each phase bounded (Limits): waiting for it (idle_timeout, then
        closed quietly), its head (head_timeout, max_head_bytes: 408/431), its body (body_idle_timeout)."""
        lim = self.limits
        self.policy.idle, self.policy.deadline, self.policy.head_left = lim.idle_timeout, None, None
        try:
            if not self.rfile.peek(1):
                self.close_connection = True
                return
        except (ClientTimeout, OSError) as err:
            log.debug("idle connection closed (%s)", err)
            self.close_connection = True
            return
        self.policy.idle, self.policy.deadline = lim.head_timeout, time.monotonic() + lim.head_timeout
        try:
            self.raw_requestline = self.rfile.readline(_MAX_REQUEST_LINE + 1)
            if len(self.raw_requestline) > _MAX_REQUEST_LINE:
                self.send_error(414, f"the request line is longer than {_MAX_REQUEST_LINE} bytes")
                return
            self.policy.head_left = lim.max_head_bytes
            if not self.parse_request():
                return
        except ClientTimeout:
            self.send_error(408, f"the request's head did not arrive within {lim.head_timeout:g} s")
            return
        self.policy.idle, self.policy.deadline, self.policy.head_left = lim.body_idle_timeout, None, None
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self.send_error(501, f"unsupported method {self.command!r}")
            return
        method()  # a body that stops coming raises ClientTimeout in the route: a 400, then the close below
        if self.policy.timed_out:
            self.close_connection = True
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Docker's JSON error for what BaseHTTPRequestHandler refuses itself (bad request line, headers
        too large...) and for our own refusals; the connection is closed after it."""
        self.close_connection = True
        self.responded = True
        text = explain or message or _REASONS.get(code, "error")
        try:
            self.wfile.write(_json_error(code, text))
            self.wfile.flush()
        except OSError as err:
            log.debug("could not tell the client %d %s (%s)", code, text, err)

    def address_string(self) -> str:
        return str(self.client_address[0]) if self.client_address else "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        if getattr(self.server, "debug", False):
            super().log_message(format, *args)

    def _dispatch(self) -> None:
        self.responded = False
        self._body: BodyReader | None = None
        try:
            self._serve_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            body = self._body
            if self.policy.timed_out:
                self.close_connection = True  # what is left of the body will not come in time either
            if body is not None and not self.close_connection and not body.done:
                try:
                    if not body.drain():
                        self.close_connection = True
                except (OSError, PydockError):
                    self.close_connection = True

    do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _dispatch

    def _serve_request(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        version = MAX_API
        m = _VERSION_RE.match(path)
        if m:
            version = (int(m.group(1)), int(m.group(2)))
            path = m.group(3)
        refusal = self._refuse_browser()
        if refusal:
            self.send_error(403, refusal)
            return
        try:
            self._body = BodyReader(self.rfile, self.headers, self.limits.max_json_body)
        except PydockError as err:
            self.close_connection = True
            self.send_json(400, {"message": str(err)})
            return
        length = self._body.length
        if length is not None and length > self.limits.max_json_body and \
                (self.headers.get("Content-Type") or "").startswith("application/json"):
            self.send_error(413, f"Request body too large: {length} bytes of JSON (at most "
                                 f"{self.limits.max_json_body})")
            return
        if version > MAX_API:
            self.send_json(400, {"message": f"client version {m.group(1)}.{m.group(2)} is too new. "  # type: ignore[union-attr]
                                            f"Maximum supported API version is {API_VERSION}"})
            return
        if version < MIN_API:
            self.send_json(400, {"message": f"client version {version[0]}.{version[1]} is too old. Minimum "
                                            f"supported API version is {MIN_API[0]}.{MIN_API[1]}, please "
                                            "upgrade your client to a newer version"})
            return
        req = Request(method=self.command, path=path, api_version=version,
                      query=parse_qs(url.query, keep_blank_values=True), headers=self.headers, body=self._body)
        self.server.router(req, self)  # type: ignore[attr-defined]

    def _refuse_browser(self) -> str | None:
        """On a TCP listener, why a request that looks like a web browser's is refused (None: it is not).

        Browsers add Origin to every cross-origin POST (and Sec-Fetch-* to everything); a DNS-rebound
        page reaches 127.0.0.1 under its own Host name. Docker clients send none of these.
        """
        listen = getattr(self.server, "listen_spec", None)
        if listen is None or listen.kind != "tcp":
            return None
        if self.headers.get("Origin") is not None or any(k.lower().startswith("sec-fetch-") for k in self.headers):
            return "Requests from web pages are refused: the API gives root on this host"
        host = self.headers.get("Host")
        if host is not None and not _is_local_host(host):
            return f"Host {host[:100]!r} is not a local name; refused (the API gives root on this host)"
        return None

    # ---- writing ------------------------------------------------------------------------------
    def _head(self, status: int, headers: list[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n".encode(), _COMMON]
        lines.extend(f"{k}: {v}\r\n".encode() for k, v in headers)
        if self.close_connection:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def send_bytes(self, status: int, body: bytes, content_type: str = "application/json",
                   headers: tuple[tuple[str, str], ...] = ()) -> None:
        """A whole response; HEAD gets the same headers without the body."""
        self.responded = True
        out = self._head(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers])
        if self.command != "HEAD":
            out += body
        self.wfile.write(out)

    def send_json(self, status: int, obj: Any) -> None:
        self.send_bytes(status, json.dumps(obj).encode() + b"\n")

    def send_empty(self, status: int) -> None:
        """No body: 204/304 carry no length; any other status says `Content-Length: 0` (or the client
        would read until the connection closes)."""
        self.responded = True
        self.wfile.write(self._head(status, [] if status in (204, 304) else [("Content-Length", "0")]))

    def send_error_message(self, status: int, message: str) -> None:
        self.send_json(status, {"message": message})

    def start_stream(self, content_type: str, status: int = 200,
                     headers: tuple[tuple[str, str], ...] = ()) -> ChunkedWriter:
        """Send the status and headers now (wait's headers-first rule) and stream the body chunked."""
        self.responded = True
        self.wfile.write(self._head(status, [("Content-Type", content_type), ("Transfer-Encoding", "chunked"),
                                             *headers]))
        return ChunkedWriter(self.wfile)

    def client_gone(self) -> bool:
        """Whether the client of a request still unanswered closed (or half-closed) its connection."""
        return peer_gone(self.connection, True)

    def hijack(self, content_type: str) -> Hijacked:
        """Answer `101 UPGRADED` (or 200 for clients that did not ask to upgrade) and own the raw socket."""
        self.responded = True
        self.close_connection = True
        self.policy.idle = self.policy.deadline = None
        upgrade = "upgrade" in (self.headers.get("Connection") or "").lower()
        if upgrade:
            head = (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: " + content_type.encode()
                    + b"\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n" + _COMMON + b"\r\n")
        else:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type.encode() + b"\r\n" + _COMMON + b"\r\n"
        self.wfile.write(head)
        _until_read(self.connection, HEAD_READ_WAIT)
        return Hijacked(self.connection)


#: how long a hijack waits for the client to have read the response head before the stream begins
HEAD_READ_WAIT = 1.0


def _until_read(sock: socket.socket, timeout: float) -> None:
    """Wait (at most `timeout`) until the client has read all we sent (a unix socket's unread bytes,
    TIOCOUTQ). The docker SDK reads the head through a buffer and the stream from the raw socket:
    stream bytes that arrived together with the head would be lost to it."""
    if sock.family != socket.AF_UNIX:
        return
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            unread = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        except OSError:
            return
        if unread == 0 or time.monotonic() >= deadline:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


# ---- servers ----------------------------------------------------------------------------------

class _Bounded(socketserver.ThreadingMixIn):
    """A thread per connection, at most `limits.max_connections` of them: past that a client is answered
    503 at once and its connection closed, so no flood of clients can exhaust the server's threads."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._active = 0
        self._active_lock = threading.Lock()
        self.limits = Limits()
        super().__init__(*args, **kwargs)

    @property
    def max_connections(self) -> int:
        return self.limits.max_connections

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            active = self._active
            busy = active >= self.max_connections
            if not busy:
                self._active = active + 1
        if busy:
            log.debug("%d connections already: refusing one with 503", active)
            try:
                request.send(_json_error(503, f"Too many connections (at most {self.max_connections}); "
                                              "try again later"), socket.MSG_DONTWAIT)
            except OSError as err:
                log.debug("could not tell a refused client 503 (%s)", err)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)  # type: ignore[misc]

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            with self._active_lock:
                self._active -= 1


class _UnixServer(_Bounded, socketserver.UnixStreamServer):
    #: each `docker run` opens several connections at once; a unix connect fails outright on a full backlog
    request_queue_size = 256


class _TcpServer(_Bounded, socketserver.TCPServer):
    request_queue_size = 256
    allow_reuse_address = True


class _Tcp6Server(_TcpServer):
    address_family = socket.AF_INET6


def _check_stale(path: str) -> None:
    """Remove a socket file left by a dead server; refuse if a live server answers on it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidArgument(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
    except OSError as err:
        if err.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise PydockError(f"Cannot check {path}: {err.strerror}") from None
        os.unlink(path)
        return
    finally:
        probe.close()
    raise Conflict(f"Another server is already listening on unix://{path}")


def bind(listen: Listen, router: Callable[[Request, Handler], None], debug: bool = False) -> socketserver.BaseServer:
    """A bound, listening server for `listen`. A unix socket is born with its final owner (ours: root)
    and mode 0660 through the umask at bind(): nothing is changed by path afterwards, where a swapped
    path would make us chown or chmod something else."""
    limits = Limits.from_env()
    server: socketserver.BaseServer
    if listen.kind == "unix":
        _check_stale(listen.path)
        os.makedirs(os.path.dirname(listen.path) or "/", exist_ok=True)
        old = os.umask(0o777 & ~SOCKET_MODE)
        try:
            server = _UnixServer(listen.path, Handler, bind_and_activate=False)
            try:
                listen_then_publish(server.socket, listen.path, server.request_queue_size)
                server.server_address = listen.path
            except FileExistsError:  # made since the stale check: a server that started beside us got there first
                server.server_close()
                raise Conflict(f"Another server is already listening on {listen}") from None
            except OSError as err:
                server.server_close()
                raise PydockError(f"Cannot listen on {listen}: {err.strerror}") from None
        finally:
            os.umask(old)
    else:
        cls = _Tcp6Server if ":" in listen.host else _TcpServer
        try:
            server = cls((listen.host, listen.port), Handler)
        except OSError as err:
            raise PydockError(f"Cannot listen on {listen}: {err.strerror}") from None
    server.limits = limits  # type: ignore[attr-defined]
    server.router = router  # type: ignore[attr-defined]
    server.debug = debug  # type: ignore[attr-defined]
    server.listen_spec = listen  # type: ignore[attr-defined]
    return server


def close(servers: list[socketserver.BaseServer]) -> None:
    """Close listeners (after their serve loops ended, or that never served) and unlink unix socket files."""
    for s in servers:
        s.server_close()
        spec = getattr(s, "listen_spec", None)
        if spec is not None and spec.kind == "unix":
            try:
                os.unlink(spec.path)
            except FileNotFoundError:
                log.debug("socket %s was already removed", spec.path)


class Serving:
    """Every listener serving in its own thread until `stop()`; unix socket files removed at the end."""

    def __init__(self, servers: list[socketserver.BaseServer]) -> None:
        self.servers = servers
        self.threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.5},
                                         name=f"listen-{i}", daemon=True) for i, s in enumerate(servers)]

    def __enter__(self) -> Serving:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        for s in self.servers:
            s.shutdown()
        close(self.servers)

    def __exit__(self, *exc: object) -> None:
        self.stop()
