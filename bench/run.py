"""`pydock run --rm busybox true` against its floor and a production peer, interleaved, same rootfs.

    .venv/bin/python bench/run.py [-n ROUNDS] [--driver overlay] [--baseline SRC]

- pydock: the `pydock` entry point end to end, through the warm CLI command server (client start-up,
          create, init layer, mount, lxc-start, remove).
- cold:   the same with PYDOCK_CLI_SERVER=0 (Python start-up and imports paid by the command, as by the
          first command after an idle minute).
- floor:  `lxc-start -F` alone on an already extracted copy of the same busybox rootfs, with the
          config.lxc pydock writes and its seccomp policy (what no wrapper can beat).
- baseline (`--baseline SRC`): the same CLI, cold, from another pydock source tree (e.g. `git archive
          main | tar -x -C SRC`), on the same root, to compare a change before/after.
- podman: `podman --runtime runc|crun run --rm --network none` of the same tarball imported into
          podman (runc if installed, else podman's default crun — the faster of the two).
With --bridge, the networked pair: pydock on its bridge vs podman on its default network, both in a
network namespace the bench makes (and leaves, with its command server stopped).
Prints medians, ratios (target: pydock <= 0.5x podman on overlay), where a warm run's time goes and the
import-time profile of the `run` path (modules that should stay off it: tabulate, tarfile, pyroute2, sqlite3).

Where the time goes: the interpreter's start (`python -S -c pass`), the client, hand-off and the worker's
CLI (`pydock version` less the interpreter), and the run itself; then the run's steps, timed in runs made
in this process, as a command server's worker makes them (Runtime.run, everything imported), each step's
time without the steps inside it (its medians are of other runs than the command's, on the same root).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchlib import PODMAN_ULIMITS, PYDOCK, busybox_root, cli_env, stop_cli_servers, timed

HEAVY = ("tabulate", "tarfile", "pyroute2", "sqlite3", "click")


class StepClock:
    """Each step's time in runs made in this process, less the time of the steps inside it."""

    def __init__(self) -> None:
        self.taken: dict[str, float] = {}
        self._inner: list[float] = []  # per open step: the time its inner steps took

    def wrap(self, owner: Any, name: str, step: str) -> None:
        """Time every call of `owner.name` (a function of a module or a class) as `step`."""
        inner = getattr(owner, name)

        @functools.wraps(inner)
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            self._inner.append(0.0)
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                self.taken[step] = self.taken.get(step, 0.0) + elapsed - self._inner.pop()
                if self._inner:
                    self._inner[-1] += elapsed

        setattr(owner, name, timed_call)


def step_clock() -> tuple[StepClock, list[str]]:
    """A clock on the steps of Runtime.run, and the steps in the order a run takes them."""
    from pydock.devmapper.driver import Driver
    from pydock.links.network import NetworkManager
    from pydock.runtime import removal, supervise
    from pydock.runtime.runtime import Runtime

    clock = StepClock()
    steps = [(Runtime, "create", "create: layers, config"),
             (Driver, "get", "storage: mount the rootfs"),
             (NetworkManager, "allocate", "network: an address"),
             (supervise, "prepare", "prepare: user, files, config.lxc"),
             (supervise, "_launch", "launch: helper, lxc-start spawned"),
             (Runtime, "run", "lxc-start and the command"),
             (Driver, "put", "storage: unmount the rootfs"),
             (NetworkManager, "release", "network: the address back"),
             (supervise, "finished", "finish: status, state, events"),
             (removal, "auto_remove", "auto-remove: layers, names, dir")]
    for owner, name, step in steps:
        clock.wrap(owner, name, step)
    return clock, [step for _, _, step in steps]


def import_profile(cmd: list[str], env: dict[str, str]) -> tuple[float, list[tuple[int, str]], list[str]]:
    """Total import time (ms), the ten slowest top-level imports, and which heavy modules were loaded."""
    p = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, env=env)
    rows = []
    loaded = []
    for line in p.stderr.decode().splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not cumulative.strip().isdigit():
            continue
        if name.strip() in HEAVY:
            loaded.append(name.strip())
        if name.startswith(" ") and not name.startswith("  "):
            rows.append((int(cumulative), name.strip()))
    total = sum(c for c, _ in rows) / 1000
    return total, sorted(rows, reverse=True)[:10], loaded


def print_breakdown(parts: dict[str, list[float]], steps: list[str], whole: float, floor: float) -> None:
    """Where the warm `pydock run --rm` goes (medians, ms): the command's fixed parts, then the run's steps
    as this process timed them (not subtracted from the whole: they are other runs, on the same root)."""
    ms = {k: statistics.median(v) * 1000 for k, v in parts.items()}
    fixed = [("interpreter start (python -S -c pass)", ms["interpreter"]),
             ("client, hand-off, worker's CLI (version)", ms["version"] - ms["interpreter"])]
    print("where the warm `pydock run --rm` goes (medians, ms):")
    print(f"  {'the whole command':<42} {whole * 1000:7.1f}")
    for label, value in fixed:
        print(f"  {label:<42} {value:7.1f}")
    print(f"  {'the run (the rest)':<42} {whole * 1000 - sum(v for _, v in fixed):7.1f}")
    print("the run's steps, timed in this process (everything imported, as in the command server's worker):")
    for step in steps:
        note = f"   (lxc-start alone: {floor * 1000:.1f})" if step == "lxc-start and the command" else ""
        print(f"  {step:<42} {ms[step]:7.1f}{note}")
    print(f"  {'sum':<42} {sum(ms[step] for step in steps):7.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=15)
    ap.add_argument("--driver", default="overlay")
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--baseline", type=Path, default=None, help="another pydock source tree to time too")
    ap.add_argument("--bridge", action="store_true",
                    help="the networked pair: pydock on its bridge vs podman on its default network, both inside "
                         "a network namespace of the bench's own")
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--run-opt", action="append", default=[],
                    help="an option for this tree's `run` only (e.g. --run-opt=--security-opt=seccomp=unconfined)")
    args = ap.parse_args()
    if args.bridge and not args.in_netns:  # bridges, veths and rules live in a namespace of the bench's own
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from netns_helpers import in_netns_argv

        return subprocess.run(in_netns_argv(sys.executable, *sys.argv, "--in-netns")).returncode
    net = [] if args.bridge else ["--net", "none"]
    podman_net = [] if args.bridge else ["--network", "none"]

    from pydock.runtime import confinement, lxcconf
    from pydock.runtime.runtime import Runtime

    work, root, tar_bytes = busybox_root("pydock-bench-run-", args.driver)
    with Runtime(root, args.driver, bridge="none") as rt:
        driver_reason = rt.driver_reason
    # the floor: an extracted copy of the same rootfs and the same config.lxc pydock renders
    rootfs = work / "rootfs"
    rootfs.mkdir()
    with tarfile.open(work / "busybox.tar") as t:
        t.extractall(rootfs)  # noqa: S202 - our own deterministic tarball
    for d in ("proc", "sys", "dev", "etc"):
        (rootfs / d).mkdir(exist_ok=True)
    conf = work / "floor.lxc"
    policy = work / "floor.seccomp"
    policy.write_text(confinement.lxc_policy(confinement.parse(())) or "")
    conf.write_text(lxcconf.render(lxcconf.LxcSpec(hostname="floor", rootfs=rootfs, seccomp=policy,
                                                   env=("PATH=/bin:/usr/bin",))))
    lxcpath = work / "lxc"
    lxcpath.mkdir()

    # Measure what users run: the entry point (through the warm CLI command server) and cached bytecode.
    # Under PYTHONDONTWRITEBYTECODE every start would recompile pydock's modules from source (~20 ms
    # here), which no installed copy does. `cold` is the same command with the server switched off.
    env = cli_env()
    cold_env = cli_env(server=False)
    import compileall

    src = Path(__file__).resolve().parents[1]
    for package in ("runtime", "graph", "devmapper", "links", "archive", "dockerinit", "cli"):
        compileall.compile_dir(src / package, quiet=1)
    base_cmd = [sys.executable, "-m", "pydock.cli.main", "-g", str(root), "-s", args.driver,
                "run", "--rm", *net, "busybox", "true"]
    pydock_cmd = [PYDOCK, *base_cmd[3:-2], *args.run_opt, *base_cmd[-2:]]
    floor_cmd = ["lxc-start", "-q", "-F", "-n", "floor-" + uuid.uuid4().hex[:8], "-P", str(lxcpath), "-f", str(conf),
                 "-o", str(work / "floor.log"), "-l", "INFO", "--", "/bin/true"]
    baseline_env = None
    if args.baseline is not None:  # a directory holding only a `pydock` link to the other tree
        link = work / "baseline"
        link.mkdir()
        (link / "pydock").symlink_to(args.baseline.resolve())
        for package in ("runtime", "graph", "devmapper", "links", "archive", "dockerinit", "cli"):
            compileall.compile_dir(args.baseline / package, quiet=1)
        baseline_env = {**env, "PYTHONPATH": str(link)}
    podman_tag = f"localhost/pydock-bench-busybox-{uuid.uuid4().hex[:8]}:latest"
    runtime_name = "runc" if shutil.which("runc") else "crun"
    podman_cmd = None
    if not args.no_podman and shutil.which("podman"):
        subprocess.run(["podman", "import", str(work / "busybox.tar"), podman_tag], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        podman_cmd = ["podman", "--runtime", runtime_name, "run", "--rm", *podman_net, *PODMAN_ULIMITS,
                      podman_tag, "/bin/true"]
    samples: dict[str, list[float]] = {"pydock": [], "cold": [], "lxc-start": []}
    parts: dict[str, list[float]] = {"interpreter": [], "version": []}
    interpreter_cmd = [sys.executable, "-S", "-c", "pass"]  # as the `pydock` entry point starts it
    version_cmd = [PYDOCK, "version"]
    clock, steps = step_clock()
    in_process = Runtime(root, args.driver, bridge="pydock0" if args.bridge else "none")
    devnull = open(os.devnull, "wb")

    def run_here() -> dict[str, float]:
        """One `run --rm busybox true` in this process: seconds per step."""
        clock.taken.clear()
        result = in_process.run("busybox", ["true"], remove=True, network="bridge" if args.bridge else "none",
                                stdout=devnull, stderr=devnull)
        if result.exit_code != 0:
            raise SystemExit(f"run --rm in process exited {result.exit_code}")
        return {step: clock.taken.get(step, 0.0) for step in steps}
    if baseline_env is not None:
        samples["baseline"] = []
    if podman_cmd:
        samples[f"podman/{runtime_name}"] = []
    try:
        timed(pydock_cmd, env)  # warm caches once each (and start the command server)
        timed(pydock_cmd, cold_env)
        timed(floor_cmd)
        if baseline_env is not None:
            timed(base_cmd, baseline_env)
        if podman_cmd:
            timed(podman_cmd)
        timed(version_cmd, env)
        run_here()
        for _ in range(args.rounds):
            samples["pydock"].append(timed(pydock_cmd, env))
            parts["interpreter"].append(timed(interpreter_cmd, env))
            parts["version"].append(timed(version_cmd, env))
            for step, dt in run_here().items():
                parts.setdefault(step, []).append(dt)
            samples["cold"].append(timed(pydock_cmd, cold_env))
            samples["lxc-start"].append(timed(floor_cmd))
            if baseline_env is not None:
                samples["baseline"].append(timed(base_cmd, baseline_env))
            if podman_cmd:
                samples[f"podman/{runtime_name}"].append(timed(podman_cmd))
        total, slowest, loaded = import_profile([*base_cmd[:-2], *args.run_opt, *base_cmd[-2:]], cold_env)
    finally:
        in_process.close()
        devnull.close()
        if args.bridge:
            stop_cli_servers()
        if podman_cmd:
            subprocess.run(["podman", "rmi", "-f", podman_tag], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with Runtime(root, args.driver, bridge="none") as rt:
            for image in rt.images.graph.list():
                try:
                    rt.images.graph.delete(image.id)
                except Exception:  # noqa: BLE001
                    pass
            rt.driver.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    medians = {k: statistics.median(v) for k, v in samples.items()}
    network = "pydock's bridge vs podman's default network" if args.bridge else "--net none / --network none"
    print(f"run --rm {' '.join(args.run_opt)} busybox true, {args.rounds} interleaved rounds; storage: {driver_reason}; "
          f"{network}")
    for name, med in medians.items():
        vals = samples[name]
        print(f"  {name:<14} median {med * 1000:7.1f} ms   (min {min(vals) * 1000:.1f}, max {max(vals) * 1000:.1f})")
    print(f"  pydock / lxc-start floor = {medians['pydock'] / medians['lxc-start']:.2f}x")
    if "baseline" in medians:
        print(f"  pydock / baseline ({args.baseline}) = {medians['pydock'] / medians['baseline']:.2f}x")
    peer = next((k for k in medians if k.startswith("podman")), None)
    if peer:
        ratio = medians["pydock"] / medians[peer]
        print(f"  pydock / {peer} = {ratio:.2f}x  (target <= 0.50x: {'met' if ratio <= 0.5 else 'NOT met'})")
        print(f"  cold / {peer} = {medians['cold'] / medians[peer]:.2f}x  (PYDOCK_CLI_SERVER=0: the first command "
              "after an idle minute)")
    print_breakdown(parts, steps, medians["pydock"], medians["lxc-start"])
    print(f"import time on the cold run path: {total:.1f} ms; heavy modules loaded: {', '.join(loaded) or 'none'}")
    for us, name in slowest:
        print(f"  {us / 1000:6.1f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
