"""`--privileged` as Docker's: every capability the host can give, no seccomp, every host device in
/dev, /proc and /sys writable and unmasked, cgroups mounted writable; checked from inside the container.
pydock runs inside a network namespace of the test's own, so what the container does to links and
/proc/sys/net stays there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from netns_helpers import in_netns_argv

from pydock.runtime import cgroups

pytestmark = pytest.mark.lxc

PROBE = ("grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status; "
         "ip link add br7 type bridge && echo link-added; "
         "echo 1 > /proc/sys/net/ipv4/ip_forward && echo procsys-written; "
         "grep -E ' /sys (sysfs|rw)' /proc/mounts | grep -q ' rw' && echo sys-rw; "
         "grep -qE '^[^ ]+ /sys/fs/cgroup[^ ]* cgroup2? rw' /proc/mounts && echo cgroup-rw; "
         "grep -qE ' /(proc/keys|sys/firmware) ' /proc/mounts && echo masked; "
         "echo devices: $(ls /dev)")


def _pydock_in_netns(root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = in_netns_argv(sys.executable, "-m", "pydock.cli.main", "-g", str(root), "-s", "overlay", *args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK_")}
    return subprocess.run(cmd, capture_output=True, timeout=120, env=env)


def _probe(out: bytes) -> dict[str, str]:
    facts: dict[str, str] = {}
    for line in out.decode().splitlines():
        key, sep, value = line.partition(":")
        facts[key if sep else line] = value.strip() if sep else ""
    return facts


def _own_bounding_set() -> str:
    with open("/proc/self/status") as f:
        return next(line.split()[1] for line in f if line.startswith("CapBnd:"))


def test_privileged_container_has_everything_docker_gives(cli_root):
    p = _pydock_in_netns(cli_root, "run", "--name", "priv", "--net", "none", "--privileged", "--cap-drop", "ALL",
                         "busybox", "sh", "-c", PROBE)
    assert p.returncode == 0, p.stderr.decode()
    facts = _probe(p.stdout)
    # every capability the host lets pydock give, --cap-drop notwithstanding (Docker's rule)
    assert facts["CapEff"] == facts["CapBnd"] == _own_bounding_set()
    assert (facts["Seccomp"], facts["NoNewPrivs"]) == ("0", "0")
    for fact in ("link-added", "procsys-written", "sys-rw", "cgroup-rw"):
        assert fact in facts, f"{fact} missing: {p.stdout.decode()}"
    assert "masked" not in facts
    inside = set(facts["devices"].split())
    host_top = {d.container.split("/")[2] for d in cgroups.host_devices()}
    assert host_top and host_top <= inside, sorted(host_top - inside)
    hc = json.loads(_pydock_in_netns(cli_root, "inspect", "priv").stdout)[0]["HostConfig"]
    assert hc["Privileged"] is True


def test_unprivileged_container_gets_none_of_it(cli_root):
    p = _pydock_in_netns(cli_root, "run", "--rm", "--net", "none", "busybox", "sh", "-c", PROBE)
    facts = _probe(p.stdout)
    assert facts["CapEff"] == "00000000a80425fb" and facts["Seccomp"] == "2"
    for fact in ("link-added", "procsys-written", "sys-rw", "cgroup-rw"):
        assert fact not in facts
    assert "masked" in facts
    assert "loop-control" not in facts["devices"].split()
    assert b"Operation not permitted" in p.stderr


def test_docker07_spelling_and_exec_in_a_privileged_container(cli):
    """exec (lxc-attach, which reaches the container through an abstract socket of the network namespace
    pydock ran in: no private namespace here) gets the container's privileges; nothing here touches links."""
    p = cli("run", "-d", "--net", "none", "-privileged", "busybox", "sleep", "60")
    assert p.returncode == 0, p.stderr.decode()
    cid = p.stdout.decode().strip()
    try:
        p = cli("exec", cid, "grep", "-E", "^(CapEff|Seccomp):", "/proc/self/status")
        facts = _probe(p.stdout)
        assert (facts["CapEff"], facts["Seccomp"]) == (_own_bounding_set(), "0")
    finally:
        cli("rm", "-f", cid)


def test_privileged_in_the_hierarchy_lxc_uses(rt):
    """The cgroup side on each driver's tier: the host's v1 hybrid here, cgroup v2 inside UML (dm tier):
    devices all allowed, the container's cgroups mounted writable. Nothing here touches the network."""
    from pydock.runtime.options import CreateOptions

    probe = ("grep -E '^(CapEff|Seccomp):' /proc/self/status; "
             "grep -qE '^[^ ]+ /sys/fs/cgroup[^ ]* cgroup2? rw' /proc/mounts && echo cgroup-rw; "
             "head -c 1 /dev/loop-control >/dev/null 2>&1; [ -c /dev/loop-control ] && echo loop-control; "
             "echo devices: $(ls /dev)")
    c = rt.create(CreateOptions.of("busybox", ["sh", "-c", probe], network=False, privileged=True))
    code, out, err = rt.run_created(c)
    assert code == 0, err.decode()
    facts = _probe(out)
    assert (facts["CapEff"], facts["Seccomp"]) == (_own_bounding_set(), "0")
    assert "cgroup-rw" in facts, out.decode()
    host_top = {d.container.split("/")[2] for d in cgroups.host_devices()}
    assert host_top <= set(facts["devices"].split())
