"""Benchmark pydock.archive against its peers on the same machine and data.

1. Layer import: apply_layer() of a ~200 MB, ~10 000-file rootfs tarball into a plain directory
   vs GNU `tar -x --numeric-owner` of the same file (target: <= 1.5x).
2. Export: write_tar of the same tree vs `tar -c` into a file (no target; informational).
3. Unchanged diff: changes() of two identical 10 000-file trees (made with `cp -a`) vs a plain
   os.walk + lstat of one tree (target: <= 2x) and of both trees.

Usage: .venv/bin/python bench/archive.py [--runs N] [--mb 200] [--files 10000]
Prints medians in seconds and the ratios. Needs root (tar and apply restore owners).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydock.archive.apply import apply_layer
from pydock.archive.changes import changes
from pydock.archive.tar import write_tar


def build_tree(root: Path, total_mb: int, files: int, seed: int = 7) -> tuple[int, int]:
    """Synthetic rootfs: many small files in nested dirs plus a few big ones; returns (files, bytes)."""
    rng = random.Random(seed)
    block = os.urandom(1 << 20)
    big = max(1, files // 100)
    small = files - big
    small_bytes = min(total_mb << 20, small * 8192) // 2
    big_each = max(0, ((total_mb << 20) - small_bytes) // big)
    dirs = [root]
    for i in range(max(1, files // 20)):
        parent = rng.choice(dirs[: 1 + len(dirs) // 2])
        d = parent / f"d{i:04d}"
        d.mkdir()
        dirs.append(d)
    written = 0
    for i in range(small):
        size = rng.randint(0, 2 * small_bytes // max(1, small))
        off = rng.randint(0, len(block) - size - 1)
        (rng.choice(dirs) / f"f{i:05d}").write_bytes(block[off : off + size])
        written += size
    for i in range(big):
        with open((root if i == 0 else rng.choice(dirs)) / f"big{i:03d}", "wb") as f:
            left = big_each
            while left:
                n = min(left, len(block))
                f.write(block[:n])
                left -= n
        written += big_each
    # a few links and a setuid file, like a real rootfs
    os.symlink("/usr/bin/env", root / "abs-link")
    os.symlink("d0000", root / "rel-link")
    os.link(root / "big000", root / "big000.hardlink")
    (root / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "suid", 0o4755)
    os.chown(root / "suid", 0, 0)
    return files, written


def compare(fns: dict, runs: int, setup=None) -> dict[str, float]:
    """Median seconds of each function, run interleaved (A B A B ...) so background load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def walk_lstat(*roots: Path) -> int:
    n = 0
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                os.lstat(os.path.join(dirpath, name))
                n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--dir", default=None,
                    help="scratch directory (default /dev/shm: a tmpfs keeps disk writeback noise "
                         "out of a CPU comparison; pass a disk path to include the disk)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/archive.py needs root (owners are restored)", file=sys.stderr)
        return 1

    scratch = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    work = Path(tempfile.mkdtemp(prefix="pydock-bench-archive-", dir=scratch))
    print(f"scratch: {work} ({'tmpfs' if str(work).startswith('/dev/shm') else 'as given'}), "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")
    try:
        src = work / "src"
        src.mkdir()
        nfiles, nbytes = build_tree(src, args.mb, args.files)
        tarball = work / "layer.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(src), "-cf", str(tarball), "."], check=True)
        print(f"tree: {nfiles} files, {nbytes / 2**20:.0f} MiB data; tarball {tarball.stat().st_size / 2**20:.0f} MiB")

        dest = work / "dest"

        def fresh() -> None:
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir()

        def run_tar() -> None:
            subprocess.run(["tar", "--numeric-owner", "-xf", str(tarball), "-C", str(dest)], check=True)

        def run_tar_pipe() -> None:
            subprocess.run(f"cat {tarball} | tar --numeric-owner -xf - -C {dest}", shell=True, check=True)

        def run_apply() -> None:
            with open(tarball, "rb") as f:
                apply_layer(dest, f)

        def run_apply_pipe() -> None:
            cat = subprocess.Popen(["cat", str(tarball)], stdout=subprocess.PIPE)
            try:
                apply_layer(dest, cat.stdout)  # type: ignore[arg-type]
            finally:
                cat.stdout.close()  # type: ignore[union-attr]
                cat.wait()

        # warm the page cache for the tarball once
        with open(tarball, "rb") as f:
            while f.read(1 << 24):
                pass
        t = compare({"tar": run_tar, "apply": run_apply, "tar_pipe": run_tar_pipe, "apply_pipe": run_apply_pipe},
                    args.runs, fresh)
        t_tar, t_apply, t_tar_pipe, t_pipe = t["tar"], t["apply"], t["tar_pipe"], t["apply_pipe"]
        print(f"import  tar -x               {t_tar:7.3f} s")
        print(f"import  apply_layer          {t_apply:7.3f} s   ratio {t_apply / t_tar:5.2f}x  (target <= 1.5x)")
        print(f"import  cat | tar -x         {t_tar_pipe:7.3f} s")
        print(f"import  cat | apply_layer    {t_pipe:7.3f} s   ratio {t_pipe / t_tar_pipe:5.2f}x vs cat | tar -x")

        out_tar = work / "out.tar"

        def run_tar_c() -> None:
            subprocess.run(["tar", "--numeric-owner", "-C", str(src), "-cf", str(out_tar), "."], check=True)

        def run_write_tar() -> None:
            with open(out_tar, "wb") as f:
                write_tar(src, f)

        t = compare({"tar_c": run_tar_c, "write": run_write_tar}, args.runs)
        print(f"export  tar -c               {t['tar_c']:7.3f} s")
        print(f"export  write_tar            {t['write']:7.3f} s   ratio {t['write'] / t['tar_c']:5.2f}x  (no target)")
        out_tar.unlink()

        a, b = work / "a", work / "b"
        subprocess.run(["cp", "-a", str(src), str(a)], check=True)
        subprocess.run(["cp", "-a", str(src), str(b)], check=True)
        found = changes(a, b)
        if found:
            print(f"warning: cp -a copies differ: {[str(c) for c in found[:5]]}")
        walk_lstat(a, b)  # warm dentry/inode caches
        t = compare({"walk1": lambda: walk_lstat(a), "walk2": lambda: walk_lstat(a, b),
                     "diff": lambda: changes(a, b)}, args.runs * 3)
        t_walk1, t_walk2, t_diff = t["walk1"], t["walk2"], t["diff"]
        print(f"diff    walk+lstat 1 tree  {t_walk1:7.3f} s")
        print(f"diff    walk+lstat 2 trees {t_walk2:7.3f} s")
        print(
            f"diff    changes()          {t_diff:7.3f} s   ratio {t_diff / t_walk1:5.2f}x vs one tree "
            f"(target <= 2x), {t_diff / t_walk2:5.2f}x vs both trees"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
