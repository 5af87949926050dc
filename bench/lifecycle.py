"""`create`, `start`, `stop` and `rm` of one container, pydock against podman+runc, interleaved round by round
on the same busybox tarball, `--net none`; the container's command stops at once on SIGTERM.

    .venv/bin/python bench/lifecycle.py [-n ROUNDS] [--driver overlay]

Target (issue 17): start, stop and rm each <= 0.5x podman's. Prints each step's median and the ratios, for
`pydock` as users run it (the entry point handing the command to the warm CLI command server) and cold
(PYDOCK_CLI_SERVER=0: Python's start-up and pydock's imports paid by the command, as after an idle minute).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from benchlib import (PODMAN_BUSYBOX, PODMAN_ULIMITS, PYDOCK, busybox_root, cli_env, podman_import_busybox,
                      private_podman, remove_everything, timed)

#: a command that ends at once on SIGTERM (`wait` is interrupted where `sleep` would run out its second)
LOOP = 'trap "exit 0" TERM; echo ready; while :; do sleep 1 & wait; done'
STEPS = ("create", "start", "stop", "rm")


def _until_ready(cli: list[str], cid: str, env: dict[str, str] | None) -> None:
    """Wait until the container's shell has its trap set (it says `ready` after it)."""
    deadline = time.monotonic() + 30
    while b"ready" not in subprocess.run([*cli, "logs", cid], env=env, capture_output=True).stdout:
        if time.monotonic() > deadline:
            raise SystemExit(f"{cid} never became ready")
        time.sleep(0.01)


def lifecycle(cli: list[str], create_args: list[str], env: dict[str, str] | None) -> dict[str, float]:
    """One container through create, start, stop and rm: seconds per step."""
    t0 = time.perf_counter()
    out = subprocess.run([*cli, "create", *create_args, "sh", "-c", LOOP], env=env, capture_output=True)
    times = {"create": time.perf_counter() - t0}
    if out.returncode != 0:
        raise SystemExit(f"create failed: {out.stderr.decode()[-500:]}")
    cid = out.stdout.decode().split()[-1]
    times["start"] = timed([*cli, "start", cid], env)
    _until_ready(cli, cid, env)  # untimed: a SIGTERM before the shell's trap would wait out stop's timeout
    times["stop"] = timed([*cli, "stop", "-t", "10", cid], env)
    times["rm"] = timed([*cli, "rm", cid], env)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=9)
    ap.add_argument("--driver", default="overlay")
    args = ap.parse_args()

    work, root, _ = busybox_root("pydock-bench-life-", args.driver)
    pydock = [PYDOCK, "-g", str(root), "-s", args.driver]
    variants = {"pydock": cli_env(), "cold": cli_env(server=False)}
    podman = private_podman(work)
    samples: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STEPS} for name in variants}
    try:
        if podman is not None:
            podman_import_busybox(podman, work)
            samples["podman"] = {s: [] for s in STEPS}
        pydock_args = ["--net", "none", "busybox"]
        podman_args = ["--network", "none", *PODMAN_ULIMITS, PODMAN_BUSYBOX]
        for env in variants.values():  # warm both (and start the command server)
            lifecycle(pydock, pydock_args, env)
        if podman is not None:
            lifecycle(podman, podman_args, None)
        for _ in range(args.rounds):
            for name, env in variants.items():
                for step, dt in lifecycle(pydock, pydock_args, env).items():
                    samples[name][step].append(dt)
            if podman is not None:
                for step, dt in lifecycle(podman, podman_args, None).items():
                    samples["podman"][step].append(dt)
        print(f"driver: {args.driver}, rounds: {args.rounds}, --net none; "
              "pydock = through the warm command server, cold = PYDOCK_CLI_SERVER=0")
        print(f"{'step':8} {'pydock ms':>10} {'cold ms':>10} {'podman ms':>10} {'ratio':>7} {'cold':>7}  target <= 0.50x")
        for step in STEPS:
            mine = statistics.median(samples["pydock"][step]) * 1000
            cold = statistics.median(samples["cold"][step]) * 1000
            if podman is None:
                print(f"{step:8} {mine:10.1f} {cold:10.1f}")
                continue
            theirs = statistics.median(samples["podman"][step]) * 1000
            ratio = mine / theirs
            verdict = "met" if ratio <= 0.5 else "NOT met"
            print(f"{step:8} {mine:10.1f} {cold:10.1f} {theirs:10.1f} {ratio:6.2f}x {cold / theirs:6.2f}x  "
                  f"{verdict if step != 'create' else '(no target)'}")
    finally:
        remove_everything(work, root, args.driver, podman)
    return 0


if __name__ == "__main__":
    sys.exit(main())
