"""Supervising a running container: pump its stdout/stderr into the JSON log (and a terminal), proxy
signals, and the detached monitor process that outlives the CLI."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from pydock.runtime.launcher import is_lxc_noise
from pydock.runtime.state import format_time, parse_time, utcnow

#: signals a foreground `run` forwards to the container's command (never SIGCHLD, like Docker 0.6.7).
PROXIED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_CHUNK = 65536
#: longest log record kept in memory waiting for its newline.
MAX_LINE = 1 << 20


@dataclass(frozen=True)
class LogRecord:
    """One line of `<id>-json.log`."""

    stream: str
    log: str
    time: datetime | None


class JsonLog:
    """Appends `{"log","stream","time"}` lines, one per output line, like Docker's json-file logger."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def feed(self, stream: str, data: bytes) -> None:
        buf = self._partial[stream] + data
        *lines, rest = buf.split(b"\n")
        out = [line + b"\n" for line in lines]
        if len(rest) >= MAX_LINE:  # a newline-less flood becomes records, not unbounded memory
            out.append(rest)
            rest = b""
        self._partial[stream] = rest
        if out:
            self._write(stream, out)

    def _write(self, stream: str, lines: list[bytes]) -> None:
        now = format_time(utcnow())
        out = b"".join(json.dumps({"log": line.decode("utf-8", "replace"), "stream": stream,
                                   "time": now}).encode() + b"\n" for line in lines)
        os.write(self._fd, out)

    def close(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._write(stream, [rest])
        self._partial = {"stdout": b"", "stderr": b""}
        os.close(self._fd)


def read_log(path: Path) -> Iterator[LogRecord]:
    """Records of a JSON log (a torn last line is skipped)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            record = parse_record(line)
            if record is not None:
                yield record


def parse_record(line: bytes) -> LogRecord | None:
    """One JSON log line as a record; None for a torn or foreign line."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return LogRecord(rec.get("stream", "stdout"), rec.get("log", ""), parse_time(rec.get("time")))


def pump(proc: subprocess.Popen, lxc_name: str, log: JsonLog, sinks: dict[str, BinaryIO | None],
         collect: dict[str, bytearray] | None = None) -> None:
    """Copy the process's stdout/stderr to the log, to `sinks` (as they come) and to `collect`, until EOF.

    lxc's own error lines on stderr (`lxc-execute: <name>: ...`) are dropped: they are reported as
    pydock's error (exit 125), not as the command's output.
    """
    sel = selectors.DefaultSelector()
    pending_err = b""
    for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        if pipe is not None:
            os.set_blocking(pipe.fileno(), False)
            sel.register(pipe.fileno(), selectors.EVENT_READ, stream)

    def emit(stream: str, data: bytes) -> None:
        if not data:
            return
        log.feed(stream, data)
        sink = sinks.get(stream)
        if sink is not None:
            try:
                sink.write(data)
                sink.flush()
            except (BrokenPipeError, ValueError):
                sinks[stream] = None
        if collect is not None:
            collect[stream] += data

    try:
        while sel.get_map():
            for key, _ in sel.select():
                try:
                    data = os.read(key.fd, _CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fd)
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


def pump_tty(master: int, stdin: int | None, log: JsonLog, sink: BinaryIO | None,
             collect: dict[str, bytearray] | None = None) -> None:
    """`-t`: copy the pty's output to the log/sink (as stdout) and `stdin` into the pty, until the
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
                log.feed("stdout", data)
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
            import termios
            import tty

            self._saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None and self._saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)


def copy_winsize(src: int | None, dst: int) -> None:
    """Give the container's pty our terminal's size (rows, columns)."""
    if src is None or not os.isatty(src):
        return
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass
