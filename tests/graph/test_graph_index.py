"""The graph index (Graph.rows, utils/statindex.py): `images` lists from it, and never shows an image
other than its files hold — whatever changed them (deleted, re-registered, its layersize replaced or
edited in place), and whatever happened to the index (damaged, written late by an older listing).

Files changed within the last second are never cached (racy-git rule), so each test first lets its
images age past that: only then does a listing answer from the index, and a stale entry could show."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

import pytest

from pydock.graph.graph import GraphIndex
from pydock.graph.image import ImageRow

AGE = 1.1  # past statindex.RACY_NS


def _cached(graph) -> set[str]:
    return GraphIndex(graph.layout).cached()


def _rows(graph) -> dict[str, ImageRow]:
    return {r.id: r for r in graph.rows()}


def _cached_rows(graph, *images) -> dict[str, ImageRow]:
    time.sleep(AGE)
    rows = _rows(graph)
    assert {i.id for i in images} <= _cached(graph)
    return rows


def test_rows_from_the_index_are_the_images_as_loaded(graph):
    base = graph.register(None, comment="base", created=datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc))
    child = graph.register(None, parent=base.id, comment="child")
    _cached_rows(graph, base, child)
    rows = _rows(graph)  # from the entries
    assert list(rows.values()) == [ImageRow.of(i) for i in graph.list()]
    assert rows[base.id].created == base.created and rows[child.id].parent == base.id


def test_a_deleted_image_is_gone_and_a_registered_one_shown(graph):
    keep = graph.register(None, comment="keep")
    gone = graph.register(None, comment="gone")
    _cached_rows(graph, keep, gone)
    graph.delete(gone.id)
    new = graph.register(None, comment="new")
    assert set(_rows(graph)) == {keep.id, new.id}
    assert gone.id not in _cached(graph)


@pytest.mark.parametrize("how", ["replaced", "in place"])
def test_a_changed_layersize_shows(graph, how):
    img = graph.register(None, comment="sized")
    assert _cached_rows(graph, img)[img.id].size == 0
    path = graph.root / img.id / "layersize"
    if how == "replaced":
        tmp = path.with_name("layersize.new")
        tmp.write_text("7")
        os.replace(tmp, path)
    else:
        with open(path, "r+") as f:  # same inode, same size: only the times tell
            f.write("9")
    assert _rows(graph)[img.id].size == (7 if how == "replaced" else 9)


def test_an_index_from_before_a_delete_shows_no_deleted_image(graph):
    keep = graph.register(None, comment="keep")
    gone = graph.register(None, comment="gone")
    _cached_rows(graph, keep, gone)
    old = graph.layout.graph_index.read_bytes()
    graph.delete(gone.id)
    _rows(graph)
    graph.layout.graph_index.write_bytes(old)  # written late by a listing that began before the delete
    assert gone.id in _cached(graph)
    assert set(_rows(graph)) == {keep.id}


@pytest.mark.parametrize("damage", ["garbage", "torn", "empty"])
def test_a_damaged_index_is_rebuilt(graph, damage):
    img = graph.register(None, comment="damaged")
    _cached_rows(graph, img)
    path = graph.layout.graph_index
    blob = path.read_bytes()
    path.write_bytes({"garbage": os.urandom(len(blob)), "torn": blob[: len(blob) // 2], "empty": b""}[damage])
    assert list(_rows(graph).values()) == [ImageRow.of(i) for i in graph.list()]
    assert img.id in _cached(graph)


def test_an_image_without_a_creation_time_is_never_cached(graph):
    img = graph.register(None, comment="undated")
    path = graph.root / img.id / "json"
    raw = path.read_bytes().replace(b'"created"', b'"made"')
    tmp = path.with_name("json.new")
    tmp.write_bytes(raw)
    os.replace(tmp, path)
    time.sleep(AGE)
    first = _rows(graph)[img.id].created  # "now", as Image.from_json makes it
    assert img.id not in _cached(graph)
    assert _rows(graph)[img.id].created > first
