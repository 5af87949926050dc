"""An image a container was made from is kept: `rmi` refuses it naming the container, `image prune -a`
keeps it and its parents; once the container is gone both remove it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.lxc


def test_a_used_image_and_its_parents_are_kept_until_the_container_goes(cli):
    def ok(*args: str) -> str:
        p = cli(*args)
        assert p.returncode == 0, f"{args}: {p.stderr.decode()}"
        return p.stdout.decode()

    ok("run", "--name", "maker", "--net", "none", "busybox", "touch", "/made")
    child = ok("commit", "maker", "app:1").strip()
    ok("rm", "maker")
    ok("tag", "busybox", "spare:1")  # a second name: `image prune -a` may take this tag, not the image
    user = ok("create", "--net", "none", "app:1", "true").strip()
    refused = cli("rmi", "app:1")
    assert refused.returncode != 0
    assert f"container {user[:12]} is using it" in refused.stderr.decode()
    ok("image", "prune", "-a", "-f")
    kept = ok("images", "-q", "--no-trunc").split()
    assert any(child.endswith(i.removeprefix("sha256:")) or i.removeprefix("sha256:").startswith(child)
               for i in kept), kept
    assert ok("inspect", "-f", "{{.Id}}", "busybox").strip()  # the parent of app:1 stays too
    ok("rm", user)
    ok("image", "prune", "-a", "-f")
    assert ok("images", "-q").split() == []
