"""Layer bombs through `pydock import`, the way a user meets them, on each storage driver: one clear
`Error:` line, exit 1, and nothing left (no image, no device, no mount). On devicemapper, a layer
bigger than the thin device's filesystem is refused before it fills it."""

from __future__ import annotations

import gzip
import sys
import zlib
from pathlib import Path

import pytest
from hostile_helpers import Store, dm_store, store  # noqa: F401 - fixtures

sys.path.insert(0, str(Path(__file__).parent.parent / "archive"))
import bombs  # noqa: E402 - the archive tests' bomb builders

from pydock.runtime.runtime import Runtime  # noqa: E402


def _images(store: Store) -> list[str]:
    with Runtime(store.root, store.driver, bridge="none") as rt:
        return sorted(i.id for i in rt.images.graph.list())


@pytest.mark.lxc
@pytest.mark.parametrize("bomb,match", [
    (lambda: bombs.pax_chain(5000), "extension headers chained"),
    (lambda: bombs.longlink_chain(5000), "extension headers chained"),
    (lambda: b"".join(bombs.gnu_sparse_chain(20_000)), "take more than 1048576 bytes"),
    (lambda: gzip.compress(gzip.compress(bombs.member() + bombs.END)), "compressed once"),
])
def test_a_bomb_import_fails_cleanly(store: Store, bomb, match: str):
    before = _images(store)
    p = store("import", "-", "bomb", input=bomb())
    assert p.returncode == 1 and match in p.stderr.decode() and p.stderr.decode().startswith("Error: "), \
        p.stderr.decode()
    assert _images(store) == before
    assert store("run", "--rm", "busybox", "true").returncode == 0  # the store still works


@pytest.mark.dm
def test_a_layer_bigger_than_the_thin_device_is_refused(dm_store: Store):
    """(On overlay the layer shares the host's filesystem: tests/archive fills a small tmpfs instead.)"""
    store = dm_store
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    size = 400 << 20  # the test pool's devices hold 256 MiB
    data = comp.compress(bombs.header(b"big", b"0", size))
    zeros = bytes(1 << 20)
    for _ in range(size >> 20):
        data += comp.compress(zeros)
    data += comp.compress(bombs.END) + comp.flush()
    before = _images(store)
    p = store("import", "-", "toobig", input=data, timeout=300)
    assert p.returncode == 1 and "needs more space than its filesystem has free" in p.stderr.decode(), \
        p.stderr.decode()
    assert _images(store) == before
