"""`image prune`: dangling images go with the untagged parents only they needed; with every_unused,
tagged ones too; an image a container uses, and every layer under it, stays."""

from __future__ import annotations

import io

from graph_helpers import assert_clean, layer


def test_prune_takes_dangling_chains_then_every_unused_image(store, layout, driver):
    base = store.import_(io.BytesIO(layer({"etc/base": "b"})), "base", "1")
    mid = store.create(io.BytesIO(layer({"mid": "m"})), parent=base.id)  # an untagged layer with a child
    top = store.create(io.BytesIO(layer({"top": "t"})), parent=mid.id, repo="app", tag="1")
    dangling = store.create(io.BytesIO(layer({"old": "o" * 100})), parent=base.id)
    kept = store.create(io.BytesIO(layer({"kept": "k"})), parent=base.id)

    def using(image_id: str) -> str | None:
        return "c" * 64 if image_id == kept.id else None

    lines, freed = store.prune(in_use=using)
    assert lines == [f"Deleted: {dangling.id}"] and freed == dangling.size > 0
    lines, _ = store.prune(every_unused=True, in_use=using)
    assert lines == ["Untagged: app:1", f"Deleted: {top.id}", f"Deleted: {mid.id}"]
    # base is tagged and the parent of an image in use: kept
    assert sorted(i.id for i in store.graph.list()) == sorted([base.id, kept.id])
    assert store.prune(every_unused=True, in_use=using) == ([], 0)
    lines, _ = store.prune(every_unused=True)
    assert lines == [f"Deleted: {kept.id}", "Untagged: base:1", f"Deleted: {base.id}"]
    assert_clean(layout, driver)
