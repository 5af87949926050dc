"""`system df` and `container prune`: what the root's images, containers and volumes take, and the
removal of every stopped container (a running one stays)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.lxc


def test_df_then_prune(cli):
    def ok(*args: str) -> str:
        p = cli(*args)
        assert p.returncode == 0, p.stderr.decode()
        return p.stdout.decode()

    stopped = ok("create", "--net", "none", "busybox", "true").strip()
    ok("run", "--net", "none", "busybox", "sh", "-c", "head -c 100000 /dev/zero > /big")
    ok("volume", "create", "data")
    running = ok("run", "-d", "--net", "none", "-v", "data:/d", "busybox", "sleep", "60").strip()
    rows = {line.split()[0]: line.split() for line in ok("system", "df").splitlines()[1:]}
    assert rows["Images"][1:3] == ["1", "1"]
    assert rows["Containers"][1:5] == ["3", "1", "100", "kB"]  # the 100 kB file is the only change
    assert rows["Local"][2:4] == ["1", "1"]  # one volume, in use
    pruned = ok("container", "prune", "-f").splitlines()
    assert pruned[0] == "Deleted Containers:" and stopped in pruned and running not in pruned
    assert pruned[-1] == "Total reclaimed space: 100 kB"
    assert ok("ps", "-aq", "--no-trunc").split() == [running]
    ok("rm", "-f", running)
