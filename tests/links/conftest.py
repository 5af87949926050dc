"""Network test isolation: every bridge, veth and iptables rule a links test makes lives in a namespace it created.

`in_netns(fn, *args)` runs `fn` in a forked child that has its own network namespace and a private mount
namespace with a fresh /sys (lxc looks bridges up in /sys/class/net) that keeps the host's cgroup tree (lxc
needs it; `ip netns exec` would hide it). The namespace - every bridge, veth and rule in it - disappears with
the child; whole-CLI tests run `pydock` as subprocesses from inside such a child.
"""

from __future__ import annotations

import os
import pickle
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from netns_helpers import enter_private_netns


def run_in_netns(fn: Callable[..., Any], *args: Any, timeout: float = 120) -> Any:
    """Run `fn(*args)` in a child with a fresh network namespace; its return value, or its failure re-raised."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(rfd)
            enter_private_netns()
            payload = pickle.dumps(("ok", fn(*args)))
        except BaseException as err:  # noqa: BLE001 - everything goes back to the parent
            code = 1
            try:
                payload = pickle.dumps(("err", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
            except Exception:  # noqa: BLE001
                payload = pickle.dumps(("err", traceback.format_exc()))
        try:
            with os.fdopen(wfd, "wb") as w:
                w.write(payload)
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        data = r.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise AssertionError(f"netns child died without a result (wait status {status})")
    kind, value = pickle.loads(data)
    if kind == "err":
        raise AssertionError(f"in the test network namespace:\n{value}")
    return value


@pytest.fixture
def in_netns() -> Callable[..., Any]:
    return run_in_netns
