"""`docker-compose up -d` of the test project (tests/api/compose_project: web, worker, db on busybox-built
images, a named volume, a user network, a published port) through `pydock serve`, versus the same
network, volume and three containers made one by one with the pydock CLI (`network create`, `volume
create`, `run -d` x3), interleaved, on one root, inside a network namespace this script makes.

    .venv/bin/python bench/compose.py [-n ROUNDS]

Target: compose median <= 1.5x CLI median. Prints both medians and the ratio. Needs root, lxc, the
docker CLI's peer docker-compose (Debian package docker-compose).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from api import wait_for_socket  # bench/api.py: the same server, started the same way
from benchlib import stop_server, timed

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "tests" / "api" / "compose_project"
NAME = "benchc"


def cli_steps(pydock: list[str]) -> list[list[str]]:
    """What `up -d` does, by hand: the network, the volume, then db, worker and web in depends_on order."""
    net, vol = f"{NAME}_back", f"{NAME}_data"
    return [[*pydock, "network", "create", net], [*pydock, "volume", "create", vol],
            [*pydock, "run", "-d", "--name", f"{NAME}_db_1", "--net", net, "--network-alias", "db",
             "-e", "DB_NAME=store", "-v", f"{vol}:/data", f"{NAME}_db"],
            [*pydock, "run", "-d", "--name", f"{NAME}_worker_1", "--net", net, "--network-alias", "worker",
             "-e", "DB_HOST=db", f"{NAME}_worker"],
            [*pydock, "run", "-d", "--name", f"{NAME}_web_1", "--net", net, "--network-alias", "web",
             "--network-alias", "frontdoor", "-p", "18080:8080", f"{NAME}_web"]]


def cli_down(pydock: list[str], env: dict[str, str]) -> None:
    for args in (["rm", "-f", f"{NAME}_web_1", f"{NAME}_worker_1", f"{NAME}_db_1"],
                 ["network", "rm", f"{NAME}_back"], ["volume", "rm", f"{NAME}_data"]):
        subprocess.run([*pydock, *args], capture_output=True, env=env)


def bench(rounds: int) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        raise SystemExit("docker-compose is not installed (Debian package docker-compose): nothing to compare")
    tmp = Path(tempfile.mkdtemp(prefix="pydock-bench-compose-"))
    root, sock, project = tmp / "root", tmp / "d.sock", tmp / "proj"
    shutil.copytree(PROJECT, project)
    pydock = [sys.executable, "-m", "pydock.cli.main", "-g", str(root)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYDOCK_", "DOCKER_"))}
    denv = {**env, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(tmp / "docker-config")}
    up = [compose, "--ansi", "never", "--project-directory", str(project), "-f", str(project / "docker-compose.yml"),
          "-p", NAME, "up", "-d"]
    down = [*up[:-2], "down", "-v"]
    server = subprocess.Popen([*pydock, "serve", "-H", f"unix://{sock}"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        wait_for_socket(sock, server)
        timed([*up[:-2], "build"], denv)  # the images, once (built through the server)
        composed, by_hand = [], []
        for _ in range(rounds):
            composed.append(timed(up, denv))
            timed(down, denv)
            by_hand.append(sum(timed(step, env) for step in cli_steps(pydock)))
            cli_down(pydock, env)
        a, c = statistics.median(composed), statistics.median(by_hand)
        print(f"rounds: {rounds}")
        print(f"docker-compose up -d (pydock serve):    median {a * 1000:.0f} ms "
              f"(min {min(composed) * 1000:.0f}, max {max(composed) * 1000:.0f})")
        print(f"pydock network/volume create + run -d x3: median {c * 1000:.0f} ms "
              f"(min {min(by_hand) * 1000:.0f}, max {max(by_hand) * 1000:.0f})")
        verdict = "ok" if a <= 1.5 * c else "OVER TARGET"
        print(f"ratio compose/cli: {a / c:.2f}x (target <= 1.50x: {verdict})")
    finally:
        subprocess.run(down, capture_output=True, env=denv)
        cli_down(pydock, env)
        stop_server(server)
        from pydock.runtime.runtime import Runtime
        from pydock.utils.errors import Conflict

        with Runtime(root, "overlay") as rt:
            for ctr in rt.containers(all=True):
                rt.remove(ctr, force=True)
            images = rt.images.graph.list()
            while images:  # children first: one pass deletes the leaves
                left = []
                for image in images:
                    try:
                        rt.images.graph.delete(image.id)
                    except Conflict:
                        left.append(image)
                if len(left) == len(images):
                    break
                images = left
            rt.driver.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", "--rounds", type=int, default=5)
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_netns:
        bench(args.rounds)
        return
    # bridges, veths and rules live in a namespace of the bench's own (with its own /sys, as lxc needs)
    sys.path.insert(0, str(REPO / "tests"))
    from netns_helpers import in_netns_argv

    raise SystemExit(subprocess.run(in_netns_argv(sys.executable, __file__, "-n", str(args.rounds),
                                                  "--in-netns")).returncode)


if __name__ == "__main__":
    main()
