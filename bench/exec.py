"""`pydock exec CONTAINER true` against `podman exec CONTAINER true`, interleaved, each on a running busybox
container of its own (the same tarball), `--net none`; and `pydock run -it` on a terminal until the
shell's first prompt against `pydock run` of the same without a terminal until its first output.

    .venv/bin/python bench/exec.py [-n ROUNDS] [--driver overlay]

podman runs on a private store under the bench's temporary directory (runc if installed, else crun).
Targets: exec median <= 0.5x podman's; run -it median <= 1.1x run's. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import pty
import select
import os
import statistics
import subprocess
import sys
import time

from benchlib import (PODMAN_BUSYBOX, PODMAN_ULIMITS, PYDOCK, busybox_root, cli_env, podman_import_busybox,
                      private_podman, remove_everything, timed)

LOOP = 'trap "exit 0" TERM; while :; do sleep 1; done'


def until_output(cmd: list[str], env: dict[str, str], text: bytes, terminal: bool) -> float:
    """Seconds from launch until `text` is in the command's output (on a pty when `terminal`); the
    command is then ended (an interactive shell gets `exit`)."""
    t0 = time.perf_counter()
    if terminal:
        master, slave = pty.openpty()
        proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        fd = master
    else:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=env)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
    seen = b""
    try:
        while text not in seen:
            if not select.select([fd], [], [], 60)[0]:
                raise SystemExit(f"{' '.join(cmd)}: no {text!r} within 60 s: {seen[-200:]!r}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise SystemExit(f"{' '.join(cmd)} ended before {text!r}: {seen[-200:]!r}")
            seen += chunk
        dt = time.perf_counter() - t0
        if terminal:
            os.write(master, b"exit\r")
        proc.wait(timeout=60)
        return dt
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if terminal:
            os.close(master)
        elif proc.stdout is not None:
            proc.stdout.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=15)
    ap.add_argument("--driver", default="overlay")
    args = ap.parse_args()

    work, root, tar_bytes = busybox_root("pydock-bench-exec-", args.driver)
    env = cli_env()  # `pydock` as users run it: through the warm CLI command server
    pydock = [PYDOCK, "-g", str(root), "-s", args.driver]
    podman = private_podman(work)
    try:
        out = subprocess.run([*pydock, "run", "-d", "--net", "none", "busybox", "sh", "-c", LOOP], env=env,
                             check=True, capture_output=True).stdout.decode().strip()
        pydock_cmd = [*pydock, "exec", out, "true"]
        samples: dict[str, list[float]] = {"pydock": []}
        podman_cmd = None
        if podman is not None:
            podman_import_busybox(podman, work)
            pid = subprocess.run([*podman, "run", "-d", "--network", "none", *PODMAN_ULIMITS,
                                  PODMAN_BUSYBOX, "sh", "-c", LOOP],
                                 check=True, capture_output=True).stdout.decode().strip()
            podman_cmd = [*podman, "exec", pid, "/bin/true"]
            samples["podman"] = []
        timed(pydock_cmd, env)  # warm both paths
        if podman_cmd:
            timed(podman_cmd)
        for _ in range(args.rounds):
            samples["pydock"].append(timed(pydock_cmd, env))
            if podman_cmd:
                samples["podman"].append(timed(podman_cmd))
        tty_cmd = [*pydock, "run", "-it", "--rm", "--net", "none", "busybox", "sh"]
        plain_cmd = [*pydock, "run", "--rm", "--net", "none", "busybox", "sh", "-c", "echo '/ # '"]
        until_output(tty_cmd, env, b"/ # ", True)  # warm
        tty_times, plain_times = [], []
        for _ in range(args.rounds):
            tty_times.append(until_output(tty_cmd, env, b"/ # ", True))
            plain_times.append(until_output(plain_cmd, env, b"/ # ", False))
        print(f"driver: {args.driver}, rounds: {args.rounds}")
        for name, values in samples.items():
            print(f"{name + ' exec true:':20} median {statistics.median(values) * 1000:.1f} ms "
                  f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")
        if podman_cmd:
            ratio = statistics.median(samples["pydock"]) / statistics.median(samples["podman"])
            print(f"ratio pydock/podman: {ratio:.2f}x (target <= 0.50x: {'ok' if ratio <= 0.5 else 'OVER TARGET'})")
        t, p = statistics.median(tty_times), statistics.median(plain_times)
        print(f"{'run -it to prompt:':20} median {t * 1000:.1f} ms (min {min(tty_times) * 1000:.1f})")
        print(f"{'run to first output:':20} median {p * 1000:.1f} ms (min {min(plain_times) * 1000:.1f})")
        print(f"ratio run -it/run: {t / p:.2f}x (target <= 1.10x: {'ok' if t <= 1.1 * p else 'OVER TARGET'})")
    finally:
        remove_everything(work, root, args.driver, podman)
    return 0


if __name__ == "__main__":
    sys.exit(main())
