"""Addresses, bridge, iptables and veth cleanup, on the real kernel - always inside a network namespace the test makes."""

from __future__ import annotations

import ipaddress
import json
import multiprocessing
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from pydock.links import bridge as br
from pydock.links import iptables, rules
from pydock.links.ipam import IPAM, choose_bip, parse_bip
from pydock.links.iptables import Rule, Table
from pydock.links.network import NetworkManager, NetworkSettings, PortMapping, lxc_network_config
from pydock.links.ports import Port
from pydock.utils.errors import Conflict, InvalidArgument, NetworkError, NotFound
from pydock.utils.paths import RootLayout


def _cid() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


# -- IPAM (no kernel state: plain files and locks) ----------------------------------------------


def test_ipam_allocates_sequentially_and_persists(tmp_path: Path) -> None:
    ipam = IPAM(tmp_path / "network", "br0")
    ids = [_cid() for _ in range(3)]
    ips = [ipam.allocate(i, bip="10.99.0.1/24")[0].ip for i in ids]
    assert ips == ["10.99.0.2", "10.99.0.3", "10.99.0.4"]
    assert ipam.allocate(ids[0])[0].ip == "10.99.0.2"  # idempotent
    again = IPAM(tmp_path / "network", "br0")
    assert again.list() == dict(zip(ids, ips))
    assert again.release(ids[1]).ip == "10.99.0.3"
    assert again.release(ids[1]) is None
    # the allocator moves on instead of reusing the freed address at once
    assert ipam.allocate(_cid())[0].ip == "10.99.0.5"
    data = json.loads((tmp_path / "network" / "br0.json").read_text())
    assert data["Bip"] == "10.99.0.1/24"
    assert (tmp_path / "network" / "br0.json").stat().st_mode & 0o777 == 0o600


def test_ipam_exhaustion_and_wraparound(tmp_path: Path) -> None:
    ipam = IPAM(tmp_path / "n", "br0")
    a, b, c = _cid(), _cid(), _cid()
    assert ipam.allocate(a, bip="10.98.0.1/30")[0].ip == "10.98.0.2"
    with pytest.raises(NetworkError, match="No more IP addresses"):
        ipam.allocate(b)
    ipam.release(a)
    assert ipam.allocate(c)[0].ip == "10.98.0.2"


def test_ipam_failure_inside_lock_writes_nothing(tmp_path: Path) -> None:
    ipam = IPAM(tmp_path / "n", "br0")
    ipam.allocate(_cid(), bip="10.97.0.1/24")
    before = (tmp_path / "n" / "br0.json").read_bytes()
    with pytest.raises(RuntimeError):
        with ipam.locked() as state:
            state.allocate_ip(_cid())
            raise RuntimeError("boom")
    assert (tmp_path / "n" / "br0.json").read_bytes() == before


def _allocate_many(state_dir: str, n: int, q) -> None:
    ipam = IPAM(Path(state_dir), "br0")
    q.put([ipam.allocate(uuid.uuid4().hex * 2, bip="10.96.0.1/24")[0].ip for _ in range(n)])


def test_ipam_concurrent_processes_get_distinct_addresses(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_allocate_many, args=(str(tmp_path / "n"), 10, q)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [ip for _ in procs for ip in q.get(timeout=60)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(got) == 40 and len(set(got)) == 40
    assert len(IPAM(tmp_path / "n", "br0").list()) == 40
    assert "10.96.0.1" not in got


def test_bip_parsing_and_choice() -> None:
    assert parse_bip("10.9.0.1/24") == "10.9.0.1/24"
    for bad in ["10.9.0.0/24", "10.9.0.1", "x", "10.9.0.1/31", "10.9.0.255/24"]:
        with pytest.raises(InvalidArgument):
            parse_bip(bad)
    net = ipaddress.IPv4Network
    assert choose_bip([]) == "172.17.42.1/16"
    assert choose_bip([net("172.16.0.0/12")]) == "10.0.42.1/16"
    assert choose_bip([net("172.16.0.0/12"), net("10.0.0.0/8")]) == "192.168.42.1/24"
    with pytest.raises(NetworkError, match="--bip"):
        choose_bip([net("0.0.0.0/1"), net("128.0.0.0/1")])


def test_unreadable_routes_refuse_to_choose_blind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the routing table a default subnet could shadow a host network: an error naming --bip."""
    from pydock.links import ipam

    class NoProc(type(Path())):
        def read_text(self, *args, **kwargs):
            raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ipam, "Path", NoProc)
    with pytest.raises(NetworkError, match=r"/proc/net/route: Permission denied\); give one with --bip"):
        choose_bip()


def test_a_rule_that_cannot_be_deleted_is_reported_and_the_rest_still_go(monkeypatch: pytest.MonkeyPatch,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    deleted = []

    def delete(rule: Rule) -> bool:
        if rule.chain == "BROKEN":
            raise NetworkError("iptables -t filter -C BROKEN: Resource temporarily unavailable")
        deleted.append(rule.chain)
        return True

    monkeypatch.setattr(iptables, "delete", delete)
    rules_ = [Rule(Table.FILTER, "BROKEN", ("-j", "ACCEPT")), Rule(Table.FILTER, "FORWARD", ("-j", "ACCEPT"))]
    NetworkManager._delete_rules([r.to_json() for r in rules_])
    assert deleted == ["FORWARD"]
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("pydock.links", "WARNING", "iptables rule not removed, it may still be in place: "
                                    "iptables -t filter -C BROKEN: Resource temporarily unavailable")]


def test_settings_json_and_lxc_keys() -> None:
    s = NetworkSettings("10.0.42.2", 16, "10.0.42.1", "pydock0", "02:42:0a:00:2a:02", "vethabcdef12",
                        (PortMapping(Port(80), "0.0.0.0", 49153),))
    data = s.to_json()
    assert data["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49153"}]}
    assert NetworkSettings.from_json(json.loads(json.dumps(data))) == s
    assert NetworkSettings.from_json(None) is None
    keys = dict(lxc_network_config(s, gateway=True))
    assert keys["lxc.net.0.link"] == "pydock0" and keys["lxc.net.0.veth.pair"] == "vethabcdef12"
    assert keys["lxc.net.0.ipv4.address"] == "10.0.42.2/16 10.0.255.255" and keys["lxc.net.0.ipv4.gateway"] == "10.0.42.1"
    assert str(s.ports[0]) == "0.0.0.0:49153->80/tcp"


def test_disabled_networking_needs_no_kernel(tmp_path: Path) -> None:
    nm = NetworkManager(RootLayout(tmp_path), bridge="none")
    assert nm.allocate(_cid()) is None
    nm.release(_cid())
    nm.enable_link("10.0.0.2", "10.0.0.3", ["80"])
    assert nm.publish(_cid(), None, []) == []
    with pytest.raises(NetworkError, match="disabled"):
        nm.publish(_cid(), None, ["80"])
    assert not (tmp_path / "network").exists()


# -- kernel: everything below runs in a private network namespace ------------------------------


def _iptables_body() -> None:
    rule = Rule(Table.FILTER, "FORWARD", ("-i", "lo", "-o", "lo", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"))
    assert not iptables.exists(rule)
    assert iptables.insert(rule) is True
    assert iptables.insert(rule) is False  # idempotent
    assert iptables.exists(rule)
    assert sum("--dport 9" in line for line in iptables.list_rules(Table.FILTER, "FORWARD")) == 1
    assert iptables.delete(rule) is True
    assert iptables.delete(rule) is False  # a missing rule is not an error
    nat = Rule(Table.NAT, "POSTROUTING", ("-s", "10.1.0.0/24", "-j", "MASQUERADE"))
    assert iptables.append(nat) and iptables.exists(nat) and iptables.delete(nat)
    try:
        iptables.insert(Rule(Table.FILTER, "NOSUCHCHAIN", ("-j", "ACCEPT")))
    except NetworkError as err:
        assert "NOSUCHCHAIN" in str(err)
    else:
        raise AssertionError("inserting into a missing chain must fail")
    try:
        iptables.append(Rule(Table.FILTER, "FORWARD", ("--bogus-option",)))
    except NetworkError as err:
        assert "iptables" in str(err)
    else:
        raise AssertionError("a bad rule must fail")


@pytest.mark.network
def test_iptables_wrapper_is_idempotent(in_netns) -> None:
    in_netns(_iptables_body)


def _veth_body() -> None:
    from pydock.links.veth import delete_leftover_veth, host_veth_name, veth_exists

    name = host_veth_name("0123456789abcdef" * 4)
    assert name == "veth01234567"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", "vpeer0"], check=True)
    assert veth_exists(name) and veth_exists("vpeer0")
    assert delete_leftover_veth(name) is True
    assert not veth_exists(name) and not veth_exists("vpeer0")  # the peer goes with it
    assert delete_leftover_veth(name) is False  # missing is fine
    assert "veth01234567" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout


@pytest.mark.network
def test_leftover_veth_is_deleted_and_missing_is_fine(in_netns) -> None:
    in_netns(_veth_body)


def _ruleset() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


def _strip_counters(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith(("#", ":"))]


def _network_body(root: str) -> dict:
    layout = RootLayout(Path(root))
    nm = NetworkManager(layout, bridge="pdt0", icc=False)
    a, b = "a1" * 32, "b2" * 32
    sa = nm.allocate(a)
    assert br.is_up("pdt0") and br.address("pdt0") == "172.17.42.1/16"  # fresh namespace: no routes
    assert (sa.ip_address, sa.gateway, sa.ip_prefix_len) == ("172.17.0.2", "172.17.42.1", 16)
    assert sa.host_veth == "vetha1a1a1a1" and sa.mac_address == "02:42:ac:11:00:02"
    sb = nm.allocate(b)
    assert sb.ip_address == "172.17.0.3"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    saved = _ruleset()
    assert "-A POSTROUTING -s 172.17.0.0/16 ! -d 172.17.0.0/16 -j MASQUERADE" in saved
    assert "-A FORWARD -i pdt0 -o pdt0 -j DROP" in saved
    # a second manager (another pydock process) sees the same state and does not duplicate rules
    nm2 = NetworkManager(layout, bridge="pdt0", icc=False)
    assert nm2.allocate(a) == sa
    assert _ruleset().count("-j MASQUERADE") == 1
    # published ports
    maps = nm.publish(a, sa, ["8080:80", "172.17.42.1::53/udp"], publish_all=True, exposed={"6379/tcp": {}})
    assert [str(m) for m in maps] == ["0.0.0.0:8080->80/tcp", "172.17.42.1:49153->53/udp", "0.0.0.0:49153->6379/tcp"]
    assert [m.host for m in nm.port(a, "80")] == ["0.0.0.0:8080"]
    assert [m.host for m in nm.port(a, "53/udp")] == ["172.17.42.1:49153"]
    try:
        nm.port(a, "81")
    except NotFound as err:
        assert str(err) == f"No public port '81/tcp' published for {a[:12]}"
    try:
        nm.publish(b, sb, ["8080:80"])
    except Conflict as err:
        assert str(err) == "Bind for 0.0.0.0:8080 failed: port is already allocated"
    with socket.socket() as busy:  # a host program on the port: refused, nothing half-made
        busy.bind(("0.0.0.0", 8090))
        busy.listen()
        rules_before = _ruleset()
        try:
            nm.publish(b, sb, ["8091:91", "8090:90"])
        except Conflict as err:
            assert str(err) == "Bind for 0.0.0.0:8090 failed: port is already in use on the host"
        else:
            raise AssertionError("publishing over a listening host port must fail")
        assert _strip_counters(_ruleset()) == _strip_counters(rules_before)
        assert nm.settings(b).ports == ()
    # -P lists exposed ports bare: an explicitly published one is not published a second time
    assert [str(m) for m in nm.publish(b, sb, ["8081:80", "80/tcp", "81", "81"])] == [
        "0.0.0.0:8081->80/tcp", "0.0.0.0:49154->81/tcp"]
    # a stale parent address (the parent stopped, its IP reused) does not cut anyone's link
    nm.enable_link(sb.ip_address, sa.ip_address, ["80"])
    nm.disable_link(sb.ip_address, sa.ip_address, ["80"], parent_id="f" * 64)
    assert all(iptables.exists(r) for r in rules.link("pdt0", sb.ip_address, sa.ip_address, [Port(80)]))
    nm.disable_link(sb.ip_address, sa.ip_address, ["80"], parent_id=b)
    assert not any(iptables.exists(r) for r in rules.link("pdt0", sb.ip_address, sa.ip_address, [Port(80)]))
    assert nm.settings(a).ports == tuple(sorted(maps))
    assert "--to-destination 172.17.0.2:80" in _ruleset()
    # links
    nm.enable_link(sa.ip_address, sb.ip_address, ["6379"])
    nm.enable_link(sa.ip_address, sb.ip_address, ["6379"])  # twice: still one pair
    link_rules = [str(r) for r in rules.link("pdt0", sa.ip_address, sb.ip_address, [Port(6379)])]
    assert all(iptables.exists(r) for r in rules.link("pdt0", sa.ip_address, sb.ip_address, [Port(6379)]))
    assert sum("-d 172.17.0.3/32" in line and "--dport 6379" in line for line in _ruleset().splitlines()) == 1
    forward = iptables.list_rules(Table.FILTER, "FORWARD")
    drop = forward.index("-A FORWARD -i pdt0 -o pdt0 -j DROP")
    assert all(i < drop for i, line in enumerate(forward) if "--dport 6379" in line and "ACCEPT" in line)
    nm.disable_link(sa.ip_address, sb.ip_address, ["6379"])
    assert not any(iptables.exists(r) for r in rules.link("pdt0", sa.ip_address, sb.ip_address, [Port(6379)]))
    nm.enable_link(sa.ip_address, sb.ip_address, ["6379"])
    # a leftover host veth (lxc monitor killed) goes with the release
    subprocess.run(["ip", "link", "add", sb.host_veth, "type", "veth", "peer", "name", "pdtpeer"], check=True)
    nm2.release(b)  # released by the other process: the child's link rules go too
    assert not br.link_exists(sb.host_veth)
    assert not any(iptables.exists(r) for r in rules.link("pdt0", sa.ip_address, sb.ip_address, [Port(6379)]))
    assert "172.17.0.3:80" not in _ruleset()
    twin = "a1" * 4 + "9" * 56  # same 8-char prefix as a, which still runs
    assert nm.allocate(twin).host_veth == "veth" + twin[:11]
    nm.release(twin)
    nm.release(a)
    nm.release(a)  # twice is fine
    after = _ruleset()
    assert "DNAT" not in after and "6379" not in after
    assert nm.allocations() == {}
    c = "c3" * 32
    assert nm.allocate(c).ip_address == "172.17.0.5"  # moves on, no immediate reuse
    # reconcile after a crash: allocations of dead containers are released
    nm.publish(c, nm.settings(c), ["9000"])
    assert nm.reconcile(live_ids=[]) == [c]
    assert "DNAT" not in _ruleset()
    nm.teardown()
    assert not br.link_exists("pdt0")
    final = _ruleset()
    assert "pdt0" not in final and "MASQUERADE" not in final
    return {"link_rules": link_rules}


@pytest.mark.network
def test_network_manager_lifecycle(in_netns, tmp_path: Path) -> None:
    out = in_netns(_network_body, str(tmp_path / "root"))
    assert len(out["link_rules"]) == 2


def _traffic_body(root: str, icc: bool) -> dict:
    """Two 'containers' = two namespaces on veths the manager named; checks icc, links and a published port."""
    layout = RootLayout(Path(root))
    nm = NetworkManager(layout, bridge="pdt1", bip="10.123.0.1/24", icc=icc)
    ids = {"parent": "d4" * 32, "child": "e5" * 32, "other": "f6" * 32}
    tag = uuid.uuid4().hex[:6]
    nsname = {role: f"pdt-{tag}-{role}" for role in ids}
    settings = {}
    for role, cid in ids.items():
        s = nm.allocate(cid)
        settings[role] = s
        ns = nsname[role]
        # what lxc does for a container: a veth pair named from the settings, one end on the bridge
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "link", "add", s.host_veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
                       check=True)
        subprocess.run(["ip", "link", "set", s.host_veth, "master", "pdt1", "up"], check=True)
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "eth0", "up"],
                    ["ip", "addr", "add", f"{s.ip_address}/{s.ip_prefix_len}", "dev", "eth0"],
                    ["ip", "route", "add", "default", "via", s.gateway]):
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True)
    try:
        # the child serves on its exposed port 6379 (busybox nc, one connection per listener)
        server = subprocess.Popen(["ip", "netns", "exec", nsname["child"], "busybox", "nc", "-ll", "-p", "6379",
                                   "-e", "echo", "pong"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import time
            time.sleep(0.3)

            def reach(role: str, dst: str, port: int = 6379) -> bool:
                proc = subprocess.run(["ip", "netns", "exec", nsname[role], "busybox", "nc", "-w", "1", dst,
                                       str(port)], input="", capture_output=True, text=True, timeout=20)
                return "pong" in proc.stdout

            child_ip = settings["child"].ip_address
            result = {"parent_before_link": reach("parent", child_ip)}
            nm.enable_link(settings["parent"].ip_address, child_ip, ["6379/tcp"])
            result["parent_linked"] = reach("parent", child_ip)
            result["other"] = reach("other", child_ip)
            nm.publish(ids["child"], settings["child"], ["16379:6379"])
            result["published_from_host"] = reach_host(settings["child"].gateway, 16379)
            nm.disable_link(settings["parent"].ip_address, child_ip)
            result["parent_unlinked"] = reach("parent", child_ip)
            return result
        finally:
            server.kill()
            server.wait()
    finally:
        for role, cid in ids.items():
            subprocess.run(["ip", "netns", "del", nsname[role]], check=False)
            nm.release(cid)
        nm.teardown()


def reach_host(ip: str, port: int) -> bool:
    with socket.create_connection((ip, port), timeout=3) as s:
        s.settimeout(3)
        return b"pong" in s.recv(100)


@pytest.mark.network
@pytest.mark.slow
def test_icc_off_only_links_pass(in_netns, tmp_path: Path) -> None:
    out = in_netns(_traffic_body, str(tmp_path / "root"), False)
    assert out == {"parent_before_link": False, "parent_linked": True, "other": False,
                   "published_from_host": True, "parent_unlinked": False}


@pytest.mark.network
def test_icc_on_everyone_talks(in_netns, tmp_path: Path) -> None:
    out = in_netns(_traffic_body, str(tmp_path / "root"), True)
    assert out == {"parent_before_link": True, "parent_linked": True, "other": True,
                   "published_from_host": True, "parent_unlinked": True}
