"""What pydock keeps resident per detached container against podman's conmon: N `sleep` containers each
(`--net none`), then the RSS and PSS of every process each tool keeps for them besides the containers' own
(pydock: the monitor and its lxc-start; podman: conmon).

    .venv/bin/python bench/memory.py [--counts 10,50] [--driver overlay]

Target (issue 17): the total for 50 containers <= 1.5x podman's, and the per-container cost flat as the
count grows. Prints totals, per-container averages and ratios for each count, and pydock's split between
its monitors and lxc-start (lxc's own monitor of each container, which any pydock built on lxc keeps: its
ratio to conmon is the floor such a design can reach).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchlib import (PODMAN_BUSYBOX, PODMAN_ULIMITS, PYDOCK, busybox_root, cli_env, podman_import_busybox,
                      private_podman, remove_everything, timed)


def kib(pid: int, field: str) -> int:
    """A process's `Rss`/`Pss` in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass  # exited meanwhile: it keeps nothing
    return 0


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def pydock_kept(root: str, driver: str) -> tuple[list[int], list[int]]:
    """Each running container's monitor, and its lxc-start."""
    from pydock.runtime.runtime import Runtime

    monitors, lxc = [], []
    with Runtime(root, driver, bridge="none") as rt:
        for c in rt.containers():
            monitor = c.state.monitor_pid
            if monitor:
                monitors.append(monitor)
                lxc.extend(p for p in children(monitor) if _comm(p) == "lxc-start")
    return monitors, lxc


def mib(pids: list[int], field: str) -> float:
    return sum(kib(p, field) for p in pids) / 1024


def podman_kept(podman: list[str]) -> list[int]:
    """Each running container's conmon."""
    out = subprocess.run([*podman, "ps", "-q"], capture_output=True, text=True, check=True).stdout.split()
    if not out:
        return []
    data = json.loads(subprocess.run([*podman, "inspect", *out], capture_output=True, text=True, check=True).stdout)
    return [int(d["State"]["ConmonPid"]) for d in data if d["State"].get("ConmonPid")]


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="10,50")
    ap.add_argument("--driver", default="overlay")
    args = ap.parse_args()
    counts = sorted(int(n) for n in args.counts.split(","))

    work, root, _ = busybox_root("pydock-bench-mem-", args.driver)
    env = cli_env()  # `pydock` as users run it: monitors are forks of the command server's workers
    pydock = [PYDOCK, "-g", str(root), "-s", args.driver]
    podman = private_podman(work)
    try:
        if podman is not None:
            podman_import_busybox(podman, work)
        made = 0
        print(f"driver: {args.driver}; per container: pydock = monitor + lxc-start, podman = conmon")
        print(f"{'count':>5} {'tool':7} {'RSS MiB':>9} {'per ctr':>8} {'PSS MiB':>9} {'per ctr':>8}")
        for count in counts:
            while made < count:
                timed([*pydock, "run", "-d", "--net", "none", "busybox", "sleep", "3600"], env)  # a failure: its stderr
                if podman is not None:
                    timed([*podman, "run", "-d", "--network", "none", *PODMAN_ULIMITS, PODMAN_BUSYBOX, "sleep", "3600"])
                made += 1
            totals = {}
            monitors, lxc = pydock_kept(str(root), args.driver)
            for tool, pids in (("pydock", monitors + lxc), ("podman", podman_kept(podman) if podman is not None else [])):
                if tool == "podman" and podman is None:
                    continue
                rss, pss = mib(pids, "Rss"), mib(pids, "Pss")
                totals[tool] = (rss, pss)
                print(f"{count:5} {tool:7} {rss:9.1f} {rss / count:8.2f} {pss:9.1f} {pss / count:8.2f}")
            lxc_rss = mib(lxc, "Rss")
            print(f"{count:5} of pydock's RSS per container: monitor {mib(monitors, 'Rss') / count:.2f} MiB, lxc-start "
                  f"{lxc_rss / count:.2f} MiB ({(lxc_rss - mib(lxc, 'Anonymous')) / count:.2f} of it file-backed: "
                  f"code and libraries)")
            if "podman" in totals:
                (a, b), (c, d) = totals["pydock"], totals["podman"]
                verdict = "met" if a <= 1.5 * c else "NOT met"
                print(f"{count:5} ratio   RSS {a / c:.2f}x  PSS {b / d:.2f}x  (target <= 1.50x: {verdict}); "
                      f"lxc-start alone {lxc_rss / c:.2f}x")
    finally:
        remove_everything(work, root, args.driver, podman)
    return 0


if __name__ == "__main__":
    sys.exit(main())
