"""`docker run --rm busybox true` against `pydock serve` versus `pydock run --rm busybox true`, interleaved,
on one root (overlay unless --driver says otherwise), both with `--net none`.

    .venv/bin/python bench/api.py [-n ROUNDS] [--driver overlay]

- api: the real docker CLI (28.x) over the unix socket: ping, create, attach, wait(removed), start - the
       containers start from the same detached monitors as the CLI's, which also remove them (--rm).
- cli: the pydock CLI end to end (Python start-up, create, run in the foreground, remove).
Target: api median <= 1.3x cli median. Prints both medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import stop_server, timed


def wait_for_socket(path: Path, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"pydock serve did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", "--rounds", type=int, default=15)
    parser.add_argument("--driver", default="overlay")
    args = parser.parse_args()
    docker = shutil.which("docker")
    if docker is None:
        raise SystemExit("the docker CLI is not installed: nothing to compare")
    tmp = Path(tempfile.mkdtemp(prefix="pydock-bench-api-"))
    root, sock = tmp / "root", tmp / "d.sock"
    pydock = [sys.executable, "-m", "pydock.cli.main", "-g", str(root), "-s", args.driver]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYDOCK_", "DOCKER_"))}
    denv = {**env, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(tmp / "docker-config")}
    server = subprocess.Popen([*pydock, "serve", "-H", f"unix://{sock}"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        wait_for_socket(sock, server)
        api_cmd = [docker, "run", "--rm", "--net", "none", "busybox", "true"]
        cli_cmd = [*pydock, "run", "--rm", "--net", "none", "busybox", "true"]
        timed(api_cmd, denv)  # builds busybox once, warms both paths
        timed(cli_cmd, env)
        api, cli = [], []
        for _ in range(args.rounds):
            api.append(timed(api_cmd, denv))
            cli.append(timed(cli_cmd, env))
        a, c = statistics.median(api), statistics.median(cli)
        print(f"driver: {args.driver}, rounds: {args.rounds}")
        print(f"docker run --rm busybox true (pydock serve): median {a * 1000:.1f} ms "
              f"(min {min(api) * 1000:.1f}, max {max(api) * 1000:.1f})")
        print(f"pydock run --rm busybox true (CLI):          median {c * 1000:.1f} ms "
              f"(min {min(cli) * 1000:.1f}, max {max(cli) * 1000:.1f})")
        verdict = "ok" if a <= 1.3 * c else "OVER TARGET"
        print(f"ratio api/cli: {a / c:.2f}x (target <= 1.30x: {verdict})")
    finally:
        stop_server(server)
        subprocess.run([*pydock, "rmi", "busybox"], capture_output=True, env=env)
        from pydock.runtime.runtime import Runtime

        with Runtime(root, args.driver) as rt:
            for ctr in rt.containers(all=True):
                rt.remove(ctr, force=True)
            for image in rt.images.graph.list():
                rt.images.graph.delete(image.id)
            rt.driver.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
