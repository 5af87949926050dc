"""The supervisor's tools for a running container: lxc's noise filtered out of stderr, signals proxied,
raw terminal mode, terminal sizes, detaching from the caller's stdio (the I/O loop itself: relay.py)."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import struct
import termios
import tty
from collections.abc import Callable

#: signals a foreground `run` forwards to the container's command (never SIGCHLD, like Docker 0.6.7).
PROXIED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
log = logging.getLogger(__package__)


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


class RawTerminal:
    """Put a terminal in raw mode for the block (keys go to the container's tty, not to our line editor)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd if fd is not None and os.isatty(fd) else None
        self._saved: list | None = None

    def __enter__(self) -> RawTerminal:
        if self.fd is not None:
            self._saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSANOW)  # not TCSAFLUSH: keys typed ahead go to the container
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


def set_winsize(fd: int, rows: int, cols: int) -> None:
    """Give the terminal on `fd` (a pty's master) a size; the kernel signals SIGWINCH to its foreground."""
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    except OSError as err:
        log.debug("could not set the terminal size to %dx%d: %s", rows, cols, err)
