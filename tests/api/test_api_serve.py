"""`pydock serve` itself: the socket is root-only, a stale socket is replaced, a live one is not, tcp is
loopback only."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time

import pytest
from api_helpers import DOCKER, clean_env, pydock_cmd, start_server, stop_server
from root_helpers import teardown_root

pytestmark = pytest.mark.lxc


def test_socket_is_root_only(server):
    st = os.stat(server.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_second_server_on_live_socket_is_refused(server, tmp_path):
    proc = subprocess.run([*pydock_cmd(tmp_path / "other"), "serve", "-H", server.url], capture_output=True,
                          timeout=60, env=clean_env())
    try:
        assert proc.returncode == 1
        assert f"Another server is already listening on {server.url}" in proc.stderr.decode()
        assert server.docker("version").returncode == 0  # the first one is untouched
    finally:
        teardown_root(tmp_path / "other")


def test_a_server_that_lost_the_race_for_the_path_says_so(tmp_path):
    """Two servers started together both find the path free; the one that publishes second is refused as
    the one started beside a live server is, and the first keeps the path. strace holds the slow one's
    listen() back until the other serves."""
    sock = tmp_path / "d.sock"
    slow = subprocess.Popen(["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=listen",
                             "-e", "inject=listen:delay_enter=2000000", *pydock_cmd(tmp_path / "slow"), "-b", "none",
                             "serve", "-H", f"unix://{sock}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=clean_env())
    fast = None
    try:
        deadline = time.monotonic() + 60
        while not [p for p in tmp_path.iterdir() if p.name.startswith(".d.sock.")]:  # bound, not yet listening
            assert slow.poll() is None and time.monotonic() < deadline, slow.stderr.read().decode()
            time.sleep(0.005)
        fast = start_server(tmp_path / "fast", f"unix://{sock}", wait_for=sock)
        assert slow.wait(timeout=60) == 1
        assert f"Another server is already listening on unix://{sock}" in slow.stderr.read().decode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:  # the first one is untouched
            client.connect(str(sock))
            client.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            assert client.recv(64).startswith(b"HTTP/1.1 200 OK")
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
        if fast is not None:
            stop_server(fast)
        teardown_root(tmp_path / "slow")
        teardown_root(tmp_path / "fast")


def test_stale_socket_is_replaced(tmp_path):
    sock = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))
    dead.close()  # the file stays, nobody listens: what a killed server leaves
    root = tmp_path / "root"
    proc = start_server(root, f"unix://{sock}")
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(20)
        for _ in range(300):
            try:
                probe.connect(str(sock))
                break
            except (ConnectionRefusedError, FileNotFoundError):
                if proc.poll() is not None:
                    break
                import time

                time.sleep(0.05)
        probe.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert probe.recv(4096).startswith(b"HTTP/1.1 200 OK")
        probe.close()
    finally:
        err = stop_server(proc)
        teardown_root(root)
    assert proc.returncode == 0, err
    assert not sock.exists()


@pytest.mark.parametrize("host", ["tcp://0.0.0.0:2375", "tcp://10.1.2.3:2375", "tcp://[::]:2375"])
def test_non_loopback_tcp_is_refused(tmp_path, host):
    proc = subprocess.run([*pydock_cmd(tmp_path / "root"), "serve", "-H", host], capture_output=True, timeout=60,
                          env=clean_env())
    assert proc.returncode == 2
    assert "only loopback addresses" in proc.stderr.decode()


def test_loopback_tcp_serves_the_docker_cli(tmp_path):
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed (/usr/local/bin/docker)")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    root = tmp_path / "root"
    proc = start_server(root, f"tcp://127.0.0.1:{port}")
    try:
        env = {**clean_env(), "DOCKER_HOST": f"tcp://127.0.0.1:{port}", "DOCKER_CONFIG": str(tmp_path / "cfg")}
        for _ in range(200):
            p = subprocess.run([DOCKER, "version", "--format", "{{.Server.APIVersion}}"], capture_output=True,
                               env=env, timeout=30)
            if p.returncode == 0 or proc.poll() is not None:
                break
        assert p.returncode == 0, p.stderr.decode()
        assert p.stdout.decode().strip() == "1.44"
    finally:
        err = stop_server(proc)
        teardown_root(root)
    assert proc.returncode == 0, err


def test_the_socket_file_appears_only_once_it_takes_connections(tmp_path):
    """A client that connects as soon as the socket file is there is never refused. strace holds each
    listen() back half a second here: a file made at bind() would refuse that connection."""
    sock = tmp_path / "d.sock"
    proc = subprocess.Popen(["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=listen",
                             "-e", "inject=listen:delay_enter=500000", *pydock_cmd(tmp_path / "root"), "-b", "none",
                             "serve", "-H", f"unix://{sock}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=clean_env())
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.005)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(sock))
            client.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            assert client.recv(64).startswith(b"HTTP/1.1 200 OK")
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".d.sock")] == []  # no staging name left
    finally:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:  # the traced pydock: strace ends with it
            for pid in f.read().split():
                os.kill(int(pid), 15)
        assert proc.wait(timeout=60) == 0
        teardown_root(tmp_path / "root")
