"""`--cap-add` / `--cap-drop` as Docker computes them: the bounding, effective and permitted sets
follow, and so does the seccomp profile (Docker's allows `mount` only with CAP_SYS_ADMIN); `--device`
opens the device cgroup to one node."""

from __future__ import annotations

import os
import stat

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


def test_a_device_is_usable_only_when_given(pydock_runtime, tmp_path):
    """The device cgroup refuses a node the container made or was handed (here through a volume) unless
    `--device` allowed it; `--device` puts the node on the container's /dev with the permissions asked."""
    os.mknod(tmp_path / "lc", 0o600 | stat.S_IFCHR, os.makedev(10, 237))  # /dev/loop-control's numbers
    rt = pydock_runtime
    denied = _run(rt, "exec 3<>/d/lc", volumes=(f"{tmp_path}:/d",))
    assert denied.exit_code != 0 and b"Operation not permitted" in denied.stderr
    assert _run(rt, "exec 3<>/dev/loop-control && echo opened", devices=("/dev/loop-control",)).stdout == b"opened\n"
    read_only = _run(rt, "exec 3</dev/lc; exec 4>/dev/lc", devices=("/dev/loop-control:/dev/lc:r",))
    assert read_only.exit_code != 0 and b"can't create /dev/lc: Operation not permitted" in read_only.stderr
    for bad, message in (("/etc/passwd", "is not a device node"), ("/dev/nope", "error gathering device"),
                         ("/dev/loop-control:/lc", "must be under /dev"), ("/dev/loop-control:x", "invalid device")):
        with pytest.raises(InvalidArgument, match=message):
            rt.create("busybox", ["true"], devices=(bad,))
