"""Benchmark a container-rootfs cycle on each storage driver against the same steps done by hand.

Cycle: add a device on top of an image (~N files), mount it read-write, write one file, unmount,
remove the device — what `pydock run --rm` does to storage — once on the DeviceSet with a path of our
own and once through the Driver (create/get/put/remove: what the runtime calls). Peers, measured in
the same run:
- overlay: mkdir upper/work + `mount -t overlay` / `umount` with util-linux + rm -rf (target: <= 1.5x);
- vfs: `cp -a` + `mount --bind` / `umount` + rm -rf (target: <= 1.5x);
- devicemapper (only where dm-thin exists, e.g. inside hack/dmkernel.sh): reported without a peer.
Also the Driver's reference-count path alone: get+put of an id that stays mounted, with 1 and with
100 other ids mounted (it must not grow with them), in microseconds.

Usage: .venv/bin/python bench/storage.py [--runs 30] [--files 400]
Prints medians in milliseconds and the ratios. Needs root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from pydock.devmapper.deviceset import BASE_HASH, DeviceSet, mounted
from pydock.devmapper.driver import Driver


def fill(root: Path, files: int) -> None:
    """A busybox-sized tree: `files` small files in 20 directories."""
    for i in range(files):
        d = root / f"dir{i % 20:02d}"
        d.mkdir(exist_ok=True)
        (d / f"file{i:05d}").write_bytes(os.urandom(2048))


def median_ms(fn: Callable[[int], None], runs: int) -> float:
    times = []
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def driver_cycle_on(ds: DeviceSet, mnt: Path) -> Callable[[int], None]:
    def cycle(i: int) -> None:
        h = f"ctr{i}"
        ds.add_device(h, "image")
        with mounted(ds, h, mnt) as root:
            (root / "hello").write_text("hi")
        ds.remove_device(h)
    return cycle


def driver_cycle(drv: Driver) -> Callable[[int], None]:
    def cycle(i: int) -> None:
        h = f"dctr{i}"
        drv.create(h, "image")
        with drv.mounted(h) as root:
            (root / "hello").write_text("hi")
        drv.remove(h)
    return cycle


def held_get_put_us(drv: Driver, others: int, runs: int) -> float:
    """Median get+put of the image while another reference keeps it mounted, with `others` ids mounted."""
    for k in range(others):
        drv.create(f"other{k}", BASE_HASH)
        drv.get(f"other{k}")
    drv.get("image", readonly=True)
    try:
        def get_put(i: int) -> None:
            drv.get("image", readonly=True)
            drv.put("image")
        return median_ms(get_put, runs) * 1000
    finally:
        drv.put("image")
        for k in range(others):
            drv.remove(f"other{k}")


def measure(ds: DeviceSet, home: Path, mnt: Path, args: argparse.Namespace) -> tuple[float, float, float, float]:
    """(DeviceSet cycle ms, Driver cycle ms, held get+put us with 1 and with 100 other ids mounted)."""
    drv = Driver(ds, home)
    try:
        prepare_image(ds, mnt, args.files)
        plain = median_ms(driver_cycle_on(ds, mnt), args.runs)
        through = median_ms(driver_cycle(drv), args.runs)
        return plain, through, held_get_put_us(drv, 1, args.runs * 10), held_get_put_us(drv, 100, args.runs * 10)
    finally:
        drv.shutdown()


def prepare_image(ds: DeviceSet, mnt: Path, files: int) -> None:
    ds.add_device("image", BASE_HASH)
    with mounted(ds, "image", mnt) as root:
        fill(root, files)
    ds.set_initialized("image")


def peer_overlay(work: Path, image: Path, mnt: Path) -> Callable[[int], None]:
    empty = work / "empty"
    empty.mkdir()

    def cycle(i: int) -> None:
        layer = work / f"p{i}"
        (layer / "diff").mkdir(parents=True)
        (layer / "work").mkdir()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={image}:{empty},upperdir={layer}/diff,workdir={layer}/work", str(mnt)],
                       check=True)
        (mnt / "hello").write_text("hi")
        subprocess.run(["umount", str(mnt)], check=True)
        shutil.rmtree(layer)
    return cycle


def peer_vfs(work: Path, image: Path, mnt: Path) -> Callable[[int], None]:
    def cycle(i: int) -> None:
        copy = work / f"c{i}"
        subprocess.run(["cp", "-a", str(image), str(copy)], check=True)
        subprocess.run(["mount", "--bind", str(copy), str(mnt)], check=True)
        (mnt / "hello").write_text("hi")
        subprocess.run(["umount", str(mnt)], check=True)
        shutil.rmtree(copy)
    return cycle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--files", type=int, default=400)
    args = parser.parse_args()
    from pydock.devmapper.drivers import devicemapper_usable
    from pydock.devmapper.overlay import OverlayDeviceSet
    from pydock.devmapper.vfs import VfsDeviceSet

    with tempfile.TemporaryDirectory(prefix="pydock-bench-storage-") as tmp:
        base = Path(tmp)
        mnt = base / "mnt"
        mnt.mkdir()
        image = base / "image"
        image.mkdir()
        fill(image, args.files)
        print(f"cycle = add + mount rw + write + unmount + remove; image of {args.files} files; "
              f"median of {args.runs} runs")

        def report(name: str, result: tuple[float, float, float, float], theirs: float | None) -> None:
            plain, through, held1, held100 = result
            peer = f"by hand {theirs:8.2f} ms   ratio {through / theirs:5.2f}x" if theirs else "(no peer measured)"
            print(f"{name:13s} deviceset {plain:8.2f} ms   driver {through:8.2f} ms   {peer}   "
                  f"held get+put {held1:6.0f} us ({held100:6.0f} us with 100 other ids mounted)")

        for name, cls, peer in (("overlay", OverlayDeviceSet, peer_overlay), ("vfs", VfsDeviceSet, peer_vfs)):
            result = measure(cls(base / name), base / name, mnt, args)
            work = base / f"peer-{name}"
            work.mkdir()
            report(name, result, median_ms(peer(work, image, mnt), args.runs))
        if devicemapper_usable()[0]:
            from pydock.devmapper.dm_deviceset import DeviceSetDM

            ds = DeviceSetDM(base / "devicemapper", prefix="bench-" + uuid.uuid4().hex[:6],
                             data_size=1 << 30, metadata_size=64 << 20, base_size=256 << 20)
            report("devicemapper", measure(ds, base / "devicemapper", mnt, args), None)


if __name__ == "__main__":
    main()
