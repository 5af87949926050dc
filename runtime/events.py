"""The events journal: what happened to containers, persisted so `events --since` works without a daemon.

Whichever process does the thing records it (the CLI for create/kill/stop/destroy/pause/rename, the
monitor for start/die): one JSON line per event appended to `<root>/events.jsonl` with one write(2)
under a shared lock, so lines from concurrent processes never interleave. The journal is bounded:
past MAX_BYTES the writer holding the exclusive lock moves it to `events.1.jsonl` (the previous
generation is dropped), so at most twice MAX_BYTES are kept and readers see the newest events.

A line: {"time": <unix ns>, "Type": "container", "Action": "die", "Actor": {"ID": ..., "Attributes":
{"name": ..., "image": ..., "exitCode": ...}}} - the Engine API's event, as the API will serve it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydock.utils.fileutil import flocked

log = logging.getLogger(__package__)

JOURNAL = "events.jsonl"
PREVIOUS = "events.1.jsonl"
LOCK = "events.lock"
MAX_BYTES = 1 << 20
#: a line longer than this is not an event of ours (a damaged journal): skipped
MAX_LINE = 64 << 10
FILTER_KEYS = ("container", "image", "event", "type")


@dataclass(frozen=True)
class Event:
    time_ns: int
    type: str
    action: str
    actor: str
    attributes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time_ns, "Type": self.type, "Action": self.action,
                "Actor": {"ID": self.actor, "Attributes": self.attributes}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        actor = data.get("Actor") or {}
        return cls(time_ns=int(data["time"]), type=str(data["Type"]), action=str(data["Action"]),
                   actor=str(actor.get("ID", "")),
                   attributes={str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()})


def record(root: Path, type_: str, action: str, actor: str, **attributes: Any) -> None:
    """Append one event. Never fails the operation it reports: a journal that cannot be written is
    logged and skipped."""
    event = Event(time.time_ns(), type_, action, actor, {k: str(v) for k, v in attributes.items() if v is not None})
    line = (json.dumps(event.to_json(), separators=(",", ":")) + "\n").encode()
    try:
        with flocked(root / LOCK, shared=True):
            fd = os.open(root / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line)
                full = os.fstat(fd).st_size > MAX_BYTES
            finally:
                os.close(fd)
        if full:
            _rotate(root)
    except OSError as err:
        log.warning("event %s %s of %s not recorded: %s", type_, action, actor[:12], err)


def _rotate(root: Path) -> None:
    with flocked(root / LOCK):
        try:
            if os.stat(root / JOURNAL).st_size > MAX_BYTES:  # not already done by another writer
                os.replace(root / JOURNAL, root / PREVIOUS)
        except FileNotFoundError:
            log.debug("events journal rotated by another writer")


def _lines(path: Path, offset: int = 0) -> tuple[list[bytes], int]:
    """Complete lines of `path` from `offset`, and the offset after them."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), offset + end


def _parse(lines: list[bytes]) -> Iterator[Event]:
    for line in lines:
        if len(line) > MAX_LINE:
            continue
        try:
            yield Event.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.debug("events journal: a damaged line skipped")


def parse_filters(specs: tuple[str, ...] | list[str]) -> dict[str, set[str]]:
    """`--filter key=value` (repeatable; the same key twice means either value)."""
    from pydock.utils.errors import InvalidArgument  # lazy: only with filters

    out: dict[str, set[str]] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or key not in FILTER_KEYS or not value:
            raise InvalidArgument(f"Invalid filter {spec!r} (use one of {', '.join(FILTER_KEYS)} as key=value)")
        out.setdefault(key, set()).add(value)
    return out


def matches(event: Event, filters: dict[str, set[str]]) -> bool:
    for key, values in filters.items():
        if key == "type" and event.type not in values:
            return False
        if key == "event" and event.action.partition(":")[0] not in values:  # `exec_create: sh` is exec_create
            return False
        if key == "container" and (event.type != "container" or not any(
                event.actor.startswith(v) or event.attributes.get("name") == v.lstrip("/") for v in values)):
            return False
        named = event.attributes.get("image" if event.type == "container" else "name")
        if key == "image" and not any(named == v or event.actor.startswith(v) for v in values):
            return False
    return True


def read(root: Path, since_ns: int | None = None, until_ns: int | None = None,
         filters: dict[str, set[str]] | None = None) -> tuple[list[Event], int]:
    """The recorded events in [since, until], oldest first, and the journal offset to follow from."""
    previous, _ = _lines(root / PREVIOUS)
    current, offset = _lines(root / JOURNAL)
    out = [e for e in _parse(previous + current)
           if (since_ns is None or e.time_ns >= since_ns) and (until_ns is None or e.time_ns <= until_ns)
           and matches(e, filters or {})]
    return out, offset


def follow(root: Path, offset: int, filters: dict[str, set[str]] | None = None,
           until_ns: int | None = None, poll: float = 0.1,
           stop: Callable[[], bool] | None = None) -> Iterator[Event]:
    """Events appended after `offset`, as they come (a rotation starts the new journal from 0), until
    `until_ns` passes or `stop()` says so (or forever)."""
    ino = _inode(root / JOURNAL)
    while (until_ns is None or time.time_ns() <= until_ns) and not (stop is not None and stop()):
        now_ino = _inode(root / JOURNAL)
        if now_ino != ino:  # rotated: the rest of the old one is events.1, then the new one from 0
            rest, _ = _lines(root / PREVIOUS, offset)
            yield from (e for e in _parse(rest) if matches(e, filters or {}))
            ino, offset = now_ino, 0
        lines, offset = _lines(root / JOURNAL, offset)
        for e in _parse(lines):
            if until_ns is not None and e.time_ns > until_ns:
                return
            if matches(e, filters or {}):
                yield e
        time.sleep(poll)


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def format_line(e: Event) -> str:
    """The docker CLI's line: `2026-12-02T01:02:03.000000000Z container die <id> (exitCode=0, image=..., name=...)`."""
    secs, ns = divmod(e.time_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns:09d}Z"
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(e.attributes.items()))
    return f"{stamp} {e.type} {e.action} {e.actor}" + (f" ({attrs})" if attrs else "")


def container_event(root: Path, c: Any, action: str, **attributes: Any) -> None:
    """Record `action` on container `c` with Docker's attributes (name, image) and `attributes`."""
    record(root, "container", action, c.id, name=(c.name or "").lstrip("/") or None,
           image=c.config.get("Image"), **attributes)
