"""Benchmark image import and lookup against doing the same by hand.

- import: `ImageStore.import_` of the busybox tarball (apply + size + metadata + atomic publish)
  vs the peer `tar -xf` of the same tarball into a fresh directory (target: <= 2x on vfs/overlay).
- commit-sized child layer: `Graph.register` of a 50-file layer on top of busybox (adds a
  changes walk against the parent) vs `tar -xf` of that layer (reported).
- resolve: `ImageStore.resolve("busybox")` for an existing image (the `pydock run` hot path;
  reported in microseconds, no peer).

Usage: .venv/bin/python bench/graph.py [--runs 15] [--driver vfs|overlay|devicemapper]
Needs root. Prints medians and ratios; never asserts.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path


def median(fn: Callable[[int], None], runs: int) -> float:
    times = []
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def child_layer(files: int = 50) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(files):
            data = os.urandom(4096)
            info = tarfile.TarInfo(f"app/file{i:03d}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def open_driver(name: str, root: Path):
    from pydock.devmapper.drivers import open_driver as open_root_driver

    options = {"prefix": "bench-" + uuid.uuid4().hex[:6], "data_size": 2 << 30, "metadata_size": 128 << 20,
               "base_size": 256 << 20} if name == "devicemapper" else {}
    driver, _reason = open_root_driver(root, name, **options)
    return driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--driver", default="vfs", choices=["vfs", "overlay", "devicemapper"])
    args = parser.parse_args()

    from pydock.graph.busybox import busybox_tar_bytes
    from pydock.graph.lookup import ImageStore
    from pydock.utils.paths import RootLayout

    tarball = busybox_tar_bytes()
    layer = child_layer()
    work = Path(tempfile.mkdtemp(prefix="pydock-bench-graph-"))
    src = work / "busybox.tar"
    src.write_bytes(tarball)
    lsrc = work / "layer.tar"
    lsrc.write_bytes(layer)
    driver = open_driver(args.driver, work / "root")
    try:
        store = ImageStore(RootLayout(work / "root"), driver)

        def pydock_import(i: int) -> None:
            img = store.import_(io.BytesIO(tarball))
            store.graph.delete(img.id)

        def tar_import(i: int) -> None:
            dest = work / f"peer{i}"
            dest.mkdir()
            subprocess.run(["tar", "--numeric-owner", "-xf", str(src), "-C", str(dest)], check=True)
            shutil.rmtree(dest)

        base = store.resolve("busybox")

        def pydock_child(i: int) -> None:
            img = store.graph.register(io.BytesIO(layer), parent=base.id)
            store.graph.delete(img.id)

        def tar_child(i: int) -> None:
            dest = work / f"peerc{i}"
            dest.mkdir()
            subprocess.run(["tar", "--numeric-owner", "-xf", str(lsrc), "-C", str(dest)], check=True)
            shutil.rmtree(dest)

        ours = median(pydock_import, args.runs)
        peer = median(tar_import, args.runs)
        print(f"import busybox ({len(tarball) >> 10} KiB, {args.driver}): pydock {ours * 1e3:.1f} ms, "
              f"tar -xf {peer * 1e3:.1f} ms, ratio {ours / peer:.2f}x (target <= 2x)")
        ours = median(pydock_child, args.runs)
        peer = median(tar_child, args.runs)
        print(f"register 50-file child layer ({args.driver}): pydock {ours * 1e3:.1f} ms, "
              f"tar -xf {peer * 1e3:.1f} ms, ratio {ours / peer:.2f}x")
        res = median(lambda i: store.resolve("busybox"), args.runs * 20)
        print(f"resolve('busybox') existing: {res * 1e6:.0f} us")
    finally:
        driver.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
