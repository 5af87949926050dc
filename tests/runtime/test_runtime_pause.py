"""`Runtime.pause`/`unpause` on every storage driver (devicemapper inside UML, where cgroup2's
cgroup.freeze does it; the v1 freezer on this hybrid host)."""

from __future__ import annotations

import time

import pytest

from pydock.runtime import freezer
from pydock.runtime.exec import ExecConfig
from pydock.runtime.launcher import container_command
from pydock.runtime.options import CreateOptions
from pydock.utils.errors import Conflict

pytestmark = pytest.mark.lxc

COUNTER = 'i=0; while :; do i=$((i+1)); echo $i > /count; sleep 0.05; done'


def _progress(read, timeout: float = 120) -> None:
    start = read()
    deadline = time.monotonic() + timeout
    while read() <= start:
        assert time.monotonic() < deadline, "the container made no progress"
        time.sleep(0.05)


def test_pause_unpause_and_kill_while_paused(rt):
    c = rt.create(CreateOptions(image="busybox", cmd=("sh", "-c", COUNTER)))
    rt.start(c)
    count = rt.driver.mountpoint(c.id) / "count"

    def read() -> int:
        try:
            text = count.read_text().strip()
        except FileNotFoundError:
            return 0
        return int(text) if text else 0

    _progress(read)
    rt.pause(c)
    init = container_command(rt.get(c.id).state.pid)
    assert init is not None and freezer.is_frozen(init) and rt.paused(rt.get(c.id))
    with pytest.raises(Conflict, match="already paused"):
        rt.pause(c)
    with pytest.raises(Conflict, match="paused"):
        rt.exec(c, ExecConfig(cmd=("true",)))
    rt.unpause(c)
    assert not freezer.is_frozen(init)
    _progress(read)
    rt.pause(c)
    rt.kill(c)  # SIGKILL reaches a frozen container: it is thawed for it
    assert rt.wait(c, timeout=60) == 137
    with pytest.raises(Conflict, match="not running"):
        rt.pause(c)


def test_pause_right_after_start_freezes_the_command_not_lxc(rt):
    """A pause that races the start waits for the command: lxc's own set-up (still in lxc's monitor
    cgroup) is never frozen, so the container can still be killed and its exit recorded."""
    c = rt.create(CreateOptions(image="busybox", cmd=("sh", "-c", COUNTER)))
    rt.start(c)
    rt.pause(c.id)
    rt.kill(c.id)
    assert rt.wait(c.id, timeout=60) == 137


def test_thawing_a_process_that_is_gone_is_a_conflict_kill_absorbs():
    """A SIGKILL passes cgroup v2's freezer: a paused container's PID 1 can be gone by the time kill
    thaws it. That is "not running" (a Conflict, which kill expects), not an error of its own."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: its pid names no process
    with pytest.raises(Conflict, match="^Container x is not running$"):
        freezer.set_frozen(proc.pid, False, "Container x")
