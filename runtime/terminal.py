"""The client side of an interactive session (`run -it`, `start -a -i`, `attach`, `exec -it`): the
caller's terminal in raw mode (restored on every way out), its size sent at the start and on SIGWINCH,
typed keys sent as stdin until the detach keys, and the output written as it comes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import selectors
import signal
import struct
import termios
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from pydock.runtime import attach
from pydock.runtime.attach import AttachSession
from pydock.runtime.detachkeys import DetachScanner
from pydock.runtime.monitor import RawTerminal

log = logging.getLogger(__package__)

_CHUNK = 65536
#: signals that end the client: the terminal is restored before the default action
_FATAL = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@dataclass(frozen=True)
class Outcome:
    """How a session ended: the command's exit code, or detached (the container goes on), or neither
    (the supervisor went away without a word: the caller asks the record)."""

    exit_code: int | None = None
    detached: bool = False


class Terminated(Exception):
    """A fatal signal reached the client; raised from its handler so the terminal is restored."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def terminal_size(fd: int | None) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on `fd`, or None if it is not a terminal."""
    if fd is None or not os.isatty(fd):
        return None
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return (rows, cols) if rows and cols else None


@contextmanager
def _signals_restoring_terminal(active: bool) -> Iterator[int]:
    """With a tty (`active`): SIGWINCH wakes the loop (through the returned fd); SIGTERM/SIGHUP/SIGQUIT
    raise Terminated so every `finally` (the raw mode's restore first) runs before the process ends.
    Without one the caller's own signal handling stays (a proxy, say): -1."""
    if not active:
        yield -1
        return

    def fatal(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    saved: dict[int, object] = {}
    try:
        old_wakeup = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    except ValueError:  # not the main thread: no signal handling at all
        os.close(rfd)
        os.close(wfd)
        yield -1
        return
    try:
        saved[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda *_: None)
        for sig in _FATAL:
            saved[sig] = signal.signal(sig, fatal)
        yield rfd
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(old_wakeup)
        os.close(rfd)
        os.close(wfd)


def interact(session: AttachSession, *, stdin: int | None, stdout: BinaryIO, stderr: BinaryIO,
             detach_keys: bytes | None, redraw: bool = False) -> Outcome:
    """Run the session until the command ends (EXIT), the supervisor goes, or the detach keys are typed.

    `stdin`: the fd to send as the command's stdin (None: not attached). With a tty the caller's terminal
    goes raw, its size follows (`redraw`: nudged once so a program already drawing repaints), and the
    detach keys are watched for; without one stdout and stderr stay apart.
    """
    welcome = session.wait_welcome()
    tty = welcome.tty
    scanner = DetachScanner(detach_keys) if tty and detach_keys and stdin is not None else None
    size_fd = stdin if stdin is not None and os.isatty(stdin) else (stdout.fileno() if _isatty(stdout) else None)
    with _signals_restoring_terminal(tty) as wakeup, RawTerminal(stdin if tty else None):
        if tty:
            _send_size(session, size_fd, redraw)
        sel = selectors.DefaultSelector()
        sel.register(session.fileno(), selectors.EVENT_READ, "session")
        if stdin is not None:
            sel.register(stdin, selectors.EVENT_READ, "stdin")
        if wakeup >= 0:
            sel.register(wakeup, selectors.EVENT_READ, "signal")
        try:
            while True:
                for key, _ in sel.select():
                    if key.data == "signal":
                        _drain(wakeup)
                        if tty:
                            _send_size(session, size_fd, False)
                    elif key.data == "stdin":
                        data = _read(stdin)  # type: ignore[arg-type]
                        if not data:
                            sel.unregister(stdin)
                            _stdin_ended(session, tty)
                            continue
                        if scanner is not None:
                            data, detached = scanner.feed(data)
                            _send(session, data)
                            if detached:
                                return Outcome(detached=True)
                        else:
                            _send(session, data)
                    else:
                        for kind, payload in session.poll():
                            if kind == attach.EXIT:
                                return Outcome(exit_code=session.exit_code)
                            sink = stderr if kind == attach.STDERR else stdout
                            _write(sink, payload)
                        if session.closed:
                            return Outcome()
        finally:
            sel.close()


def _isatty(stream: BinaryIO) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def _send_size(session: AttachSession, fd: int | None, redraw: bool) -> None:
    size = terminal_size(fd)
    if size is None:
        return
    try:
        if redraw:  # the same size again would not signal the program: one off first
            session.resize(size[0] + 1, size[1] + 1)
        session.resize(*size)
    except OSError as err:
        log.debug("could not send the terminal size: %s", err)


def _send(session: AttachSession, data: bytes) -> None:
    try:
        session.send_stdin(data)
    except OSError as err:  # the supervisor is going: its EXIT or EOF ends the loop
        log.debug("stdin not sent: %s", err)


def _stdin_ended(session: AttachSession, tty: bool) -> None:
    """Our stdin ended (a pipe, not a terminal): a terminal's reader gets ^D, a pipe's reader EOF."""
    try:
        if tty:
            session.send_stdin(b"\x04")
        else:
            session.close_stdin()
    except OSError as err:
        log.debug("stdin end not sent: %s", err)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, _CHUNK)
    except OSError:
        return b""


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        return


def _write(sink: BinaryIO, data: bytes) -> None:
    try:
        sink.write(data)
        sink.flush()
    except (BrokenPipeError, ValueError) as err:
        log.debug("output not written: %s", err)
