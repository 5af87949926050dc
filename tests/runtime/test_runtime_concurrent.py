"""Several pydock processes on one root at once: 20 containers started concurrently by separate processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pydock.utils.mounttable import mountinfo

pytestmark = [pytest.mark.lxc, pytest.mark.slow]

N = 20


def _spawn(root, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK_")}
    return subprocess.Popen([sys.executable, "-m", "pydock.cli.main", "-g", str(root), "-s", "overlay", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_twenty_concurrent_runs_on_one_root(cli, cli_root):
    procs = [_spawn(cli_root, "run", "--net", "none", "--name", f"c{i}", "busybox", "sh", "-c",
                    f"echo {i}; exit {i % 4}") for i in range(N)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    for i, (code, out, err) in enumerate(results):
        assert (code, out, err) == (i % 4, f"{i}\n".encode(), b""), f"container c{i}"
    ps = cli("ps", "-a").stdout.decode().splitlines()[1:]
    assert len(ps) == N
    assert sorted(line.split()[-1] for line in ps) == sorted(f"c{i}" for i in range(N))
    # and removed concurrently, each by its own process
    rms = [_spawn(cli_root, "rm", f"c{i}") for i in range(N)]
    assert [p.wait(timeout=120) for p in rms] == [0] * N
    for p in rms:
        p.stdout.close()
        p.stderr.close()
    assert cli("ps", "-a", "-q").stdout == b""
    assert [e for e in mountinfo() if e.mountpoint.startswith(str(cli_root))] == []


def test_concurrent_detached_runs_and_rm_f(cli, cli_root):
    procs = [_spawn(cli_root, "run", "-d", "--net", "none", "busybox", "sleep", "30") for _ in range(8)]
    ids = []
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
        ids.append(p.stdout.read().decode().strip())
        p.stdout.close()
        p.stderr.close()
    assert sorted(cli("ps", "-q", "--no-trunc").stdout.decode().split()) == sorted(ids)
    rm = cli("rm", "-f", *ids)
    assert rm.returncode == 0 and rm.stdout.decode().split() == ids
    assert cli("ps", "-a", "-q").stdout == b""
