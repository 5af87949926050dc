"""Images from the ecosystem, timed against podman in the same run.

- pull: a 3-layer image of ~100 MB (busybox + two ~48 MB layers) from Debian's docker-registry on
  loopback (in a network namespace made here), cold, pydock vs `podman pull` (target: <= 1.0x).
- second pull of an image already present: pydock, absolute (target: <= 0.2 s).
- load: the same image as a `podman save` archive, pydock vs `podman load` (target: <= 1.0x).

Both sides use overlay storage and a fresh store for every cold run; runs are interleaved so both see
the same machine. Python bytecode is compiled first, as an installed pydock has it.

Usage: .venv/bin/python bench/images.py [--runs 3] [--layer-mb 48]
Needs root, podman, docker-registry. Prints medians and ratios; never asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchlib import PYDOCK

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
PODMAN_GLOBALS = ["--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                  "--runtime", "runc"]


def sh(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, env=ENV, **kw)


class Netns:
    def __init__(self) -> None:
        self.name = "pdkbench" + uuid.uuid4().hex[:6]
        sh(["ip", "netns", "add", self.name])
        self.prefix = ["nsenter", f"--net=/run/netns/{self.name}"]
        sh([*self.prefix, "ip", "link", "set", "lo", "up"])

    def close(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=False)


def podman(store: Path, *args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    return sh([*(prefix or []), "podman", "--root", str(store / "root"), "--runroot", str(store / "run"),
               "--tmpdir", str(store / "tmp"), *PODMAN_GLOBALS, *args])


def podman_store(base: Path) -> Path:
    path = Path(tempfile.mkdtemp(prefix="pdkb-", dir=base))
    for d in ("root", "run", "tmp"):
        (path / d).mkdir()
    return path


def drop_podman_store(store: Path) -> None:
    subprocess.run(["podman", "--root", str(store / "root"), "--runroot", str(store / "run"), *PODMAN_GLOBALS,
                    "system", "reset", "-f"], capture_output=True, check=False)
    subprocess.run(["umount", "-R", str(store / "root" / "overlay")], capture_output=True, check=False)
    shutil.rmtree(store, ignore_errors=True)


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    sh(argv)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--layer-mb", type=int, default=48)
    args = parser.parse_args()
    sh([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parent.parent)])
    base = Path(tempfile.mkdtemp(prefix="pdkb-", dir="/tmp"))  # podman wants a short runroot
    ns = Netns()
    registry = None
    builder = podman_store(base)
    try:
        config = base / "registry.yml"
        config.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                          f"    rootdirectory: {base / 'registry'}\nhttp:\n  addr: 127.0.0.1:5000\n")
        registry = subprocess.Popen([*ns.prefix, "docker-registry", "serve", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run([*ns.prefix, "python3", "-c", "import socket; socket.create_connection"
                               "(('127.0.0.1', 5000), 1)"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        rootfs = base / "busybox.tar"
        with open(rootfs, "wb") as f:
            subprocess.run([sys.executable, "-m", "pydock.graph.busybox"], stdout=f, check=True)
        podman(builder, "import", str(rootfs), "localhost/bbase:latest")
        ctx = base / "ctx"
        ctx.mkdir()
        (ctx / "Containerfile").write_text(
            "FROM localhost/bbase:latest\n"
            f"RUN head -c {args.layer_mb}000000 /dev/urandom > /big1\n"
            f"RUN head -c {args.layer_mb // 2}000000 /dev/urandom | od -x > /big2\n")
        podman(builder, "build", "-q", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit",
               "nproc=1024:1024", "-t", "localhost/bench:1", str(ctx))
        image = "127.0.0.1:5000/bench:1"
        podman(builder, "push", "--tls-verify=false", "localhost/bench:1", f"docker://{image}", prefix=ns.prefix)
        archive = base / "bench.tar"
        podman(builder, "save", "-o", str(archive), "localhost/bench:1")
        size_mb = archive.stat().st_size / 1e6

        pulls: dict[str, list[float]] = {"pydock": [], "podman": []}
        loads: dict[str, list[float]] = {"pydock": [], "podman": []}
        second: list[float] = []
        for i in range(args.runs):
            root = base / f"pydock{i}"
            pulls["pydock"].append(timed([*ns.prefix, PYDOCK, "-g", str(root), "-s", "overlay", "pull", "-q", image]))
            for _ in range(3):
                second.append(timed([*ns.prefix, PYDOCK, "-g", str(root), "-s", "overlay", "pull", "-q", image]))
            sh([PYDOCK, "-g", str(root), "-s", "overlay", "rmi", image])
            store = podman_store(base)
            start = time.perf_counter()
            podman(store, "pull", "-q", "--tls-verify=false", image, prefix=ns.prefix)
            pulls["podman"].append(time.perf_counter() - start)
            drop_podman_store(store)
            lroot = base / f"pydock-load{i}"
            loads["pydock"].append(timed([PYDOCK, "-g", str(lroot), "-s", "overlay", "load", "-q", "-i", str(archive)]))
            sh([PYDOCK, "-g", str(lroot), "-s", "overlay", "rmi", "localhost/bench:1"])
            store = podman_store(base)
            start = time.perf_counter()
            podman(store, "load", "-q", "-i", str(archive))
            loads["podman"].append(time.perf_counter() - start)
            drop_podman_store(store)
        p, q = statistics.median(pulls["pydock"]), statistics.median(pulls["podman"])
        lp, lq = statistics.median(loads["pydock"]), statistics.median(loads["podman"])
        s = statistics.median(second)
        print(f"image: 3 layers, {size_mb:.0f} MB uncompressed; {args.runs} cold runs each, medians")
        print(f"pull (cold)      pydock {p:6.2f}s  podman {q:6.2f}s  ratio {p / q:4.2f}x  (target <= 1.0x)")
        print(f"load             pydock {lp:6.2f}s  podman {lq:6.2f}s  ratio {lp / lq:4.2f}x  (target <= 1.0x)")
        print(f"second pull      pydock {s:6.3f}s  (target <= 0.2 s)")
    finally:
        if registry is not None:
            registry.terminate()
            registry.wait()
        drop_podman_store(builder)
        ns.close()
        for root in base.glob("pydock*"):
            subprocess.run(["umount", "-R", str(root)], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    main()
