"""Names and links through the Runtime with real lxc containers, each test in a network namespace it creates.

Runtime(bridge=..., icc=False) is used directly (the CLI has no daemon-level -b/--icc flags); the whole
CLI is exercised in test_links_cli.py.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.network, pytest.mark.lxc,
              pytest.mark.skipif(shutil.which("lxc-execute") is None, reason="lxc is needed")]

SERVER = ["nc", "-ll", "-p", "6379", "-e", "echo", "pong"]


def _runtime(root: str, icc: bool = True):
    from pydock.runtime.runtime import Runtime

    return Runtime(Path(root), bridge="pdrt0", icc=icc)


def _cleanup(rt) -> None:
    try:
        for c in rt.containers(all=True):
            try:
                rt.remove(c, force=True)
            except Exception:  # noqa: BLE001 - remove what can be removed
                pass
        rt.network.teardown()
    finally:
        rt.close()


def _wait_log(rt, c, needle: str, timeout: float = 15, after: int = 0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = [r.log.rstrip("\n") for r in rt.logs(c)]
        if needle in lines[after:] or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def _rules() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


def _links_body(root: str) -> dict:
    from pydock.utils.errors import Conflict, InvalidArgument

    rt = _runtime(root, icc=False)
    out: dict = {}
    try:
        db = rt.create("busybox", SERVER, name="db", expose=["6379"], env=["SECRET=s3", "OPTS=a=b"])
        rt.start(db)
        web = rt.create("busybox", ["sh", "-c", "env | grep ^DB_ | sort; nc -w 2 db 6379 </dev/null; "
                                    "nc -w 2 $DB_PORT_6379_TCP_ADDR $DB_PORT_6379_TCP_PORT </dev/null"],
                        name="web", links=["db:db"])
        out["names_db"] = rt.names_of(rt.get("db"))
        out["get_by_link_path"] = rt.get("/web/db").id == db.id
        rt.start(web)
        out["web_exit"] = rt.wait(web, timeout=30)
        out["web_out"] = [r.log.rstrip("\n") for r in rt.logs(web)]
        out["db_ip"] = rt.get("db").network["IPAddress"]
        other = rt.run("busybox", ["sh", "-c", f"nc -w 1 {out['db_ip']} 6379 </dev/null; echo rc=$?"],
                       remove=True)
        out["other_out"] = other.stdout.decode()
        # error paths
        for kwargs, exc in [({"name": "db"}, Conflict), ({"links": ["db"]}, InvalidArgument),
                            ({"links": ["db:a:b"]}, InvalidArgument), ({"name": "me", "links": ["me:x"]}, Conflict),
                            ({"name": "bad name"}, InvalidArgument)]:
            try:
                rt.create("busybox", ["true"], **kwargs)
            except exc as err:
                out.setdefault("errors", []).append(str(err))
            else:
                out.setdefault("errors", []).append("no error")
        stopped = rt.create("busybox", ["true"], name="stopped")
        try:
            rt.create("busybox", ["true"], links=["stopped:s"])
        except Conflict as err:
            out["errors"].append(str(err))
        out["names_after_errors"] = sorted(rt.names.list())
        rt.remove(stopped)
        rt.remove(web)
        out["names_after_rm_web"] = sorted(rt.names.list())
        return out
    finally:
        _cleanup(rt)


def test_linked_containers_see_env_and_reach_child_by_alias(in_netns, tmp_path: Path) -> None:
    out = in_netns(_links_body, str(tmp_path / "root"))
    ip = out["db_ip"]
    assert out["names_db"] == ["/db", "/web/db"] and out["get_by_link_path"]
    assert out["web_exit"] == 0
    assert out["web_out"] == [
        "DB_ENV_OPTS=a=b", "DB_ENV_SECRET=s3", "DB_NAME=/web/db", f"DB_PORT=tcp://{ip}:6379",
        f"DB_PORT_6379_TCP=tcp://{ip}:6379", f"DB_PORT_6379_TCP_ADDR={ip}", "DB_PORT_6379_TCP_PORT=6379",
        "DB_PORT_6379_TCP_PROTO=tcp", "pong", "pong"]
    assert "pong" not in out["other_out"] and "rc=" in out["other_out"]  # icc off and not linked
    errors = out["errors"]
    assert errors[0].startswith("Conflict, The name /db is already assigned to ")
    assert errors[1] == "Invalid link format: db (expected name:alias)"
    assert errors[2] == "Invalid link format: db:a:b (expected name:alias)"
    assert errors[3] == "Cannot link to self"
    assert errors[4] == "Invalid container name (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    assert errors[5] == "Cannot link to a non running container: /stopped AS " + errors[5].split(" AS ")[1]
    assert out["names_after_errors"] == ["/db", "/stopped", "/web", "/web/db"]  # failed creates left nothing
    assert out["names_after_rm_web"] == ["/db"]


def _rm_link_body(root: str) -> dict:
    from pydock.utils.errors import Conflict, NotFound

    rt = _runtime(root, icc=False)
    out: dict = {}
    try:
        db = rt.create("busybox", SERVER, name="db", expose=["6379"])
        rt.start(db)
        loop = ("while true; do if nc -w 1 db 6379 </dev/null | grep -q pong; then echo ok; else echo cut; fi; "
                "sleep 0.1; done")
        web = rt.create("busybox", ["sh", "-c", loop], name="web", links=["db:db"])
        rt.start(web)
        out["before"] = "ok" in _wait_log(rt, web, "ok")
        for bad in ("/db", "/web/nope"):
            try:
                rt.remove_link(bad)
            except (Conflict, NotFound) as err:
                out.setdefault("errors", []).append(f"{type(err).__name__}: {err}")
        rt.remove_link("/web/db")
        mark = len(list(rt.logs(web)))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            after = [r.log.rstrip("\n") for r in rt.logs(web)][mark:]
            if after.count("cut") >= 3:
                break
            time.sleep(0.2)
        out["after"] = after
        out["names"] = sorted(rt.names.list())
        out["db_running"] = rt.get("db").state.running
        return out
    finally:
        _cleanup(rt)


def test_rm_link_cuts_an_active_link_and_keeps_the_child(in_netns, tmp_path: Path) -> None:
    out = in_netns(_rm_link_body, str(tmp_path / "root"))
    assert out["before"]
    after = [line for line in out["after"] if line in ("ok", "cut")]
    # a check already in flight when the link went may still pass; from the first failure on, none does
    assert after.count("cut") >= 3 and "ok" not in after[after.index("cut"):], after
    assert out["errors"] == ["Conflict: Conflict, cannot remove the default name of the container",
                             "NotFound: No such link: /web/nope"]
    assert out["names"] == ["/db", "/web"] and out["db_running"]


def _kill9_body(root: str) -> dict:
    from pydock.links.bridge import link_exists

    rt = _runtime(root)
    out: dict = {}
    try:
        c = rt.create("busybox", SERVER, name="srv", expose=["6379"], ports=["16379:6379"])
        rt.start(c)
        c = rt.get("srv")
        veth = c.network["HostVeth"]
        out["published"] = c.network["Ports"]
        deadline = time.monotonic() + 10  # start() returns once launched; lxc makes the veth just after
        while not link_exists(veth) and time.monotonic() < deadline:
            time.sleep(0.05)
        out["veth_while_running"] = link_exists(veth)
        out["dnat_while_running"] = "DNAT" in _rules()
        # the parent of everything pydock runs for the container dies without cleaning up
        os.kill(c.state.monitor_pid, signal.SIGKILL)
        os.kill(c.state.pid, signal.SIGKILL)
        time.sleep(0.5)
        rt.reconcile()
        c = rt.get("srv")
        out["running_after"] = c.state.running
        out["veth_after"] = link_exists(veth)
        out["allocations_after"] = rt.network.allocations()
        out["dnat_after"] = "DNAT" in _rules()
        lxc = subprocess.run(["pgrep", "-f", c.id], capture_output=True, text=True).stdout.split()
        out["lxc_left"] = lxc
        return out
    finally:
        _cleanup(rt)


def test_kill9_of_a_monitor_leaks_no_veth_ip_or_rule(in_netns, tmp_path: Path) -> None:
    out = in_netns(_kill9_body, str(tmp_path / "root"))
    assert out["published"] == {"6379/tcp": [{"HostIp": "0.0.0.0", "HostPort": "16379"}]}
    assert out["veth_while_running"] and out["dnat_while_running"]
    assert not out["running_after"]
    assert not out["veth_after"] and out["allocations_after"] == {} and not out["dnat_after"]
    assert out["lxc_left"] == []


def _one_run(root: str, q) -> None:
    rt = _runtime(root)
    try:
        res = rt.run("busybox", ["ip", "-4", "-o", "addr", "show", "eth0"], remove=True)
        q.put(res.stdout.decode())
    finally:
        rt.close()


def _concurrent_body(root: str) -> list[str]:
    rt = _runtime(root)
    try:
        rt.images.resolve("busybox")  # build the image once before the race
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        procs = [ctx.Process(target=_one_run, args=(root, q)) for _ in range(4)]
        for p in procs:
            p.start()
        outs = [q.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(60)
        return outs
    finally:
        _cleanup(rt)


def test_concurrent_runs_get_distinct_addresses(in_netns, tmp_path: Path) -> None:
    outs = in_netns(_concurrent_body, str(tmp_path / "root"))
    ips = [re.search(r"inet (\S+)/", o).group(1) for o in outs]
    assert len(set(ips)) == 4, outs


def _cycles_body(root: str, cycles: int) -> dict:
    """`cycles` run/kill rounds with a published port; every tenth one loses its monitor to kill -9."""
    rt = _runtime(root)
    out: dict = {"baseline": None}
    try:
        for i in range(cycles):
            c = rt.create("busybox", ["sleep", "30"], ports=["16380:80"])
            rt.start(c)
            c = rt.get(c.id)
            if i % 10 == 9:
                os.kill(c.state.monitor_pid, signal.SIGKILL)
                os.kill(c.state.pid, signal.SIGKILL)
                time.sleep(0.2)
                rt.reconcile()
            else:
                rt.kill(c, signal.SIGKILL)
                rt.wait(c, timeout=30)
            rt.remove(rt.get(c.id), force=True)
            rules = "\n".join(line for line in _rules().splitlines() if not line.startswith("#"))
            state = (sorted(os.listdir("/sys/class/net")), rules, rt.network.allocations())
            if out["baseline"] is None:
                out["baseline"] = state
            elif state != out["baseline"]:
                out["drift"] = (i, state)
                break
        out["containers_left"] = [c.id for c in rt.containers(all=True)]
        deadline = time.monotonic() + 10  # a SIGKILLed lxc-start may take a moment to be reaped
        while True:
            every = subprocess.run(["pgrep", "-a", "-x", "lxc-start"], capture_output=True, text=True).stdout
            left = "\n".join(line for line in every.splitlines() if root in line)  # this root's, not others'
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        out["lxc_left"] = left
        return out
    finally:
        _cleanup(rt)


@pytest.mark.slow
def test_a_hundred_run_kill_cycles_leak_no_veth_ip_or_rule(in_netns, tmp_path: Path) -> None:
    out = in_netns(_cycles_body, str(tmp_path / "root"), 100, timeout=600)
    links, rules, allocations = out["baseline"]
    assert "drift" not in out, out.get("drift")
    assert not [n for n in links if n.startswith("veth")] and allocations == {}
    assert "DNAT" not in rules
    assert out["containers_left"] == [] and out["lxc_left"] == ""


def _ask(ip: str, port: int) -> str:
    """What a TCP server at ip:port says, or the error connecting to it."""
    import socket

    try:
        with socket.create_connection((ip, port), timeout=5) as s:
            s.shutdown(socket.SHUT_WR)
            return s.makefile("rb").read().decode().strip()
    except OSError as err:
        return type(err).__name__


def _loopback_body(root: str) -> dict:
    import socket

    from pydock.utils.errors import LaunchError

    rt = _runtime(root)
    out: dict = {}
    try:
        c = rt.create("busybox", SERVER, name="srv", ports=["16379:6379", "127.0.0.1:16380:6379"])
        rt.start(c)
        c = rt.get("srv")
        gateway = c.network["Gateway"]
        deadline = time.monotonic() + 15  # start() returns once launched: nc listens just after
        while _ask(c.network["IPAddress"], 6379) != "pong" and time.monotonic() < deadline:
            time.sleep(0.1)
        out["localhost"] = _ask("127.0.0.1", 16379)  # `curl localhost:PORT`: through the proxy
        out["loopback_only"] = _ask("127.0.0.1", 16380)
        out["loopback_only_elsewhere"] = _ask(gateway, 16380)  # published on 127.0.0.1 only
        out["host_address"] = _ask(gateway, 16379)  # DNAT, as before
        out["from_a_container"] = rt.run("busybox", ["nc", "-w", "5", gateway, "16379"], remove=True).stdout.decode()
        out["ports"] = c.network["Ports"]
        rules = _rules()
        out["loopback_rules"] = [line for line in rules.splitlines() if "16380" in line]
        with socket.socket() as taken:  # a host program holds a port: publishing it fails, nothing is left
            taken.bind(("127.0.0.1", 16381))
            taken.listen()
            bad = rt.create("busybox", SERVER, name="bad", ports=["127.0.0.1:16381:6379"])
            try:
                rt.start(bad)
                out["taken"] = "started"
            except LaunchError as err:
                out["taken"] = str(err)
            out["taken_state"] = (rt.get("bad").state.running, rt.network.allocations().get(bad.id))
        # a restart binds the proxy again: the first run answers once and ends, the policy starts it again
        once = rt.create("busybox", ["nc", "-l", "-p", "6379", "-e", "echo", "again"], name="once",
                         ports=["127.0.0.1:16382:6379"], restart="always")
        rt.start(once)
        answers = []
        deadline = time.monotonic() + 30
        while len(answers) < 2 and time.monotonic() < deadline:
            if _ask("127.0.0.1", 16382) == "again":
                answers.append(rt.get("once").state.restart_count)
            time.sleep(0.2)
        out["restarted_answers"] = answers
        rt.stop(once, timeout=5)
        rt.kill(c)
        rt.wait(c, timeout=30)
        out["after_stop"] = _ask("127.0.0.1", 16379)
        with socket.socket() as s:  # the port is the host's again
            s.bind(("0.0.0.0", 16379))
        out["rules_after_stop"] = [line for line in _rules().splitlines() if "1637" in line or "1638" in line]
        return out
    finally:
        _cleanup(rt)


def test_published_ports_answer_on_the_hosts_loopback(in_netns, tmp_path: Path) -> None:
    """`-p 16379:6379` is reached at localhost:16379 too, and `-p 127.0.0.1:16380:6379` there only, through
    the userland proxy the container's monitor holds while it runs (Docker's docker-proxy)."""
    out = in_netns(_loopback_body, str(tmp_path / "root"))
    assert out["localhost"] == "pong" and out["loopback_only"] == "pong", out
    assert out["loopback_only_elsewhere"] == "ConnectionRefusedError", out
    assert out["host_address"] == "pong" and out["from_a_container"].strip() == "pong", out
    assert out["ports"]["6379/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "16379"},
                                        {"HostIp": "127.0.0.1", "HostPort": "16380"}], out
    assert out["loopback_rules"] == [], out  # loopback has no DNAT: the kernel would drop it
    assert out["taken"] == "Bind for 127.0.0.1:16381 failed: port is already in use on the host", out
    assert out["taken_state"] == (False, None), out
    assert len(out["restarted_answers"]) == 2 and out["restarted_answers"][1] > out["restarted_answers"][0], out
    assert out["after_stop"] == "ConnectionRefusedError" and out["rules_after_stop"] == [], out
