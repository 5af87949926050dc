"""NetworkManager + link env with real lxc containers (lxc-execute on a busybox rootfs), in a private network namespace.

This checks the links part's own contract with lxc (the `lxc.net.0.*` keys, veth naming, link rules, env
vars and hosts lines) without the runtime; the whole-CLI tests live in test_links_cli.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from pydock.links import bridge as br
from pydock.links.linkenv import hosts_entry, link_env
from pydock.links.network import NetworkManager, NetworkSettings, lxc_network_config
from pydock.runtime.cgroups import remove_lxc_cgroups
from pydock.utils.paths import RootLayout

pytestmark = [pytest.mark.network, pytest.mark.lxc,
              pytest.mark.skipif(shutil.which("lxc-execute") is None or shutil.which("busybox") is None,
                                 reason="lxc-execute and busybox-static are needed")]


def _rootfs(path: Path) -> Path:
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
        (path / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(shutil.which("busybox"), path / "bin" / "busybox")
    for applet in ("sh", "nc", "cat", "sleep", "echo", "env", "ip"):
        (path / "bin" / applet).symlink_to("busybox")
    return path


def _config(tmp: Path, name: str, rootfs: Path, settings: NetworkSettings, env: list[str], hosts: list[str]) -> Path:
    hosts_file = tmp / f"{name}.hosts"
    hosts_file.write_text("127.0.0.1\tlocalhost\n" + "".join(h + "\n" for h in hosts))
    lines = [("lxc.uts.name", name), ("lxc.rootfs.path", f"dir:{rootfs}"), ("lxc.mount.auto", "proc sys"),
             ("lxc.mount.entry", f"{hosts_file} etc/hosts none bind,ro,create=file 0 0"),
             *lxc_network_config(settings, gateway=True)]
    lines += [("lxc.environment", e) for e in env]
    cfg = tmp / f"{name}.conf"
    cfg.write_text("".join(f"{k} = {v}\n" for k, v in lines))
    return cfg


def _start(tmp: Path, name: str, cfg: Path, *cmd: str) -> subprocess.Popen:
    return subprocess.Popen(["lxc-execute", "-P", str(tmp / "lxc"), "-n", name, "-f", str(cfg), "--", *cmd],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _linked_containers_body(tmp_s: str) -> dict:
    tmp = Path(tmp_s)
    (tmp / "lxc").mkdir()
    rootfs = _rootfs(tmp / "rootfs")
    nm = NetworkManager(RootLayout(tmp / "root"), bridge="pdl0", bip="10.124.0.1/24", icc=False)
    tag = uuid.uuid4().hex[:6]
    child_id, parent_id, other_id = ("1c" * 32), ("2d" * 32), ("3e" * 32)
    child = nm.allocate(child_id)
    server = _start(tmp, f"pdl-{tag}-db", _config(tmp, f"pdl-{tag}-db", rootfs, child, ["SECRET=x=1"], []),
                    "/bin/nc", "-ll", "-p", "6379", "-e", "/bin/echo", "pong")
    out: dict = {}
    try:
        deadline = time.monotonic() + 10
        while not br.link_exists(child.host_veth) and time.monotonic() < deadline:
            time.sleep(0.05)
        out["child_veth_up"] = br.link_exists(child.host_veth)
        time.sleep(0.3)
        parent = nm.allocate(parent_id)
        env = link_env("db", f"/web-{tag}/db", child.ip_address, ["6379/tcp"], ["SECRET=x=1", "PATH=/bin"])
        nm.enable_link(parent.ip_address, child.ip_address, ["6379/tcp"])
        script = ('echo "port=$DB_PORT name=$DB_NAME secret=$DB_ENV_SECRET"; '
                  'nc -w 2 $DB_PORT_6379_TCP_ADDR $DB_PORT_6379_TCP_PORT </dev/null; '
                  'nc -w 2 db 6379 </dev/null')
        name = f"pdl-{tag}-web"
        run = _start(tmp, name, _config(tmp, name, rootfs, parent, env, [hosts_entry("db", child.ip_address)]),
                     "/bin/sh", "-c", script)
        out["parent"] = run.communicate(timeout=60)[0]
        other = nm.allocate(other_id)
        name = f"pdl-{tag}-other"
        run = _start(tmp, name, _config(tmp, name, rootfs, other, [], []),
                     "/bin/sh", "-c", f"nc -w 1 {child.ip_address} 6379 </dev/null; echo done")
        out["other"] = run.communicate(timeout=60)[0]
        nm.release(other_id)
        # kill -9 the child's lxc monitor: release() must leave no veth, address or rule behind
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        nm.release(parent_id)
        nm.release(child_id)
        out["veths_after"] = [v for v in (child.host_veth, parent.host_veth, other.host_veth) if br.link_exists(v)]
        out["allocations_after"] = nm.allocations()
        out["rules_after"] = [line for line in subprocess.run(["iptables-save"], capture_output=True, text=True,
                                                              check=True).stdout.splitlines()
                              if "10.124.0." in line and "MASQUERADE" not in line]
        out["child_ip"] = child.ip_address
        return out
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        remove_lxc_cgroups(f"pdl-{tag}-db")  # an lxc killed outright leaves its cgroups behind
        nm.teardown()


def test_linked_lxc_containers_reach_each_other_by_env_and_alias(in_netns, tmp_path: Path) -> None:
    out = in_netns(_linked_containers_body, str(tmp_path))
    assert out["child_veth_up"]
    lines = out["parent"].splitlines()
    assert f"port=tcp://{out['child_ip']}:6379 name=" in lines[0] and lines[0].endswith("secret=x=1")
    assert lines.count("pong") == 2, out["parent"]  # by env vars and by the /etc/hosts alias
    assert "pong" not in out["other"] and "done" in out["other"]  # icc off, no link
    assert out["veths_after"] == [] and out["allocations_after"] == {} and out["rules_after"] == []
