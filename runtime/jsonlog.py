"""A container's output log, `<id>-json.log`, in Docker's json-file format: the writer the monitor
appends with, and the one reader every consumer uses (`logs`, `logs -f`, `start -a`, the API's
attach and logs).

One JSON object per line: `{"log": "<text>", "stream": "stdout"|"stderr", "time": "<RFC 3339>"}`.
With `--log-opt max-size`, the writer rotates as Docker's does (`<id>-json.log` -> `.1` -> `.2` ...,
at most max-file files), and the reader reads the rotated files first, oldest first, and follows the
log across rotations. The `none` driver keeps nothing (`NullLog`), and its log can't be read.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from pydock.runtime.options import log_max_files, log_max_size
from pydock.runtime.state import format_time, parse_time, utcnow
from pydock.utils.errors import InvalidArgument

log = logging.getLogger(__package__)

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


def driver(log_config: dict[str, Any] | None) -> str:
    """A container's log driver (HostConfig.LogConfig.Type; json-file unless it says otherwise)."""
    return str((log_config or {}).get("Type") or "json-file")


def check_readable(log_config: dict[str, Any] | None) -> None:
    """Refuse reading a log that is not kept (`--log-driver none`), with Docker's message."""
    if driver(log_config) == "none":
        raise InvalidArgument("configured logging driver does not support reading")


def create_log(path: Path, log_config: dict[str, Any] | None = None) -> None:
    """Make the (empty) log at create time, so a reader that opens it before the start sees every line
    (none for the `none` driver)."""
    if driver(log_config) != "none":
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


def open_writer(path: Path, log_config: dict[str, Any] | None) -> JsonLog | NullLog:
    """The writer a monitor feeds a run's output to, as the container's LogConfig says."""
    if driver(log_config) == "none":
        return NullLog()
    config = (log_config or {}).get("Config") or {}
    size = log_max_size(config)
    return JsonLog(path, max_size=size if size > 0 else None, max_files=log_max_files(config))


def rotated_path(path: Path, n: int) -> Path:
    """The n-th rotated file of log `path` (`<id>-json.log.1` is the newest)."""
    return path.with_name(f"{path.name}.{n}")


class NullLog:
    """`--log-driver none`: the output goes to attached clients only, nothing is kept."""

    def feed(self, stream: str, data: bytes) -> None:
        """Dropped."""

    def pending(self, stream: str) -> bytes:
        return b""

    def close(self) -> None:
        """Nothing to flush."""


class JsonLog:
    """Appends one record per output line, like Docker's json-file logger: lines longer than MAX_LINE
    become several records (only the last ends with the newline). Memory stays at most MAX_LINE per
    stream whatever the output, and every byte is scanned once. With `max_size`, a record goes to a
    fresh file once the current one holds `max_size` bytes or more (Docker's check, made before each
    write): the current file becomes `.1`, `.1` becomes `.2` ..., the oldest past `max_files` goes
    (with `max_files` 1, the file is emptied instead)."""

    def __init__(self, path: Path, *, max_size: int | None = None, max_files: int = 1) -> None:
        self._path = path
        self._max_size = max_size
        self._max_files = max(1, max_files)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self._partial: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def _open(self) -> int:
        return os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def _rotate(self) -> None:
        if self._max_files < 2:
            os.ftruncate(self._fd, 0)
        else:
            for n in range(self._max_files - 1, 0, -1):
                older = rotated_path(self._path, n - 1) if n > 1 else self._path
                try:
                    os.replace(older, rotated_path(self._path, n))
                except FileNotFoundError:
                    continue  # fewer rotations so far
            os.close(self._fd)
            self._fd = self._open()
        self._size = 0

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
        records = [json.dumps({"log": line.decode("utf-8", "replace"), "stream": stream,
                               "time": now}).encode() + b"\n" for line in lines]
        if self._max_size is None:
            os.write(self._fd, b"".join(records))
            return
        for record in records:
            if self._size >= self._max_size:
                self._rotate()
            os.write(self._fd, record)
            self._size += len(record)

    def close(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._write(stream, [bytes(rest)])
            rest.clear()
        os.close(self._fd)


class LogReader:
    """Reads records from an offset, complete lines only, across rotations: from the start, the rotated
    files first (oldest first); following, a rotation is noticed when the log's name points at another
    file, and the reader finishes the file it had, then reads what was rotated since, then the new one.
    The live file stays open once seen, so a reader that opened it before an auto-remove deleted the
    container still gets the last lines."""

    def __init__(self, path: Path, *, from_start: bool = True) -> None:
        self.path = path
        self._pos = 0
        self._partial = b""
        self._f: BinaryIO | None = None
        #: rotated files not read yet, oldest first, all before `_f`
        self._backlog: list[BinaryIO] = []
        #: whether the rotated files before the live one were taken (or are not wanted): never twice
        self._rotated_taken = not from_start
        self._open(with_rotated=from_start)
        if self._f is not None and not from_start:
            self._pos = os.fstat(self._f.fileno()).st_size

    def _open(self, *, with_rotated: bool) -> None:
        """Open the rotated files (if asked) and the live one as one consistent view: retried while a
        rotation moves them under the reader."""
        for attempt in range(8):
            older: list[tuple[Path, BinaryIO]] = []
            for p in self._rotated(with_rotated):
                try:
                    older.append((p, open(p, "rb")))  # noqa: SIM115 - read, then closed, by read()
                except FileNotFoundError:
                    log.debug("log %s rotated away while opening it", p)
            try:
                current = open(self.path, "rb")  # noqa: SIM115 - kept open until close()
            except FileNotFoundError:
                current = None  # not created yet (or already removed): read() tries again
            views = [*older, *(((self.path, current),) if current is not None else ())]
            if attempt == 7 or all(_still(p, f) for p, f in views):
                self._backlog, self._f = [f for _, f in older], current
                self._rotated_taken = True
                return
            for _, f in views:
                f.close()

    def _rotated(self, wanted: bool = True, *, newer_than: int | None = None) -> list[Path]:
        """The rotated files there are, oldest first; with `newer_than` (an inode), only those rotated
        after that file (all of them when it is gone)."""
        if not wanted:
            return []
        found: list[tuple[Path, int]] = []
        n = 1
        while True:
            p = rotated_path(self.path, n)
            try:
                found.append((p, os.stat(p).st_ino))
            except FileNotFoundError:
                break
            n += 1
        if newer_than is not None:
            inodes = [ino for _, ino in found]
            if newer_than in inodes:
                found = found[:inodes.index(newer_than)]
        return [p for p, _ in reversed(found)]

    def _rotated_away(self) -> bool:
        assert self._f is not None
        try:
            return not _same_file(self.path, self._f)
        except FileNotFoundError:
            return False  # removed with its container, or between a rotation's rename and the new file

    def _read_live(self) -> bytes:
        assert self._f is not None
        if os.fstat(self._f.fileno()).st_size < self._pos:  # emptied by a rotation with max-file 1
            self._pos, self._partial = 0, b""
        self._f.seek(self._pos)
        data = self._f.read()
        self._pos = self._f.tell()
        return data

    def _records(self, data: bytes) -> list[LogRecord]:
        if not data:
            return []
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [rec for line in lines if (rec := parse_record(line)) is not None]

    def read(self) -> list[LogRecord]:
        """The records written since the last call."""
        if self._f is None and not self._backlog:
            self._open(with_rotated=not self._rotated_taken)
        out: list[LogRecord] = []
        while self._backlog:
            with self._backlog.pop(0) as f:
                out += self._records(f.read())
        if self._f is None:
            return out
        out += self._records(self._read_live())
        if self._rotated_away():
            out += self._records(self._read_live())  # what it got before the rename
            self._partial = b""
            newer = self._rotated(newer_than=os.fstat(self._f.fileno()).st_ino)
            self._f.close()
            self._f, self._pos = None, 0
            self._open(with_rotated=False)
            for p in newer:
                try:
                    self._backlog.append(open(p, "rb"))  # noqa: SIM115 - read, then closed, below
                except FileNotFoundError:
                    log.debug("log %s rotated away before it was read", p)
            out += self.read()
        return out

    def close(self) -> None:
        for f in self._backlog:
            f.close()
        self._backlog = []
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _same_file(path: Path, f: BinaryIO) -> bool:
    """Whether `path` still names the open file `f` (FileNotFoundError when the path is gone)."""
    st, fst = os.stat(path), os.fstat(f.fileno())
    return (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev)


def _still(path: Path, f: BinaryIO) -> bool:
    try:
        return _same_file(path, f)
    except FileNotFoundError:
        return False
