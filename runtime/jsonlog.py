"""A container's output log, `<id>-json.log`, in Docker's json-file format: the writer the monitor
appends with, and the one reader every consumer uses (`logs`, `logs -f`, `start -a`, the API's
attach and logs).

One JSON object per line: `{"log": "<text>", "stream": "stdout"|"stderr", "time": "<RFC 3339>"}`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from pydock.runtime.state import format_time, parse_time, utcnow

#: longest record (newline excluded): a longer line is split into records of this size, the way
#: Docker's json-file logger splits at 16 KiB. Also all the writer ever holds waiting for a newline.
MAX_LINE = 16 << 10


@dataclass(frozen=True)
class LogRecord:
    """One line of the log: which stream, the text (newline included when there was one), when."""

    stream: str
    log: str
    time: datetime | None

    @property
    def timestamp(self) -> float:
        """Seconds since the epoch (0 for a record without a time)."""
        return self.time.timestamp() if self.time is not None else 0.0


def parse_record(line: bytes) -> LogRecord | None:
    """One JSON log line as a record; None for a torn or foreign line."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    return LogRecord(rec.get("stream", "stdout"), rec.get("log", ""), parse_time(rec.get("time")))


def create_log(path: Path) -> None:
    """Make the (empty) log at create time, so a reader that opens it before the start sees every line."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


class JsonLog:
    """Appends one record per output line, like Docker's json-file logger: lines longer than MAX_LINE
    become several records (only the last ends with the newline). Memory stays at most MAX_LINE per
    stream whatever the output, and every byte is scanned once."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._partial: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def feed(self, stream: str, data: bytes) -> None:
        pending = self._partial[stream]
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            room = MAX_LINE - len(pending)
            nl = data.find(b"\n", pos, pos + room + 1)
            if nl >= 0:  # a line ends within the record's room
                stop = nl + 1
            elif end - pos >= room:  # a full record without newline
                stop = pos + room
            else:  # the start of a line: wait for the rest
                pending += data[pos:]
                break
            if pending:
                pending += data[pos:stop]
                out.append(bytes(pending))
                pending.clear()
            else:
                out.append(data[pos:stop])
            pos = stop
        if out:
            self._write(stream, out)

    def pending(self, stream: str) -> bytes:
        """The start of a line of `stream` not written yet (held until its newline or MAX_LINE)."""
        return bytes(self._partial[stream])

    def _write(self, stream: str, lines: list[bytes]) -> None:
        now = format_time(utcnow())
        out = b"".join(json.dumps({"log": line.decode("utf-8", "replace"), "stream": stream,
                                   "time": now}).encode() + b"\n" for line in lines)
        os.write(self._fd, out)

    def close(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._write(stream, [bytes(rest)])
            rest.clear()
        os.close(self._fd)


class LogReader:
    """Reads records from an offset, complete lines only. The file stays open once seen, so a reader
    that opened it before an auto-remove deleted the container still gets the last lines."""

    def __init__(self, path: Path, *, from_start: bool = True) -> None:
        self.path = path
        self._pos = 0
        self._partial = b""
        self._f: BinaryIO | None = None
        self._open()
        if self._f is not None and not from_start:
            self._pos = os.fstat(self._f.fileno()).st_size

    def _open(self) -> None:
        try:
            self._f = open(self.path, "rb")  # noqa: SIM115 - kept open until close()
        except FileNotFoundError:
            self._f = None  # not created yet (or already removed): read() tries again

    def read(self) -> list[LogRecord]:
        """The records written since the last call."""
        if self._f is None:
            self._open()
            if self._f is None:
                return []
        self._f.seek(self._pos)
        data = self._f.read()
        self._pos = self._f.tell()
        if not data:
            return []
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [rec for line in lines if (rec := parse_record(line)) is not None]

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
