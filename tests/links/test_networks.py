"""User-defined networks through the whole CLI (`network create|ls|inspect|rm|connect|disconnect|prune`,
`run --net NAME --network-alias --ip --mac-address`), run as subprocesses inside a network namespace the
test creates: names and aliases resolve, hosts files follow members, networks are isolated, nothing leaks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.network, pytest.mark.lxc,
              pytest.mark.skipif(shutil.which("lxc-execute") is None, reason="lxc is needed")]


def _pd(root: str):
    def pd(*args: str, timeout: float = 120) -> tuple[int, str, str]:
        p = subprocess.run([sys.executable, "-m", "pydock.cli.main", "-g", root, *args], capture_output=True,
                           text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    return pd


def _kernel_state() -> dict[str, list[str]]:
    """What networking leaves in the namespace: links (besides lo) and the filter and nat rules."""
    links = [line.split(":")[1].strip().split("@")[0]
             for line in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()]
    rules = {t: [r for r in subprocess.run(["iptables", "-w", "-t", t, "-S"], capture_output=True,
                                           text=True).stdout.splitlines() if not r.startswith("-P ")]
             for t in ("filter", "nat")}
    return {"links": [name for name in links if name != "lo"], **rules}


def _hosts(pd, name: str) -> str:
    return pd("exec", name, "cat", "/etc/hosts")[1]


def _host_names(hosts: str) -> set[str]:
    """Every name an /etc/hosts text maps: whole words, so a container id starting with "db" is not "db"."""
    return {name for line in hosts.splitlines() if not line.startswith("#") for name in line.split()[1:]}


def _cleanup(pd) -> None:
    ids = pd("ps", "-a", "-q", "--no-trunc")[1].split()
    if ids:
        pd("rm", "-f", *ids)
    pd("network", "prune", "-f")


def _lifecycle_body(root: str) -> dict:
    pd = _pd(root)
    out: dict = {}
    try:
        out["create"] = pd("network", "create", "--label", "tier=front", "front")
        out["create_subnet"] = pd("network", "create", "--subnet", "10.77.0.0/24", "--gateway", "10.77.0.254",
                                  "--internal", "back")
        out["dup"] = pd("network", "create", "front")
        out["overlap"] = pd("network", "create", "--subnet", "10.77.0.128/25", "other")
        out["builtin"] = pd("network", "create", "host")
        out["bad_driver"] = pd("network", "create", "-d", "overlay", "x")
        out["ls"] = pd("network", "ls")
        out["ls_q_label"] = pd("network", "ls", "-q", "--filter", "label=tier=front")
        out["ls_name"] = pd("network", "ls", "--filter", "name=ba")
        out["inspect"] = pd("network", "inspect", "front", "back")
        out["inspect_missing"] = pd("network", "inspect", "nosuch")
        out["rm_builtin"] = pd("network", "rm", "bridge")
        out["run_missing"] = pd("run", "--rm", "--net", "nosuch", "busybox", "true")
        out["alias_on_default"] = pd("run", "--rm", "--network-alias", "x", "busybox", "true")
        out["ip_on_default"] = pd("run", "--rm", "--ip", "172.17.0.9", "busybox", "true")
        out["link_on_user"] = pd("run", "--rm", "--net", "front", "--link", "a:b", "busybox", "true")
        out["bad_mac"] = pd("run", "--rm", "--mac-address", "zz", "busybox", "true")
        out["ip_outside"] = pd("run", "--rm", "--net", "back", "--ip", "10.1.0.5", "busybox", "true")
        out["fixed"] = pd("run", "--rm", "--net", "back", "--ip", "10.77.0.9", "--mac-address", "02:aa:bb:cc:dd:ee",
                          "busybox", "sh", "-c", "ip -o -4 addr show eth0; cat /sys/class/net/eth0/address")
        out["mac_default"] = pd("run", "--rm", "--mac-address", "02:11:22:33:44:55", "busybox",
                                "cat", "/sys/class/net/eth0/address")
        out["internal_out"] = pd("run", "--rm", "--net", "back", "busybox", "ping", "-c1", "-W1", "10.77.0.254")
        out["rm"] = pd("network", "rm", "front", "back")
        out["ls_after"] = pd("network", "ls", "-q")
        out["kernel"] = _kernel_state()
        return out
    finally:
        _cleanup(pd)


def test_network_create_ls_inspect_rm(in_netns, tmp_path: Path) -> None:
    out = in_netns(_lifecycle_body, str(tmp_path / "root"))
    rc, front_id, err = out["create"]
    assert rc == 0, err
    front_id = front_id.strip()
    assert len(front_id) == 64
    assert out["create_subnet"][0] == 0, out["create_subnet"][2]
    assert out["dup"][0] == 1 and out["dup"][2] == "Error: network with name front already exists\n"
    assert out["overlap"][0] == 1 and "Pool overlaps with other one on this address space" in out["overlap"][2]
    assert out["builtin"][0] == 1 and "network with name host already exists" in out["builtin"][2]
    assert out["bad_driver"][0] != 0 and "overlay" in out["bad_driver"][2]
    rows = [line.split() for line in out["ls"][1].splitlines()]
    assert rows[0] == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [(r[1], r[2], r[3]) for r in rows[1:]] == [("bridge", "bridge", "local"), ("host", "host", "local"),
                                                      ("none", "null", "local"), ("back", "bridge", "local"),
                                                      ("front", "bridge", "local")]
    assert out["ls_q_label"][1].split() == [front_id[:12]]
    assert [line.split()[1] for line in out["ls_name"][1].splitlines()[1:]] == ["back"]
    front, back = json.loads(out["inspect"][1])
    assert front["Name"] == "front" and front["Id"] == front_id and front["Scope"] == "local"
    assert front["Driver"] == "bridge" and front["Internal"] is False and front["Labels"] == {"tier": "front"}
    assert front["IPAM"]["Config"] == [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]
    assert front["Containers"] == {} and front["Created"].endswith("Z")
    assert back["Internal"] is True and back["IPAM"]["Config"] == [{"Subnet": "10.77.0.0/24", "Gateway": "10.77.0.254"}]
    assert out["inspect_missing"][0] == 1 and "network nosuch not found" in out["inspect_missing"][2]
    assert out["rm_builtin"][0] == 1 and "bridge is a pre-defined network and cannot be removed" in out["rm_builtin"][2]
    assert out["run_missing"][0] == 125 and out["run_missing"][2] == "Error: network nosuch not found\n"
    assert out["alias_on_default"][0] == 125 and "network-scoped alias is supported only" in out["alias_on_default"][2]
    assert out["ip_on_default"][0] == 125 and "user defined networks only" in out["ip_on_default"][2]
    assert out["link_on_user"][0] == 125 and "--link is only supported on the default bridge" in out["link_on_user"][2]
    assert out["bad_mac"][0] == 125 and "invalid MAC address: zz" in out["bad_mac"][2]
    assert out["ip_outside"][0] == 125 and "no configured subnet contains IP address 10.1.0.5" in out["ip_outside"][2]
    rc, text, err = out["fixed"]
    assert rc == 0, err
    assert "inet 10.77.0.9/24" in text and text.splitlines()[-1] == "02:aa:bb:cc:dd:ee"
    assert out["mac_default"] == (0, "02:11:22:33:44:55\n", "")
    assert out["internal_out"][0] == 0  # its own gateway is on its bridge
    assert out["rm"] == (0, "front\nback\n", "")
    assert len(out["ls_after"][1].split()) == 3  # bridge, host, none
    kernel = out["kernel"]
    assert not [name for name in kernel["links"] if name.startswith(("br-", "ve"))], kernel
    assert not [r for r in kernel["filter"] + kernel["nat"] if "br-" in r or "PYDOCK-ISOLATION" in r], kernel


def _members_body(root: str) -> dict:
    pd = _pd(root)
    out: dict = {}
    try:
        assert pd("network", "create", "front")[0] == 0
        assert pd("network", "create", "back")[0] == 0
        for args in (("--name", "web", "--net", "front", "--network-alias", "www"),
                     ("--name", "db", "--net", "front", "--network-alias", "database"),
                     ("--name", "other", "--net", "back"), ("--name", "plain",)):
            rc, _, err = pd("run", "-d", *args, "busybox", "nc", "-ll", "-p", "7000", "-e", "echo", "pong")
            assert rc == 0, err
        ips = {n: json.loads(pd("inspect", n)[1])[0]["NetworkSettings"]["IPAddress"] for n in ("web", "db", "other",
                                                                                                 "plain")}
        out["ips"] = ips
        out["inspect_web"] = json.loads(pd("inspect", "web")[1])[0]["NetworkSettings"]
        out["web_hosts"] = _hosts(pd, "web")
        out["by_name"] = pd("exec", "web", "sh", "-c", "nc -w 3 db 7000 </dev/null; nc -w 3 database 7000 </dev/null")
        out["by_alias_from_db"] = pd("exec", "db", "nc", "-w", "3", "www", "7000")
        out["across"] = pd("exec", "web", "nc", "-w", "2", ips["other"], "7000")
        out["across_back"] = pd("exec", "other", "nc", "-w", "2", ips["web"], "7000")
        out["from_default"] = pd("exec", "plain", "nc", "-w", "2", ips["web"], "7000")
        out["rm_in_use"] = pd("network", "rm", "front")
        assert pd("run", "-d", "--name", "pub", "-p", "18090:80", "busybox", "sleep", "300")[0] == 0
        out["port_taken_across"] = pd("run", "--rm", "--net", "back", "-p", "18090:80", "busybox", "true")
        r = pd("stop", "-t", "1", "db")
        assert r[0] == 0, r
        out["web_hosts_db_stopped"] = _hosts(pd, "web")
        r = pd("start", "db")
        assert r[0] == 0, r
        out["web_hosts_db_back"] = _hosts(pd, "web")
        r = pd("rename", "db", "store")
        assert r[0] == 0, r
        out["web_hosts_renamed"] = _hosts(pd, "web")
        r = pd("rename", "store", "db")
        assert r[0] == 0, r
        out["connect"] = pd("network", "connect", "--alias", "bridgehead", "back", "web")
        out["web_reaches_other"] = pd("exec", "web", "nc", "-w", "3", "other", "7000")
        out["other_hosts_connected"] = _hosts(pd, "other")
        out["inspect_back"] = json.loads(pd("network", "inspect", "back")[1])[0]["Containers"]
        out["disconnect"] = pd("network", "disconnect", "back", "web")
        out["other_hosts_disconnected"] = _hosts(pd, "other")
        out["web_after_disconnect"] = pd("exec", "web", "nc", "-w", "2", ips["other"], "7000")
        out["disconnect_again"] = pd("network", "disconnect", "back", "web")
        r = pd("rm", "-f", "db")
        assert r[0] == 0, r
        out["web_hosts_db_removed"] = _hosts(pd, "web")
        r = pd("restart", "-t", "1", "web")
        assert r[0] == 0, r
        out["web_hosts_restarted"] = _hosts(pd, "web")
        return out
    finally:
        _cleanup(pd)
        out["kernel"] = _kernel_state()


def test_names_aliases_isolation_and_hosts_follow_members(in_netns, tmp_path: Path) -> None:
    out = in_netns(_members_body, str(tmp_path / "root"))
    ips = out["ips"]
    assert ips["web"].startswith("172.18.") and ips["db"].startswith("172.18.") and ips["other"].startswith("172.19.")
    nets = out["inspect_web"]["Networks"]
    assert list(nets) == ["front"] and nets["front"]["IPAddress"] == ips["web"]
    assert nets["front"]["Aliases"] == ["www"] and nets["front"]["Gateway"] == "172.18.0.1"
    assert f"{ips['web']}\tweb www\n" in out["web_hosts"] and f"{ips['db']}\tdb database\n" in out["web_hosts"]
    assert ips["other"] not in out["web_hosts"]
    assert out["by_name"] == (0, "pong\npong\n", ""), out["by_name"]
    assert out["by_alias_from_db"][1] == "pong\n"
    assert out["across"][1] == "" and out["across_back"][1] == "" and out["from_default"][1] == ""
    assert out["rm_in_use"][0] == 1 and "has active endpoints" in out["rm_in_use"][2]
    assert out["port_taken_across"][0] == 125 and \
        "Bind for 0.0.0.0:18090 failed: port is already allocated" in out["port_taken_across"][2]
    assert "\tdb database" not in out["web_hosts_db_stopped"]
    assert "\tdb database" in out["web_hosts_db_back"]
    assert "\tstore database\n" in out["web_hosts_renamed"] and "\tdb " not in out["web_hosts_renamed"]
    assert out["connect"][0] == 0, out["connect"][2]
    assert out["web_reaches_other"][1] == "pong\n"
    assert "\tweb bridgehead\n" in out["other_hosts_connected"]
    assert sorted(v["Name"] for v in out["inspect_back"].values()) == ["other", "web"]
    assert out["disconnect"][0] == 0, out["disconnect"][2]
    assert "bridgehead" not in out["other_hosts_disconnected"]
    assert out["web_after_disconnect"][1] == ""
    assert out["disconnect_again"][0] == 1 and "is not connected to network back" in out["disconnect_again"][2]
    assert not {"db", "database"} & _host_names(out["web_hosts_db_removed"]), out["web_hosts_db_removed"]
    assert "\tweb www\n" in out["web_hosts_restarted"]
    kernel = out["kernel"]
    assert not [n for n in kernel["links"] if n.startswith(("br-", "ve"))], kernel
    assert not [r for r in kernel["filter"] + kernel["nat"] if "br-" in r or "PYDOCK-ISOLATION" in r], kernel


def _killed_run_body(root: str) -> dict:
    pd = _pd(root)
    out: dict = {}
    try:
        assert pd("network", "create", "net1")[0] == 0
        assert pd("run", "-d", "--name", "stay", "--net", "net1", "busybox", "sleep", "300")[0] == 0
        proc = subprocess.Popen([sys.executable, "-m", "pydock.cli.main", "-g", root, "run", "--name", "victim",
                                 "--net", "net1", "busybox", "sleep", "300"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while "victim" not in _hosts(pd, "stay"):
            assert time.monotonic() < deadline, "victim never showed up in stay's hosts"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        out["ps"] = pd("ps", "-a")  # finds the dead monitor and finishes the run
        out["stay_hosts"] = _hosts(pd, "stay")
        out["inspect"] = json.loads(pd("network", "inspect", "net1")[1])[0]["Containers"]
        assert pd("rm", "-f", "stay", "victim")[0] == 0
        out["prune"] = pd("network", "prune", "-f")
        out["kernel"] = _kernel_state()
        return out
    finally:
        _cleanup(pd)


def test_killed_run_and_prune_leave_nothing(in_netns, tmp_path: Path) -> None:
    out = in_netns(_killed_run_body, str(tmp_path / "root"))
    assert "victim" not in out["stay_hosts"]
    assert [v["Name"] for v in out["inspect"].values()] == ["stay"]
    assert out["prune"] == (0, "Deleted Networks:\nnet1\n\n", "")
    kernel = out["kernel"]
    assert not [n for n in kernel["links"] if n.startswith(("br-", "ve"))], kernel
    assert not [r for r in kernel["filter"] + kernel["nat"] if "br-" in r or "PYDOCK-ISOLATION" in r], kernel


# -- the library underneath (no containers) -----------------------------------------------------


def test_store_change_inside_a_failed_transaction_is_not_written(tmp_path: Path) -> None:
    from pydock.links.netstore import NetStore, NetworkRecord

    store = NetStore(tmp_path / "network")
    with store.locked() as nets:
        nets["a" * 64] = NetworkRecord("one", "a" * 64, "2026-01-01T00:00:00Z", "10.9.0.0/24", "10.9.0.1")
    before = store.path.read_bytes()
    with pytest.raises(RuntimeError):
        with store.locked() as nets:
            nets["a" * 64].endpoints.clear()
            nets.pop("a" * 64)
            raise RuntimeError("boom")
    assert store.path.read_bytes() == before
    assert [r.name for r in store.read().values()] == ["one"] and store.path.stat().st_mode & 0o777 == 0o600


def _subnets_body(root: str) -> dict:
    from pydock.links.ipam import IPAM
    from pydock.links.networks import Networks
    from pydock.utils.errors import Conflict
    from pydock.utils.paths import RootLayout

    layout = RootLayout(Path(root))
    IPAM(layout.network, "pydock0").allocate("c" * 64, bip="172.18.0.1/16")  # the default bridge holds 172.18/16
    nets = Networks(layout, "pydock0")
    first, second = nets.create("a"), nets.create("b")
    out = {"subnets": [first.subnet, second.subnet], "gateways": [first.gateway, second.gateway]}
    try:
        nets.create("c", subnet=second.subnet)
    except Conflict as err:
        out["overlap"] = str(err)
    out["chain"] = subprocess.run(["iptables", "-w", "-S", "PYDOCK-ISOLATION"], capture_output=True,
                                  text=True).stdout.splitlines()
    out["forward_first"] = [r for r in subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True,
                                                      text=True).stdout.splitlines() if r.startswith("-A")][0]
    nets.remove("a")
    out["chain_after"] = subprocess.run(["iptables", "-w", "-S", "PYDOCK-ISOLATION"], capture_output=True,
                                        text=True).stdout.splitlines()
    out["bridges"] = [first.bridge, second.bridge]
    nets.remove("b")
    out["chain_gone"] = subprocess.run(["iptables", "-w", "-S", "PYDOCK-ISOLATION"], capture_output=True).returncode
    return out


def test_subnets_never_overlap_and_isolation_rules_follow_networks(in_netns, tmp_path: Path) -> None:
    out = in_netns(_subnets_body, str(tmp_path / "root"))
    assert out["subnets"] == ["172.19.0.0/16", "172.20.0.0/16"] and out["gateways"] == ["172.19.0.1", "172.20.0.1"]
    assert out["overlap"] == "Pool overlaps with other one on this address space"
    a, b = out["bridges"]
    assert sorted(out["chain"][1:]) == sorted([
        f"-A PYDOCK-ISOLATION -i {a} -o pydock0 -j DROP", f"-A PYDOCK-ISOLATION -i pydock0 -o {a} -j DROP",
        f"-A PYDOCK-ISOLATION -i {b} -o pydock0 -j DROP", f"-A PYDOCK-ISOLATION -i pydock0 -o {b} -j DROP",
        f"-A PYDOCK-ISOLATION -i {b} -o {a} -j DROP", f"-A PYDOCK-ISOLATION -i {a} -o {b} -j DROP"])
    assert out["forward_first"] == "-A FORWARD -j PYDOCK-ISOLATION"
    assert sorted(out["chain_after"][1:]) == sorted([f"-A PYDOCK-ISOLATION -i {b} -o pydock0 -j DROP",
                                                     f"-A PYDOCK-ISOLATION -i pydock0 -o {b} -j DROP"])
    assert out["chain_gone"] != 0  # the last network took the chain (and FORWARD's jump) with it
