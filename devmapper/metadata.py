"""Crash-safe device-mapper metadata: one file per device, a pool record, an append-only journal.

Layout under the driver home (every write is temp + fsync + rename + directory fsync):

  pool.json           transaction id, next thin id, and the one *open transaction* (the pool
                      message in flight), written before the message is sent;
  devices/<h>.json    one record per device (hash, thin id, size, parent, state, mounts...);
  live/<h>            empty marker for devices that are active, mounted or in between states,
                      so start-up recovery visits only those, not every device;
  deferred/<id>.json  devices whose dm removal the kernel deferred (busy); deleted later;
  journal             append-only "create/init/delete <thin id>" lines, fsynced before each pool
                      message: if pool.json and devices/ are lost, replaying it (and probing the
                      pool) rebuilds the thin id -> hash mapping. Active devices carry the hash in
                      their dm name `<prefix>-<hash>` as a second source.

Each operation touches a fixed number of files, so its cost does not grow with the device count.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pydock.utils.errors import InvalidArgument
from pydock.utils.fileutil import atomic_write, fsync_dir

log = logging.getLogger(__package__)

BASE_FILE = "base"
RESERVED = {"base", "pool"}
_HASH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]*")


class State(enum.Enum):
    """Where a device is in its life; in-between states found at start-up mean a crash there."""

    CREATING = "creating"
    CREATED = "created"
    ACTIVATING = "activating"
    ACTIVE = "active"
    DELETING = "deleting"
    FAULTY = "faulty"


@dataclass(frozen=True)
class DeviceRecord:
    """What we know about one thin device; `mounts` maps mountpoint -> mount count."""

    hash: str
    thin_id: int
    size: int
    parent: str | None
    state: State = State.CREATING
    initialized: bool = False
    transaction_id: int = 0
    mounts: dict[str, int] = field(default_factory=dict)
    mounting: str = ""      # mountpoint of a mount(2) in flight: recovery undoes it if unrecorded
    error: str = ""

    def to_json(self) -> dict:
        d = asdict(self)
        d["state"] = self.state.value
        return d

    @classmethod
    def from_json(cls, d: dict) -> DeviceRecord:
        return cls(hash=d["hash"], thin_id=int(d["thin_id"]), size=int(d["size"]), parent=d.get("parent"),
                   state=State(d.get("state", "created")), initialized=bool(d.get("initialized")),
                   transaction_id=int(d.get("transaction_id", 0)), mounts=dict(d.get("mounts") or {}),
                   mounting=d.get("mounting", ""), error=d.get("error", ""))

    def evolve(self, **changes) -> DeviceRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class OpenTransaction:
    """The pool message in flight: written before it is sent, cleared after set_transaction_id."""

    op: str                 # "create" | "delete"
    thin_id: int
    hash: str | None        # None for a deferred deletion whose record is already gone
    transaction_id: int     # the id the pool will have once this operation completes
    parent: str | None = None
    size: int = 0


@dataclass(frozen=True)
class PoolRecord:
    """The pool's own record: the transaction id we expect and the next thin id to hand out."""

    transaction_id: int = 0
    next_thin_id: int = 0
    open: OpenTransaction | None = None

    def to_json(self) -> dict:
        return {"transaction_id": self.transaction_id, "next_thin_id": self.next_thin_id,
                "open": asdict(self.open) if self.open else None}

    @classmethod
    def from_json(cls, d: dict) -> PoolRecord:
        o = d.get("open")
        return cls(int(d.get("transaction_id", 0)), int(d.get("next_thin_id", 0)),
                   OpenTransaction(**o) if o else None)


@dataclass(frozen=True)
class DeferredRecord:
    """A device whose dm removal the kernel deferred; its thin id is deleted once that is done."""

    thin_id: int
    hash: str
    dm_name: str


@dataclass(frozen=True)
class JournalEntry:
    """What replaying the journal says about one thin id."""

    thin_id: int
    hash: str
    parent: str | None
    size: int
    initialized: bool


def is_valid_hash(hash: str) -> bool:
    """Hashes become file and dm names: a restricted alphabet, never a reserved word."""
    return hash == "" or (isinstance(hash, str) and len(hash) <= 200 and hash not in RESERVED
                          and _HASH_RE.fullmatch(hash) is not None)


def validate_hash(hash: str) -> str:
    if not is_valid_hash(hash):
        raise InvalidArgument(f"invalid device hash {hash!r}")
    return hash


def _unlink(path: Path, fsync: bool = True) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    if fsync:
        fsync_dir(path.parent)
    return True


class MetadataStore:
    """The files above; no policy (DeviceSetDM decides what to write when)."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.devices_dir = self.home / "devices"
        self.live_dir = self.home / "live"
        self.deferred_dir = self.home / "deferred"
        self.pool_file = self.home / "pool.json"
        self.journal_file = self.home / "journal"
        for d in (self.devices_dir, self.live_dir, self.deferred_dir):
            d.mkdir(mode=0o700, exist_ok=True)

    # -- names ---------------------------------------------------------------------------
    @staticmethod
    def file_name(hash: str) -> str:
        return BASE_FILE if hash == "" else hash

    @staticmethod
    def hash_of(file_name: str) -> str:
        return "" if file_name == BASE_FILE else file_name

    # -- pool record -----------------------------------------------------------------------
    def pool(self) -> PoolRecord | None:
        try:
            return PoolRecord.from_json(json.loads(self.pool_file.read_bytes()))
        except FileNotFoundError:
            return None

    def put_pool(self, rec: PoolRecord) -> None:
        atomic_write(self.pool_file, json.dumps(rec.to_json()).encode())

    # -- device records --------------------------------------------------------------------
    def get(self, hash: str) -> DeviceRecord | None:
        try:
            data = (self.devices_dir / (self.file_name(hash) + ".json")).read_bytes()
        except FileNotFoundError:
            return None
        return DeviceRecord.from_json(json.loads(data))

    def exists(self, hash: str) -> bool:
        return (self.devices_dir / (self.file_name(hash) + ".json")).exists()

    def put(self, rec: DeviceRecord) -> None:
        """Write the record; keep the live marker iff it is not plainly created-and-idle."""
        name = self.file_name(rec.hash)
        live = rec.state != State.CREATED or bool(rec.mounts) or bool(rec.mounting)
        marker = self.live_dir / name
        if live and not marker.exists():
            marker.touch(mode=0o600)
        atomic_write(self.devices_dir / (name + ".json"), json.dumps(rec.to_json()).encode())
        if not live:
            _unlink(marker, fsync=False)

    def delete(self, hash: str) -> None:
        name = self.file_name(hash)
        _unlink(self.devices_dir / (name + ".json"))
        _unlink(self.live_dir / name, fsync=False)

    def hashes(self) -> list[str]:
        """Every recorded hash (O(n): for list() and recovery only)."""
        return [self.hash_of(n[:-5]) for n in os.listdir(self.devices_dir)
                if n.endswith(".json") and not n.startswith(".")]

    def live(self) -> list[DeviceRecord]:
        """Records with a live marker (active, mounted or in between states)."""
        out = []
        for n in os.listdir(self.live_dir):
            rec = self.get(self.hash_of(n))
            if rec is None:
                _unlink(self.live_dir / n, fsync=False)
            else:
                out.append(rec)
        return out

    # -- deferred removals -----------------------------------------------------------------
    def put_deferred(self, rec: DeferredRecord) -> None:
        atomic_write(self.deferred_dir / f"{rec.thin_id}.json", json.dumps(asdict(rec)).encode())

    def deferred(self) -> list[DeferredRecord]:
        out = []
        for n in os.listdir(self.deferred_dir):
            if n.endswith(".json") and not n.startswith("."):
                out.append(DeferredRecord(**json.loads((self.deferred_dir / n).read_bytes())))
        return out

    def drop_deferred(self, thin_id: int) -> None:
        _unlink(self.deferred_dir / f"{thin_id}.json")

    # -- journal ---------------------------------------------------------------------------
    def journal(self, op: str, thin_id: int, **extra: object) -> None:
        """Append one fsynced line; a torn last line (crash mid-write) is ignored on replay."""
        line = json.dumps({"op": op, "id": thin_id, **extra}, separators=(",", ":")).encode() + b"\n"
        fd = os.open(self.journal_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def replay(self) -> tuple[dict[int, JournalEntry], int]:
        """(thin id -> entry for ids created and not deleted, highest id ever seen or -1)."""
        live: dict[int, JournalEntry] = {}
        top = -1
        try:
            data = self.journal_file.read_bytes()
        except FileNotFoundError:
            return live, top
        for raw in data.splitlines():
            try:
                e = json.loads(raw)
                tid = int(e["id"])
            except (ValueError, KeyError, TypeError) as err:  # a torn last line: the crash it records
                log.debug("devicemapper: skipping unreadable journal line %r: %s", raw[:80], err)
                continue
            top = max(top, tid)
            if e["op"] == "create":
                live[tid] = JournalEntry(tid, e["hash"], e.get("parent"), int(e.get("size", 0)), False)
            elif e["op"] == "init" and tid in live:
                live[tid] = replace(live[tid], initialized=True)
            elif e["op"] == "delete":
                live.pop(tid, None)
        return live, top

    def journal_lines(self) -> int:
        try:
            with open(self.journal_file, "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def compact_journal(self, records: list[DeviceRecord], top: int) -> None:
        """Rewrite the journal from the records (atomically), keeping the highest id ever used."""
        lines = [json.dumps({"op": "mark", "id": top}, separators=(",", ":"))] if top >= 0 else []
        for r in sorted(records, key=lambda r: r.thin_id):
            lines.append(json.dumps({"op": "create", "id": r.thin_id, "hash": r.hash, "parent": r.parent,
                                     "size": r.size}, separators=(",", ":")))
            if r.initialized:
                lines.append(json.dumps({"op": "init", "id": r.thin_id}, separators=(",", ":")))
        atomic_write(self.journal_file, ("\n".join(lines) + "\n").encode())
