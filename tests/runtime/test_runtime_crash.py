"""Restart safety: a monitor or a CLI killed with SIGKILL mid-run leaves a container the next command
shows correctly and `rm` cleans completely — never a state needing a manual fix."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from root_helpers import comm

from pydock.runtime import cgroups
from pydock.runtime.launcher import container_init
from pydock.utils.mounttable import mountinfo
from pydock.runtime.state import EXIT_KILLED, EXIT_LOST, Status
from pydock.utils.process import proc_start_time

pytestmark = pytest.mark.lxc


def _mounts_under(path) -> list[str]:
    return [e.mountpoint for e in mountinfo() if e.mountpoint.startswith(str(path))]



def _gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while proc_start_time(pid) is not None:
        assert time.monotonic() < deadline, f"process {pid} still alive"
        time.sleep(0.02)


def test_killed_monitor_is_reconciled_on_next_listing(rt):
    c = rt.create("busybox", ["sleep", "60"], name="orphan")
    rt.start(c)
    c.reload()
    monitor, lxc = c.state.monitor_pid, c.state.pid
    assert monitor and lxc and monitor != os.getpid()
    deadline = time.monotonic() + 30  # the command runs (lxc-start is past its set-up, which needs the monitor)
    while comm(container_init(lxc)) != "sleep":
        assert time.monotonic() < deadline, "the container's command never started"
        time.sleep(0.05)
    os.kill(monitor, signal.SIGKILL)
    _gone(monitor)
    listed = {x.id: x for x in rt.containers(all=True)}
    assert listed[c.id].state.status is Status.EXITED
    assert listed[c.id].state.exit_code == EXIT_KILLED  # it was still running: pydock killed it
    _gone(lxc)
    assert _mounts_under(c.dir) == [] and _mounts_under(rt.driver.mountpoint(c.id)) == []
    rt.remove(c.id)
    assert rt.names.get("/orphan") is None and not c.dir.exists()
    assert not rt.driver.exists(c.id)


def _lxc_cgroups(cid: str) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/lxc.*.{cid}") + glob.glob(f"/sys/fs/cgroup/*/lxc.*.{cid}")


@pytest.mark.parametrize("monitor_too", [False, True], ids=["its-monitor-finishes", "reconciled"])
def test_lxc_start_killed_outright_leaves_no_cgroup_behind(rt, monitor_too):
    c = rt.create("busybox", ["sleep", "60"], name="cgroups")
    rt.start(c)
    c.reload()
    monitor, lxc = c.state.monitor_pid, c.state.pid
    deadline = time.monotonic() + 30
    while comm(container_init(lxc)) != "sleep":
        assert time.monotonic() < deadline, "the container's command never started"
        time.sleep(0.05)
    assert _lxc_cgroups(c.id)  # lxc made them
    if monitor_too:
        os.kill(monitor, signal.SIGKILL)  # then crash recovery finishes the run
        _gone(monitor)
    os.kill(lxc, signal.SIGKILL)  # it cannot remove them itself now
    _gone(lxc)
    if not monitor_too:
        _gone(monitor)  # it finished the run
    assert rt.get(c.id).state.status is Status.EXITED
    assert _lxc_cgroups(c.id) == []
    rt.remove(c.id)


def test_a_paused_container_whose_monitor_was_killed_is_ended_not_left_frozen(rt):
    """Crash recovery thaws a paused container to kill it: a frozen process takes its SIGKILL only once
    thawed, and would otherwise stay frozen, in cgroups nobody removes, for good."""
    c = rt.create("busybox", ["sleep", "60"], name="frozen")
    rt.start(c)
    c.reload()
    monitor, lxc = c.state.monitor_pid, c.state.pid
    deadline = time.monotonic() + 30
    while comm(init := container_init(lxc)) != "sleep":
        assert time.monotonic() < deadline, "the container's command never started"
        time.sleep(0.05)
    rt.pause(c)
    os.kill(monitor, signal.SIGKILL)
    _gone(monitor)
    listed = {x.id: x for x in rt.containers(all=True)}
    assert (listed[c.id].state.status, listed[c.id].state.exit_code) == (Status.EXITED, EXIT_KILLED)
    _gone(init)
    _gone(lxc)
    assert _lxc_cgroups(c.id) == []
    rt.remove(c.id)


def test_cgroup_removal_waits_for_the_dying_processes_to_leave():
    """lxc-start's processes die with it, but not at once: the removal waits (up to `settle`) for them."""
    name = f"pdtest-{os.getpid()}"
    cgroup = f"{cgroups.hierarchy_roots()[-1]}/lxc.payload.{name}"
    os.mkdir(cgroup)
    proc = subprocess.Popen(["sleep", "60"])
    try:
        with open(f"{cgroup}/cgroup.procs", "w") as f:
            f.write(str(proc.pid))
        assert cgroups.remove_lxc_cgroups(name) == [] and os.path.isdir(cgroup)  # busy: it stays
        killer = threading.Timer(0.5, proc.kill)
        killer.start()
        assert cgroups.remove_lxc_cgroups(name, settle=10) == [cgroup]
        assert not os.path.exists(cgroup)
    finally:
        proc.kill()
        proc.wait()
        cgroups.remove_lxc_cgroups(name, settle=10)


def test_monitor_dead_after_the_command_ended_records_unknown_status(rt):
    c = rt.create("busybox", ["true"])
    rt.start(c)
    rt.wait(c, timeout=30)
    # simulate a host crash between the command's exit and the monitor's bookkeeping
    with c.locked():
        c.save_state(c.state.started(pid=0, pid_start=0, monitor_pid=999999, monitor_start=1))
    assert rt.get(c.id).state.exit_code == EXIT_LOST
    assert rt.get(c.id).state.status is Status.EXITED


def test_wait_returns_when_the_monitor_dies(rt):
    c = rt.create("busybox", ["sleep", "60"])
    rt.start(c)
    c.reload()
    os.kill(c.state.monitor_pid, signal.SIGKILL)
    assert rt.wait(c, timeout=20) == EXIT_KILLED


def test_ghost_while_another_process_holds_the_repair(rt):
    import fcntl

    c = rt.create("busybox", ["true"])
    with c.locked():
        c.save_state(c.state.started(pid=0, pid_start=0, monitor_pid=999999, monitor_start=1))
    fd = os.open(c.monitor_lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # "another process" is mid-repair: we hold the lock
        # monitor_alive sees the lock as held -> Running; ps shows it running, not corrupt
        assert rt.get(c.id).state.running
    finally:
        os.close(fd)
    assert rt.get(c.id).state.exit_code == EXIT_LOST


def test_reconcile_purges_names_of_vanished_containers(rt):
    import shutil

    c = rt.create("busybox", ["true"], name="vanishing")
    shutil.rmtree(c.dir)  # a crash mid-remove
    rt.driver.remove(c.id)
    rt.reconcile()
    assert rt.names.get("/vanishing") is None
    rt.create("busybox", ["true"], name="vanishing")  # the name is usable again


def test_the_next_runtime_deletes_what_a_crash_left_in_the_trash(rt):
    from pydock.runtime.runtime import Runtime
    from pydock.utils import afterwards

    c = rt.create("busybox", ["true"], name="trashed")
    with afterwards.collecting():  # a removal answered, then a crash before the work after the answer
        rt.remove(c)
    assert not c.dir.exists() and os.listdir(rt.layout.trash)
    Runtime(rt.layout.root, deviceset=rt.driver.deviceset).close()
    assert os.listdir(rt.layout.trash) == []


@pytest.mark.parametrize("driver", ["overlay"])
def test_cli_killed_mid_run_is_reconciled(cli, cli_root, driver):
    cmd = [sys.executable, "-m", "pydock.cli.main", "-g", str(cli_root), "-s", driver, "run", "--net", "none",
           "--name", "fg", "busybox", "sh", "-c", "echo started; sleep 60"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK_")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline() == b"started\n"
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    out = cli("ps", "-a").stdout.decode()
    line = next(l for l in out.splitlines() if l.rstrip().endswith("fg"))
    assert "Exit 137" in line
    assert cli("ps", "-q").stdout == b""
    rm = cli("rm", "fg")
    assert rm.returncode == 0 and rm.stdout == b"fg\n"
    assert _mounts_under(cli_root) == []
    assert list((cli_root / "containers").iterdir()) == []


def test_half_created_container_is_swept(rt):
    c = rt.create("busybox", ["true"], name="half")
    shared = c.init_id
    c.config_path.unlink()  # a crash before config.json was written
    assert rt.containers(all=True) == []  # too fresh: maybe another process is creating it
    old = c.dir.stat().st_mtime - 3600
    os.utime(c.dir, (old, old))
    assert rt.containers(all=True) == []
    assert not c.dir.exists()
    assert not rt.driver.exists(c.id) and rt.driver.initialized(shared)  # the image's init layer stays
    assert rt.names.get("/half") is None


def test_an_init_layer_a_crash_left_half_made_is_made_again(rt):
    from pydock.runtime import initlayer

    busybox = rt.images.resolve("busybox").id
    device = rt.graph.derived_device(busybox, initlayer.PURPOSE)
    rt.driver.create(device, busybox)  # a crash before its stubs were written and it was marked complete
    assert not rt.driver.initialized(device)
    assert rt.run("busybox", ["cat", "/etc/hosts"], remove=True, network="none").exit_code == 0
    assert rt.driver.initialized(device)


def test_cli_killed_mid_run_rm_is_removed_at_the_next_command(cli, cli_root):
    cmd = [sys.executable, "-m", "pydock.cli.main", "-g", str(cli_root), "-s", "overlay", "run", "--rm", "--net",
           "none", "--name", "gone", "busybox", "sh", "-c", "echo started; sleep 60"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK_")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline() == b"started\n"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert cli("ps", "-a", "-q").stdout == b""  # reconciled: killed, then auto-removed
    assert list((cli_root / "containers").iterdir()) == []
    assert _mounts_under(cli_root) == []
    assert cli("run", "--rm", "--net", "none", "--name", "gone", "busybox", "true").returncode == 0  # name free
