"""The supervisor's tools for a running container: pump its stdout/stderr into the JSON log (and to a
terminal or pipes), proxy signals, raw terminal mode, detaching from the caller's stdio."""

from __future__ import annotations

import fcntl
import logging
import os
import selectors
import signal
import subprocess
import termios
import tty
from collections.abc import Callable
from typing import BinaryIO

from pydock.runtime.jsonlog import JsonLog
from pydock.runtime.launcher import lxc_noise_prefix

#: signals a foreground `run` forwards to the container's command (never SIGCHLD, like Docker 0.6.7).
PROXIED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_CHUNK = 65536

log = logging.getLogger(__package__)


def pump(proc: subprocess.Popen, lxc_name: str, output: JsonLog, sinks: dict[str, BinaryIO | None],
         collect: dict[str, bytearray] | None = None, console: int | None = None) -> None:
    """Copy the process's stdout/stderr to the `output` log, to `sinks` (as they come) and to `collect`, until EOF.

    lxc's own error lines on stderr (`lxc-start: <name>: ...`) are dropped: they are reported as
    pydock's error (exit 125), not as the command's output. What the container writes to its
    /dev/console (the master end of that pty is `console`) counts as stdout; it is drained, not
    waited for: the pump ends with the command's stdout and stderr.
    """
    sel = selectors.DefaultSelector()
    noise = LxcNoiseFilter(lxc_noise_prefix(lxc_name))
    pipes = 0
    for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        if pipe is not None:
            os.set_blocking(pipe.fileno(), False)
            sel.register(pipe.fileno(), selectors.EVENT_READ, stream)
            pipes += 1
    if console is not None:
        os.set_blocking(console, False)
        sel.register(console, selectors.EVENT_READ, "console")

    def emit(stream: str, data: bytes) -> None:
        if not data:
            return
        output.feed(stream, data)
        sink = sinks.get(stream)
        if sink is not None:
            try:
                sink.write(data)
                sink.flush()
            except (BrokenPipeError, ValueError):
                sinks[stream] = None
        if collect is not None:
            collect[stream] += data

    def drain_console() -> None:
        while True:
            try:
                data = os.read(console, _CHUNK)  # type: ignore[arg-type]
            except OSError:  # EAGAIN: nothing more; EIO: no writer left
                return
            if not data:
                return
            emit("stdout", data)

    try:
        while pipes:
            for key, _ in sel.select():
                if key.data == "console":
                    drain_console()
                    continue
                try:
                    data = os.read(key.fd, _CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fd)
                    pipes -= 1
                    if key.data == "stderr":
                        emit("stderr", noise.flush())
                    continue
                if key.data == "stdout":
                    emit("stdout", data)
                    continue
                emit("stderr", noise.feed(data))
        if console is not None:
            drain_console()
    finally:
        sel.close()


class LxcNoiseFilter:
    """Drops lxc's own error lines (they start with `prefix`) from the stderr stream and passes the rest
    on as it comes. It holds at most the first len(prefix) bytes of a line while deciding, so neither a
    newline-less flood nor a long line makes it buffer, and each byte is looked at once."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.held = bytearray()  # the start of the current line, while undecided
        self.mode = "start"  # "start" (undecided), "pass" or "drop" until the next newline

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        pos, end = 0, len(data)
        while pos < end:
            if self.mode != "start":
                nl = data.find(b"\n", pos)
                stop = end if nl < 0 else nl + 1
                if self.mode == "pass":
                    out += data[pos:stop]
                if nl >= 0:
                    self.mode = "start"
                pos = stop
                continue
            chunk = data[pos:pos + len(self.prefix) - len(self.held)]
            nl = chunk.find(b"\n")
            if nl >= 0:  # the line ended before it could be lxc's
                out += self.held
                out += chunk[:nl + 1]
                self.held.clear()
                pos += nl + 1
                continue
            self.held += chunk
            pos += len(chunk)
            if self.held == self.prefix:
                self.mode = "drop"
            elif not self.prefix.startswith(self.held):
                self.mode = "pass"
                out += self.held
            else:
                continue
            self.held.clear()
        return bytes(out)

    def flush(self) -> bytes:
        """What is still held at the end of the stream (an unfinished line start: the command's)."""
        rest = b"" if self.mode == "drop" else bytes(self.held)
        self.held.clear()
        self.mode = "start"
        return rest


class SignalProxy:
    """While active, the signals a user sends to `pydock run` go to the container's command instead."""

    def __init__(self, deliver: Callable[[int], None]) -> None:
        self._deliver = deliver
        self._saved: dict[int, object] = {}

    def __enter__(self) -> SignalProxy:
        for sig in PROXIED_SIGNALS:
            try:
                self._saved[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no proxying
                break
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        self._deliver(signum)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._saved.clear()


def detach_stdio() -> None:
    """Point fds 0-2 at /dev/null (the detached monitor must not hold the caller's terminal or pipes)."""
    fd = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(fd, target)
    if fd > 2:
        os.close(fd)


def pump_tty(master: int, stdin: int | None, output: JsonLog, sink: BinaryIO | None,
             collect: dict[str, bytearray] | None = None) -> None:
    """`-t`: copy the pty's output to the `output` log and the sink (as stdout) and `stdin` into the pty, until the
    container side of the pty is closed (read gives EIO)."""
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ, "pty")
    if stdin is not None:
        sel.register(stdin, selectors.EVENT_READ, "stdin")
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "stdin":
                    data = os.read(stdin, _CHUNK)
                    if not data:
                        sel.unregister(stdin)
                        os.write(master, b"\x04")  # EOF for the reader on the terminal
                        continue
                    os.write(master, data)
                    continue
                try:
                    data = os.read(master, _CHUNK)
                except OSError:  # EIO: every holder of the slave side is gone
                    data = b""
                if not data:
                    return
                output.feed("stdout", data)
                if sink is not None:
                    try:
                        sink.write(data)
                        sink.flush()
                    except (BrokenPipeError, ValueError):
                        sink = None
                if collect is not None:
                    collect["stdout"] += data
    finally:
        sel.close()


class RawTerminal:
    """Put a terminal in raw mode for the block (keys go to the container's tty, not to our line editor)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd if fd is not None and os.isatty(fd) else None
        self._saved: list | None = None

    def __enter__(self) -> RawTerminal:
        if self.fd is not None:
            self._saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None and self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)


def copy_winsize(src: int | None, dst: int) -> None:
    """Give the container's pty our terminal's size (rows, columns)."""
    if src is None or not os.isatty(src):
        return
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError as err:  # the container keeps the default size
        log.debug("could not copy the terminal size: %s", err)
