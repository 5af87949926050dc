"""The name/link registry: a SQLite graph of entities (container ids) joined by named edges, as in Docker 0.7's graphdb.

A path such as `/web/db` is walked edge by edge from the root entity `"0"` (whose edge is named `/`):
`/web` is an edge from the root to the web container, `/web/db` an edge from web to the db container.
A container's primary name is `/<name>`; a link is `/<parent>/<alias>`. The graph knows nothing of
containers; the runtime is the only place that gives the ids meaning.

Every operation is one transaction (`BEGIN IMMEDIATE` for writes), the database runs in WAL mode with
a busy timeout, so several pydock processes can share one file; a process killed mid-write leaves
nothing half-done because SQLite rolls the open transaction back.
"""

from __future__ import annotations

import os
import posixpath
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydock.links import namescopy
from pydock.utils.errors import Conflict, InvalidArgument, NotFound

ROOT_ID = "0"
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entity (id TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS edge ("
    " entity_id TEXT NOT NULL REFERENCES entity(id),"
    " parent_id TEXT NULL REFERENCES entity(id),"
    " name TEXT NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS name_parent_ix ON edge (parent_id, name)",
    "CREATE INDEX IF NOT EXISTS entity_ix ON edge (entity_id)",
    *namescopy.SCHEMA,
)
#: PRAGMA user_version once _SCHEMA and the root entity are in place: a connection to such a database
#: skips their write transaction (which took the write lock on every command). Raised with every change
#: to _SCHEMA, so a database made before it gains the change (2: the edge log of namescopy.SCHEMA).
SCHEMA_VERSION = 2


def normalize_path(path: str) -> str:
    """`web/db`, `/web//db/` -> `/web/db`; the root is `/`. Rejects `.`/`..` components and empty paths."""
    if not path or not path.strip():
        raise InvalidArgument(f"Invalid path: {path!r}")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidArgument(f"Invalid path: {path}")
    return "/" + "/".join(parts)


def split_path(path: str) -> tuple[str, str]:
    """`/web/db` -> (`/web`, `db`); `/db` -> (`/`, `db`)."""
    parent, name = posixpath.split(normalize_path(path))
    return parent, name


def _components(path: str) -> list[str]:
    return [p for p in normalize_path(path).split("/") if p]


def _path_order(path: str) -> tuple[int, str]:
    """How an entity's paths are sorted: primary `/x` before links `/p/x`, then by name."""
    return path.count("/"), path


def _short(entity_id: str) -> str:
    return entity_id[:12]


class GraphDB:
    """SQLite entity/edge graph in one file, opened lazily and shared safely between processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._abandoned: list[sqlite3.Connection] = []
        self._lock = threading.RLock()

    # -- connection and transactions -------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid != os.getpid():
            # inherited across fork: never touch the parent's connection (closing it could checkpoint
            # or unlink the WAL under the parent); keep it referenced so it is not closed by GC either
            self._abandoned.append(self._conn)
            self._conn = None
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # create the file 0600 ourselves: SQLite gives the -wal/-shm files the database file's mode.
        # Only when it is missing: closing any fd of the file would drop every POSIX lock this
        # process holds on it through another connection (SQLite's locks), letting another process
        # checkpoint and delete the WAL under us.
        if not self.path.exists():
            try:
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            except FileExistsError:
                pass  # another process created it first (with the same mode): what we wanted
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each public call is exactly
        # one transaction; check_same_thread=False: a Runtime may be used from helper threads.
        conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._create_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._pid = os.getpid()
        return conn

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        """The tables, the root entity `/` and the schema version, in one transaction (idempotent)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA:
                conn.execute(stmt)
            conn.execute("INSERT OR IGNORE INTO entity (id) VALUES (?)", (ROOT_ID,))
            # UNIQUE(parent_id, name) does not cover NULL parents, so check before inserting.
            if conn.execute("SELECT 1 FROM edge WHERE parent_id IS NULL AND name = '/'").fetchone() is None:
                conn.execute("INSERT INTO edge (entity_id, parent_id, name) VALUES (?, NULL, '/')", (ROOT_ID,))
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _tx(self, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction: IMMEDIATE for writes (take the write lock up front, no upgrade deadlocks)."""
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (reopened on next use)."""
        with self._lock:
            if self._conn is not None:
                if self._pid == os.getpid():
                    self._conn.close()
                else:
                    self._abandoned.append(self._conn)
                self._conn = None

    def __enter__(self) -> GraphDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers inside a transaction ------------------------------------------------------

    @staticmethod
    def _resolve(conn: sqlite3.Connection, path: str) -> str | None:
        entity = ROOT_ID
        for name in _components(path):
            row = conn.execute("SELECT entity_id FROM edge WHERE parent_id = ? AND name = ?",
                               (entity, name)).fetchone()
            if row is None:
                return None
            entity = row[0]
        return entity

    @staticmethod
    def _insert_entity(conn: sqlite3.Connection, entity_id: str) -> None:
        conn.execute("INSERT OR IGNORE INTO entity (id) VALUES (?)", (entity_id,))

    @staticmethod
    def _insert_edge(conn: sqlite3.Connection, entity_id: str, parent_id: str, name: str) -> None:
        conn.execute("INSERT INTO edge (entity_id, parent_id, name) VALUES (?, ?, ?)",
                     (entity_id, parent_id, name))

    @staticmethod
    def _edges(conn: sqlite3.Connection) -> dict[str, list[tuple[str, str]]]:
        """parent id -> [(name, child id)] for the whole graph, read in one query."""
        out: dict[str, list[tuple[str, str]]] = {}
        for entity_id, parent_id, name in conn.execute(
                "SELECT entity_id, parent_id, name FROM edge WHERE parent_id IS NOT NULL ORDER BY name"):
            out.setdefault(parent_id, []).append((name, entity_id))
        return out

    @staticmethod
    def _edges_below(conn: sqlite3.Connection) -> Callable[[str], list[tuple[str, str]]]:
        """entity id -> its [(name, child id)], each read when the walk gets there (indexed), not the whole graph."""
        def below(entity_id: str) -> list[tuple[str, str]]:
            return conn.execute("SELECT name, entity_id FROM edge WHERE parent_id = ? ORDER BY name",
                                (entity_id,)).fetchall()
        return below

    @staticmethod
    def _walk(edges: dict[str, list[tuple[str, str]]] | Callable[[str], list[tuple[str, str]]], start_id: str,
              start_path: str, depth: int) -> list[tuple[str, str]]:
        """Depth-first (path, id) below start; depth 0 = direct children, -1 = unlimited; cycles cut.
        `edges`: the whole graph as _edges reads it, or a function giving one entity's edges.

        A stack of iterators, not recursion: a long chain of links must not hit Python's recursion limit."""
        below = edges if callable(edges) else (lambda e: edges.get(e, ()))  # type: ignore[union-attr]
        out: list[tuple[str, str]] = []
        stack = [(iter(below(start_id)), start_path, 0, frozenset({start_id}))]
        while stack:
            children, path, level, chain = stack[-1]
            step = next(children, None)
            if step is None:
                stack.pop()
                continue
            name, child = step
            if child in chain:
                continue  # /a/b -> b and /b/a -> a: that edge leads back up, do not loop
            full = (path if path.endswith("/") else path + "/") + name  # posixpath.join, for names without /
            out.append((full, child))
            if depth == -1 or level < depth:
                stack.append((iter(below(child)), full, level + 1, chain | {child}))
        return out

    def _conflict(self, conn: sqlite3.Connection, parent_id: str, name: str, path: str) -> Conflict:
        row = conn.execute("SELECT entity_id FROM edge WHERE parent_id = ? AND name = ?",
                           (parent_id, name)).fetchone()
        holder = _short(row[0]) if row else "another container"
        return Conflict(f"Conflict, The name {path} is already assigned to {holder}. You have to delete "
                        f"(or rename) that container to be able to assign {path} to a container again.")

    # -- public operations -----------------------------------------------------------------

    def set(self, path: str, entity_id: str) -> None:
        """Name `entity_id` at `path` (e.g. `/web` or `/web/db`); Conflict naming the holder if taken."""
        if not entity_id or entity_id == ROOT_ID:
            raise InvalidArgument(f"Invalid entity id: {entity_id!r}")
        full = normalize_path(path)
        if full == "/":
            raise Conflict("Cannot set the root path /")
        parent_path, name = split_path(full)
        with self._tx(write=True) as conn:
            parent_id = self._resolve(conn, parent_path)
            if parent_id is None:
                raise NotFound(f"Parent does not exist for path: {full}")
            if parent_id == entity_id:
                raise Conflict("Cannot set self as child")
            if conn.execute("SELECT 1 FROM edge WHERE parent_id = ? AND name = ?",
                            (parent_id, name)).fetchone():
                raise self._conflict(conn, parent_id, name, full)
            self._insert_entity(conn, entity_id)
            try:
                self._insert_edge(conn, entity_id, parent_id, name)
            except sqlite3.IntegrityError:
                raise self._conflict(conn, parent_id, name, full) from None

    def get(self, path: str) -> str | None:
        """The entity id at `path`, or None."""
        with self._tx(write=False) as conn:
            entity = self._resolve(conn, path)
        return entity

    def exists(self, path: str) -> bool:
        return self.get(path) is not None

    def delete(self, path: str) -> None:
        """Remove the one edge at `path` (the entity and its other names stay); `/` is refused."""
        full = normalize_path(path)
        if full == "/":
            raise Conflict("Cannot delete the root entity /")
        parent_path, name = split_path(full)
        with self._tx(write=True) as conn:
            parent_id = self._resolve(conn, parent_path)
            if parent_id is None:
                raise NotFound(f"No such name: {full}")
            cur = conn.execute("DELETE FROM edge WHERE parent_id = ? AND name = ?", (parent_id, name))
            if cur.rowcount == 0:
                raise NotFound(f"No such name: {full}")

    def purge(self, entity_id: str) -> int:
        """Drop every edge to and from `entity_id` and the entity itself; returns the number of names removed."""
        if entity_id == ROOT_ID:
            raise Conflict("Cannot purge the root entity")
        with self._tx(write=True) as conn:
            n = conn.execute("DELETE FROM edge WHERE entity_id = ?", (entity_id,)).rowcount
            # Its own links (/<it>/<alias>) die with it: nothing can reach them any more.
            conn.execute("DELETE FROM edge WHERE parent_id = ?", (entity_id,))
            conn.execute("DELETE FROM entity WHERE id = ?", (entity_id,))
        return n

    def rename(self, old_path: str, new_path: str) -> None:
        """Move the name `old_path` to `new_path` under the same parent (Docker's rule)."""
        old, new = normalize_path(old_path), normalize_path(new_path)
        if "/" in (old, new):
            raise Conflict("Cannot rename the root entity /")
        old_parent, old_name = split_path(old)
        new_parent, new_name = split_path(new)
        if old_parent != new_parent:
            raise InvalidArgument(f"Cannot rename {old} to {new}: the parent paths differ")
        with self._tx(write=True) as conn:
            parent_id = self._resolve(conn, old_parent)
            if parent_id is None or conn.execute("SELECT 1 FROM edge WHERE parent_id = ? AND name = ?",
                                                 (parent_id, old_name)).fetchone() is None:
                raise NotFound(f"No such name: {old}")
            if old == new:
                return
            if conn.execute("SELECT 1 FROM edge WHERE parent_id = ? AND name = ?",
                            (parent_id, new_name)).fetchone():
                raise self._conflict(conn, parent_id, new_name, new)
            conn.execute("UPDATE edge SET name = ? WHERE parent_id = ? AND name = ?",
                         (new_name, parent_id, old_name))

    def children(self, path: str, depth: int = 0) -> list[tuple[str, str]]:
        """(full path, id) below `path`: depth 0 = direct children, n = n more levels, -1 = all."""
        full = normalize_path(path)
        with self._tx(write=False) as conn:
            start = self._resolve(conn, full)
            if start is None:
                raise NotFound(f"No such name: {full}")
            # a container's links (depth 0) are a query; only a deep walk from the root reads everything
            return self._walk(self._edges(conn) if depth == -1 and full == "/" else self._edges_below(conn),
                              start, full, depth)

    def list(self) -> dict[str, str]:
        """Every path in the graph -> id (the root excluded)."""
        with self._tx(write=False) as conn:
            edges = self._edges(conn)
        return dict(self._walk(edges, ROOT_ID, "/", -1))

    def ref_paths(self, entity_id: str) -> list[str]:
        """Every full path that names `entity_id`, sorted (primary `/x` before links `/p/x`): the paths
        `list()` gives it, found by walking up its edges (indexed) instead of reading the whole graph."""
        if entity_id == ROOT_ID:
            return []
        found: list[str] = []
        with self._tx(write=False) as conn:
            # (entity, the names below it on the way down to entity_id, the entities on that way)
            stack = [(entity_id, "", frozenset({entity_id}))]
            while stack:
                entity, tail, chain = stack.pop()
                for parent_id, name in conn.execute(
                        "SELECT parent_id, name FROM edge WHERE entity_id = ? AND parent_id IS NOT NULL", (entity,)):
                    if parent_id == ROOT_ID:
                        found.append("/" + name + tail)
                    elif parent_id not in chain:  # a cycle: list() cuts it the same way
                        stack.append((parent_id, "/" + name + tail, chain | {parent_id}))
        return sorted(found, key=_path_order)

    def names_by_id(self) -> dict[str, list[str]]:
        """id -> all its paths (sorted as in ref_paths): the paths `list()` gives, for listings such as
        `ps` NAMES. From the copy kept in `<db>.names` (namescopy.py) while it follows from the logged
        changes; else one read of the edges (unordered: each id's paths are sorted here), then a walk
        that only descends into entities having links (a general walk of 2000 names was ps's main name
        cost), and the copy rewritten."""
        edges: dict[str, list[tuple[str, str]]] = {}
        with self._tx(write=False) as conn:
            kept, last = namescopy.read(self.path, conn, ROOT_ID, _path_order)
            if kept is not None:
                return kept
            for entity_id, parent_id, name in conn.execute(
                    "SELECT entity_id, parent_id, name FROM edge WHERE parent_id IS NOT NULL"):
                edges.setdefault(parent_id, []).append((name, entity_id))
        out: dict[str, list[str]] = {}
        stack = [(ROOT_ID, "", (ROOT_ID,))]  # (entity, its path, the entities on the way: cycles cut as in _walk)
        while stack:
            parent, prefix, chain = stack.pop()
            for name, child in edges.get(parent, ()):
                if child in chain:
                    continue
                path = f"{prefix}/{name}"
                out.setdefault(child, []).append(path)
                if child in edges:
                    stack.append((child, path, (*chain, child)))
        for paths in out.values():
            if len(paths) > 1:
                paths.sort(key=_path_order)
        namescopy.write(self.path, last, out)
        return out

    def entities(self) -> list[str]:
        """Ids of all entities (the root excluded); lets reconcile find purge leftovers."""
        with self._tx(write=False) as conn:
            rows = conn.execute("SELECT id FROM entity WHERE id != ? ORDER BY id", (ROOT_ID,)).fetchall()
        return [r[0] for r in rows]
