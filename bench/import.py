"""`pydock import` of a real rootfs tarball, timed against its peer in the same run.

The tarball is the largest realistic rootfs this machine can make, built once and cached under
/var/cache/pydock-bench/import: a `debootstrap --variant=minbase` of the host's Debian release from the
mirror apt is configured with, when debootstrap is installed and the mirror answers; otherwise one
assembled from the host's own /usr and /etc (thousands of entries, hardlinks and symlinks). The output
says which.

Modes (interleaved rounds, a fresh store for every run on both sides, medians and the ratio):
- default (host, overlay): `pydock import` vs `podman --runtime runc import` (target: <= 1.0x), with
  GNU `tar -x` of the same file into a directory as the floor (informational).
- `--gzip`: the same rootfs as a gzip -6 tarball (made once, cached beside it).
- `--driver devicemapper` (run inside UML: `hack/dmkernel.sh -m 4G -- .venv/bin/python bench/import.py
  --driver devicemapper`): `pydock import` on devicemapper vs on overlay, same tarball, same UML run
  (target: dm <= 1.5x overlay).

Usage: .venv/bin/python bench/import.py [--runs 5] [--driver overlay|devicemapper] [--dir DIR] [--gzip]
       [--baseline PATH-TO-ANOTHER-PYDOCK]
Needs root. Prints medians and ratios; never asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import PYDOCK, timed

CACHE = Path("/var/cache/pydock-bench/import")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
PODMAN_GLOBALS = ["--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                  "--runtime", "runc"]
#: host directories the fallback rootfs is assembled from (what a distro image mostly consists of)
HOST_TREES = ("usr/bin", "usr/sbin", "usr/lib", "usr/share", "etc")


def sh(argv: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, env=ENV, **kw)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.decode(errors='replace')[-800:]}")
    return p


# ---- the tarball ------------------------------------------------------------------------------------


def apt_mirror() -> tuple[str, str] | None:
    """(mirror URL, suite) of the host's main Debian archive as apt is configured, or None."""
    suite = None
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                suite = line.split("=", 1)[1].strip('"') or None
    except OSError:
        return None
    uris: list[str] = []
    for src in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]:
        try:
            text = src.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if src.suffix == ".sources" and words[:1] == ["URIs:"]:
                uris.extend(words[1:])
            elif words[:1] == ["deb"]:
                uris.extend(w for w in words[1:] if "://" in w)
    main = [u for u in uris if u.rstrip("/").endswith("/debian")]
    return (main[0], suite) if main and suite else None


def debootstrap_tar(out: Path) -> str | None:
    """Build `out` with debootstrap --variant=minbase; a description, or None if this machine cannot."""
    mirror = apt_mirror()
    if shutil.which("debootstrap") is None or mirror is None:
        return None
    url, suite = mirror
    tree = CACHE / "rootfs.partial"
    shutil.rmtree(tree, ignore_errors=True)
    print(f"building the rootfs: debootstrap --variant=minbase {suite} (once; cached in {CACHE})", flush=True)
    p = subprocess.run(["debootstrap", "--variant=minbase", suite, str(tree), url], capture_output=True)
    if p.returncode != 0:
        print(f"debootstrap failed ({p.returncode}): {p.stderr.decode(errors='replace')[-300:].strip()}")
        shutil.rmtree(tree, ignore_errors=True)
        return None
    sh(["tar", "--numeric-owner", "--xattrs", "-C", str(tree), "-cf", str(out) + ".part", "."])
    os.rename(str(out) + ".part", out)
    shutil.rmtree(tree, ignore_errors=True)
    return f"Debian {suite} minbase (debootstrap)"


def host_tar(out: Path) -> str:
    """Build `out` from the host's own files: its /usr and /etc, hardlinks and symlinks kept."""
    print(f"building the rootfs from this host's {', '.join('/' + t for t in HOST_TREES)} (once; cached in {CACHE})",
          flush=True)
    p = subprocess.run(["tar", "--numeric-owner", "--xattrs", "--one-file-system", "-C", "/", "-cf",
                        str(out) + ".part", *HOST_TREES], capture_output=True)
    if p.returncode not in (0, 1):  # 1: some file changed as we read it, which does not matter here
        raise SystemExit(f"tar of the host's files failed: {p.stderr.decode(errors='replace')[-300:]}")
    os.rename(str(out) + ".part", out)
    return "assembled from this host's " + ", ".join("/" + t for t in HOST_TREES)


def rootfs_tarball(build: bool) -> tuple[Path, str]:
    """The cached rootfs tarball and what it is, building it first when missing (and `build`)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    for name, what in (("minbase.tar", "Debian minbase (debootstrap, cached)"),
                       ("hostfiles.tar", "assembled from this host's files (cached)")):
        if (CACHE / name).is_file():
            return CACHE / name, what
    if not build:
        raise SystemExit(f"no cached rootfs tarball in {CACHE}: run bench/import.py on the host first")
    what = debootstrap_tar(CACHE / "minbase.tar")
    if what is not None:
        return CACHE / "minbase.tar", what
    print("debootstrap is not installed or the Debian mirror does not answer: using the host's files")
    return CACHE / "hostfiles.tar", host_tar(CACHE / "hostfiles.tar")


def gzipped(tarball: Path) -> Path:
    """A gzip -6 copy of `tarball` beside it (made once): how rootfs tarballs usually travel."""
    out = tarball.with_name(tarball.name + ".gz")
    if not out.is_file():
        with open(str(out) + ".part", "wb") as f:
            subprocess.run(["gzip", "-6", "-c", str(tarball)], stdout=f, check=True)
        os.rename(str(out) + ".part", out)
    return out


def describe(tarball: Path) -> str:
    """`N MB, N entries (N hardlinks, N symlinks)` of a tar file."""
    listing = sh(["tar", "--numeric-owner", "-tvf", str(tarball)]).stdout.decode(errors="replace").splitlines()
    links = sum(1 for line in listing if line.startswith("h"))
    syms = sum(1 for line in listing if line.startswith("l"))
    return (f"{tarball.stat().st_size / 1e6:.0f} MB, {len(listing)} entries ({links} hardlinks, "
            f"{syms} symlinks)")


# ---- the runs ---------------------------------------------------------------------------------------


def pydock_import(base: Path, tarball: Path, driver: str, i: int, pydock: str = PYDOCK) -> float:
    """Seconds one `pydock import` into a fresh root took; the root is emptied afterwards."""
    root = base / f"pydock-{driver}-{i}"
    try:
        return timed([pydock, "-g", str(root), "-s", driver, "-b", "none", "import", str(tarball),
                      f"bench/import:{i}"], ENV)
    finally:
        drop_pydock_root(root, driver)


def drop_pydock_root(root: Path, driver: str) -> None:
    from pydock.runtime.runtime import Runtime  # lazy: the bench's own process only needs it to clean up

    with Runtime(root, driver, bridge="none") as rt:
        for image in rt.images.graph.list():
            rt.images.graph.delete(image.id)
        rt.driver.shutdown()
    subprocess.run(["umount", "-R", str(root)], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)


def podman_import(base: Path, tarball: Path, i: int) -> float:
    """Seconds one `podman import` into a store of its own took; the store is removed afterwards."""
    store = Path(tempfile.mkdtemp(prefix="p-", dir=base))
    argv = ["podman", "--root", str(store / "root"), "--runroot", str(store / "run"), "--tmpdir", str(store / "tmp"),
            *PODMAN_GLOBALS]
    for d in ("root", "run", "tmp"):
        (store / d).mkdir()
    try:
        return timed([*argv, "import", "-q", str(tarball), f"localhost/bench-import:{i}"], ENV)
    finally:
        subprocess.run([*argv, "system", "reset", "-f"], capture_output=True, check=False)
        subprocess.run(["umount", "-R", str(store / "root" / "overlay")], capture_output=True, check=False)
        shutil.rmtree(store, ignore_errors=True)


def tar_x(base: Path, tarball: Path, i: int) -> float:
    dest = base / f"tar-{i}"
    dest.mkdir()
    try:
        return timed(["tar", "--numeric-owner", "-xf", str(tarball), "-C", str(dest)], ENV)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def dm_available() -> bool:
    return os.path.exists("/dev/mapper/control") and "thin-pool" in sh(["dmsetup", "targets"]).stdout.decode()


def report(label: str, times: list[float]) -> float:
    med = statistics.median(times)
    print(f"{label:28s} {med:7.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times)})")
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--driver", choices=("overlay", "devicemapper"), default="overlay",
                    help="overlay: pydock vs podman on the host; devicemapper: pydock on dm vs on overlay (in UML)")
    ap.add_argument("--dir", default=None, help="scratch directory for the stores (default /tmp; podman's runroot "
                                                "must stay under 50 characters)")
    ap.add_argument("--gzip", action="store_true", help="import a gzip -6 copy of the tarball (both sides decompress)")
    ap.add_argument("--baseline", metavar="PYDOCK", default=None,
                    help="another pydock executable (e.g. main's, in a venv of its own) timed in the same rounds, "
                         "for before/after numbers")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/import.py needs root", file=sys.stderr)
        return 1
    if args.driver == "devicemapper" and not dm_available():
        print("bench/import.py --driver devicemapper needs dm-thin: run it inside hack/dmkernel.sh", file=sys.stderr)
        return 1
    tarball, what = rootfs_tarball(build=args.driver == "overlay")
    if args.gzip:
        tarball, what = gzipped(tarball), what + ", gzip -6"
    sh([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parent.parent)])
    with open(tarball, "rb") as f:  # the page cache holds the tarball for every run alike
        while f.read(1 << 24):
            pass
    base = Path(tempfile.mkdtemp(prefix="pdki-", dir=args.dir or "/tmp"))  # podman wants a short runroot
    print(f"rootfs: {what}: {describe(tarball)}")
    print(f"scratch {base}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus; {args.runs} rounds")
    try:
        drivers = ["overlay"] if args.driver == "overlay" else ["devicemapper", "overlay"]
        runs = {f"pydock import ({d})": (lambda i, d=d: pydock_import(base, tarball, d, i)) for d in drivers}
        if args.baseline:
            runs.update({f"baseline import ({d})": (lambda i, d=d: pydock_import(base, tarball, d, i, args.baseline))
                         for d in drivers})
        if args.driver == "overlay":
            runs["podman import (overlay)"] = lambda i: podman_import(base, tarball, i)
            runs["tar -x (floor)"] = lambda i: tar_x(base, tarball, i)
        times: dict[str, list[float]] = {k: [] for k in runs}
        for i in range(args.runs):
            for label, fn in runs.items():
                times[label].append(fn(i))
        med = {label: report(label, ts) for label, ts in times.items()}
        if args.driver == "overlay":
            p, q = med["pydock import (overlay)"], med["podman import (overlay)"]
            print(f"ratio pydock/podman          {p / q:5.2f}x  (target <= 1.0x); "
                  f"pydock/tar -x {p / med['tar -x (floor)']:.2f}x")
            if args.baseline:
                print(f"ratio baseline/podman        {med['baseline import (overlay)'] / q:5.2f}x")
        else:
            for who in ("pydock", "baseline") if args.baseline else ("pydock",):
                d, o = med[f"{who} import (devicemapper)"], med[f"{who} import (overlay)"]
                print(f"ratio {who} dm/overlay{' ' * (13 - len(who))}{d / o:5.2f}x  (target <= 1.5x)")
    finally:
        for leftover in base.glob("pydock-*"):
            subprocess.run(["umount", "-R", str(leftover)], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
