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
from pydock.runtime.launcher import is_lxc_noise

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
    pending_err = b""
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
                    if key.data == "stderr" and pending_err:
                        if not is_lxc_noise(pending_err, lxc_name):
                            emit("stderr", pending_err)
                        pending_err = b""
                    continue
                if key.data == "stdout":
                    emit("stdout", data)
                    continue
                pending_err += data
                *lines, pending_err = pending_err.split(b"\n")
                keep = b"".join(line + b"\n" for line in lines if not is_lxc_noise(line, lxc_name))
                emit("stderr", keep)
        if console is not None:
            drain_console()
    finally:
        sel.close()


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
