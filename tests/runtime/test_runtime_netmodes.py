"""`--net host` and `--net container:NAME`: the command lives in the host's network namespace, or in
another running container's (they talk over its loopback); what cannot go with a shared namespace
(published ports, links, a hostname or DNS of its own) is refused with Docker's messages."""

from __future__ import annotations

import os
import time

import pytest

from pydock.runtime.launcher import container_command
from pydock.utils.errors import InvalidArgument, LaunchError, NotFound

pytestmark = pytest.mark.lxc
NS_INODE = ["stat", "-L", "-c", "%i", "/proc/self/ns/net"]


def _out(result) -> str:
    assert result.exit_code == 0, result.stderr
    return result.stdout.decode()


def test_host_network_is_the_hosts_namespace(rt):
    assert int(_out(rt.run("busybox", NS_INODE, remove=True, network="host"))) == os.stat("/proc/self/ns/net").st_ino
    assert int(_out(rt.run("busybox", NS_INODE, remove=True))) != os.stat("/proc/self/ns/net").st_ino
    c = rt.create("busybox", ["hostname"], network="host")
    assert c.hostconfig["NetworkMode"] == "host" and c.config["Hostname"] == os.uname().nodename


def test_a_container_joins_one_started_just_before(rt):
    """`run -d` returns before lxc's set-up ends: a join right after it waits for the owner's command,
    as `docker run -d` then `docker run --net container:` does (the API test saw it refused)."""
    owner = rt.create("busybox", ["sleep", "30"], network="none")
    rt.start(owner)
    joined = rt.run("busybox", NS_INODE, remove=True, network=f"container:{owner.id}")
    owner_init = container_command(rt.get(owner.id).state.pid)
    assert int(_out(joined)) == os.stat(f"/proc/{owner_init}/ns/net").st_ino
    rt.kill(owner)


def test_a_container_joins_another_ones_network(rt):
    owner = rt.create("busybox", ["sh", "-c", "echo ready; echo from-owner | nc -l -p 7777"], name="owner")
    rt.start(owner)
    deadline = time.monotonic() + 30
    while not any(r.log == "ready\n" for r in rt.logs(owner)):
        assert time.monotonic() < deadline, "the owner never got ready"
        time.sleep(0.05)
    joined = rt.run("busybox", ["sh", "-c", "for i in $(seq 50); do nc 127.0.0.1 7777 && exit; sleep 0.1; done; exit 1"],
                    remove=True, network="container:owner")
    assert _out(joined) == "from-owner\n"  # over the owner's loopback: one namespace
    assert rt.wait(owner, timeout=30) == 0
    c = rt.create("busybox", ["true"], network="container:owner")
    assert c.hostconfig["NetworkMode"] == f"container:{owner.id}" and c.config["Hostname"] == owner.config["Hostname"]
    with pytest.raises(LaunchError, match=f"cannot join network of a non running container: {owner.short_id}"):
        rt.start(c)  # the owner has ended


@pytest.mark.parametrize("options, message", [
    ({"network": "container:owner2", "ports": ("80:80",)}, "port publishing and the container network mode"),
    ({"network": "host", "links": ("owner2:db",)}, "host type networking can't be used with links"),
    ({"network": "container:owner2", "hostname": "h"}, "hostname and the network mode"),
    ({"network": "container:owner2", "dns": ("10.0.0.1",)}, "dns and the network mode"),
])
def test_what_a_shared_namespace_cannot_have_is_refused(rt, options, message):
    rt.create("busybox", ["true"], name="owner2")
    with pytest.raises(InvalidArgument, match=message):
        rt.create("busybox", ["true"], **options)
    with pytest.raises(NotFound):
        rt.create("busybox", ["true"], network="container:nosuch")
    with pytest.raises(NotFound, match="network overlay1 not found"):  # no such user network: 404, as dockerd
        rt.create("busybox", ["true"], network="overlay1")
    assert len(rt.containers(all=True)) == 1
