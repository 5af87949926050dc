"""Network test isolation: every bridge, veth and iptables rule a links test makes lives in a namespace it created.

`in_netns(fn, *args)` runs `fn` in a forked child that has its own network namespace (and a private mount
namespace with a fresh /sys, so /sys/class/net shows that namespace); the namespace - and every rule and
interface in it - disappears with the child. `named_netns` makes an `ip netns` namespace for whole-CLI tests
(`ip netns exec <ns> pydock ...`), deleted at teardown after killing anything still running in it.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000


def _enter_private_netns() -> None:
    from pydock.devmapper.kernel.mount import MS_NODEV, MS_NOEXEC, MS_NOSUID, make_rslave, mount, unshare

    unshare(CLONE_NEWNET | CLONE_NEWNS)
    make_rslave("/")
    mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def run_in_netns(fn: Callable[..., Any], *args: Any, timeout: float = 120) -> Any:
    """Run `fn(*args)` in a child with a fresh network namespace; its return value, or its failure re-raised."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(rfd)
            _enter_private_netns()
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


@pytest.fixture
def named_netns() -> Iterator[str]:
    """An `ip netns` namespace with lo up, for running the whole CLI inside it; removed at teardown."""
    name = "pydock-test-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", name], check=False)
