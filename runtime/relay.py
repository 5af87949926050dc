"""The supervisor's I/O loop: the command's output to the JSON log, to local sinks and to every attached
client; clients' stdin and terminal sizes to the command; until the command's output ends.

One loop for every supervisor (the detached monitor, the foreground `run`, an exec's monitor). Its memory
is bounded whatever the command and the clients do: a client's unsent output is at most HIGH_WATER (past
it the loop stops reading the command's output until the client catches up, as a terminal that is not
read blocks its writer; a client that takes nothing for STALL_TIMEOUT is dropped), pending stdin is at
most MAX_STDIN, clients at most MAX_CLIENTS, and the log holds at most one line (jsonlog.MAX_LINE).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pydock.runtime import attach
from pydock.runtime.attach import FrameReader, Hello, ProtocolError
from pydock.runtime.jsonlog import JsonLog
from pydock.runtime.monitor import LxcNoiseFilter, set_winsize

log = logging.getLogger(__package__)

_CHUNK = 65536
#: unsent output a client may have before the loop waits for it
HIGH_WATER = 256 << 10
#: a client over HIGH_WATER that takes nothing for this long is dropped (the command goes on)
STALL_TIMEOUT = 30.0
#: stdin read from clients and not yet taken by the command
MAX_STDIN = 64 << 10
MAX_CLIENTS = 64
#: at the end of a run, a client that takes none of its last output and EXIT for this long is let go (one
#: that takes some keeps being served: a slow reader of a big output still gets all of it)
FLUSH_TIMEOUT = 5.0
EOT = b"\x04"


def spawn_with_stdin_pipe(spawn: Callable[[int], subprocess.Popen], open_stdin: bool
                          ) -> tuple[subprocess.Popen, int | None]:
    """`spawn(stdin)` with a fresh pipe's read end as its stdin when `open_stdin` (else /dev/null); the write
    end, which the relay feeds from attach clients, is returned (None without). Closed on a failed spawn."""
    read_end, held = os.pipe2(os.O_CLOEXEC) if open_stdin else (None, None)
    try:
        proc = spawn(read_end if read_end is not None else subprocess.DEVNULL)
    except BaseException:
        if held is not None:
            os.close(held)
        raise
    finally:
        if read_end is not None:
            os.close(read_end)
    return proc, held


@dataclass
class CommandIO:
    """The supervised command's ends the supervisor holds: owned by the caller, except `stdin`, which the
    relay closes (when a StdinOnce client's stdin ends, and at `close`)."""

    tty: bool
    #: the pty's master (tty): output to read, input to write
    pty: int | None = None
    #: pipes' read ends (no tty)
    stdout: int | None = None
    stderr: int | None = None
    #: the /dev/console pty's master (no tty): what goes there counts as stdout, drained, not waited for
    console: int | None = None
    #: the write end of the command's stdin pipe (no tty, `-i`)
    stdin: int | None = None
    #: whether attached clients may write to the command's stdin (OpenStdin)
    open_stdin: bool = False
    #: close the command's stdin when a client's stdin ends (StdinOnce; never with a tty, as Docker)
    stdin_once: bool = False
    #: lxc's own lines dropped from stderr
    noise: LxcNoiseFilter | None = None
    #: stdin is held back until this says the command's side takes it (an exec's lxc-attach flushes the
    #: input of its terminal when it sets it up: what came before would be lost)
    stdin_ready: Callable[[], bool] | None = None


@dataclass
class Local:
    """The foreground caller's own ends: sinks for the output (written as it comes), an optional buffer to
    collect it, and (tty) the caller's stdin, copied into the pty."""

    sinks: dict[str, BinaryIO | None] = field(default_factory=dict)
    collect: dict[str, bytearray] | None = None
    stdin: int | None = None


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader(attach.CLIENT_KINDS)
        self.hello: Hello | None = None
        self.out = bytearray()
        self.progress = time.monotonic()
        self.leaving = False  # its session ended: flush, then close

    def wants(self, stream: str) -> bool:
        return self.hello is not None and getattr(self.hello, stream)


class Relay:
    """Run with `run()` until the command's output ends, then `close(code)` once the exit is recorded."""

    def __init__(self, io: CommandIO, output: JsonLog | None, log_path: Path | None, *,
                 listener: socket.socket | None = None, local: Local | None = None) -> None:
        """`output`/`log_path`: the container's JSON log (None for an exec: its output is not logged)."""
        self.io = io
        self.output = output
        self.log_path = log_path
        self.listener = listener
        self.local = local or Local()
        self.clients: list[_Client] = []
        self.pending_in = bytearray()
        self.close_stdin_after = False
        self._closed = False
        self._sel = selectors.DefaultSelector()
        self._registered: dict[int, tuple[int, object]] = {}
        self._open = {"stdout": io.stdout is not None, "stderr": io.stderr is not None, "pty": io.pty is not None}
        for fd in (io.pty, io.stdout, io.stderr, io.console, io.stdin, self.local.stdin):
            if fd is not None:
                os.set_blocking(fd, False)

    # ---- clients -----------------------------------------------------------------------------------
    def add_client(self, sock: socket.socket, *, wait_hello: float = 0.0) -> None:
        """A connected client; with `wait_hello`, its HELLO is read now (a connection made before the
        command starts: nothing it asked for may be missed)."""
        if len(self.clients) >= MAX_CLIENTS:
            log.debug("attach: %d clients already; one refused", len(self.clients))
            sock.close()
            return
        client = _Client(sock)
        self.clients.append(client)
        if wait_hello:
            sock.settimeout(wait_hello)
            try:
                while client.hello is None and client in self.clients:
                    data = sock.recv(_CHUNK)
                    if not data:
                        self._drop(client, "closed before its HELLO")
                        break
                    self._on_frames(client, data)
            except (OSError, ProtocolError) as err:
                self._drop(client, f"no HELLO ({err})")
        sock.setblocking(False)

    def _accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.debug("attach: accept failed: %s", err)
                return
            self.add_client(sock)

    def _drop(self, client: _Client, why: str) -> None:
        log.debug("attach: client dropped: %s", why)
        if client in self.clients:
            self.clients.remove(client)
        fd = client.sock.fileno()
        if fd in self._registered:
            self._sel.unregister(fd)
            del self._registered[fd]
        client.sock.close()
        if client.hello is not None and client.hello.stdin:
            self._stdin_ended()

    def _on_frames(self, client: _Client, data: bytes) -> None:
        for kind, payload in client.reader.feed(data):
            if client.hello is None:
                if kind != attach.HELLO:
                    raise ProtocolError("attach: the first frame must be HELLO")
                self._welcome(client, Hello.decode(payload))
            elif kind == attach.STDIN:
                if client.hello.stdin and self._takes_stdin():
                    self.pending_in += payload
            elif kind == attach.STDIN_EOF:
                if client.hello.stdin:
                    self._client_stdin_ended(client)
            elif kind == attach.RESIZE:
                self.resize(*attach.parse_resize(payload))

    def _welcome(self, client: _Client, hello: Hello) -> None:
        client.hello = hello
        try:
            offset = os.stat(self.log_path).st_size if self.log_path is not None else 0
        except FileNotFoundError:
            offset = 0
        client.out += attach.frame(attach.WELCOME, json.dumps({"tty": self.io.tty, "log_offset": offset}).encode())
        if hello.logs and self.output is not None:  # what the log holds back (a line not ended yet) comes first
            for stream in ("stdout", "stderr"):
                if client.wants(stream):
                    client.out += attach.frames(attach.OUTPUT_KIND[stream], self.output.pending(stream))

    def _takes_stdin(self) -> bool:
        return self.io.open_stdin and (self.io.pty is not None or self.io.stdin is not None)

    def _client_stdin_ended(self, client: _Client) -> None:
        """Docker's rule: a StdinOnce command without a tty gets EOF; otherwise the client's session ends."""
        if self.io.stdin_once and not self.io.tty:
            self._stdin_ended()
        else:
            client.leaving = True

    def _stdin_ended(self) -> None:
        if self.io.stdin_once and not self.io.tty and self.io.stdin is not None:
            self.close_stdin_after = True

    def resize(self, rows: int, cols: int) -> None:
        if self.io.pty is not None and rows and cols:
            set_winsize(self.io.pty, rows, cols)

    # ---- output -----------------------------------------------------------------------------------
    def emit(self, stream: str, data: bytes) -> None:
        if not data:
            return
        if self.output is not None:
            self.output.feed(stream, data)
        sink = self.local.sinks.get(stream)
        if sink is not None:
            try:
                sink.write(data)
                sink.flush()
            except (BrokenPipeError, ValueError):
                self.local.sinks[stream] = None
        if self.local.collect is not None:
            self.local.collect[stream] += data
        kind = attach.OUTPUT_KIND[stream]
        for client in self.clients:
            if client.wants(stream) and not client.leaving:
                client.out += attach.frames(kind, data)

    def _read_output(self, key: str, fd: int) -> None:
        try:
            data = os.read(fd, _CHUNK)
        except BlockingIOError:
            return
        except OSError as err:
            if err.errno != errno.EIO:  # EIO on a pty: every holder of its other end is gone
                log.debug("reading the command's %s: %s", key, err)
            data = b""
        if not data:
            self._open[key] = False
            if key == "stderr" and self.io.noise is not None:
                self.emit("stderr", self.io.noise.flush())
            return
        if key == "stderr" and self.io.noise is not None:
            data = self.io.noise.feed(data)
        self.emit("stderr" if key == "stderr" else "stdout", data)

    def _drain_console(self) -> None:
        while self.io.console is not None:
            try:
                data = os.read(self.io.console, _CHUNK)
            except OSError:  # EAGAIN: nothing more; EIO: no writer left
                return
            if not data:
                return
            self.emit("stdout", data)

    @property
    def running(self) -> bool:
        return any(self._open.values())

    # ---- input ------------------------------------------------------------------------------------
    def _stdin_target(self) -> int | None:
        return self.io.pty if self.io.pty is not None else self.io.stdin

    def _stdin_ready(self) -> bool:
        if self.io.stdin_ready is not None and self.io.stdin_ready():
            self.io.stdin_ready = None  # once ready, for good
        return self.io.stdin_ready is None

    def _write_stdin(self) -> None:
        fd = self._stdin_target()
        if fd is None:
            self.pending_in.clear()
            return
        try:
            n = os.write(fd, self.pending_in)
        except BlockingIOError:
            return
        except OSError as err:  # EPIPE/EIO: the command no longer reads it
            log.debug("the command's stdin is closed (%s); dropping %d bytes", err, len(self.pending_in))
            self.pending_in.clear()
            self._close_command_stdin()
            return
        del self.pending_in[:n]

    def _close_command_stdin(self) -> None:
        if self.io.stdin is not None:
            fd = self.io.stdin
            if fd in self._registered:
                self._sel.unregister(fd)
                del self._registered[fd]
            os.close(fd)
            self.io.stdin = None
        self.close_stdin_after = False

    def _read_local_stdin(self) -> None:
        fd = self.local.stdin
        assert fd is not None
        try:
            data = os.read(fd, _CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.pending_in += data
            return
        self._unregister(fd)
        self.local.stdin = None
        if self.io.tty:
            self.pending_in += EOT  # EOF for the reader on the terminal
        else:
            self.close_stdin_after = True

    # ---- the loop ---------------------------------------------------------------------------------
    def _want(self) -> dict[int, tuple[int, object]]:
        want: dict[int, tuple[int, object]] = {}
        paused = any(len(c.out) > HIGH_WATER for c in self.clients)
        if not paused:
            for key in ("pty", "stdout", "stderr"):
                fd = getattr(self.io, key)
                if self._open[key] and fd is not None:
                    want[fd] = (selectors.EVENT_READ, key)
            if self.io.console is not None:
                want[self.io.console] = (selectors.EVENT_READ, "console")
        target = self._stdin_target()
        if self.pending_in and target is not None and self._stdin_ready():
            events, data = want.get(target, (0, "stdin"))
            want[target] = (events | selectors.EVENT_WRITE, data)
        room = len(self.pending_in) < MAX_STDIN
        if self.local.stdin is not None and room:
            want[self.local.stdin] = (selectors.EVENT_READ, "local-stdin")
        if self.listener is not None and len(self.clients) < MAX_CLIENTS:
            want[self.listener.fileno()] = (selectors.EVENT_READ, "listener")
        for client in self.clients:
            events = selectors.EVENT_READ if room and not client.leaving else 0
            if client.out:
                events |= selectors.EVENT_WRITE
            if events:
                want[client.sock.fileno()] = (events, client)
        return want

    def _apply(self, want: dict[int, tuple[int, object]]) -> None:
        for fd in list(self._registered):
            if fd not in want:
                self._unregister(fd)
        for fd, (events, data) in want.items():
            old = self._registered.get(fd)
            if old is None:
                self._sel.register(fd, events, data)
            elif old != (events, data):
                self._sel.modify(fd, events, data)
            self._registered[fd] = (events, data)

    def _unregister(self, fd: int) -> None:
        if fd in self._registered:
            self._sel.unregister(fd)
            del self._registered[fd]

    def _flush_client(self, client: _Client) -> None:
        try:
            n = client.sock.send(client.out)
        except BlockingIOError:
            return
        except OSError as err:
            self._drop(client, f"gone ({err})")
            return
        if n:
            del client.out[:n]
            client.progress = time.monotonic()

    def _serve_client(self, client: _Client, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush_client(client)
            if client not in self.clients:
                return
        if events & selectors.EVENT_READ:
            try:
                data = client.sock.recv(_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._drop(client, "disconnected")
                return
            try:
                self._on_frames(client, data)
            except ProtocolError as err:
                self._drop(client, str(err))
        if client.leaving and not client.out and client in self.clients:
            self._drop(client, "its stdin ended")

    def step(self, timeout: float | None) -> None:
        """One round of the loop (`run` repeats it while the command's output is open)."""
        self._apply(self._want())
        if not self._registered:
            time.sleep(timeout or 0.1)
            return
        for key, events in self._sel.select(timeout):
            what = key.data
            if isinstance(what, _Client):
                if what in self.clients:
                    self._serve_client(what, events)
            elif what == "listener":
                self._accept()
            elif what == "local-stdin":
                self._read_local_stdin()
            elif what == "console":
                self._drain_console()
            else:
                if events & selectors.EVENT_WRITE:
                    self._write_stdin()
                if events & selectors.EVENT_READ and what in self._open:
                    self._read_output(str(what), key.fd)
        if self.close_stdin_after and not self.pending_in:
            self._close_command_stdin()
        now = time.monotonic()
        for client in list(self.clients):
            if len(client.out) > HIGH_WATER and now - client.progress > STALL_TIMEOUT:
                self._drop(client, f"took no output for {STALL_TIMEOUT:g}s")

    def run(self) -> None:
        """Until the command's output ends (its stdout and stderr, or its terminal, closed)."""
        while self.running:
            held = self.pending_in and self.io.stdin_ready is not None
            self.step(0.02 if held else 1.0 if self.clients else None)
        self._drain_console()

    def close(self, code: int | None) -> None:
        """The run is recorded: EXIT (when `code` is known) to every client, their last output flushed while
        they take it (FLUSH_TIMEOUT), then every end closed. The listener is closed too; the caller unlinks
        the socket. Once."""
        if self._closed:
            return
        self._closed = True
        if self.listener is not None:
            self._unregister(self.listener.fileno())
            self.listener.close()
            self.listener = None
        if code is not None:
            for client in self.clients:
                client.out += attach.exit_frame(code)
        began = time.monotonic()
        for client in self.clients:
            client.progress = began
        while True:
            now = time.monotonic()
            taking = [c for c in self.clients if c.out and now - c.progress < FLUSH_TIMEOUT]
            if not taking:
                break
            self._apply({c.sock.fileno(): (selectors.EVENT_WRITE, c) for c in taking})
            for key, _ in self._sel.select(min(FLUSH_TIMEOUT - (now - c.progress) for c in taking)):
                if key.data in self.clients:
                    self._flush_client(key.data)  # type: ignore[arg-type]
        for client in list(self.clients):
            client.sock.close()
        self.clients.clear()
        for fd in list(self._registered):
            self._unregister(fd)
        self._sel.close()
        if self.io.stdin is not None:
            os.close(self.io.stdin)
            self.io.stdin = None

