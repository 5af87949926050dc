"""How the everyday commands grow with the size of a root: 10 vs 1000 exited containers, and `ps -a` vs podman.

    .venv/bin/python bench/scale.py [-n ROUNDS] [--containers 1000] [--driver overlay] [--no-podman] [--src DIR]
                                    [--baseline DIR] [--cold]

Two roots on the same storage driver, networking off (`-b none`):
- small: 10 exited containers, 2 extra images, 20 names/links;
- large: N exited containers (default 1000), N/5 extra images, 2N names/links (a name each; each
  odd-numbered container links to two even-numbered ones, `/<name>/db` and `/<name>/cache`).
Containers are made with the Runtime API (create, then recorded as exited: no run is needed to
list, inspect or remove them); extra images are empty layers on busybox, each tagged.
Timed, interleaved round by round, each through the CLI as a user runs it (the `pydock` entry point and
its warm command server, cached bytecode; `--cold`: every command in its own interpreter):
`ps -a`, `images`, `run --rm --net none busybox true`, `inspect NAME`, `inspect ID-PREFIX`, `rm NAME`
(of a container made just before, so the count stays put); and `podman ps -a` over a podman store of
its own (temporary --root/--runroot) holding the same number of created containers.
Prints medians and the ratios large/small (target <= 1.2x each) and pydock/podman `ps -a` at N
(target <= 0.5x). With `--baseline DIR` (another source tree, e.g. `git archive main | tar -x -C DIR`)
its CLI is timed too, interleaved command by command on the same roots, so a before/after comparison
shares the machine's load (the machine is shared: separate runs minutes apart are not comparable).
Everything made is removed at the end (podman's store too).
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydock.runtime.runtime import Runtime
from pydock.runtime.state import State, utcnow

from benchlib import PODMAN_ULIMITS, PYDOCK, cli_env, timed

PODMAN_FLAGS = ["--runtime", "runc"]
PACKAGES = ("runtime", "graph", "devmapper", "links", "archive", "dockerinit", "cli", "utils")


def populate(rt: Runtime, containers: int, images: int) -> list[str]:
    """`containers` exited containers with a name and a link each, `images` tagged images; their names."""
    busybox = rt.images.resolve("busybox")
    for i in range(images):
        img = rt.graph.register(None, parent=busybox.id, comment=f"scale bench {i}")
        rt.images.tags.set(f"scale/image{i}", "latest", img.id)
    names: list[str] = []
    for i in range(containers):
        c = rt.create("busybox", ["true"], name=f"scale{i}", network=False)
        now = utcnow()
        with c.locked():
            c.save_state(State(started_at=now, finished_at=now, exit_code=i % 3))
        names.append(c.name.lstrip("/"))
        if i % 2:  # odd ones link to two even ones, as an app to its services: links one level deep
            for alias, target in (("db", names[i - 1]), ("cache", names[max(i - 3, 0)])):
                rt.names.set(f"{c.name}/{alias}", rt.get(target).id)
    return names


def teardown(root: Path, driver: str) -> None:
    with Runtime(root, driver, bridge="none") as rt:
        for c in rt.containers(all=True):
            rt.remove(c, force=True)
        for image in sorted(rt.images.graph.list(), key=lambda i: -rt.graph.depth(i)):
            try:
                rt.images.graph.delete(image.id)
            except Exception as err:  # noqa: BLE001 - best effort cleanup, reported
                print(f"cleanup: image {image.short_id}: {err}", file=sys.stderr)
        rt.driver.shutdown()


class Podman:
    """A podman store of its own under `work` (nothing outside it is touched)."""

    def __init__(self, work: Path, tar: Path) -> None:
        self.base = ["podman", "--root", str(work / "root"), "--runroot", str(work / "runroot"),
                     "--tmpdir", str(work / "tmp"), *PODMAN_FLAGS]
        self.work = work
        subprocess.run([*self.base, "import", str(tar), "bench-busybox:latest"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def populate(self, n: int) -> None:
        def one(i: int) -> None:
            subprocess.run([*self.base, "create", "--network", "none", *PODMAN_ULIMITS, "--name", f"scale{i}",
                            "bench-busybox:latest", "/bin/true"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(one, range(n)))

    def ps(self) -> list[str]:
        return [*self.base, "ps", "-a"]

    def close(self) -> None:
        subprocess.run([*self.base, "rm", "-a", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([*self.base, "system", "reset", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["umount", "-R", "-l", str(self.work / "root")], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=9)
    ap.add_argument("--containers", type=int, default=1000)
    ap.add_argument("--driver", default="overlay")
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--src", type=Path, default=None,
                    help="time the CLI of another pydock source tree (e.g. `git archive main | tar -x -C SRC`) "
                         "on the same roots, for before/after numbers")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="also time the CLI of this source tree, interleaved, and print both")
    ap.add_argument("--cold", action="store_true",
                    help="every command in its own interpreter (PYDOCK_CLI_SERVER=0), as after an idle minute")
    args = ap.parse_args()
    from pydock.graph.busybox import busybox_tar_bytes

    work = Path(tempfile.mkdtemp(prefix="pydock-bench-scale-"))
    sizes = {"small": 10, "large": args.containers}
    roots = {k: work / k for k in sizes}
    env = cli_env(server=not args.cold)  # time what users run: the entry point, cached bytecode
    src = Path(__file__).resolve().parents[1]

    def env_for(tree: Path, name: str) -> dict[str, str]:
        """The environment running the CLI of `tree`: a directory holding only a `pydock` link to it."""
        link = work / name
        link.mkdir()
        (link / "pydock").symlink_to(tree.resolve())
        for package in PACKAGES:
            compileall.compile_dir(tree / package, quiet=1)
        return {**env, "PYTHONPATH": str(link)}

    trees = {"": env_for(args.src, "src") if args.src is not None else env}
    if args.src is not None:
        src = args.src
    else:
        for package in PACKAGES:
            compileall.compile_dir(src / package, quiet=1)
    if args.baseline is not None:
        trees["baseline"] = env_for(args.baseline, "baseline")
    podman: Podman | None = None
    samples: dict[tuple[str, str], list[float]] = {}
    try:
        t0 = time.perf_counter()
        names: dict[str, list[str]] = {}
        for key, n in sizes.items():
            with Runtime(roots[key], args.driver, bridge="none") as rt:
                names[key] = populate(rt, n, max(n // 5, 2))
                storage = rt.driver_reason
        print(f"populated pydock roots in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if not args.no_podman and shutil.which("podman"):
            t0 = time.perf_counter()
            tar = work / "busybox.tar"
            tar.write_bytes(busybox_tar_bytes())
            podman = Podman(work / "podman", tar)
            podman.populate(args.containers)
            print(f"populated podman in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

        def cli(key: str, *argv: str) -> list[str]:
            return [PYDOCK, "-g", str(roots[key]), "-s", args.driver, "-b", "none", *argv]

        def short_id(key: str, name: str) -> str:
            with Runtime(roots[key], args.driver, bridge="none") as rt:
                return rt.get(name).id[:12]

        prefixes = {key: short_id(key, names[key][len(names[key]) // 2]) for key in sizes}
        commands = {
            "ps -a": lambda key: cli(key, "ps", "-a"),
            "images": lambda key: cli(key, "images"),
            "run --rm true": lambda key: cli(key, "run", "--rm", "--net", "none", "busybox", "true"),
            "inspect NAME": lambda key: cli(key, "inspect", names[key][len(names[key]) // 2]),
            "inspect ID": lambda key: cli(key, "inspect", prefixes[key]),
        }
        for _ in range(2):  # warm-up
            for make in commands.values():
                for key in sizes:
                    for tree_env in trees.values():
                        timed(make(key), tree_env)
        for _ in range(args.rounds):
            for label, make in commands.items():
                for key in sizes:
                    for tree, tree_env in trees.items():
                        samples.setdefault((label, key + tree), []).append(timed(make(key), tree_env))
            for key in sizes:
                for tree, tree_env in trees.items():
                    with Runtime(roots[key], args.driver, bridge="none") as rt:
                        victim = rt.create("busybox", ["true"], name="victim-" + uuid.uuid4().hex[:8], network=False)
                    samples.setdefault(("rm", key + tree), []).append(timed(cli(key, "rm", victim.name[1:]), tree_env))
            if podman is not None:
                samples.setdefault(("ps -a", "podman"), []).append(timed(podman.ps()))
    finally:
        for key in sizes:
            if roots[key].exists():
                try:
                    teardown(roots[key], args.driver)
                except Exception as err:  # noqa: BLE001 - report, then remove what is left
                    print(f"cleanup of {key}: {err}", file=sys.stderr)
        if podman is not None:
            podman.close()
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    print(f"{args.rounds} interleaved rounds; storage: {storage}; networking off; CLI from {src}")
    print(f"  small root: 10 containers, 2 extra images, 20 names/links; large: {args.containers} containers, "
          f"{args.containers // 5} extra images, {2 * args.containers} names/links")
    for tree in trees:
        if tree:
            print(f"  baseline, interleaved with the above: CLI from {args.baseline}")
        print(f"  {'command':<16} {'small ms':>9} {'large ms':>9} {'large/small':>12}  target <= 1.20x")
        for label in ("ps -a", "images", "run --rm true", "inspect NAME", "inspect ID", "rm"):
            s, big = med[(label, "small" + tree)], med[(label, "large" + tree)]
            ratio = big / s
            print(f"  {label:<16} {s:9.1f} {big:9.1f} {ratio:11.2f}x  {'met' if ratio <= 1.2 else 'NOT met'}")
    if ("ps -a", "podman") in med:
        p = med[("ps -a", "podman")]
        ratio = med[("ps -a", "large")] / p
        print(f"  podman ps -a with {args.containers}: {p:.1f} ms; pydock/podman = {ratio:.2f}x  "
              f"(target <= 0.50x: {'met' if ratio <= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
