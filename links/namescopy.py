"""The copy of GraphDB.names_by_id kept in `<db>.names`, and the log of edge changes that keeps it usable.

Every change to the edges is logged by trigger in its own transaction (whatever program makes it):
`edge_log` holds the last LOG_KEPT changes, each with a sequence number and a random nonce. The copy
records the (seq, nonce) of the last change it includes. A listing whose copy is at the log's last
change uses it as is; else, while the log still holds the copy's change, it applies the changes since
(only primary names, `/<name>`, of entities with no links below them: what creating and removing a
container does), and otherwise walks the whole graph and writes a new copy. The nonce tells a log
restarted (a database replaced or restored) from the one the copy was made against.
"""

from __future__ import annotations

import logging
import marshal
import sqlite3
import sys
import zlib
from pathlib import Path

from pydock.utils.fileutil import atomic_write

log = logging.getLogger(__package__)

#: edge changes the log keeps (a copy older than that many changes is remade by a walk)
LOG_KEPT = 256

_LOG_ROW = "INSERT INTO edge_log (nonce, op, entity_id, parent_id, name) VALUES (random(), '{op}', {row}.entity_id, " \
           "{row}.parent_id, {row}.name);"
_PRUNE = f"DELETE FROM edge_log WHERE seq <= (SELECT max(seq) FROM edge_log) - {LOG_KEPT};"

#: created with the graph's own schema (graphdb._SCHEMA), idempotent
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS edge_log (seq INTEGER PRIMARY KEY, nonce INTEGER NOT NULL, op TEXT NOT NULL,"
    " entity_id TEXT, parent_id TEXT, name TEXT)",
    "INSERT INTO edge_log (nonce, op) SELECT random(), 'start' WHERE NOT EXISTS (SELECT 1 FROM edge_log)",
    "CREATE TRIGGER IF NOT EXISTS edge_log_insert AFTER INSERT ON edge BEGIN "
    + _LOG_ROW.format(op="+", row="NEW") + _PRUNE + " END",
    "CREATE TRIGGER IF NOT EXISTS edge_log_delete AFTER DELETE ON edge BEGIN "
    + _LOG_ROW.format(op="-", row="OLD") + _PRUNE + " END",
    "CREATE TRIGGER IF NOT EXISTS edge_log_update AFTER UPDATE ON edge BEGIN "
    + _LOG_ROW.format(op="-", row="OLD") + _LOG_ROW.format(op="+", row="NEW") + _PRUNE + " END",
)

#: the copy's format (marshal's may change with Python's minor version)
_MAGIC = b"pydock-names-by-id 1 py%d.%d\n" % sys.version_info[:2]

Names = dict[str, list[str]]


def copy_path(db: Path) -> Path:
    return db.with_name(db.name + ".names")


def last_change(conn: sqlite3.Connection) -> tuple[int, int]:
    """(seq, nonce) of the edges' last logged change."""
    return conn.execute("SELECT seq, nonce FROM edge_log ORDER BY seq DESC LIMIT 1").fetchone()


def read(db: Path, conn: sqlite3.Connection, root_id: str, sort_key: object) -> tuple[Names | None, tuple[int, int]]:
    """(names_by_id as of the edges `conn` reads, if the copy gives it, else None; the last change)."""
    last = last_change(conn)
    try:
        blob = copy_path(db).read_bytes()
    except OSError:
        return None, last
    head = len(_MAGIC) + 4
    if not blob.startswith(_MAGIC) or zlib.crc32(blob[head:]) != int.from_bytes(blob[head - 4:head], "big"):
        return None, last
    try:
        seq, nonce, names = marshal.loads(blob[head:])
    except (ValueError, EOFError, TypeError):
        return None, last
    if not isinstance(names, dict):
        return None, last
    if (seq, nonce) == tuple(last):
        return names, last
    row = conn.execute("SELECT nonce FROM edge_log WHERE seq = ?", (seq,)).fetchone()
    if row is None or row[0] != nonce:
        return None, last  # more changes than the log keeps since, or another log
    changes = conn.execute("SELECT op, entity_id, parent_id, name FROM edge_log WHERE seq > ? ORDER BY seq",
                           (seq,)).fetchall()
    return _patched(conn, names, changes, root_id, sort_key), last


def _patched(conn: sqlite3.Connection, names: Names, changes: list[tuple[str, str, str, str]], root_id: str,
             sort_key: object) -> Names | None:
    """`names` with `changes` applied, if all are primary names of entities with nothing below them (whose
    paths then change alone); None otherwise (the caller walks the graph)."""
    touched = {entity for _, entity, _, _ in changes}
    if any(op not in "+-" or parent != root_id for op, _, parent, _ in changes) or root_id in touched:
        return None
    for entity in touched:
        if conn.execute("SELECT 1 FROM edge WHERE parent_id = ? LIMIT 1", (entity,)).fetchone() is not None:
            return None  # paths below it change too
    for op, entity, _, name in changes:
        path = "/" + name
        if op == "+":
            names.setdefault(entity, []).append(path)
        else:
            paths = names.get(entity)
            if not paths or path not in paths:
                return None  # not the copy this log follows from
            paths.remove(path)
            if not paths:
                del names[entity]
    for entity in touched:
        paths = names.get(entity)
        if paths and len(paths) > 1:
            paths.sort(key=sort_key)  # type: ignore[arg-type]
    return names


def write(db: Path, last: tuple[int, int], names: Names) -> None:
    """Keep `names`, walked at the edges' change `last` (not fsynced: a lost or torn copy is remade)."""
    payload = marshal.dumps((last[0], last[1], names))
    try:
        atomic_write(copy_path(db), _MAGIC + zlib.crc32(payload).to_bytes(4, "big") + payload, durable=False)
    except OSError as err:  # a cache: the next listing walks the edges again
        log.debug("names copy %s not written: %s", copy_path(db), err)
