"""Helpers of the Engine API tests: start/stop `pydock serve`, run the docker CLI and SDK against it,
tear a root down."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netns_helpers import in_netns_argv
from root_helpers import teardown_root

DOCKER = shutil.which("docker")
NO_DOCKER = "the docker CLI is not installed (/usr/local/bin/docker); these tests drive pydock serve with it"


def _sdk_python() -> str | None:
    """A python that can `import docker` (the SDK is not a pydock dependency)."""
    candidates = [sys.executable, shutil.which("python3"), "/usr/bin/python3"]
    for py in candidates:
        if not py or not os.path.exists(py):
            continue
        probe = subprocess.run([py, "-c", "import docker"], capture_output=True)
        if probe.returncode == 0:
            return py
    return None


#: a small pool for devicemapper runs (the UML kernel keeps its loop files in memory)
DM_SMALL = ["--storage-opt", "dm.loopdatasize=2G", "--storage-opt", "dm.loopmetadatasize=128M",
            "--storage-opt", "dm.basesize=256M"]


def pydock_cmd(root: Path, driver: str = "overlay") -> list[str]:
    sizes = DM_SMALL if driver == "devicemapper" else []
    return [sys.executable, "-m", "pydock.cli.main", "-g", str(root), "-s", driver, *sizes]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYDOCK_", "DOCKER_"))}


def start_server(root: Path, *hosts: str, wait_for: Path | None = None, driver: str = "overlay",
                 bridge: str | None = None) -> subprocess.Popen:
    """`pydock [-b BRIDGE] serve -H ...` as a subprocess; returns once the unix socket (if any) exists."""
    args = [a for h in hosts for a in ("-H", h)]
    bridge_args = ["-b", bridge] if bridge is not None else []
    proc = subprocess.Popen([*pydock_cmd(root, driver), *bridge_args, "serve", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())
    if wait_for is not None:
        deadline = time.monotonic() + 30
        while not wait_for.exists():
            if proc.poll() is not None:
                raise AssertionError(f"pydock serve exited {proc.returncode}: {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("pydock serve did not create its socket within 30 s")
            time.sleep(0.02)
    return proc


def stop_server(proc: subprocess.Popen) -> str:
    """SIGTERM and wait; its stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    return err


@dataclass
class Server:
    """A running `pydock serve` and ways to talk to it."""

    root: Path
    sock: Path
    tmp: Path
    proc: subprocess.Popen
    driver: str = "overlay"

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def docker_env(self) -> dict[str, str]:
        """What points the docker CLI at this server (and its own config dir, never ~/.docker)."""
        return {"DOCKER_HOST": self.url, "DOCKER_CONFIG": str(self.tmp / "docker-config")}

    def docker(self, *args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """The real docker CLI against this server."""
        if DOCKER is None:
            pytest.skip(NO_DOCKER)
        return subprocess.run([DOCKER, *args], input=input, capture_output=True, timeout=timeout,
                              env={**clean_env(), **self.docker_env()})

    def docker_ok(self, *args: str) -> str:
        """The docker CLI's output, asserting it succeeded (its stderr in the failure)."""
        p = self.docker(*args)
        assert p.returncode == 0, p.stderr.decode()
        return p.stdout.decode()

    def docker_argv(self, *args: str) -> list[str]:
        """The docker CLI's command line against this server, for a terminal (tmux) to run."""
        return ["env", *(f"{k}={v}" for k, v in self.docker_env().items()), "docker", *args]

    def pydock(self, *args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*pydock_cmd(self.root, self.driver), *args], input=input, capture_output=True, timeout=timeout,
                              env=clean_env())

    def sdk(self, script: str, timeout: float = 120) -> Any:
        """Run `script` with `client` = docker.DockerClient(base_url=<this server>) in a python that has the
        SDK; the script sets `result`, which comes back JSON-decoded."""
        py = _sdk_python()
        if py is None:
            pytest.skip("the docker SDK (python package `docker`) is not importable by any python here")
        prog = ("import json, docker\n"
                f"client = docker.DockerClient(base_url={self.url!r})\n"
                "result = None\n" + script + "\nprint('RESULT=' + json.dumps(result))\n")
        proc = subprocess.run([py, "-c", prog], capture_output=True, timeout=timeout, env=clean_env())
        if proc.returncode != 0:
            raise AssertionError(f"SDK script failed ({proc.returncode}):\n{proc.stderr.decode()[-3000:]}")
        line = [x for x in proc.stdout.decode().splitlines() if x.startswith("RESULT=")][-1]
        return json.loads(line[len("RESULT="):])


def start_server_in_netns(root: Path, sock: Path, *global_args: str) -> subprocess.Popen:
    """`pydock serve` inside a network namespace of its own (bridge, veths and iptables rules die with it);
    `global_args`: pydock's options before `serve` (`--bip`, say)."""
    proc = subprocess.Popen(in_netns_argv(*pydock_cmd(root), *global_args, "serve", "-H", f"unix://{sock}"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=clean_env())
    deadline = time.monotonic() + 30
    while not sock.exists():
        if proc.poll() is not None:
            raise AssertionError(f"pydock serve (netns) exited {proc.returncode}: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("pydock serve (netns) did not create its socket within 30 s")
        time.sleep(0.02)
    return proc


@contextmanager
def served(tmp: Path, *, driver: str = "overlay", bridge: str | None = None, in_netns: bool = False,
           global_args: Sequence[str] = ()) -> Iterator[Server]:
    """`pydock serve` on a root of its own under `tmp` for the block (`in_netns`: in a network namespace of
    its own, with pydock's `global_args`), then stopped: it must exit 0 and take its socket with it, and
    the root is emptied (a netns server removes its containers itself, inside its namespace)."""
    root, sock = tmp / "root", tmp / "d.sock"
    if in_netns:
        proc = start_server_in_netns(root, sock, *global_args)
    else:
        proc = start_server(root, f"unix://{sock}", wait_for=sock, driver=driver, bridge=bridge)
    srv = Server(root=root, sock=sock, tmp=tmp, proc=proc, driver=driver)
    try:
        yield srv
    finally:
        try:
            if in_netns:
                ids = srv.docker("ps", "-aq").stdout.decode().split()
                if ids:
                    srv.docker("rm", "-f", *ids)
            err = stop_server(proc)
            assert proc.returncode == 0, f"pydock serve exited {proc.returncode}: {err}"
            assert not sock.exists(), "pydock serve left its socket behind"
        finally:
            teardown_root(root, driver)
