"""The whole `pydock` CLI for names, links and ports (run --name/--link/-p, ps NAMES, ls, link, rm --link, port),
run as subprocesses from inside a network namespace the test creates."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.network, pytest.mark.lxc,
              pytest.mark.skipif(shutil.which("lxc-execute") is None, reason="lxc is needed")]


def _cli_body(root: str) -> dict:
    def pd(*args: str) -> tuple[int, str, str]:
        p = subprocess.run([sys.executable, "-m", "pydock.cli.main", "-g", root, *args], capture_output=True,
                           text=True, timeout=120)
        return p.returncode, p.stdout, p.stderr

    def table(text: str) -> list[list[str]]:
        return [line.split() for line in text.splitlines()[1:]]

    out: dict = {}
    try:
        rc, db_id, err = pd("run", "-d", "--name", "db", "--expose", "6379", "busybox",
                            "nc", "-ll", "-p", "6379", "-e", "echo", "pong")
        assert rc == 0, err
        db_id = db_id.strip()
        rc, web_id, err = pd("run", "-d", "--name", "web", "--link", "db:db", "-p", "18080:80", "busybox",
                             "sleep", "300")
        assert rc == 0, err
        web_id = web_id.strip()
        out["ids"] = (db_id, web_id)
        rc, ps, err = pd("ps")
        out["ps_header"] = ps.splitlines()[0]
        out["ps_names"] = {row[0]: row[-1] for row in table(ps)}
        out["ls"] = pd("ls")[1]
        out["ls_a"] = pd("ls", "-a")[1]
        out["link_rename"] = pd("link", "/web/db", "/web/database")
        out["link_add"] = pd("link", "db", "/dbalias")
        out["link_add_under_parent"] = pd("link", "/db", "/web/cache")
        out["link_taken"] = pd("link", "/db", "/web")
        out["link_missing"] = pd("link", "/nope/x", "/yy")
        out["link_bad_name"] = pd("link", "/db", "/bad name")
        out["ps_names_after_link"] = {row[0]: row[-1] for row in table(pd("ps")[1])}
        out["conflict"] = pd("run", "--name", "db", "busybox", "true")
        out["bad_link"] = pd("run", "--link", "db", "busybox", "true")
        out["link_unknown"] = pd("run", "--link", "nosuch:x", "busybox", "true")
        out["rm_default"] = pd("rm", "--link", "/db")
        out["rm_missing"] = pd("rm", "--link", "/web/nope")
        out["rm_link"] = pd("rm", "--link", "/web/database")
        out["ps_names_after_rm"] = {row[0]: row[-1] for row in table(pd("ps")[1])}
        out["port"] = pd("port", "web", "80")
        out["port_tcp"] = pd("port", "web", "80/tcp")
        out["port_missing"] = pd("port", "web", "81")
        assert pd("run", "-d", "--name", "pp", "-P", "-p", "18081:80", "--expose", "7000", "busybox",
                  "sleep", "300")[0] == 0
        out["port_p_and_P"] = (pd("port", "pp", "80"), pd("port", "pp", "7000"))
        out["env"] = pd("run", "--rm", "--link", "db:kv", "busybox", "sh", "-c",
                        "echo $KV_NAME $KV_PORT; nc -w 2 kv 6379 </dev/null")
        out["names_after_rm_run"] = pd("ls")[1]
        return out
    finally:
        rc, ids, _ = pd("ps", "-a", "-q", "--no-trunc")
        for cid in ids.split():
            pd("rm", "-f", cid)


def test_cli_names_links_and_ports(in_netns, tmp_path: Path) -> None:
    out = in_netns(_cli_body, str(tmp_path / "root"))
    db_id, web_id = out["ids"]
    assert out["ps_header"].split()[-1] == "NAMES"
    assert out["ps_names"] == {db_id[:12]: "db,web/db", web_id[:12]: "web"}
    ls = [line.split() for line in out["ls"].splitlines()]
    assert ls[0] == ["NAME", "ID", "IMAGE"]
    assert ls[1:] == [["/db", db_id[:12], "busybox:latest"], ["/web", web_id[:12], "busybox:latest"],
                      ["/web/db", db_id[:12], "busybox:latest"]]
    assert [line.split()[1] for line in out["ls_a"].splitlines()[1:]] == [db_id, web_id, db_id]
    assert out["link_rename"] == (0, "/web/database\n", "")
    assert out["link_add"] == (0, "/dbalias\n", "")
    assert out["link_add_under_parent"] == (0, "/web/cache\n", "")
    assert out["link_taken"][0] == 1 and out["link_taken"][2] == (
        f"Error: Conflict, The name /web is already assigned to {web_id[:12]}. You have to delete (or rename) "
        "that container to be able to assign /web to a container again.\n")
    assert out["link_missing"][0] == 1 and "No such name: /nope/x" in out["link_missing"][2]
    assert out["link_bad_name"][0] == 2 and "Invalid container name (bad name)" in out["link_bad_name"][2]
    assert out["ps_names_after_link"][db_id[:12]] == "db,dbalias,web/cache,web/database"
    assert out["conflict"][0] == 125 and out["conflict"][2].startswith(
        f"Error: Conflict, The name /db is already assigned to {db_id[:12]}.")
    assert out["bad_link"][0] == 125 and out["bad_link"][2] == "Error: Invalid link format: db (expected name:alias)\n"
    assert out["link_unknown"][0] != 0 and "nosuch" in out["link_unknown"][2]
    assert out["rm_default"][0] == 1 and "Conflict, cannot remove the default name of the container" in \
        out["rm_default"][2]
    assert out["rm_missing"][0] == 1 and "No such link: /web/nope" in out["rm_missing"][2]
    assert out["rm_link"][0] == 0 and out["rm_link"][1] == "/web/database\n"
    assert out["ps_names_after_rm"][db_id[:12]] == "db,dbalias,web/cache"
    assert out["port"] == (0, "0.0.0.0:18080\n", "") and out["port_tcp"] == out["port"]
    assert out["port_missing"][0] == 1 and out["port_missing"][2] == \
        f"Error: No public port '81/tcp' published for {web_id[:12]}\n"
    assert out["port_p_and_P"] == ((0, "0.0.0.0:18081\n", ""), (0, "0.0.0.0:49153\n", ""))
    rc, text, err = out["env"]
    assert rc == 0, err
    lines = text.splitlines()
    assert lines[0].startswith("/") and lines[0].split()[0].endswith("/kv") and ":6379" in lines[0]
    assert lines[1] == "pong"
    assert "/kv" not in out["names_after_rm_run"]  # run --rm took its names (and its link) with it
