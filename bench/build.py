"""`pydock build` timed against `podman build` in the same run.

- cold build: a realistic context (two stages, ~300 files copied, four RUN steps) into a fresh store that
  has only the base image, pydock vs `podman build` (target: <= 1.0x).
- fully cached rebuild of the same context: pydock, absolute (target: <= 0.5 s).

Both sides use overlay storage, the same base (the busybox rootfs tar imported by each) and no network
for RUN steps; runs are interleaved so both see the same machine. Python bytecode is compiled first, as
an installed pydock has it.

Usage: .venv/bin/python bench/build.py [--runs 3] [--files 300]
Needs root and podman. Prints medians and ratios; never asserts.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import PYDOCK
from images import drop_podman_store, podman, podman_store, sh, timed  # the podman store helpers (same dir)

PODMAN_BUILD = ["--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                "--format", "docker", "-q"]
BASE = "localhost/bbase:latest"

DOCKERFILE = f"""\
FROM {BASE} AS build
ARG VERSION=1.0
WORKDIR /src
COPY src/ ./
RUN find . -type f | sort > /manifest && wc -l < /manifest > /count
RUN mkdir -p /out && xargs cat < /manifest > /out/all.txt && echo "v$VERSION" > /out/version
RUN tar -cf /out/src.tar -C /src . && md5sum /out/src.tar > /out/sum

FROM {BASE}
RUN echo 'app:x:1000:1000::/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group
COPY --from=build /out/ /app/
COPY --chown=app:app config/ /app/config/
ENV APP_HOME=/app
USER app
CMD ["cat", "/app/sum"]
"""


def make_context(path: Path, files: int) -> None:
    (path / "config").mkdir(parents=True)
    (path / "config" / "app.conf").write_text("port=8080\n")
    for i in range(files):
        d = path / "src" / f"pkg{i % 30:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i:03d}.py").write_text(f"# module {i}\n" + "x = 1\n" * (i % 40 + 1))
    (path / "Dockerfile").write_text(DOCKERFILE)


def seeded_podman_store(base: Path, rootfs: Path) -> Path:
    store = podman_store(base)
    podman(store, "import", str(rootfs), BASE)
    return store


def pydock(root: Path, *args: str) -> list[str]:
    return [PYDOCK, "-g", str(root), "-s", "overlay", "-b", "none", *args]


def drop_pydock_root(root: Path) -> None:
    subprocess.run(["umount", "-R", str(root)], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=300)
    args = parser.parse_args()
    sh([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parent.parent)])
    base = Path(tempfile.mkdtemp(prefix="pdkb-", dir="/tmp"))  # podman wants a short runroot
    try:
        rootfs = base / "busybox.tar"
        with open(rootfs, "wb") as f:
            subprocess.run([sys.executable, "-m", "pydock.graph.busybox"], stdout=f, check=True)
        ctx = base / "ctx"
        make_context(ctx, args.files)
        cold: dict[str, list[float]] = {"pydock": [], "podman": []}
        cached: list[float] = []
        for i in range(args.runs):
            root = base / f"pydock{i}"
            sh(pydock(root, "import", str(rootfs), BASE))
            cold["pydock"].append(timed(pydock(root, "build", "-q", "-t", "bench:1", str(ctx))))
            for _ in range(3):
                cached.append(timed(pydock(root, "build", "-q", "-t", "bench:1", str(ctx))))
            out = sh(pydock(root, "run", "--rm", "bench:1")).stdout
            drop_pydock_root(root)
            store = seeded_podman_store(base, rootfs)
            start = time.perf_counter()
            podman(store, "build", *PODMAN_BUILD, "-t", "bench:1", str(ctx))
            cold["podman"].append(time.perf_counter() - start)
            drop_podman_store(store)
        p, q = statistics.median(cold["pydock"]), statistics.median(cold["podman"])
        c = statistics.median(cached)
        print(f"context: {args.files} files in two stages, 4 RUN steps; {args.runs} cold runs each, medians "
              f"(the image prints {out.split()[0].decode()[:12]}...)")
        print(f"cold build       pydock {p:6.2f}s  podman {q:6.2f}s  ratio {p / q:4.2f}x  (target <= 1.0x)")
        print(f"cached rebuild   pydock {c:6.3f}s  (target <= 0.5 s)")
    finally:
        for root in base.glob("pydock*"):
            drop_pydock_root(root)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
