"""The CLI's network options (-b/--bridge, --bip, --icc), run as subprocesses inside a network
namespace the test creates, so the bridge and its rules never touch the host's interfaces."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.network, pytest.mark.lxc,
              pytest.mark.skipif(shutil.which("lxc-execute") is None, reason="lxc is needed")]


def _options_body(root: str) -> dict:
    def pd(*args: str) -> tuple[int, str, str]:
        p = subprocess.run([sys.executable, "-m", "pydock.cli.main", "-g", root, *args], capture_output=True,
                           text=True, timeout=120)
        return p.returncode, p.stdout, p.stderr

    out: dict = {}
    out["bip"] = pd("-b", "tbr0", "--bip", "10.123.0.1/24", "run", "--rm", "busybox", "ip", "-4", "-o", "addr",
                    "show", "eth0")
    out["route"] = pd("-b", "tbr0", "--bip", "10.123.0.1/24", "run", "--rm", "busybox", "ip", "route")
    out["no_net"] = pd("-b", "none", "run", "--rm", "busybox", "cat", "/proc/net/dev")
    out["bad_bip"] = pd("-b", "tbr1", "--bip", "not-an-address", "run", "--rm", "busybox", "true")
    out["bad_icc"] = pd("--icc", "maybe", "ps")
    rc, cid, err = pd("-b", "tbr0", "--bip", "10.123.0.1/24", "--icc=false", "run", "-d", "busybox", "sleep", "60")
    out["icc_run"] = (rc, err)
    out["icc_rules"] = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout
    pd("-b", "tbr0", "rm", "-f", cid.strip())
    out["links_after"] = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return out


def test_network_options_shape_the_bridge_and_bad_values_fail_cleanly(in_netns, tmp_path: Path) -> None:
    out = in_netns(_options_body, str(tmp_path / "root"))

    rc, addr, err = out["bip"]
    assert rc == 0, err
    assert " inet 10.123.0." in addr and "/24" in addr
    rc, route, err = out["route"]
    assert rc == 0 and "default via 10.123.0.1 dev eth0" in route, (route, err)

    rc, dev, err = out["no_net"]
    assert rc == 0, err
    assert "eth0" not in dev and "lo:" in dev

    rc, _, err = out["bad_bip"]
    assert rc != 0 and err.startswith("Error: ") and len(err.strip().splitlines()) == 1, err
    rc, _, err = out["bad_icc"]
    assert rc == 125 and "'maybe' is not a valid boolean" in err

    rc, err = out["icc_run"]
    assert rc == 0, err
    assert "-A FORWARD -i tbr0 -o tbr0 -j DROP" in out["icc_rules"]
    assert "veth" not in out["links_after"]  # the container's host-side veth went with it
