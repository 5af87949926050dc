"""GraphDB: the SQLite name/link registry, used for real (no mocks), including several processes at once."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from pydock.links.graphdb import GraphDB, normalize_path
from pydock.utils.errors import Conflict, InvalidArgument, NotFound

A = "a" * 64
B = "b" * 64
C = "c" * 64


@pytest.fixture
def db(tmp_path: Path):
    g = GraphDB(tmp_path / "linkgraph.db")
    yield g
    g.close()


def test_root_exists_and_schema_matches_docker(db: GraphDB, tmp_path: Path) -> None:
    assert db.get("/") == "0"
    assert db.exists("/")
    assert db.list() == {}
    conn = sqlite3.connect(tmp_path / "linkgraph.db")
    assert conn.execute("SELECT entity_id, parent_id, name FROM edge").fetchall() == [("0", None, "/")]
    assert conn.execute("SELECT id FROM entity").fetchall() == [("0",)]
    idx = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'name_parent_ix'").fetchone()[0]
    assert "UNIQUE" in idx and "parent_id" in idx
    conn.close()


def test_reopen_keeps_a_single_root(tmp_path: Path) -> None:
    for _ in range(3):
        g = GraphDB(tmp_path / "db")
        g.set("/x", A)
        g.delete("/x")
        g.close()
    conn = sqlite3.connect(tmp_path / "db")
    assert conn.execute("SELECT count(*) FROM edge WHERE name = '/'").fetchone() == (1,)
    conn.close()


def test_set_get_and_paths_normalised(db: GraphDB) -> None:
    db.set("/web", A)
    db.set("db", B)
    db.set("/web/db", B)
    assert db.get("/web") == A
    assert db.get("web") == A
    assert db.get("/web/db/") == B
    assert db.get("/db") == B
    assert db.get("/nope") is None
    assert db.get("/web/nope") is None
    assert not db.exists("/nope/db")
    assert db.list() == {"/web": A, "/db": B, "/web/db": B}


def test_conflict_names_the_holder(db: GraphDB) -> None:
    db.set("/x", A)
    with pytest.raises(Conflict) as err:
        db.set("/x", B)
    assert str(err.value) == (
        "Conflict, The name /x is already assigned to aaaaaaaaaaaa. You have to delete (or rename) "
        "that container to be able to assign /x to a container again.")
    assert db.get("/x") == A
    with pytest.raises(Conflict):
        db.set("/x", A)  # the same id again is still a taken name


def test_set_errors(db: GraphDB) -> None:
    db.set("/web", A)
    with pytest.raises(Conflict, match="Cannot set self as child"):
        db.set("/web/me", A)
    with pytest.raises(NotFound, match="Parent does not exist"):
        db.set("/ghost/db", B)
    with pytest.raises(Conflict):
        db.set("/", B)
    with pytest.raises(InvalidArgument):
        db.set("/a/../b", B)
    with pytest.raises(InvalidArgument):
        db.set("", B)
    assert db.list() == {"/web": A}


def test_delete_removes_one_edge_only(db: GraphDB) -> None:
    db.set("/web", A)
    db.set("/db", B)
    db.set("/web/db", B)
    db.delete("/web/db")
    assert db.list() == {"/web": A, "/db": B}
    with pytest.raises(NotFound, match="No such name: /web/db"):
        db.delete("/web/db")
    with pytest.raises(NotFound):
        db.delete("/nope/x")
    with pytest.raises(Conflict):
        db.delete("/")
    assert db.get("/") == "0"


def test_purge_removes_every_name_and_the_entity(db: GraphDB, tmp_path: Path) -> None:
    db.set("/web", A)
    db.set("/db", B)
    db.set("/web/db", B)
    db.set("/db2", B)
    db.set("/cache", C)
    db.set("/web/cache", C)
    assert db.purge(B) == 3
    assert db.list() == {"/web": A, "/cache": C, "/web/cache": C}
    assert db.purge(A) == 1  # its own links vanish with it
    assert db.list() == {"/cache": C}
    assert db.entities() == [C]
    assert db.purge(A) == 0
    conn = sqlite3.connect(tmp_path / "linkgraph.db")
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


def test_rename_within_parent_only(db: GraphDB) -> None:
    db.set("/web", A)
    db.set("/db", B)
    db.set("/web/db", B)
    db.rename("/web/db", "/web/database")
    assert db.get("/web/database") == B and db.get("/web/db") is None
    db.rename("/db", "/primary")
    assert db.get("/primary") == B
    with pytest.raises(InvalidArgument, match="parent"):
        db.rename("/web/database", "/other")
    with pytest.raises(Conflict, match="already assigned to aaaaaaaaaaaa"):
        db.rename("/primary", "/web")
    with pytest.raises(NotFound):
        db.rename("/nope", "/nope2")
    assert db.list() == {"/web": A, "/primary": B, "/web/database": B}


def test_children_depth_and_ref_paths(db: GraphDB) -> None:
    db.set("/web", A)
    db.set("/db", B)
    db.set("/cache", C)
    db.set("/web/db", B)
    db.set("/db/cache", C)
    assert db.children("/web") == [("/web/db", B)]
    assert db.children("/web", depth=1) == [("/web/db", B), ("/web/db/cache", C)]
    assert db.children("/web", depth=-1) == [("/web/db", B), ("/web/db/cache", C)]
    assert db.children("/cache") == []
    assert sorted(db.children("/")) == sorted([("/web", A), ("/db", B), ("/cache", C)])
    with pytest.raises(NotFound):
        db.children("/nope")
    assert db.ref_paths(C) == ["/cache", "/db/cache", "/web/db/cache"]
    assert db.ref_paths(B) == ["/db", "/web/db"]
    assert db.ref_paths("f" * 64) == []
    assert db.names_by_id()[B] == ["/db", "/web/db"]


def test_cycles_do_not_loop(db: GraphDB) -> None:
    db.set("/a", A)
    db.set("/b", B)
    db.set("/a/b", B)
    db.set("/b/a", A)
    assert db.list() == {"/a": A, "/b": B, "/a/b": B, "/b/a": A}
    assert db.children("/a", depth=-1) == [("/a/b", B)]
    assert db.names_by_id() == {A: ["/a", "/b/a"], B: ["/b", "/a/b"]}


def test_names_by_id_groups_the_paths_list_gives(db: GraphDB) -> None:
    ids = [f"{i:x}" * 64 for i in range(1, 7)]
    for i, e in enumerate(ids):
        db.set(f"/n{i}", e)
    for parent, alias, child in ((0, "db", 1), (1, "cache", 2), (2, "up", 0), (3, "db", 1), (3, "x", 3 + 1), (4, "z", 5)):
        db.set(f"/n{parent}/{alias}", ids[child])  # chains three deep, a cycle back to n0, shared children
    grouped: dict[str, list[str]] = {}
    for path, e in db.list().items():
        grouped.setdefault(e, []).append(path)
    assert db.names_by_id() == {e: sorted(p, key=lambda x: (x.count("/"), x)) for e, p in grouped.items()}
    assert db.names_by_id()[ids[2]] == ["/n2", "/n1/cache", "/n0/db/cache", "/n3/db/cache"]


def test_ref_paths_are_the_paths_list_gives_each_entity(db: GraphDB) -> None:
    """ref_paths walks up from the entity; it must name exactly what the whole-graph walk names, cycles included."""
    ids = [f"{i:064x}" for i in range(1, 7)]
    for i, eid in enumerate(ids):
        db.set(f"/n{i}", eid)
    for parent, alias, child in ((0, "a", 1), (1, "b", 2), (2, "c", 0), (3, "d", 2), (0, "e", 2), (4, "f", 4 - 1)):
        db.set(f"/n{parent}/{alias}", ids[child])
    listing = db.list()
    for eid in ids:
        expected = sorted((p for p, i in listing.items() if i == eid), key=lambda p: (p.count("/"), p))
        assert db.ref_paths(eid) == expected
    assert db.ref_paths("0") == []


def test_a_long_chain_of_links_is_walked_without_recursion(db: GraphDB) -> None:
    ids = [f"{i:064x}" for i in range(1, 1502)]
    for i, eid in enumerate(ids):
        db.set(f"/c{i}", eid)
        if i:
            db.set(f"/c{i}/prev", ids[i - 1])
    assert db.ref_paths(ids[0])[:2] == ["/c0", "/c1/prev"]
    assert len(db.ref_paths(ids[0])) == 1501
    assert len(db.children("/c1500", depth=-1)) == 1500


def test_normalize_path() -> None:
    assert normalize_path("web//db/") == "/web/db"
    assert normalize_path("/") == "/"
    with pytest.raises(InvalidArgument):
        normalize_path("/x/./y")


def test_connection_is_lazy_and_cloexec(tmp_path: Path) -> None:
    g = GraphDB(tmp_path / "lazy.db")
    assert not (tmp_path / "lazy.db").exists()
    g.set("/x", A)
    assert (tmp_path / "lazy.db").stat().st_mode & 0o777 == 0o600
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(tmp_path / "lazy.db")):
            flags = int(Path(f"/proc/self/fdinfo/{fd}").read_text().split("flags:")[1].split()[0], 8)
            assert flags & 0o2000000, f"{target} inherited across exec"
    g.close()
    assert g.get("/x") == A  # reopens after close
    g.close()


def _writer(path: str, worker: int, n: int) -> None:
    g = GraphDB(path)
    for i in range(n):
        eid = f"{worker:02d}{i:062d}"
        g.set(f"/w{worker}-{i}", eid)
        try:
            g.set("/contended", eid)
        except Conflict:
            pass
        if i % 3 == 0:
            g.set(f"/w{worker}-{i}/self-link", f"{(worker + 1) % 4:02d}{0:062d}")
    g.close()


def test_four_processes_share_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "linkgraph.db")
    GraphDB(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    g = GraphDB(path)
    names = g.list()
    assert sum(1 for k in names if k.count("/") == 1 and k.startswith("/w")) == 100
    assert "/contended" in names  # exactly one writer won
    assert sum(1 for k in names if k.count("/") == 2 and k.startswith("/w") and k.endswith("/self-link")) == 4 * 9
    g.close()


def _crash_mid_set(path: str) -> None:
    g = GraphDB(path)

    def die(*args: object) -> None:
        os._exit(7)  # the entity row is written, the edge is not: the transaction is open

    g._insert_edge = die  # type: ignore[method-assign]
    g.set("/victim", B)


def test_crash_mid_transaction_leaves_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "linkgraph.db")
    g = GraphDB(path)
    g.set("/ok", A)
    proc = multiprocessing.get_context("fork").Process(target=_crash_mid_set, args=(path,))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 7
    assert g.list() == {"/ok": A}
    assert g.entities() == [A]  # no orphan entity row for B
    g.set("/victim", B)  # the write lock was released by the dead process
    assert g.get("/victim") == B
    g.close()


def _use_after_fork(g: GraphDB) -> None:
    g.set("/from-child", B)  # must open its own connection, not reuse the parent's
    g.close()
    os._exit(0)


def test_forked_child_gets_its_own_connection(tmp_path: Path) -> None:
    g = GraphDB(tmp_path / "linkgraph.db")
    g.set("/parent", A)
    pid = os.fork()
    if pid == 0:
        try:
            _use_after_fork(g)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert g.list() == {"/parent": A, "/from-child": B}
    for suffix in ("", "-wal", "-shm"):
        f = tmp_path / f"linkgraph.db{suffix}"
        if f.exists():
            assert f.stat().st_mode & 0o777 == 0o600, f
    g.close()


def _lookup_in_child(path: str, queue) -> None:  # a new process: a new GraphDB and connection
    g = GraphDB(Path(path))
    queue.put(g.get("/web"))
    g.close()


def test_a_reader_opens_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    """Once made, the schema is not rewritten by every process that opens the file: a `ps` or `inspect`
    answers while another command is in the middle of a write instead of queueing behind it."""
    path = tmp_path / "linkgraph.db"
    g = GraphDB(path)
    g.set("/web", A)
    g.close()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO entity (id) VALUES (?)", (B,))
    try:
        queue = multiprocessing.get_context("fork").Queue()
        child = multiprocessing.get_context("fork").Process(target=_lookup_in_child, args=(str(path), queue))
        child.start()
        child.join(10)  # blocked behind the writer, it would wait out the 30 s busy timeout
        alive = child.is_alive()
        if alive:
            child.kill()
            child.join()
        assert not alive and queue.get(timeout=1) == A
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_names_by_id_copy_follows_every_change_to_the_edges(db: GraphDB, tmp_path: Path) -> None:
    db.set("/a", A)
    db.set("/b", B)
    assert db.names_by_id() == {A: ["/a"], B: ["/b"]}
    assert (tmp_path / "linkgraph.db.names").exists()  # kept for the next listing
    assert db.names_by_id() == {A: ["/a"], B: ["/b"]}  # from the copy
    db.set("/b/x", A)
    assert db.names_by_id() == {A: ["/a", "/b/x"], B: ["/b"]}
    db.rename("/b", "/c")
    assert db.names_by_id() == {A: ["/a", "/c/x"], B: ["/c"]}
    db.delete("/c/x")
    assert db.names_by_id() == {A: ["/a"], B: ["/c"]}
    # another program, not knowing of the copy, changing the file: the copy is not believed either
    conn = sqlite3.connect(tmp_path / "linkgraph.db")
    with conn:
        conn.execute("UPDATE edge SET name = 'z' WHERE name = 'a'")
    conn.close()
    assert db.names_by_id() == {A: ["/z"], B: ["/c"]}


def test_a_names_copy_of_another_version_or_damaged_is_not_believed(db: GraphDB, tmp_path: Path) -> None:
    db.set("/a", A)
    db.names_by_id()
    copy = tmp_path / "linkgraph.db.names"
    good = copy.read_bytes()
    db.set("/b", B)
    copy.write_bytes(good)  # written late by a listing that began before /b was set
    assert db.names_by_id() == {A: ["/a"], B: ["/b"]}
    for damaged in (good[: len(good) // 2], good[:-1] + bytes([good[-1] ^ 1]), b"", os.urandom(64)):
        copy.write_bytes(damaged)
        assert db.names_by_id() == {A: ["/a"], B: ["/b"]}


@pytest.mark.parametrize("user_version", [0, 1])  # before schema versions; the version before the edge log
def test_a_database_made_before_the_copy_gains_its_version(tmp_path: Path, user_version: int) -> None:
    path = tmp_path / "linkgraph.db"
    g = GraphDB(path)
    g.set("/a", A)
    g.close()
    conn = sqlite3.connect(path)  # as an older pydock left it: no version table or triggers
    with conn:
        for name, kind in conn.execute("SELECT name, type FROM sqlite_master WHERE name LIKE 'edge_log%'").fetchall():
            conn.execute(f"DROP {kind} {name}")
        conn.execute(f"PRAGMA user_version = {user_version}")
    conn.close()
    g = GraphDB(path)
    assert g.names_by_id() == {A: ["/a"]}
    g.set("/b", B)
    assert g.names_by_id() == {A: ["/a"], B: ["/b"]}
    g.close()


def test_names_copy_is_patched_with_primary_names_and_walked_again_otherwise(db: GraphDB, tmp_path: Path) -> None:
    db.set("/a", A)
    db.set("/a/x", B)
    db.names_by_id()
    copy = tmp_path / "linkgraph.db.names"
    written = copy.stat().st_mtime_ns
    db.set("/c", C)  # a container created: its primary name alone
    db.set("/b", B)
    db.delete("/c")  # and removed
    assert db.names_by_id() == {A: ["/a"], B: ["/b", "/a/x"]}
    assert copy.stat().st_mtime_ns == written  # patched from the log, not walked again
    db.set("/c", C)
    db.set("/c/y", A)  # a link: paths below C change
    assert db.names_by_id() == {A: ["/a", "/c/y"], B: ["/b", "/a/x", "/c/y/x"], C: ["/c"]}
    db.delete("/a")  # a primary name with links below it: their paths go too
    assert db.names_by_id() == {A: ["/c/y"], B: ["/b", "/c/y/x"], C: ["/c"]}


def test_a_names_copy_older_than_the_log_is_walked_again(db: GraphDB) -> None:
    from pydock.links.namescopy import LOG_KEPT

    db.set("/a", A)
    db.names_by_id()
    for i in range(LOG_KEPT // 2 + 1):  # two changes each
        db.set(f"/t{i}", B)
        db.delete(f"/t{i}")
    db.set("/b", B)
    assert db.names_by_id() == {A: ["/a"], B: ["/b"]}
