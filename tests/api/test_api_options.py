"""Create/runtime options through `pydock serve`, driven by the real docker CLI and SDK: the log driver
and its rotation, privileged mode, `docker update`, prune filters."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.lxc


def test_log_driver_and_rotation_through_the_docker_cli(server):
    cid = server.docker_ok("run", "-d", "--net", "none", "--log-opt", "max-size=1k", "--log-opt", "max-file=2",
                           "busybox", "sh", "-c", "i=0; while [ $i -lt 200 ]; do echo row $i; i=$((i+1)); done").strip()
    assert server.docker_ok("wait", cid) == "0\n"
    rows = server.docker_ok("logs", cid).splitlines()
    assert rows[-1] == "row 199" and rows == [f"row {i}" for i in range(200 - len(rows), 200)] and len(rows) < 200
    config = json.loads(server.docker_ok("inspect", "-f", "{{json .HostConfig.LogConfig}}", cid))
    assert config == {"Type": "json-file", "Config": {"max-size": "1k", "max-file": "2"}}
    server.docker_ok("rm", cid)
    cid = server.docker_ok("run", "-d", "--net", "none", "--log-driver", "none", "busybox", "echo", "hi").strip()
    assert server.docker_ok("wait", cid) == "0\n"
    p = server.docker("logs", cid)
    assert p.returncode != 0 and "configured logging driver does not support reading" in p.stderr.decode()
    assert server.docker_ok("inspect", "-f", "{{.HostConfig.LogConfig.Type}}|{{.LogPath}}", cid) == "none|\n"
    server.docker_ok("rm", cid)
    # no log kept, yet an attached run still shows its output and exit status (through the monitor's relay)
    p = server.docker("run", "--rm", "-i", "--net", "none", "--log-driver", "none", "busybox", "sh", "-c",
                      "cat; echo err >&2; exit 4", input=b"piped\n")
    assert (p.returncode, p.stdout, p.stderr) == (4, b"piped\n", b"err\n")
    p = server.docker("run", "--net", "none", "--log-opt", "tag=x", "busybox", "true")
    assert p.returncode == 125 and "log opt 'tag' of the json-file log driver is not supported" in p.stderr.decode()
    assert server.docker_ok("ps", "-aq") == ""


def test_privileged_through_the_docker_cli(server):
    out = server.docker_ok("run", "--rm", "--net", "none", "--privileged", "busybox", "grep", "-E",
                           "^(CapEff|Seccomp):", "/proc/self/status")
    with open("/proc/self/status") as f:
        own = next(line.split()[1] for line in f if line.startswith("CapBnd:"))
    assert out.split() == ["CapEff:", own, "Seccomp:", "0"]
    cid = server.docker_ok("create", "--net", "none", "--privileged", "busybox", "true").strip()
    assert server.docker_ok("inspect", "-f", "{{.HostConfig.Privileged}}", cid) == "true\n"
    server.docker_ok("rm", cid)


def test_docker_update_and_the_sdks_update(server):
    cid = server.docker_ok("run", "-d", "--net", "none", "-m", "64m", "busybox", "sleep", "60").strip()
    try:
        assert server.docker_ok("update", "--memory", "96m", "--memory-swap", "-1", "--cpus", "0.5", "--pids-limit",
                                "30", "--restart", "on-failure:3", cid) == cid + "\n"
        hc = json.loads(server.docker_ok("inspect", "-f", "{{json .HostConfig}}", cid))
        assert (hc["Memory"], hc["MemorySwap"], hc["NanoCpus"], hc["PidsLimit"]) == (96 << 20, -1, 500_000_000, 30)
        assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        p = server.docker("update", "--blkio-weight", "300", cid)
        assert p.returncode != 0 and "BlkioWeight is not supported by pydock update" in p.stderr.decode()
        r = server.sdk(f"""
c = client.containers.get({cid!r})
result = c.update(cpu_shares=512, mem_limit='128m')
""")
        assert r == {"Warnings": []}
        shares = server.docker_ok("inspect", "-f", "{{.HostConfig.CpuShares}} {{.HostConfig.Memory}}", cid).split()
        assert shares == ["512", str(128 << 20)]
    finally:
        server.docker_ok("rm", "-f", cid)


def test_prune_filters_through_the_docker_cli(server):
    keep = server.docker_ok("create", "--net", "none", "--label", "keep=yes", "busybox", "true").strip()
    gone = server.docker_ok("create", "--net", "none", "--label", "team=x", "busybox", "true").strip()
    out = server.docker_ok("container", "prune", "-f", "--filter", "label!=keep=yes", "--filter", "until=0s")
    assert gone in out and keep not in out
    assert keep in server.docker_ok("container", "prune", "-f", "--filter", "label=keep")
    p = server.docker("container", "prune", "-f", "--filter", "status=exited")
    assert p.returncode != 0 and "invalid filter 'status'" in p.stderr.decode()
    p = server.docker("image", "prune", "-f", "--filter", "reference=busybox")
    assert p.returncode != 0 and "invalid filter 'reference'" in p.stderr.decode()
    server.docker_ok("pull", "busybox")
    assert "busybox" not in server.docker_ok("image", "prune", "-af", "--filter", "until=1h", "--filter", "label=none")
    assert server.docker_ok("images", "-q", "busybox").strip()
