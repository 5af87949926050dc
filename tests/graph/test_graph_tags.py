"""Tag store: Docker 0.7's `repositories-<driver>` file, reference parsing, force, concurrency."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from pydock.graph.tags import TagStore, parse_reference, split_reference
from pydock.utils.errors import Conflict, InvalidArgument

A, B = "a" * 64, "b" * 64


@pytest.mark.parametrize("ref, expected", [
    ("busybox", ("busybox", "latest")),
    ("busybox:1.35", ("busybox", "1.35")),
    ("my/app:v2", ("my/app", "v2")),
    ("localhost:5000/app", ("localhost:5000/app", "latest")),
    ("localhost:5000/app:dev", ("localhost:5000/app", "dev")),
    ("a.b-c_d/e", ("a.b-c_d/e", "latest")),
])
def test_graph_tags_parse_reference(ref, expected):
    assert parse_reference(ref) == expected


@pytest.mark.parametrize("ref", ["Busybox", "bad name", "x:bad/tag", "x:", "", "a" * 64, "x:" + "t" * 129,
                                 "repo:ta g", "../x"])
def test_graph_tags_parse_reference_rejects(ref):
    with pytest.raises(InvalidArgument):
        parse_reference(ref)


def test_graph_tags_split_keeps_registry_port():
    assert split_reference("host:5000/x") == ("host:5000/x", None)
    assert split_reference("host:5000/x:1") == ("host:5000/x", "1")


def test_graph_tags_set_get_force_delete(tmp_path: Path):
    path = tmp_path / "repositories-vfs"
    tags = TagStore(path)
    assert tags.get("app") is None
    tags.set("app", "latest", A)
    tags.set("app", "v1", A)
    tags.set("other", None, B)
    assert tags.get("app") == A and tags.get("app", "v1") == A and tags.get("other") == B
    assert json.loads(path.read_text()) == {"Repositories": {"app": {"latest": A, "v1": A},
                                                             "other": {"latest": B}}}
    assert path.stat().st_mode & 0o777 == 0o600
    tags.set("app", "latest", A)  # same target: no force needed
    with pytest.raises(Conflict, match="app:latest is already set"):
        tags.set("app", "latest", B)
    tags.set("app", "latest", B, force=True)
    assert tags.get("app") == B
    assert tags.names_for(A) == ["app:v1"]
    assert tags.by_image() == {A: ["app:v1"], B: ["app:latest", "other:latest"]}
    assert tags.image_name(B) == "app:latest" and tags.image_name("c" * 64) == "c" * 12
    assert tags.delete("app", "v1") is True
    assert tags.delete("app", "v1") is False
    assert tags.remove_image(B) == ["app:latest", "other:latest"]
    assert json.loads(path.read_text()) == {"Repositories": {}}
    with pytest.raises(InvalidArgument):
        tags.set("app", "latest", "../../etc")  # ids are path components (CVE-2014-9358)


def _tag_many(path: str, worker: int) -> None:
    store = TagStore(Path(path))
    for i in range(20):
        store.set(f"w{worker}", f"t{i}", A)


def test_graph_tags_concurrent_processes_lose_nothing(tmp_path: Path):
    path = tmp_path / "repositories-vfs"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_tag_many, args=(str(path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    repos = TagStore(path).repositories()
    assert sorted(repos) == ["w0", "w1", "w2", "w3"]
    assert all(len(tags) == 20 for tags in repos.values())
