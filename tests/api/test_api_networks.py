"""The network routes through the real docker CLI (`docker network create|ls|inspect|connect|disconnect|rm|
prune`, `docker run --network NAME --network-alias`), against a server in a network namespace of its own."""

from __future__ import annotations

import json
import subprocess

import pytest
from api_helpers import pydock_cmd

pytestmark = [pytest.mark.lxc, pytest.mark.network]


def _ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def _exec(srv, *args: str) -> subprocess.CompletedProcess:
    """`pydock exec` in the server's namespaces (its containers' mounts live in its mount namespace)."""
    return subprocess.run(["nsenter", f"--mount=/proc/{srv.proc.pid}/ns/mnt", f"--net=/proc/{srv.proc.pid}/ns/net",
                           *pydock_cmd(srv.root), "exec", *args], capture_output=True, timeout=60)


def _in_server_netns(srv, *argv: str) -> str:
    return subprocess.run(["nsenter", f"--net=/proc/{srv.proc.pid}/ns/net", *argv], capture_output=True,
                          text=True, check=True).stdout


def test_docker_network_lifecycle(netns_server) -> None:
    srv = netns_server
    net_id = _ok(srv.docker("network", "create", "--subnet", "10.55.0.0/24", "--label", "app=t", "appnet")).strip()
    assert len(net_id) == 64
    dup = srv.docker("network", "create", "appnet")
    assert dup.returncode != 0 and b"network with name appnet already exists" in dup.stderr
    ls = _ok(srv.docker("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")).splitlines()
    assert ls == ["appnet bridge local", "bridge bridge local", "host host local", "none null local"]  # docker sorts
    assert _ok(srv.docker("network", "ls", "-q", "--filter", "label=app=t")).split() == [net_id[:12]]
    info = json.loads(_ok(srv.docker("network", "inspect", "appnet")))[0]
    assert info["Id"] == net_id and info["IPAM"]["Config"] == [{"Subnet": "10.55.0.0/24", "Gateway": "10.55.0.1"}]
    _ok(srv.docker("run", "-d", "--name", "srv1", "--network", "appnet", "--network-alias", "api", "busybox",
                   "nc", "-ll", "-p", "7000", "-e", "echo", "pong"))
    got = _ok(srv.docker("run", "--rm", "--network", "appnet", "busybox", "nc", "-w", "3", "api", "7000"))
    assert got == "pong\n"
    nets = json.loads(_ok(srv.docker("inspect", "srv1")))[0]["NetworkSettings"]["Networks"]
    assert list(nets) == ["appnet"] and nets["appnet"]["IPAddress"] == "10.55.0.2"
    assert nets["appnet"]["Aliases"] == ["api"] and nets["appnet"]["NetworkID"] == net_id
    containers = json.loads(_ok(srv.docker("network", "inspect", "appnet")))[0]["Containers"]
    assert [(c["Name"], c["IPv4Address"]) for c in containers.values()] == [("srv1", "10.55.0.2/24")]
    busy = srv.docker("network", "rm", "appnet")
    assert busy.returncode != 0 and b"has active endpoints" in busy.stderr
    # a default-bridge container joins the network at once, and leaves it
    _ok(srv.docker("run", "-d", "--name", "client", "busybox", "sleep", "120"))
    bridge = json.loads(_ok(srv.docker("network", "inspect", "bridge")))[0]
    assert [c["Name"] for c in bridge["Containers"].values()] == ["client"]
    client_nets = json.loads(_ok(srv.docker("inspect", "client")))[0]["NetworkSettings"]["Networks"]
    assert list(client_nets) == ["bridge"] and client_nets["bridge"]["NetworkID"] == bridge["Id"]
    lonely = _exec(srv, "client", "nc", "-w", "2", "10.55.0.2", "7000")
    assert lonely.stdout == b""
    _ok(srv.docker("network", "connect", "--alias", "cli", "appnet", "client"))
    assert _ok(_exec(srv, "client", "nc", "-w", "3", "api", "7000")) == "pong\n"
    assert "\tclient cli\n" in _ok(_exec(srv, "srv1", "cat", "/etc/hosts"))
    client_nets = json.loads(_ok(srv.docker("inspect", "client")))[0]["NetworkSettings"]["Networks"]
    assert sorted(client_nets) == ["appnet", "bridge"] and client_nets["appnet"]["Aliases"] == ["cli"]
    # ps --filter network= knows both: the network a container started on and one it was connected to
    on_appnet = _ok(srv.docker("ps", "--filter", "network=appnet", "--format", "{{.Names}}")).split()
    assert sorted(on_appnet) == ["client", "srv1"]
    assert _ok(srv.docker("ps", "--filter", f"network={net_id[:12]}", "-q")).split() != []
    assert _ok(srv.docker("ps", "--filter", "network=bridge", "--format", "{{.Names}}")).split() == ["client"]
    _ok(srv.docker("network", "disconnect", "appnet", "client"))
    assert "client" not in _ok(_exec(srv, "srv1", "cat", "/etc/hosts"))
    bad = srv.docker("network", "create", "--ipv6", "v6net")
    assert bad.returncode != 0 and b"EnableIPv6 is not supported" in bad.stderr
    _ok(srv.docker("network", "create", "--attachable", "joinable"))  # docker-compose asks for it
    assert json.loads(_ok(srv.docker("network", "inspect", "joinable")))[0]["Attachable"] is True
    _ok(srv.docker("rm", "-f", "srv1", "client"))
    assert _ok(srv.docker("network", "prune", "-f")).split() == ["Deleted", "Networks:", "appnet", "joinable"]
    assert "br-" not in _in_server_netns(srv, "ip", "-o", "link")
    rules = _in_server_netns(srv, "iptables", "-w", "-S") + _in_server_netns(srv, "iptables", "-w", "-t", "nat", "-S")
    assert "br-" not in rules and "PYDOCK-ISOLATION" not in rules


def test_create_body_endpoints_config(netns_server) -> None:
    """An SDK-style create with NetworkingConfig: the endpoint's aliases and address are carried out;
    a second network in one create is refused by name."""
    srv = netns_server
    result = srv.sdk("""
net = client.networks.create("sdknet", ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.56.0.0/24")]))
api = client.api
cfg = api.create_networking_config({"sdknet": api.create_endpoint_config(aliases=["alpha"], ipv4_address="10.56.0.7")})
c = api.create_container("busybox", ["sleep", "60"], host_config=api.create_host_config(network_mode="sdknet"),
                         networking_config=cfg, mac_address="02:00:00:00:00:07")
api.start(c["Id"])
info = api.inspect_container(c["Id"])
try:
    api.create_container("busybox", ["true"], networking_config=api.create_networking_config(
        {"sdknet": api.create_endpoint_config(), "other": api.create_endpoint_config()}),
        host_config=api.create_host_config(network_mode="sdknet"))
    refused = None
except docker.errors.APIError as err:
    refused = [err.status_code, str(err.explanation)]
api.remove_container(c["Id"], force=True)
net.remove()
result = [info["NetworkSettings"]["Networks"]["sdknet"], refused]
""")
    endpoint, refused = result
    assert endpoint["IPAddress"] == "10.56.0.7" and endpoint["Aliases"] == ["alpha"]
    assert endpoint["MacAddress"] == "02:00:00:00:00:07"
    assert refused[0] == 400 and "NetworkingConfig.EndpointsConfig" in refused[1]
