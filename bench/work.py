"""The work of create, start, exec, stop, rm and run --rm after imports: each step timed inside one Python
process with everything already imported (what a resident command server leaves of a command), next
to podman's whole command, interleaved round by round, same busybox tarball, `--net none`.

    .venv/bin/python bench/work.py [-n ROUNDS] [--driver overlay] [--profile [N]] [--baseline SRC]

The in-process work is what pydock cannot hand to the command server; the targets (issue 17) are on
the whole command (start, stop, rm, exec, run --rm each <= 0.5x podman's), so the work must be a small
part of that. `--profile` also runs each step under cProfile and prints its N heaviest functions.

Each step follows the one before at once, for both: `start` returns once lxc-start is launched and
recorded, before the container's command runs (podman's returns when it runs), so what lxc still sets
up then is paid by the `exec` right after it (an exec of a settled container costs its lxc-attach,
~40 ms here). `--baseline SRC` also times another pydock source tree (e.g. `git archive main | tar -x
-C SRC`) in a worker process of its own (its own root), round by round with the others, so a change
is compared before/after in the same run. `--no-podman` times pydock alone.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import (PODMAN_BUSYBOX, PODMAN_ULIMITS, busybox_root, podman_import_busybox, private_podman,
                      remove_everything, timed)

#: a command that ends at once on SIGTERM (`wait` is interrupted where `sleep` would run out its second)
LOOP = 'trap "exit 0" TERM; while :; do sleep 1 & wait; done'
STEPS = ("create", "start", "exec", "stop", "rm", "run --rm")


def pydock_round(rt: Any, devnull: Any, profiles: dict[str, cProfile.Profile] | None) -> dict[str, float]:
    """One container through every step in this process (looked up by id as a command would): seconds per step."""
    from pydock.runtime.exec import ExecConfig
    from pydock.runtime.options import CreateOptions

    times: dict[str, float] = {}
    box: dict[str, Any] = {}

    def step(name: str, fn: Callable[[], Any]) -> None:
        prof = profiles.get(name) if profiles is not None else None
        t0 = time.perf_counter()
        if prof is not None:
            prof.enable()
        try:
            fn()
        finally:
            if prof is not None:
                prof.disable()
        times[name] = time.perf_counter() - t0

    def create() -> None:
        box["id"] = rt.create(CreateOptions.of("busybox", ["sh", "-c", LOOP], network="none")).id

    def exec_() -> None:
        code = rt.exec(rt.get(box["id"]), ExecConfig(cmd=("true",)), stdin=None, stdout=devnull, stderr=devnull)
        if code != 0:
            raise SystemExit(f"exec exited {code}")

    def run_rm() -> None:
        code = rt.run("busybox", ["true"], remove=True, network="none", stdout=devnull, stderr=devnull).exit_code
        if code != 0:
            raise SystemExit(f"run --rm exited {code}")

    step("create", create)
    step("start", lambda: rt.start(rt.get(box["id"])))
    step("exec", exec_)
    step("stop", lambda: rt.stop(rt.get(box["id"]), 10))
    step("rm", lambda: rt.remove(rt.get(box["id"])))
    step("run --rm", run_rm)
    return times


def podman_round(podman: list[str], args: list[str]) -> dict[str, float]:
    """The same steps as whole podman commands: seconds per step."""
    t0 = time.perf_counter()
    out = subprocess.run([*podman, "create", *args, "sh", "-c", LOOP], capture_output=True)
    times = {"create": time.perf_counter() - t0}
    if out.returncode != 0:
        raise SystemExit(f"podman create failed: {out.stderr.decode()[-500:]}")
    cid = out.stdout.decode().split()[-1]
    times["start"] = timed([*podman, "start", cid])
    times["exec"] = timed([*podman, "exec", cid, "true"])
    times["stop"] = timed([*podman, "stop", "-t", "10", cid])
    times["rm"] = timed([*podman, "rm", cid])
    times["run --rm"] = timed([*podman, "run", "--rm", *args, "true"])
    return times


def worker(driver: str) -> int:
    """`--worker`: rounds of whichever pydock is importable, on a root of its own, one per line read
    (each answered with its times as a JSON line); the root goes at the end of input."""
    from pydock.runtime.runtime import Runtime
    from pydock.runtime import exec as _exec, supervise as _supervise, create as _create  # noqa: F401 - up front

    work, root, _ = busybox_root("pydock-bench-work-base-", driver)
    try:
        with Runtime(root, driver, bridge="none") as rt, open(os.devnull, "wb") as devnull:
            pydock_round(rt, devnull, None)  # warm, as the main process does
            print("ready", flush=True)
            for _ in sys.stdin:
                print(json.dumps(pydock_round(rt, devnull, None)), flush=True)
    finally:
        remove_everything(work, root, driver)
    return 0


def start_worker(src: Path, driver: str, link_dir: Path) -> subprocess.Popen:
    """A `--worker` running the pydock tree `src` (through a directory holding only a `pydock` link to it)."""
    link_dir.mkdir()
    (link_dir / "pydock").symlink_to(src.resolve())
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": f"{link_dir}{os.pathsep}{here}"}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", "--driver", driver],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit(f"the baseline worker ({src}) failed to start")
    return proc


def worker_round(proc: subprocess.Popen) -> dict[str, float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("round\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the baseline worker died")
    return json.loads(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=9)
    ap.add_argument("--driver", default="overlay")
    ap.add_argument("--no-podman", action="store_true", help="time pydock's work only")
    ap.add_argument("--baseline", type=Path, default=None, help="another pydock source tree to time too")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--profile", type=int, nargs="?", const=15, default=0,
                    help="also profile each step over the rounds and print its N heaviest functions")
    args = ap.parse_args()
    if args.worker:
        return worker(args.driver)

    from pydock.runtime.runtime import Runtime
    from pydock.runtime import exec as _exec, supervise as _supervise, create as _create  # noqa: F401 - imported up front

    work, root, _ = busybox_root("pydock-bench-work-", args.driver)
    podman = None if args.no_podman else private_podman(work)
    podman_args = ["--network", "none", *PODMAN_ULIMITS, PODMAN_BUSYBOX]
    samples: dict[str, dict[str, list[float]]] = {k: {s: [] for s in STEPS} for k in ("pydock", "baseline", "podman")}
    profiles = {s: cProfile.Profile() for s in STEPS} if args.profile else None
    devnull = open(os.devnull, "wb")
    base = None
    try:
        if args.baseline is not None:
            base = start_worker(args.baseline, args.driver, work / "baseline")
        with Runtime(root, args.driver, bridge="none") as rt:
            if podman is not None:
                podman_import_busybox(podman, work)
                podman_round(podman, podman_args)  # warm
            pydock_round(rt, devnull, None)  # warm: busybox resolved, ctty shim built, caches filled
            for n in range(args.rounds):
                # the two trees take turns going first: the one right after podman's round meets its
                # writes still being flushed
                sides = [("pydock", lambda: pydock_round(rt, devnull, None))]
                if base is not None:
                    sides.insert(n % 2, ("baseline", lambda: worker_round(base)))
                for side, one_round in sides:
                    for step, dt in one_round().items():
                        samples[side][step].append(dt)
                if podman is not None:
                    for step, dt in podman_round(podman, podman_args).items():
                        samples["podman"][step].append(dt)
            if profiles is not None:
                for _ in range(args.rounds):
                    pydock_round(rt, devnull, profiles)
        print(f"driver: {args.driver}, rounds: {args.rounds}, --net none; pydock: the work in one process "
              "after imports; podman: its whole command")
        if base is not None:
            print(f"baseline: {args.baseline}")
        print(f"{'step':9} {'pydock ms':>10}" + (f" {'baseline':>9} {'/base':>6}" if base else "")
              + (f" {'podman ms':>10} {'/podman':>8}" if podman else ""))
        for step in STEPS:
            mine = statistics.median(samples["pydock"][step]) * 1000
            row = f"{step:9} {mine:10.1f}"
            if base is not None:
                before = statistics.median(samples["baseline"][step]) * 1000
                row += f" {before:9.1f} {mine / before:5.2f}x"
            if podman is not None:
                theirs = statistics.median(samples["podman"][step]) * 1000
                row += f" {theirs:10.1f} {mine / theirs:7.2f}x"
            print(row)
        if profiles is not None:
            for step, prof in profiles.items():
                out = io.StringIO()
                stats = pstats.Stats(prof, stream=out)
                stats.sort_stats("cumulative").print_stats(args.profile)
                print(f"\n==== profile of {step} ({args.rounds} rounds; cumulative) ====")
                print("\n".join(line for line in out.getvalue().splitlines()[4:] if line.strip()))
    finally:
        devnull.close()
        if base is not None:
            base.communicate()  # end of input: the worker removes its root
        remove_everything(work, root, args.driver, podman)
    return 0


if __name__ == "__main__":
    sys.exit(main())
