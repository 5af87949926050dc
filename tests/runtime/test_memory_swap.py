"""`--memory-swap` and `--memory-swappiness` as Docker's, read back from the container's cgroups: cgroup v1
here (memory.memsw.limit_in_bytes = memory + swap), cgroup v2 in UML's dm tier (memory.swap.max = the
swap alone)."""

from __future__ import annotations

import json

import pytest

from pydock.runtime.cgroups import Hierarchy, hierarchy, process_cgroups, read_text, swap_limit_supported, \
    swappiness_supported
from pydock.runtime.options import CreateOptions
from pydock.utils.errors import InvalidArgument
from test_update import _init

pytestmark = pytest.mark.lxc

MIB = 1 << 20


def _needs_swap_accounting() -> None:
    if not swap_limit_supported():
        pytest.skip("this kernel has no swap accounting (CONFIG_MEMCG_SWAP: memory.memsw.* / memory.swap.max)")


def _swap_limit(init: int) -> str:
    where = process_cgroups(init)
    if hierarchy() is Hierarchy.V2:
        return (read_text(f"{where['']}/memory.swap.max") or "").strip()
    return (read_text(f"{where['memory']}/memory.memsw.limit_in_bytes") or "").strip()


def _expected(memory: int, swap: int) -> str:
    """What the cgroup says for memory+swap `swap` (-1: unlimited) over a `memory` limit."""
    if hierarchy() is Hierarchy.V2:
        return "max" if swap == -1 else str(swap - memory)
    return "9223372036854771712" if swap == -1 else str(swap)


@pytest.mark.parametrize("given, stored", [("128m", 128 * MIB), (None, 128 * MIB), ("-1", -1)])
def test_memory_swap_reaches_the_cgroup(rt, given, stored):
    _needs_swap_accounting()
    c = rt.create(CreateOptions.of("busybox", ["sleep", "60"], network=False, memory="64m", memory_swap=given))
    assert c.config["MemorySwap"] == stored  # unset: Docker's default, swap as large as the memory
    rt.start(c)
    try:
        assert _swap_limit(_init(rt, c)) == _expected(64 * MIB, stored)
    finally:
        rt.kill(c)


def test_memory_swap_refusals_with_dockers_messages(rt):
    _needs_swap_accounting()
    with pytest.raises(InvalidArgument, match="^Minimum memoryswap limit should be larger than memory limit"):
        rt.create("busybox", ["true"], network=False, memory="64m", memory_swap="32m")
    with pytest.raises(InvalidArgument, match="^You should always set the Memory limit when using Memoryswap"):
        rt.create("busybox", ["true"], network=False, memory_swap="64m")
    with pytest.raises(InvalidArgument, match="^Invalid value: 101, valid memory swappiness range is 0-100"):
        rt.create("busybox", ["true"], network=False, memory_swappiness=101)
    assert rt.containers(all=True) == []


def test_memory_swappiness(rt):
    if not swappiness_supported():
        with pytest.raises(InvalidArgument, match="--memory-swappiness is not supported on cgroup v2"):
            rt.create("busybox", ["true"], network=False, memory_swappiness=10)
        return
    c = rt.create("busybox", ["sleep", "60"], network=False, memory_swappiness=10)
    assert c.hostconfig["MemorySwappiness"] == 10
    rt.start(c)
    try:
        assert (read_text(f"{process_cgroups(_init(rt, c))['memory']}/memory.swappiness") or "").strip() == "10"
    finally:
        rt.kill(c)


def test_cli_memory_swap(cli):
    _needs_swap_accounting()
    p = cli("run", "--net", "none", "-m", "64m", "--memory-swap", "32m", "busybox", "true")
    assert p.returncode == 125 and b"Minimum memoryswap limit should be larger than memory limit" in p.stderr
    cid = cli("create", "--net", "none", "-m", "64m", "--memory-swap", "100m", "busybox", "true").stdout.decode().strip()
    assert json.loads(cli("inspect", cid).stdout)[0]["Config"]["MemorySwap"] == 100 * MIB
