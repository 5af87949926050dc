"""Link env vars, /etc/hosts lines, port specs, iptables rule shapes and link policy helpers (no kernel needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pydock.links import rules
from pydock.links.graphdb import GraphDB
from pydock.links.linkenv import default_port, env_prefix, hosts_entry, link_env
from pydock.links.linking import (active_links, assign_name, display_names, links_to, primary_name, prune_names,
                                  register_links, remove_link)
from pydock.links.ports import Port, PortSpec, parse_port, parse_ports, parse_publish
from pydock.utils.errors import Conflict, InvalidArgument, NotFound


def test_link_env_exact_output() -> None:
    env = link_env("db", "/webapp/db", "172.17.0.8", {"6379/tcp": {}, "53/udp": {}, "53/tcp": {}},
                   ["HOME=/", "PATH=/bin", "PASSWORD=s3cret", "OPTS=a=b", "EMPTY="])
    assert env == [
        "DB_PORT=tcp://172.17.0.8:53",
        "DB_PORT_53_TCP=tcp://172.17.0.8:53",
        "DB_PORT_53_TCP_ADDR=172.17.0.8",
        "DB_PORT_53_TCP_PORT=53",
        "DB_PORT_53_TCP_PROTO=tcp",
        "DB_PORT_53_UDP=udp://172.17.0.8:53",
        "DB_PORT_53_UDP_ADDR=172.17.0.8",
        "DB_PORT_53_UDP_PORT=53",
        "DB_PORT_53_UDP_PROTO=udp",
        "DB_PORT_6379_TCP=tcp://172.17.0.8:6379",
        "DB_PORT_6379_TCP_ADDR=172.17.0.8",
        "DB_PORT_6379_TCP_PORT=6379",
        "DB_PORT_6379_TCP_PROTO=tcp",
        "DB_NAME=/webapp/db",
        "DB_ENV_PASSWORD=s3cret",
        "DB_ENV_OPTS=a=b",
        "DB_ENV_EMPTY=",
    ]


def test_link_env_without_ports_and_odd_alias() -> None:
    assert link_env("my-db.1", "/w/my-db.1", "10.0.0.2", [], None) == ["MY_DB_1_NAME=/w/my-db.1"]
    assert env_prefix("cache") == "CACHE"


def test_default_port_lowest_tcp_wins_ties() -> None:
    assert default_port([Port(80, "udp"), Port(80, "tcp"), Port(443)]) == Port(80, "tcp")
    assert default_port([Port(9000, "udp"), Port(9001)]) == Port(9000, "udp")
    assert default_port([]) is None


def test_hosts_entry() -> None:
    assert hosts_entry("db", "172.17.0.8") == "172.17.0.8\tdb"


def test_port_parsing() -> None:
    assert parse_port("80") == Port(80, "tcp")
    assert parse_port("53/UDP") == Port(53, "udp")
    assert str(Port(80)) == "80/tcp"
    assert parse_ports(["80", "80/tcp", 22]) == [Port(22), Port(80)]
    assert parse_publish("8080:80") == PortSpec(Port(80), "", 8080)
    assert parse_publish("10.1.2.3:8080:80/udp") == PortSpec(Port(80, "udp"), "10.1.2.3", 8080)
    assert parse_publish("10.1.2.3::80") == PortSpec(Port(80), "10.1.2.3", 0)
    assert parse_publish("80") == PortSpec(Port(80), "", 0)
    assert parse_publish("127.0.0.1:8080:80") == PortSpec(Port(80), "127.0.0.1", 8080)  # through the proxy
    for bad in ["", "x", "0", "70000", "80/sctp", "1:2:3:4", "nope:1:2", "a:80", "80:", "127.0.0.1:80:80/udp"]:
        with pytest.raises(InvalidArgument):
            parse_publish(bad)


def test_rule_shapes_match_docker() -> None:
    link_rules = rules.link("br0", "10.0.0.2", "10.0.0.3", [Port(6379)])
    assert [str(r) for r in link_rules] == [
        "-t filter FORWARD -i br0 -o br0 -p tcp -s 10.0.0.2 --dport 6379 -d 10.0.0.3 -j ACCEPT",
        "-t filter FORWARD -i br0 -o br0 -p tcp -s 10.0.0.3 --sport 6379 -d 10.0.0.2 -j ACCEPT",
    ]
    assert str(rules.icc("br0", False)) == "-t filter FORWARD -i br0 -o br0 -j DROP"
    assert str(rules.masquerade("10.0.0.0/24")) == "-t nat POSTROUTING -s 10.0.0.0/24 ! -d 10.0.0.0/24 -j MASQUERADE"
    pre, out, fwd = rules.dnat("br0", "", 49153, "10.0.0.3", Port(80))
    assert "--dport 49153 -j DNAT --to-destination 10.0.0.3:80" in str(pre) and "! -i br0" in str(pre)
    assert out.chain == "OUTPUT" and "127.0.0.0/8" in out.args
    assert fwd.chain == "FORWARD" and "10.0.0.3" in fwd.args
    assert rules.dnat("br0", "127.0.0.1", 8080, "10.0.0.3", Port(80)) == []  # loopback: the proxy's alone


A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def names(tmp_path: Path):
    g = GraphDB(tmp_path / "linkgraph.db")
    g.set("/web", A)
    g.set("/db", B)
    g.set("/cache", C)
    yield g
    g.close()


def _resolve(names: GraphDB):
    def resolve(name: str) -> str:
        found = names.get("/" + name.lstrip("/"))
        if found is None:
            raise NotFound(f"No such container: {name}")
        return found
    return resolve


def test_register_links_and_active_links(names: GraphDB) -> None:
    made = register_links(names, "/web", A, ["db:db", "cache:kv"], _resolve(names), lambda i: True)
    assert [(l.path, l.alias, l.child_id) for l in made] == [("/web/db", "db", B), ("/web/kv", "kv", C)]
    assert sorted((l.alias, l.child_id) for l in active_links(names, "/web")) == [("db", B), ("kv", C)]
    assert active_links(names, "/db") == [] and active_links(names, None) == []
    assert primary_name(names, B) == "/db"
    assert [l.path for l in links_to(names, B)] == ["/web/db"]
    # registering the same links again (a restart) is fine
    register_links(names, "/web", A, ["db:db"], _resolve(names), lambda i: True)


def test_register_links_errors_leave_nothing(names: GraphDB) -> None:
    before = names.list()
    with pytest.raises(Conflict, match="^Cannot link to self$"):
        register_links(names, "/web", A, ["web:me"], _resolve(names), lambda i: True)
    with pytest.raises(Conflict, match=r"^Cannot link to a non running container: /cache AS /web/kv$"):
        register_links(names, "/web", A, ["db:db", "cache:kv"], _resolve(names), lambda i: i != C)
    with pytest.raises(NotFound):
        register_links(names, "/web", A, ["db:db", "ghost:g"], _resolve(names), lambda i: True)
    with pytest.raises(InvalidArgument, match="Invalid link format"):
        register_links(names, "/web", A, ["db"], _resolve(names), lambda i: True)
    names.set("/web/taken", C)
    with pytest.raises(Conflict, match="already assigned"):
        register_links(names, "/web", A, ["db:db", "db:taken"], _resolve(names), lambda i: True)
    names.delete("/web/taken")
    assert names.list() == before


def test_remove_link(names: GraphDB) -> None:
    register_links(names, "/web", A, ["db:db"], _resolve(names), lambda i: True)
    with pytest.raises(Conflict, match="^Conflict, cannot remove the default name of the container$"):
        remove_link(names, "/db")
    with pytest.raises(NotFound, match="^No such link: /web/nope$"):
        remove_link(names, "/web/nope")
    ref = remove_link(names, "web/db")
    assert (ref.path, ref.alias, ref.parent_id, ref.child_id) == ("/web/db", "db", A, B)
    assert names.get("/db") == B and names.get("/web/db") is None


def test_assign_name(tmp_path: Path) -> None:
    g = GraphDB(tmp_path / "db")
    assert assign_name(g, A, "web") == "/web"
    with pytest.raises(Conflict, match="already assigned to aaaaaaaaaaaa"):
        assign_name(g, B, "/web")
    with pytest.raises(InvalidArgument):
        assign_name(g, B, "bad name")
    generated = assign_name(g, B)
    assert g.get(generated) == B and "_" in generated
    assert g.list() == {"/web": A, generated: B}
    g.close()


def test_display_names_and_prune(names: GraphDB) -> None:
    names.set("/web/db", B)
    assert display_names(names.ref_paths(B)) == "db,web/db"
    assert prune_names(names, [A, C]) == [B]
    assert names.list() == {"/web": A, "/cache": C}
