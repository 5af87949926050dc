"""`update` as Docker's: a running container's cgroups change at once, a stopped one's record, and the
next start keeps the new values; bad combinations are refused with Docker's messages."""

from __future__ import annotations

import json
import time

import pytest

from pydock.runtime.cgroups import Hierarchy, hierarchy, process_cgroups, read_text, swap_limit_supported
from pydock.runtime.launcher import container_init
from pydock.runtime.update import UpdateOptions
from pydock.utils.errors import Conflict, InvalidArgument

pytestmark = pytest.mark.lxc


def _init(rt, c) -> int:
    deadline = time.monotonic() + 30
    while True:
        init = container_init(rt.load(c.id).state.pid)
        if init is not None:
            with open(f"/proc/{init}/comm") as f:
                if f.read().strip() == "sleep":
                    return init
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)


def _limits(init: int) -> dict[str, str]:
    """The container's limits as its cgroups hold them, in one spelling for both hierarchies."""
    where = process_cgroups(init)
    if hierarchy() is Hierarchy.V2:
        base = where[""]
        files = {"memory": f"{base}/memory.max", "cpu": f"{base}/cpu.max", "pids": f"{base}/pids.max",
                 "swap": f"{base}/memory.swap.max"}
    else:
        files = {"memory": f"{where['memory']}/memory.limit_in_bytes", "cpu": f"{where['cpu']}/cpu.cfs_quota_us",
                 "pids": f"{where['pids']}/pids.max", "swap": f"{where['memory']}/memory.memsw.limit_in_bytes"}
    return {k: (read_text(path) or "").strip() for k, path in files.items()}


def test_update_a_running_container_then_restart_it(rt):
    c = rt.create("busybox", ["sleep", "60"], network=False, memory="64m", pids_limit=50)
    rt.start(c)
    assert _limits(_init(rt, c))["pids"] == "50"
    assert rt.update(c, UpdateOptions(memory="96m", cpus="0.5", pids_limit=20, restart="on-failure:2")) == []
    got = _limits(_init(rt, c))
    assert got["memory"] == str(96 << 20) and got["pids"] == "20"
    assert got["cpu"] in ("50000 100000", "50000")
    rt.update(c, UpdateOptions(pids_limit=-1))
    assert _limits(_init(rt, c))["pids"] == "max"
    rt.kill(c)
    rt.wait(c)
    rt.start(c)  # the next start keeps what update recorded
    got = _limits(_init(rt, c))
    assert got["memory"] == str(96 << 20) and got["pids"] == "max"
    c = rt.load(c.id)
    assert (c.config["Memory"], c.hostconfig["NanoCpus"], c.hostconfig["PidsLimit"]) == (96 << 20, 500_000_000, None)
    assert c.hostconfig["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    rt.kill(c)


def test_update_refusals(rt):
    c = rt.create("busybox", ["true"], network=False, memory="64m", auto_remove=False)
    with pytest.raises(InvalidArgument, match="You must provide one or more flags"):
        rt.update(c, UpdateOptions())
    with pytest.raises(InvalidArgument, match="Range of CPUs is from 0.01"):
        rt.update(c, UpdateOptions(cpus="1000"))
    with pytest.raises(InvalidArgument, match="invalid restart policy"):
        rt.update(c, UpdateOptions(restart="sometimes"))
    if swap_limit_supported():  # create's default: swap as large as the memory (memory+swap = 2x)
        assert rt.load(c.id).config["MemorySwap"] == 128 << 20
        with pytest.raises(Conflict, match="Memory limit should be smaller than already set memoryswap limit"):
            rt.update(c, UpdateOptions(memory="256m"))
        with pytest.raises(InvalidArgument, match="Minimum memoryswap limit should be larger than memory limit"):
            rt.update(c, UpdateOptions(memory_swap="32m"))
    auto = rt.create("busybox", ["true"], network=False, auto_remove=True)
    with pytest.raises(Conflict, match="Restart policy cannot be updated because AutoRemove is enabled"):
        rt.update(auto, UpdateOptions(restart="always"))


def test_cli_update(cli):
    cid = cli("create", "--net", "none", "-m", "64m", "busybox", "true").stdout.decode().strip()
    p = cli("update", "--memory", "80m", "--memory-swap", "-1", "--cpu-shares", "256", "--restart", "always", cid[:12])
    assert (p.returncode, p.stdout) == (0, cid[:12].encode() + b"\n"), p.stderr
    hc = json.loads(cli("inspect", cid).stdout)[0]
    assert hc["Config"]["Memory"] == 80 << 20 and hc["Config"]["CpuShares"] == 256
    p = cli("container", "update", "--pids-limit", "9", cid)
    assert p.returncode == 0, p.stderr
    p = cli("update", cid)
    assert p.returncode != 0 and b"You must provide one or more flags" in p.stderr
    p = cli("update", "--kernel-memory", "1m", cid)
    assert p.returncode != 0 and b"No such option" in p.stderr
