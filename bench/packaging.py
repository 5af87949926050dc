"""Benchmark the single-file binary's start-up against the development install, measured in the same run.

1. `pydock version`: the venv's entry script (editable install, __pycache__ on disk) vs the zipapp run
   by /usr/bin/python3 (precompiled .pyc inside the zip) vs the same zipapp with the .pyc stripped
   (what `python3 -m zipapp` gives: every start compiles every imported module).
2. `pydock run --rm --net none busybox true` (root, lxc): venv vs zipapp, same root, image built first.

Usage: .venv/bin/python bench/packaging.py [--runs N]. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]


def _medians_ms(cases: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict[str, float]:
    """Median wall time per case; cases are interleaved so machine load drifts hit them alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, argv in cases.items():
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def _strip_pyc(binary: Path, out: Path) -> None:
    """The same zipapp without precompiled bytecode."""
    raw = binary.read_bytes()
    shebang = raw[: raw.index(b"\n") + 1]
    with zipfile.ZipFile(binary) as src, open(out, "wb") as f:
        f.write(shebang)
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                if not info.filename.endswith(".pyc"):
                    dst.writestr(info, src.read(info.filename))
    out.chmod(0o755)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYDOCK"))}
    with tempfile.TemporaryDirectory(prefix="pydock-bench-pack-") as tmp:
        work = Path(tmp)
        subprocess.run([str(SRC / "hack/make.sh"), "binary"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env={**os.environ, "PYDOCK_BUNDLES": str(work / "bundles")})
        binary = next((work / "bundles").glob("*/binary/pydock"))
        nopyc = work / "pydock-nopyc"
        _strip_pyc(binary.resolve(), nopyc)
        venv = Path(sys.executable).parent / "pydock"
        root = work / "root"
        cases = {"venv entry script": [str(venv)], "zipapp (.pyc inside)": ["/usr/bin/python3", str(binary)],
                 "zipapp without .pyc": ["/usr/bin/python3", str(nopyc)]}
        print(f"pydock version, median of {args.runs}:")
        results = _medians_ms({name: [*argv, "-g", str(root), "version"] for name, argv in cases.items()},
                              args.runs, env)
        base = results["venv entry script"]
        for name, ms in results.items():
            print(f"  {name:24s} {ms:7.1f} ms   x{ms / base:.2f} vs venv")
        if os.geteuid() == 0:
            run = ["run", "--rm", "--net", "none", "busybox", "true"]
            subprocess.run([str(venv), "-g", str(root), *run], check=True, env=env)  # build busybox once
            print(f"pydock run --rm --net none busybox true, median of {args.runs}:")
            got = _medians_ms({"venv": [str(venv), "-g", str(root), *run],
                               "zipapp": ["/usr/bin/python3", str(binary), "-g", str(root), *run]}, args.runs, env)
            v, z = got["venv"], got["zipapp"]
            print(f"  {'venv entry script':24s} {v:7.1f} ms\n  {'zipapp':24s} {z:7.1f} ms   x{z / v:.2f} vs venv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
