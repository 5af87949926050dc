"""Per-operation cost of DeviceSetDM vs the same steps done with dmsetup/mount commands.

Run inside UML (device-mapper is not on the host):
    hack/dmkernel.sh -m 3G -- .venv/bin/python bench/devmapper.py [--existing 10,1000] [--rounds 30]

One round = add (snapshot of the base) + mount + unmount(deactivate) + remove. The peer does
what Docker 0.7 asked of libdevmapper with the stock tools: `dmsetup message create_snap`,
`set_transaction_id`, `dmsetup create` + `mount`, `umount` + `dmsetup remove`, `dmsetup message
delete` + `set_transaction_id` (7 processes, no metadata writes). Each side runs on its own pool
already holding N devices. Prints medians (ms) and ours/peer ratios; target <= 0.5x, flat in N.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydock.devmapper.dm_deviceset import DeviceSetDM
from pydock.devmapper.kernel import blockdev, dm, loop

SIZES = dict(data_size=4 << 30, metadata_size=256 << 20, base_size=64 << 20)
ENV = {**os.environ, "DM_DISABLE_UDEV": "1"}


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def bench_ours(root: Path, existing: int, rounds: int) -> tuple[list[float], list[float], dict[str, float]]:
    """(round times, open times of a second instance on the live pool, per-step medians)."""
    ds = DeviceSetDM(root / "ours", prefix=f"bo{existing}", **SIZES)
    try:
        for i in range(existing):
            ds.add_device(f"pre{i}", "")
        mnt = root / "mnt-ours"
        mnt.mkdir()
        times, steps = [], {"add": [], "mount": [], "unmount": [], "remove": []}
        for i in range(rounds):
            t = [time.perf_counter()]
            ds.add_device("r", "")
            t.append(time.perf_counter())
            ds.mount_device("r", mnt)
            t.append(time.perf_counter())
            ds.unmount_device("r", mnt, deactivate=True)
            t.append(time.perf_counter())
            ds.remove_device("r")
            t.append(time.perf_counter())
            times.append(t[-1] - t[0])
            for k, name in enumerate(steps):
                steps[name].append(t[k + 1] - t[k])
        opens = []
        for _ in range(max(5, rounds // 3)):  # what every pydock command pays to open the set
            t0 = time.perf_counter()
            DeviceSetDM(root / "ours", prefix=f"bo{existing}", **SIZES).close()
            opens.append(time.perf_counter() - t0)
        return times, opens, {k: statistics.median(v) * 1000 for k, v in steps.items()}
    finally:
        ds.shutdown()


def bench_dmsetup(root: Path, existing: int, rounds: int) -> list[float]:
    """A raw pool driven by dmsetup/mount; seeded through ioctls (seeding is not timed)."""
    home = root / "peer"
    home.mkdir()
    fds = []
    for name, size in (("data", SIZES["data_size"]), ("metadata", SIZES["metadata_size"])):
        with open(home / name, "wb") as f:
            f.truncate(size)
    dfd, dloop = loop.attach(home / "data")
    mfd, mloop = loop.attach(home / "metadata")
    fds += [dfd, mfd]
    pool = f"bp{existing}-pool"
    ctl = dm.Control()
    try:
        sectors = blockdev.size_bytes(dloop) // 512
        sh("dmsetup", "create", pool, "--table", f"0 {sectors} thin-pool {mloop} {dloop} 128 32768 1 error_if_no_space")
        for fd in fds:
            os.close(fd)
        fds = []
        ctl.message(pool, "create_thin 0")
        base = f"bp{existing}-base"
        sh("dmsetup", "create", base, "--table", f"0 {SIZES['base_size'] // 512} thin /dev/mapper/{pool} 0")
        subprocess.run(["mkfs.ext4", "-q", "-E", "discard,lazy_itable_init=0,lazy_journal_init=0",
                        f"/dev/mapper/{base}"], check=True)
        sh("dmsetup", "remove", base)
        for i in range(existing):
            ctl.message(pool, f"create_snap {i + 1} 0")
        tid = 1
        ctl.message(pool, f"set_transaction_id 0 {tid}")
        mnt = root / "mnt-peer"
        mnt.mkdir()
        times = []
        new = existing + 1
        name = f"bp{existing}-r"
        for i in range(rounds):
            t0 = time.perf_counter()
            sh("dmsetup", "message", pool, "0", f"create_snap {new} 0")
            sh("dmsetup", "message", pool, "0", f"set_transaction_id {tid} {tid + 1}")
            sh("dmsetup", "create", name, "--table", f"0 {SIZES['base_size'] // 512} thin /dev/mapper/{pool} {new}")
            sh("mount", "-t", "ext4", "-o", "discard", f"/dev/mapper/{name}", str(mnt))
            sh("umount", str(mnt))
            sh("dmsetup", "remove", name)
            sh("dmsetup", "message", pool, "0", f"delete {new}")
            sh("dmsetup", "message", pool, "0", f"set_transaction_id {tid + 1} {tid + 2}")
            times.append(time.perf_counter() - t0)
            tid += 2
        return times
    finally:
        for fd in fds:
            os.close(fd)
        if ctl.exists(pool):
            ctl.remove(pool)
        ctl.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--existing", default="10,1000")
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    if not dm.thin_pool_available()[0]:
        print("bench/devmapper.py: no dm thin-pool here; run it through hack/dmkernel.sh", file=sys.stderr)
        return 2
    print(f"{'existing':>8}  {'ours ms':>8}  {'dmsetup ms':>10}  {'ratio':>6}  {'open ms':>8}   "
          f"(add+mount+unmount+remove, median of {args.rounds}; open = a new DeviceSetDM on the live pool)")
    results, opens, steps = {}, {}, {}
    for n in (int(x) for x in args.existing.split(",")):
        with tempfile.TemporaryDirectory(prefix="pydock-bench-") as tmp:
            times, open_times, steps[n] = bench_ours(Path(tmp), n, args.rounds)
            ours = statistics.median(times) * 1000
            opens[n] = statistics.median(open_times) * 1000
            peer = statistics.median(bench_dmsetup(Path(tmp), n, args.rounds)) * 1000
        results[n] = ours
        print(f"{n:>8}  {ours:>8.2f}  {peer:>10.2f}  {ours / peer:>5.2f}x  {opens[n]:>8.2f}")
    for n, st in steps.items():
        print(f"  steps at {n}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in st.items()))
    if len(results) > 1:
        ns = sorted(results)
        print(f"flatness: ours at {ns[-1]} / ours at {ns[0]} existing = {results[ns[-1]] / results[ns[0]]:.2f}x "
              f"(open: {opens[ns[-1]] / opens[ns[0]]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
