"""testcontainers (the Python library test suites use to run throwaway containers) driving `pydock serve`: start
a container with a published port, wait for its log line, exec in it, talk to the port, stop it.

The server runs in a network namespace this module creates, its bridge at a fixed address; the testcontainers
script runs in the same namespace (nsenter) and reaches the published port at that address (`TC_HOST`:
pydock publishes with iptables DNAT, which loopback cannot take). Ryuk, testcontainers' reaper container, is
off: the test removes what it made."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from api_helpers import Server, clean_env, served

pytestmark = [pytest.mark.lxc, pytest.mark.network]

try:
    import testcontainers  # noqa: F401 - only to know it is there
except ImportError:
    testcontainers = None  # failed below, never skipped: CI installs the test extra
NSENTER = shutil.which("nsenter")
#: the bridge's address in the module's own namespace (nothing else there to collide with)
BRIDGE_IP = "10.213.7.1"


@pytest.fixture(scope="module")
def netns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if testcontainers is None:
        pytest.fail("testcontainers is not installed (pip install -e .[test])")
    if NSENTER is None:
        pytest.fail("nsenter (util-linux) is missing: the client must join the server's network namespace")
    with served(tmp_path_factory.mktemp("apitc"), in_netns=True, global_args=("--bip", f"{BRIDGE_IP}/24")) as srv:
        yield srv


SCRIPT = r"""
import json, socket, sys, time
from testcontainers.core.container import DockerContainer
from testcontainers.core.waiting_utils import wait_for_logs

out = {}
container = (DockerContainer("busybox")
             .with_command(["sh", "-c", "echo server starting; "
                                        "while true; do echo hello-from-the-container | nc -l -p 8080; done & "
                                        "sleep 1; echo ready to serve; wait"])
             .with_exposed_ports(8080))
container.start()
try:
    wait_for_logs(container, "ready to serve", timeout=60)  # every 4.x has it (newer ones prefer wait strategies)
    code, output = container.exec(["sh", "-c", "echo exec-output; id -u; exit 0"])
    out["exec"] = [code, output.decode()]
    code, output = container.exec(["sh", "-c", "exit 4"])
    out["exec_fail"] = code
    host, port = container.get_container_host_ip(), int(container.get_exposed_port(8080))
    out["host"], out["port"] = host, port
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                if data:
                    break
        except OSError as err:
            data = repr(err).encode()
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    out["served"] = data.decode()
    assert host == sys.argv[1], host
    out["logs"] = container.get_logs()[0].decode()
    out["id"] = container.get_wrapped_container().id
finally:
    container.stop()
print("RESULT=" + json.dumps(out))
"""


def test_testcontainers_start_wait_exec_port_stop(netns_server):
    srv = netns_server
    env = {**clean_env(), "DOCKER_HOST": srv.url, "TESTCONTAINERS_RYUK_DISABLED": "true", "TC_HOST": BRIDGE_IP}
    proc = subprocess.run([NSENTER, f"--net=/proc/{srv.proc.pid}/ns/net", sys.executable, "-c", SCRIPT, BRIDGE_IP],
                          capture_output=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr.decode()[-4000:]
    line = [x for x in proc.stdout.decode().splitlines() if x.startswith("RESULT=")][-1]
    r = json.loads(line[len("RESULT="):])
    assert r["exec"] == [0, "exec-output\n0\n"]
    assert r["exec_fail"] == 4
    assert r["served"] == "hello-from-the-container\n", r
    assert "server starting" in r["logs"] and "ready to serve" in r["logs"]
    # stop() removed it (and its volumes): nothing left behind
    assert srv.docker("ps", "-aq").stdout == b""
    assert not (srv.root / "containers" / r["id"]).exists()
    assert os.path.exists(srv.sock)
