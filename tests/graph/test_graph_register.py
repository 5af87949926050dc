"""Registering, looking up, stacking and deleting images on real storage drivers."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from graph_helpers import ALL_DRIVERS, DIR, Link, assert_clean, layer, snapshot

from pydock.graph.graph import MAX_IMAGE_DEPTH
from pydock.utils.errors import ArchiveError, Conflict, InvalidArgument, NotFound, UnsafeArchive

BASE = {"etc": DIR, "etc/hostname": "base\n", "bin": DIR, "bin/tool": b"\x7fELF" + b"x" * 996,
        "bin/alias": Link("tool"), "data": DIR, "data/big": b"0" * 5000}


@pytest.mark.parametrize("driver_name", ALL_DRIVERS)
def test_graph_import_round_trip(store, layout, driver, driver_name):
    image = store.import_(io.BytesIO(layer(BASE)), "base", "v1", source="base.tar")
    assert image.parent is None and image.comment == "Imported from base.tar"
    assert image.size == 5000 + 1000 + len("base\n") + len("tool")  # files + symlink target length
    # metadata on disk, 0600, Docker's json keys, layersize alongside
    d = layout.graph / image.id
    assert sorted(os.listdir(d)) == ["json", "layer.json", "layersize", "tar-split.gz"]
    for f in ("json", "layersize"):
        assert (d / f).stat().st_mode & 0o777 == 0o600
    data = json.loads((d / "json").read_text())
    assert data["id"] == image.id and "parent" not in data and data["architecture"] == "x86_64"
    assert (d / "layersize").read_text() == str(image.size)
    # lookups: tag, full id, prefix
    assert store.resolve("base:v1") == image
    assert store.graph.get(image.id) == image
    assert store.graph.get(image.id[:6]) == image
    assert store.graph.list() == [image]
    assert store.graph.exists(image.id)
    # content
    assert not driver.deviceset.has_activated_device(image.id)  # registered, put, deactivated
    with driver.mounted(image.id, readonly=True) as rootfs:
        assert snapshot(rootfs) == snapshot_of(BASE)
        with pytest.raises(OSError):
            (rootfs / "etc/new").write_text("read-only")
    assert not driver.deviceset.has_activated_device(image.id)
    # a child layer: size counts only what it changed
    child = store.graph.register(io.BytesIO(layer({"etc": DIR, "etc/hostname": "child-name\n",
                                                   "new": "x" * 300}, whiteouts=("data/big",))),
                                 parent=image.id, comment="child")
    assert child.parent == image.id
    assert child.size == len("child-name\n") + 300
    assert store.graph.virtual_size(child) == image.size + child.size
    assert store.graph.history(child) == [child, image]
    assert store.graph.depth(child) == 2
    expected = snapshot_of(BASE)
    expected.update({"etc/hostname": b"child-name\n", "new": b"x" * 300})
    del expected["data/big"]
    with driver.mounted(store.graph.get(child.id[:10]).id, readonly=True) as rootfs:
        assert snapshot(rootfs) == expected
    assert store.remove(child.id) == [f"Deleted: {child.id}"]
    assert store.remove("base:v1") == ["Untagged: base:v1", f"Deleted: {image.id}"]
    assert_clean(layout, driver)
    assert driver.deviceset.list() == []


def snapshot_of(spec: dict[str, object]) -> dict[str, object]:
    return {k: (v.encode() if isinstance(v, str) and not isinstance(v, Link) else v) for k, v in spec.items()}


def test_graph_chain_of_twenty_layers_with_whiteouts(store, layout, driver):
    """Each layer adds, modifies and whites out files and directories; the top rootfs matches a model."""
    model: dict[str, object] = {}
    parent = None
    for i in range(20):
        spec: dict[str, object] = {f"f{i}": f"file {i}\n", "common": f"version {i}\n",
                                   f"d{i}": DIR, f"d{i}/inner": f"in {i}\n", f"d{i}/sub": DIR,
                                   f"d{i}/sub/deep": f"deep {i}\n"}
        whiteouts = []
        if i >= 1:
            spec[f"d{i - 1}"] = DIR
            spec[f"d{i - 1}/added-later"] = f"by {i}\n"  # write into an existing dir
        if i >= 2:
            whiteouts.append(f"f{i - 2}")  # a file from two layers down
        if i >= 3:
            whiteouts.append(f"d{i - 3}")  # a whole directory tree from three layers down
        if i >= 5 and i % 5 == 0:
            spec[f"d{i - 5}"] = "now a file\n"  # a dir whited out two layers ago comes back as a file
        for w in whiteouts:
            for key in [k for k in model if k == w or k.startswith(w + "/")]:
                del model[key]
        for key in [k for k, v in spec.items() if v is not DIR]:
            for old in [k for k in model if k.startswith(key + "/")]:
                del model[old]
        model.update(snapshot_of(spec))
        image = store.graph.register(io.BytesIO(layer(spec, tuple(whiteouts))), parent=parent,
                                     comment=f"layer {i}")
        parent = image.id
    top = store.graph.get(parent)
    assert store.graph.depth(top) == 20
    assert [img.comment for img in store.graph.history(top)] == [f"layer {i}" for i in reversed(range(20))]
    with store.driver.mounted(top.id, readonly=True) as rootfs:
        assert snapshot(rootfs) == model
    assert not any(".wh." in p for p in model)
    # only the top is a head; every other image has exactly one child
    assert len(store.graph.list()) == 20
    assert store.graph.children(store.graph.history(top)[1].id) == [top]
    assert_clean(layout, driver, expected_images=20)


@pytest.mark.parametrize("compress", [
    pytest.param(lambda b: b, id="plain"),
    pytest.param(gzip.compress, id="gzip"),
    pytest.param(bz2.compress, id="bzip2"),
    pytest.param(lzma.compress, id="xz"),
])
def test_graph_import_compressed(store, compress):
    image = store.import_(io.BytesIO(compress(layer(BASE))), "comp")
    with store.driver.mounted(image.id, readonly=True) as rootfs:
        assert snapshot(rootfs) == snapshot_of(BASE)
    assert store.tags.get("comp") == image.id


@pytest.mark.parametrize("payload", [
    pytest.param(lambda: layer(BASE)[:2000], id="truncated-tar"),
    pytest.param(lambda: layer(BASE)[:700], id="truncated-header"),
    pytest.param(lambda: gzip.compress(layer({"r": os.urandom(20000)}))[:5000], id="truncated-gzip"),
    pytest.param(lambda: b"this is not a tarball at all, just some words\n" * 20, id="text"),
    pytest.param(lambda: b"", id="empty"),
    pytest.param(lambda: b"\x1f\x8b\x08" + b"garbage" * 50, id="bad-gzip"),
])
@pytest.mark.parametrize("driver_name", ALL_DRIVERS)
def test_graph_bad_input_leaves_nothing(store, layout, driver, payload):
    with pytest.raises(ArchiveError):
        store.import_(io.BytesIO(payload()), "broken")
    assert_clean(layout, driver)
    assert store.tags.repositories() == {}


def test_graph_unsafe_layer_is_refused_and_nothing_registered(store, layout, driver):
    import uuid

    marker = f"pydock-pwned-{uuid.uuid4().hex}"
    base = store.import_(io.BytesIO(layer(BASE)))
    for name in (f"../../../../../../../../../../tmp/{marker}", f"/../tmp/{marker}", f"a/../../tmp/{marker}"):
        with pytest.raises(UnsafeArchive):
            store.graph.register(io.BytesIO(layer({name: "pwned"})), parent=base.id)
        assert_clean(layout, driver, expected_images=1)
        assert not Path("/tmp", marker).exists()


def test_graph_symlink_escape_stays_inside_the_image(store, layout, driver):
    """A layer planting `up -> ../../..` then writing `up/x` either is refused or writes inside its own root."""
    import uuid

    marker = f"pydock-pwned-{uuid.uuid4().hex}"
    base = store.import_(io.BytesIO(layer(BASE)))
    payloads = [layer({"up": Link("../../../../../../../../../../tmp"), f"up/{marker}": "pwned"}),
                layer({"abs": Link("/tmp"), f"abs/{marker}": "pwned"})]
    for payload in payloads:
        try:
            image = store.graph.register(io.BytesIO(payload), parent=base.id)
        except UnsafeArchive:
            assert_clean(layout, driver, expected_images=1)
        else:
            with store.driver.mounted(image.id, readonly=True) as rootfs:
                assert (rootfs / "tmp" / marker).read_text() == "pwned"
            store.graph.delete(image.id)
        assert not Path("/tmp", marker).exists()
    # the two-layer form: plant the link in one image, write through it in the child
    planted = store.graph.register(io.BytesIO(layer({"up": Link("../../../../../../../../tmp")})), parent=base.id)
    try:
        child = store.graph.register(io.BytesIO(layer({f"up/{marker}": "pwned"})), parent=planted.id)
    except UnsafeArchive:
        assert_clean(layout, driver, expected_images=2)
    else:
        with store.driver.mounted(child.id, readonly=True) as rootfs:
            assert (rootfs / "tmp" / marker).read_text() == "pwned"
    assert not Path("/tmp", marker).exists()


def test_graph_ids_are_validated(store, layout, driver):
    for bad in ("../../etc", "A" * 64, "a" * 63, "a" * 64 + "/x", ""):
        with pytest.raises(InvalidArgument):
            store.graph.register(io.BytesIO(layer(BASE)), image_id=bad)
    with pytest.raises(InvalidArgument):
        store.graph.register(io.BytesIO(layer(BASE)), parent="../" + "a" * 61)
    with pytest.raises(NotFound):
        store.graph.register(io.BytesIO(layer(BASE)), parent="f" * 64)
    image = store.graph.register(io.BytesIO(layer(BASE)), image_id="ab" * 32)
    with pytest.raises(Conflict, match="already exists"):
        store.graph.register(io.BytesIO(layer(BASE)), image_id=image.id)
    assert_clean(layout, driver, expected_images=1)


def test_graph_prefix_lookup(store):
    a = store.graph.register(io.BytesIO(layer({"a": "1"})), image_id="abc1" + "0" * 60)
    b = store.graph.register(io.BytesIO(layer({"b": "2"})), image_id="abc2" + "0" * 60)
    with pytest.raises(NotFound, match="ambiguous"):
        store.graph.get("abc")
    with pytest.raises(NotFound, match="ambiguous"):
        store.resolve("abc")
    assert store.graph.get("abc1") == a and store.resolve("abc2") == b
    with pytest.raises(NotFound, match="No such image"):
        store.graph.get("ffff")
    with pytest.raises(NotFound, match="Unable to find image 'ffff'"):
        store.resolve("ffff")
    with pytest.raises(NotFound, match="Unable to find image 'nosuch:tag'"):
        store.resolve("nosuch:tag")


def test_graph_delete(store, layout, driver):
    base = store.import_(io.BytesIO(layer(BASE)), "base")
    child = store.graph.register(io.BytesIO(layer({"c": "c"})), parent=base.id)
    with pytest.raises(Conflict, match="child image"):
        store.graph.delete(base.id)
    with pytest.raises(Conflict, match=f"container {'c' * 12} is using it"):
        store.graph.delete(child.id, in_use=lambda image_id: "c" * 64 if image_id == child.id else None)
    assert driver.exists(child.id)
    store.graph.delete(child.id)
    assert not driver.exists(child.id) and not store.graph.exists(child.id)
    with pytest.raises(NotFound):
        store.graph.get(child.id)
    store.graph.delete(base.id)
    assert_clean(layout, driver)


def test_graph_rmi_semantics(store, layout, driver):
    base = store.import_(io.BytesIO(layer(BASE)), "base")
    mid = store.graph.register(io.BytesIO(layer({"m": "m"})), parent=base.id)
    top = store.graph.register(io.BytesIO(layer({"t": "t"})), parent=mid.id)
    store.tag(top.id, "app", "v1")
    store.tag("app:v1", "app", "latest")
    store.tag("app:v1", "other")
    # by id while tagged in two repositories
    with pytest.raises(Conflict, match="multiple repositories"):
        store.remove(top.id[:8])
    # a name is only untagged while other names remain
    assert store.remove("app:v1") == ["Untagged: app:v1"]
    assert store.remove("other") == ["Untagged: other:latest"]
    # in use blocks deleting the last name
    with pytest.raises(Conflict, match="is using it"):
        store.remove("app", in_use=lambda image_id: "d" * 64)
    assert store.tags.get("app") == top.id
    # a parent with a child is only untagged; deleting the top prunes the untagged chain below it
    assert store.remove("base") == ["Untagged: base:latest"]
    assert base.id in {i.id for i in store.graph.list()}
    assert store.remove("app") == ["Untagged: app:latest", f"Deleted: {top.id}", f"Deleted: {mid.id}",
                                   f"Deleted: {base.id}"]
    assert_clean(layout, driver)
    with pytest.raises(NotFound):
        store.remove("app")


def test_graph_rmi_by_id_with_children_conflicts(store):
    base = store.import_(io.BytesIO(layer(BASE)))
    store.graph.register(io.BytesIO(layer({"c": "c"})), parent=base.id)
    with pytest.raises(Conflict, match="child images"):
        store.remove(base.id)


def test_graph_tags_through_store(store):
    a = store.import_(io.BytesIO(layer({"a": "1"})), "app", "1.0")
    b = store.import_(io.BytesIO(layer({"b": "2"})))
    with pytest.raises(Conflict, match="already set"):
        store.tag(b.id, "app", "1.0")
    store.tag(b.id, "app", "1.0", force=True)
    assert store.resolve("app:1.0") == b
    assert store.untag("app", "1.0") is True
    assert store.tags.names_for(a.id) == []
    with pytest.raises(NotFound):
        store.tag("nosuch", "x")
    with pytest.raises(InvalidArgument):
        store.tag(a.id, "Bad Name")


def test_graph_depth_limit(store):
    img = None
    for i in range(3):
        img = store.graph.register(io.BytesIO(layer({f"f{i}": "x"})), parent=img.id if img else None)
    store.graph.check_depth(img, extra_layers=MAX_IMAGE_DEPTH - 4)
    with pytest.raises(Conflict, match=f"Cannot create container with more than {MAX_IMAGE_DEPTH} parents"):
        store.graph.check_depth(img, extra_layers=MAX_IMAGE_DEPTH - 3)


_CRASH_SCRIPT = r"""
import os, sys, time
from pathlib import Path
sys.path[:0] = [{here!r}]
from graph_helpers import open_driver
from pydock.graph.graph import Graph
from pydock.utils.paths import RootLayout

class Stalls:
    # hands out `data`, then blocks forever: a register that is killed half-way
    def __init__(self, data): self.data = data
    def read(self, n=-1):
        if self.data:
            n = len(self.data) if n is None or n < 0 else n
            out, self.data = self.data[:n], self.data[n:]
            return out
        print("stalled", flush=True)
        time.sleep(60)
        return b""
    def readinto(self, buf):
        out = self.read(len(buf))
        buf[:len(out)] = out
        return len(out)
    def readable(self): return True

layout = RootLayout(Path({root!r}))
graph = Graph(layout, open_driver({driver!r}, layout, {prefix!r}))
graph.register(Stalls({payload!r}), image_id={image_id!r})
"""


@pytest.mark.parametrize("driver_name", ALL_DRIVERS)
def test_graph_crash_mid_register_is_cleaned_at_next_open(layout, driver, driver_name, unique_prefix):
    """A process killed while applying a layer leaves a scratch dir; the next Graph open removes it and the device."""
    from pydock.graph.graph import Graph

    image_id = "cc" * 32
    payload = layer({"x": "y" * 20000})[:10240]  # a valid start, then the stream stalls
    script = _CRASH_SCRIPT.format(here=str(Path(__file__).parent), root=str(layout.root), driver=driver_name,
                                  payload=payload, image_id=image_id, prefix=unique_prefix)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "stalled"
        scratch = [n for n in os.listdir(layout.graph_tmp) if not n.startswith(".") and not n.endswith(".lock")]
        assert len(scratch) == 1
        Graph(layout, driver)  # the owner is alive: its work must not be touched
        assert os.path.isdir(layout.graph_tmp / scratch[0])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(0.05)
    graph = Graph(layout, driver)
    assert not driver.exists(image_id)
    assert graph.list() == []
    assert_clean(layout, driver)


def test_graph_delete_of_an_image_mounted_elsewhere_keeps_it_whole(store, layout, driver):
    """A device mounted outside the driver (by hand, or by an older pydock) can't be removed: the image stays."""
    image = store.import_(io.BytesIO(layer(BASE)), "base")
    elsewhere = layout.root / "by-hand"
    elsewhere.mkdir()
    driver.deviceset.mount_device(image.id, elsewhere, readonly=True)
    try:
        with pytest.raises(Conflict):
            store.graph.delete(image.id)
        assert (elsewhere / "etc/hostname").read_text() == "base\n"
    finally:
        driver.deviceset.unmount_device(image.id, elsewhere)
    elsewhere.rmdir()
    assert store.graph.get(image.id) == image  # metadata put back: not orphaned, still usable
    assert store.resolve("base") == image
    assert_clean(layout, driver, expected_images=1)
    store.graph.delete(image.id)
    assert_clean(layout, driver)


_HOLD_SCRIPT = r"""
import sys, time
from pathlib import Path
sys.path[:0] = [{here!r}]
from graph_helpers import open_driver
from pydock.utils.paths import RootLayout

driver = open_driver({driver!r}, RootLayout(Path({root!r})), {prefix!r})
driver.get({image_id!r}, readonly=True)
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("driver_name", ALL_DRIVERS)
def test_graph_delete_releases_a_reference_left_by_a_killed_process(store, layout, driver, driver_name,
                                                                     unique_prefix):
    """A process killed while reading an image (say during a child's size) must not pin it forever."""
    image = store.import_(io.BytesIO(layer(BASE)), "base")
    script = _HOLD_SCRIPT.format(here=str(Path(__file__).parent), root=str(layout.root), driver=driver_name,
                                 prefix=unique_prefix, image_id=image.id)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert driver.references(image.id) == 1
    assert store.remove("base") == ["Untagged: base:latest", f"Deleted: {image.id}"]
    assert not driver.exists(image.id)
    assert_clean(layout, driver)


def test_graph_create_for_commit(store):
    base = store.resolve("busybox")
    cfg = {"Cmd": ["/bin/sh", "-c", "echo hi"], "Env": ["A=1"]}
    image = store.create(io.BytesIO(layer({"hello": "hi\n"}, whiteouts=("etc/group",))), parent=base.id,
                         repo="mine", tag="v1", comment="msg", author="me", config={"Cmd": ["/bin/sh"]},
                         container="e" * 64, container_config=cfg)
    assert store.resolve("mine:v1") == image
    assert image.container == "e" * 64 and image.container_config["Cmd"] == cfg["Cmd"]
    assert image.author == "me" and image.comment == "msg" and image.config["Cmd"] == ["/bin/sh"]
    assert image.size == 3
    with store.driver.mounted(image.id, readonly=True) as rootfs:
        assert (rootfs / "hello").read_text() == "hi\n"
        assert not (rootfs / "etc/group").exists() and (rootfs / "etc/passwd").exists()
    with pytest.raises(InvalidArgument):
        store.create(io.BytesIO(layer({})), parent=base.id, repo="Bad")
    assert len(store.graph.list()) == 2


@pytest.mark.parametrize("driver_name", ["vfs", "overlay"])
def test_graph_disk_full_leaves_nothing(tmp_path, driver_name, unique_prefix):
    """ENOSPC half-way through a layer: a clear error and the root exactly as before."""
    from graph_helpers import open_driver

    from pydock.utils.mount import mount, umount
    from pydock.graph.lookup import ImageStore
    from pydock.utils.errors import PydockError
    from pydock.utils.paths import RootLayout

    root = tmp_path / "small"
    root.mkdir()
    mount("tmpfs", root, "tmpfs", 0, "size=4m")
    try:
        layout = RootLayout(root)
        driver = open_driver(driver_name, layout, unique_prefix)
        try:
            store = ImageStore(layout, driver)
            small = store.import_(io.BytesIO(layer({"a": "a"})), "small")
            with pytest.raises(PydockError) as info:
                store.import_(io.BytesIO(layer({"big": os.urandom(6 << 20)})), "big")
            assert "No space left on device" in str(info.value) or "space" in str(info.value).lower()
            assert_clean(layout, driver, expected_images=1)
            assert store.tags.repositories() == {"small": {"latest": small.id}}
            assert store.resolve("small") == small
        finally:
            driver.shutdown()
    finally:
        umount(root)


def _import_many(root: str, driver_name: str, prefix: str, worker: int, count: int) -> None:
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).parent))
    from graph_helpers import open_driver

    from pydock.graph.lookup import ImageStore
    from pydock.utils.paths import RootLayout

    layout = RootLayout(Path(root))
    driver = open_driver(driver_name, layout, prefix)
    try:
        store = ImageStore(layout, driver)
        parent = None
        for i in range(count):
            img = store.graph.register(io.BytesIO(layer({f"w{worker}": DIR, f"w{worker}/f{i}": f"{i}\n"})),
                                       parent=parent)
            store.tags.set(f"w{worker}", f"t{i}", img.id)
            parent = img.id
    finally:
        driver.close()


@pytest.mark.parametrize("driver_name", ALL_DRIVERS)
def test_graph_concurrent_processes_register_into_one_root(layout, driver, driver_name, unique_prefix):
    import multiprocessing

    from pydock.graph.lookup import ImageStore

    ImageStore(layout, driver)  # create the root first, like a daemon would
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_import_many, args=(str(layout.root), driver_name, unique_prefix, w, 5))
             for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = ImageStore(layout, driver)
    assert len(store.graph.list()) == 20
    for w in range(4):
        top = store.resolve(f"w{w}:t4")
        assert store.graph.depth(top) == 5
        with store.driver.mounted(top.id, readonly=True) as rootfs:
            assert sorted(os.listdir(rootfs / f"w{w}")) == [f"f{i}" for i in range(5)]
    assert_clean(layout, driver, expected_images=20)
