"""Per-test overhead of the pytest plugin's shared store versus a fresh store per test.

One "test" = create a Runtime on the store (prefixed devices, the store's busybox shared), run
`true` in a container, remove everything. Shared: the store (pool + mkfs, or overlay root) exists once.
Fresh: each test also creates its own store (pool + mkfs + busybox import) and tears it down, as a
suite without the plugin would.
Target: shared >= 5x cheaper on devicemapper (run inside hack/dmkernel.sh) and not slower on overlay.

Usage: .venv/bin/python bench/harness.py [--runs 8] [--driver overlay|devicemapper]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from pydock.devmapper.drivers import open_deviceset
from pydock.devmapper.prefixed import PrefixedDeviceSet
from pydock.runtime.testing.plugin import DM_TEST_SIZES, SharedStore
from pydock.runtime.runtime import Runtime


def open_store(root: Path, driver: str, sizes: str = "test") -> SharedStore:
    """A store as the plugin makes it: pool (or overlay root) plus busybox built into it.

    sizes="test" uses the plugin's small pool; "default" what `Runtime(tmpdir)` would make
    (100 GiB data, 2 GiB metadata, 10 GiB base filesystem)."""
    options: dict = {}
    if driver == "devicemapper":
        options = {"prefix": "bench-" + uuid.uuid4().hex[:6]}
        if sizes == "test":
            options.update(DM_TEST_SIZES)
    deviceset, reason = open_deviceset(root, driver, **options)
    store = SharedStore(root=root, deviceset=deviceset, driver=deviceset.name, reason=reason)
    store.build_busybox()
    return store


def one_test(store: SharedStore, scratch: Path) -> None:
    """What the plugin's pydock_runtime fixture does around one test, plus one container run."""
    deviceset = PrefixedDeviceSet(store.deviceset, "t" + uuid.uuid4().hex[:8], shared={store.busybox_id})
    root = scratch / uuid.uuid4().hex
    store.seed(root)
    with Runtime(root, deviceset=deviceset, bridge="none") as rt:
        result = rt.run("busybox", ["true"], remove=True)
        assert result.exit_code == 0, result
        for image in rt.images.graph.list():
            rt.images.graph.delete(image.id)
    for hash_ in deviceset.list():
        deviceset.remove_device(hash_)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--driver", default="overlay")
    parser.add_argument("--fresh-sizes", choices=("default", "test"), default="default",
                        help="pool sizes of the fresh per-test store (default: what Runtime(tmpdir) makes)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="pydock-bench-harness-"))
    shared_times, fresh_times = [], []
    try:
        shared = open_store(scratch / "shared", args.driver)
        one_test(shared, scratch)  # warm-up
        for i in range(args.runs):
            # interleaved so both see the same machine conditions
            start = time.perf_counter()
            one_test(shared, scratch)
            shared_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            fresh = open_store(scratch / f"fresh{i}", args.driver, args.fresh_sizes)
            try:
                one_test(fresh, scratch)
            finally:
                fresh.close()
                shutil.rmtree(scratch / f"fresh{i}", ignore_errors=True)
            fresh_times.append(time.perf_counter() - start)
        shared.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    s, f = statistics.median(shared_times) * 1000, statistics.median(fresh_times) * 1000
    print(f"driver={args.driver} runs={args.runs} fresh store sizes={args.fresh_sizes}")
    print(f"shared store per test: {s:8.1f} ms (median)")
    print(f"fresh store per test:  {f:8.1f} ms (median)")
    print(f"fresh/shared = {f / s:.2f}x  (target: >= 5x on devicemapper, >= 1x on overlay)")


if __name__ == "__main__":
    main()
