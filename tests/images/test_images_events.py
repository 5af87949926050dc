"""Image events: a push and a pull through a registry are in the root's events journal."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.lxc, pytest.mark.network]


def test_push_and_pull_are_recorded(pydock, registry):
    pydock("run", "--rm", "busybox", "true")  # busybox built
    t0 = str(time.time())
    pydock("tag", "busybox", f"{registry.host}/ev:1")
    user = pydock.inside(registry.ns)
    user("push", f"{registry.host}/ev:1")
    pydock("rmi", f"{registry.host}/ev:1")
    user("pull", f"{registry.host}/ev:1")
    out = pydock("events", "--since", t0, "--until", "0s", "--filter", "type=image").out.splitlines()
    actions = [line.split()[2] for line in out]
    assert actions[:3] == ["tag", "push", "untag"] and actions[-1] == "pull", out
    assert out[-1].endswith(f"(name={registry.host}/ev:1)")
