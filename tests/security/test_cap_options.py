"""`--cap-add` / `--cap-drop` as Docker computes them: the bounding, effective and permitted sets
follow, and so does the seccomp profile (Docker's allows `mount` only with CAP_SYS_ADMIN)."""

from __future__ import annotations

import pytest

from pydock.runtime import caps
from pydock.utils.errors import InvalidArgument

pytestmark = pytest.mark.lxc
TIERS = ["host", pytest.param("dm", marks=pytest.mark.dm)]


def _run(rt, script: str, **options):
    return rt.run("busybox", ["sh", "-c", script], remove=True, **options)


def _sets(rt, **options) -> dict[str, int]:
    result = _run(rt, "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status", **options)
    assert result.exit_code == 0, result.stderr
    return {k: int(v, 16) for k, v in (line.split(":\t") for line in result.stdout.decode().splitlines())}


@pytest.mark.parametrize("tier", TIERS)
def test_added_and_dropped_capabilities_are_what_the_command_holds(pydock_runtime, tier):
    rt = pydock_runtime
    want = (caps.DEFAULT_MASK | caps.mask(["net_admin"])) & ~caps.mask(["chown"])
    assert _sets(rt, cap_add=("NET_ADMIN",), cap_drop=("CAP_CHOWN",)) == {"CapEff": want, "CapPrm": want,
                                                                          "CapBnd": want}
    assert _sets(rt, cap_drop=("ALL",)) == {"CapEff": 0, "CapPrm": 0, "CapBnd": 0}
    assert _sets(rt, cap_drop=("all",), cap_add=("kill",))["CapBnd"] == caps.mask(["kill"])
    refused = _run(rt, "chown 1 /tmp", cap_drop=("chown",))
    assert refused.exit_code == 1 and b"Operation not permitted" in refused.stderr
    # Docker's seccomp profile opens mount(2) to a container holding CAP_SYS_ADMIN, and only to it
    assert _run(rt, "mount -t tmpfs none /tmp && echo mounted", cap_add=("SYS_ADMIN",)).stdout == b"mounted\n"
    assert _run(rt, "mount -t tmpfs none /tmp").exit_code != 0


def test_unknown_capabilities_are_refused_before_anything_is_made(pydock_runtime):
    with pytest.raises(InvalidArgument, match='unknown capability: "NET_WIZARD"'):
        pydock_runtime.create("busybox", ["true"], cap_add=("NET_WIZARD",))
    assert pydock_runtime.containers(all=True) == []
    assert caps.resolve(("ALL",), ("sys_admin",)) == tuple(n for n in caps.CAP_NUMBERS if n != "sys_admin")
