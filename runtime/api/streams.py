"""Docker's stream format for logs and attach: each record an 8-byte header (stream id, length) and
its text; with a tty, the raw text alone. Both clients pick the format from the container's
`Config.Tty`; the content type only echoes it."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from pydock.runtime.jsonlog import LogRecord
from pydock.runtime.state import format_time

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW_STREAM = "application/vnd.docker.raw-stream"
STREAM_IDS = {"stdin": 0, "stdout": 1, "stderr": 2}
#: a non-follow copy gathers frames up to this many bytes per write.
BATCH_BYTES = 64 * 1024


def content_type(tty: bool) -> str:
    return RAW_STREAM if tty else MULTIPLEXED


def frame(stream: str, data: bytes, tty: bool) -> bytes:
    """One record in Docker's stream format (raw bytes with a tty)."""
    if tty:
        return data
    return struct.pack(">BxxxL", STREAM_IDS[stream], len(data)) + data


def encode(rec: LogRecord, tty: bool, timestamps: bool = False) -> bytes:
    """A log record as a frame; with `timestamps`, its RFC 3339 time and a space before the text."""
    text = f"{format_time(rec.time)} {rec.log}" if timestamps else rec.log
    return frame(rec.stream, text.encode("utf-8", "surrogateescape"), tty)


def copy(records: Iterable[LogRecord], write: Callable[[bytes], None], tty: bool, *, timestamps: bool = False,
         live: bool = True) -> None:
    """Write the records as frames: each at once when `live` (a follower waits between records),
    else gathered into larger writes."""
    if live:
        for rec in records:
            write(encode(rec, tty, timestamps))
        return
    batch: list[bytes] = []
    size = 0
    for rec in records:
        data = encode(rec, tty, timestamps)
        batch.append(data)
        size += len(data)
        if size >= BATCH_BYTES:
            write(b"".join(batch))
            batch, size = [], 0
    if batch:
        write(b"".join(batch))
