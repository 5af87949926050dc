"""Benchmark the name registry and the network path `pydock run` takes, against peers measured in the same run.

1. Names: register + look up + purge one container name with GraphDB (one lazily opened WAL connection)
   vs the same SQL with a new connection per call (Docker's PR-era gograph), same file system.
2. Network: NetworkManager.allocate + release with the bridge already up (the `run` hot path; no pyroute2)
   vs the same allocate + release when pyroute2 is imported and used to look the bridge up (what the
   path would cost with netlink reads), inside a private network namespace.

Usage: .venv/bin/python bench/links.py [--runs N]. Needs root (namespace). Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydock.links.graphdb import GraphDB
from pydock.links.network import NetworkManager
from pydock.utils.paths import RootLayout


def _median_ms(fn, runs: int) -> float:
    times = []
    for i in range(runs):
        t = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def bench_names(runs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        g = GraphDB(Path(tmp) / "a.db")

        def ours(i: int) -> None:
            cid = f"{i:064x}"
            g.set(f"/c{i}", cid)
            assert g.get(f"/c{i}") == cid
            g.purge(cid)

        path = Path(tmp) / "b.db"
        schema = GraphDB(path)
        schema.list()  # creates the same schema
        schema.close()

        def per_call(sql: str, args: tuple) -> list:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            try:
                conn.execute("PRAGMA synchronous = NORMAL")  # same durability as GraphDB
                conn.execute("BEGIN IMMEDIATE")
                rows = conn.execute(sql, args).fetchall()
                conn.execute("COMMIT")
                return rows
            finally:
                conn.close()

        def peer(i: int) -> None:
            cid = f"{i:064x}"
            per_call("INSERT OR IGNORE INTO entity (id) VALUES (?)", (cid,))
            per_call("INSERT INTO edge (entity_id, parent_id, name) VALUES (?, '0', ?)", (cid, f"c{i}"))
            assert per_call("SELECT entity_id FROM edge WHERE parent_id = '0' AND name = ?", (f"c{i}",))[0][0] == cid
            per_call("DELETE FROM edge WHERE entity_id = ?", (cid,))
            per_call("DELETE FROM entity WHERE id = ?", (cid,))

        a = _median_ms(ours, runs)
        b = _median_ms(peer, runs)
        g.close()
        return a, b


def bench_network(runs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        nm = NetworkManager(RootLayout(Path(tmp)), bridge="pdbench0", bip="10.201.0.1/16")
        nm.ensure_bridge()

        def ours(i: int) -> None:
            cid = f"{i:064x}"
            nm.allocate(cid)
            nm.release(cid)

        def peer(i: int) -> None:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                assert ipr.link_lookup(ifname="pdbench0")
            ours(i)

        a = _median_ms(ours, runs)
        b = _median_ms(peer, runs)
        nm.teardown()
        return a, b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.in_netns:
        a, b = bench_names(args.runs)
        print(f"names  register+get+purge: GraphDB {a:.3f} ms  per-call-connection {b:.3f} ms  ratio {a / b:.3f}")
        sys.stdout.flush()
        rc = subprocess.run(["unshare", "--net", sys.executable, __file__, "--runs", str(args.runs), "--in-netns"])
        sys.exit(rc.returncode)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    t = time.perf_counter()
    import pydock.links.network  # noqa: F401  (already imported; shows module cost is paid once)
    a, b = bench_network(args.runs)
    print(f"network allocate+release: NetworkManager {a:.3f} ms  with netlink lookup {b:.3f} ms  ratio {a / b:.2f}"
          f"  (pid {os.getpid()}, {time.perf_counter() - t:.1f} s)")


if __name__ == "__main__":
    main()
