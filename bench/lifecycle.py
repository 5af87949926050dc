"""`create`, `start`, `stop` and `rm` of one container, pydock against podman+runc, interleaved round by round
on the same busybox tarball, `--net none`; the container's command stops at once on SIGTERM.

    .venv/bin/python bench/lifecycle.py [-n ROUNDS] [--driver overlay] [--baseline PYDOCK] [--no-cold]

Target (issue 17): start, stop and rm each <= 0.5x podman's. Prints each step's median and the ratios, for
`pydock` as users run it (the entry point handing the command to the warm CLI command server) and cold
(PYDOCK_CLI_SERVER=0: Python's start-up and pydock's imports paid by the command, as after an idle minute).
`--baseline PYDOCK` also times another install's entry point (e.g. /work/main/.venv/bin/pydock) through its
own warm command server on a root of its own, round by round with the others, so a change is compared
before/after in the same run; `--no-cold` leaves the cold variant out.
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
    ap.add_argument("--baseline", default=None, help="another pydock entry point to time too")
    ap.add_argument("--no-cold", action="store_true", help="leave out the cold (no command server) variant")
    args = ap.parse_args()

    work, root, _ = busybox_root("pydock-bench-life-", args.driver)
    pydock = [PYDOCK, "-g", str(root), "-s", args.driver]
    variants = {"pydock": (pydock, cli_env())}
    if not args.no_cold:
        variants["cold"] = (pydock, cli_env(server=False))
    base = busybox_root("pydock-bench-life-base-", args.driver)[:2] if args.baseline else None
    if base is not None:
        variants["baseline"] = ([args.baseline, "-g", str(base[1]), "-s", args.driver], cli_env())
    podman = private_podman(work)
    samples: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STEPS} for name in variants}
    try:
        if podman is not None:
            podman_import_busybox(podman, work)
            samples["podman"] = {s: [] for s in STEPS}
        pydock_args = ["--net", "none", "busybox"]
        podman_args = ["--network", "none", *PODMAN_ULIMITS, PODMAN_BUSYBOX]
        for cli, env in variants.values():  # warm each (and start the command servers)
            lifecycle(cli, pydock_args, env)
        if podman is not None:
            lifecycle(podman, podman_args, None)
        for n in range(args.rounds):
            names = list(variants)
            names = names[n % len(names):] + names[:n % len(names)]  # each goes first in turn
            for name in names:
                cli, env = variants[name]
                for step, dt in lifecycle(cli, pydock_args, env).items():
                    samples[name][step].append(dt)
            if podman is not None:
                for step, dt in lifecycle(podman, podman_args, None).items():
                    samples["podman"][step].append(dt)
        print(f"driver: {args.driver}, rounds: {args.rounds}, --net none; "
              "pydock = through the warm command server, cold = PYDOCK_CLI_SERVER=0")
        if args.baseline:
            print(f"baseline: {args.baseline}")
        others = [name for name in ("cold", "baseline") if name in variants]
        print(f"{'step':8} {'pydock ms':>10}" + "".join(f" {name + ' ms':>12}" for name in others)
              + (f" {'podman ms':>10} {'ratio':>7}" + "".join(f" {name:>9}" for name in others)
                 + "  target <= 0.50x" if podman is not None else ""))
        for step in STEPS:
            mine = statistics.median(samples["pydock"][step]) * 1000
            theirs_other = [statistics.median(samples[name][step]) * 1000 for name in others]
            row = f"{step:8} {mine:10.1f}" + "".join(f" {ms:12.1f}" for ms in theirs_other)
            if podman is not None:
                theirs = statistics.median(samples["podman"][step]) * 1000
                ratio = mine / theirs
                verdict = "met" if ratio <= 0.5 else "NOT met"
                row += f" {theirs:10.1f} {ratio:6.2f}x" + "".join(f" {ms / theirs:8.2f}x" for ms in theirs_other)
                row += f"  {verdict if step != 'create' else '(no target)'}"
            print(row)
    finally:
        remove_everything(work, root, args.driver, podman)
        if base is not None:
            remove_everything(*base, args.driver)
    return 0


if __name__ == "__main__":
    sys.exit(main())
