"""`pause`/`unpause`: the container's processes frozen by the kernel's freezer, and thawed."""

from __future__ import annotations

import json
import time

import pytest
from tty_helpers import pydock

from pydock.runtime import freezer
from pydock.runtime.launcher import container_command

pytestmark = pytest.mark.lxc

COUNTER = 'i=0; while :; do i=$((i+1)); echo $i > /count; sleep 0.05; done'


def _init_pid(root, name: str) -> int:
    state = json.loads(pydock(root, "inspect", name).stdout)[0]["State"]
    init = container_command(state["Pid"])
    assert init is not None
    return init


def _count(root, mountpoint) -> int:
    text = (mountpoint / "count").read_text().strip()
    return int(text) if text else 0


def _wait_progress(read, timeout: float = 60) -> None:
    start = read()
    deadline = time.monotonic() + timeout
    while read() <= start:
        assert time.monotonic() < deadline, "the container's loop made no progress"
        time.sleep(0.05)


def test_pause_freezes_and_unpause_thaws(root):
    p = pydock(root, "run", "-d", "--name", "pp", "busybox", "sh", "-c", COUNTER)
    assert p.returncode == 0, p.stderr
    cid = p.stdout.decode().strip()
    mnt = root / "overlay" / "mnt" / cid
    deadline = time.monotonic() + 60
    while not (mnt / "count").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _wait_progress(lambda: _count(root, mnt))
    assert pydock(root, "pause", "pp").stdout == b"pp\n"
    init = _init_pid(root, "pp")
    assert freezer.is_frozen(init)  # the kernel says so
    assert json.loads(pydock(root, "inspect", "pp").stdout)[0]["State"]["Paused"] is True
    assert b" (Paused)" in pydock(root, "ps").stdout
    p2 = pydock(root, "pause", "pp")
    assert p2.returncode != 0 and b"already paused" in p2.stderr
    for cmd in (("exec", "pp", "true"), ("attach", "pp")):
        p2 = pydock(root, *cmd)
        assert p2.returncode != 0 and b"paused" in p2.stderr, cmd
    assert pydock(root, "unpause", "pp").stdout == b"pp\n"
    assert not freezer.is_frozen(init)
    assert json.loads(pydock(root, "inspect", "pp").stdout)[0]["State"]["Paused"] is False
    _wait_progress(lambda: _count(root, mnt))
    p2 = pydock(root, "unpause", "pp")
    assert p2.returncode != 0 and b"is not paused" in p2.stderr


def test_a_paused_container_can_be_killed_and_stopped(root):
    assert pydock(root, "run", "-d", "--name", "kk", "busybox", "sh", "-c", COUNTER).returncode == 0
    assert pydock(root, "pause", "kk").returncode == 0
    assert pydock(root, "kill", "kk").returncode == 0
    assert pydock(root, "wait", "kk").stdout == b"137\n"
    p = pydock(root, "pause", "kk")
    assert p.returncode != 0 and b"is not running" in p.stderr
