"""The command is PID 1, as under Docker: `$$` is 1, nothing in the container resolves to a host
executable, `stop` reaches it (a handler-less PID 1 ignores SIGTERM and is killed after the
timeout), and `--init` puts a reaping init (tini) in front of it."""

from __future__ import annotations

import os
import shutil
import sys
import time

import pytest

from pydock.runtime.launcher import container_processes

pytestmark = pytest.mark.lxc
TIERS = ["host", pytest.param("dm", marks=pytest.mark.dm)]
#: what the old launcher put at PID 1, and pydock's own interpreter
HOST_BINARIES = [p for p in (shutil.which("lxc-start"), shutil.which("lxc-execute"), "/usr/sbin/init.lxc.static",
                             "/usr/sbin/init.lxc", sys.executable, shutil.which("tini-static")) if p]


def _started(rt, cmd: list[str], **options):
    c = rt.create("busybox", cmd, **options)
    rt.start(c)
    return c


def _wait_until(check, what: str, timeout: float = 30):
    """Poll `check()` until it is true: the container got there, however slow the kernel (UML) is."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _ready(rt, c) -> None:
    """Wait for the command's `ready` line: it printed it after installing its trap."""
    _wait_until(lambda: any(r.log.strip() == "ready" for r in rt.logs(c)), "the ready line")


TRAP_TERM = ["sh", "-c", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done"]


def _from_proc(rt, c, name: str, field) -> list[str]:
    """`field` of /proc/PID/`name` of every process in the container, read from the host; a process that
    ended meanwhile (gone before the open, or reaped between the open and the read) is skipped."""
    values = []
    for pid in container_processes(rt.load(c.id).state.pid):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as f:
                values.append(field(f.read()).decode())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return values


def _cmdlines(rt, c) -> list[str]:
    """argv[0] of every process in the container."""
    return _from_proc(rt, c, "cmdline", lambda data: data.split(b"\0")[0])


def _states(rt, c) -> list[str]:
    """The state letter (R, S, Z...) of every process in the container."""
    return _from_proc(rt, c, "stat", lambda data: data.rsplit(b")", 1)[1].split()[0])


@pytest.mark.parametrize("tier", TIERS)
def test_the_command_is_pid_1_and_no_host_binary_is_in_view(pydock_runtime, tier):
    result = pydock_runtime.run("busybox", ["sh", "-c", "echo $$; stat -L -c '%d %i' /proc/1/exe /proc/self/exe"
                                            " /bin/busybox; cat /proc/1/cmdline | tr '\\0' ' '"])
    assert result.exit_code == 0, result.stderr
    pid, one, self_, busybox, cmdline = result.stdout.decode().splitlines()
    assert pid == "1"
    assert one == self_ == busybox  # the image's busybox, by device and inode
    assert cmdline.startswith("/bin/sh -c echo $$")  # argv0 as pydock resolved it in the image
    dev, ino = (int(x) for x in one.split())
    for path in HOST_BINARIES:
        st = os.stat(path)
        assert (st.st_dev, st.st_ino) != (dev, ino), path


@pytest.mark.parametrize("tier", TIERS)
def test_stop_reaches_pid_1_with_a_trap_and_kills_one_without(pydock_runtime, tier):
    c = _started(pydock_runtime, TRAP_TERM)
    _ready(pydock_runtime, c)
    t0 = time.monotonic()
    pydock_runtime.stop(c, timeout=10)
    assert pydock_runtime.load(c.id).state.exit_code == 7
    assert time.monotonic() - t0 < 5
    # no handler: the kernel ignores SIGTERM for PID 1, as under Docker; SIGKILL after the timeout
    c = _started(pydock_runtime, ["sleep", "60"])
    t0 = time.monotonic()
    pydock_runtime.stop(c, timeout=1)
    assert pydock_runtime.load(c.id).state.exit_code == 137
    assert time.monotonic() - t0 >= 1


def test_kill_with_other_signals_reaches_pid_1(pydock_runtime):
    c = _started(pydock_runtime, ["sh", "-c", "trap 'exit 10' USR1; echo ready; while :; do sleep 0.1; done"])
    _ready(pydock_runtime, c)
    pydock_runtime.kill(c, "USR1")
    assert pydock_runtime.wait(c, timeout=10) == 10
    c = _started(pydock_runtime, ["sleep", "60"])
    pydock_runtime.kill(c, "USR1")  # no handler: ignored, still running
    time.sleep(0.3)
    assert pydock_runtime.load(c.id).state.running
    pydock_runtime.kill(c)
    assert pydock_runtime.wait(c, timeout=10) == 137


ORPHAN = ["sh", "-c", "(sleep 0.2 &); exec sleep 30"]  # the orphan's parent becomes PID 1, which never waits


@pytest.mark.parametrize("tier", TIERS)
def test_init_reaps_orphans_and_passes_signals(pydock_runtime, tier):
    c = _started(pydock_runtime, ORPHAN)  # without --init: a zombie nobody reaps (the contrast)
    _wait_until(lambda: "Z" in _states(pydock_runtime, c), "the orphan to end unreaped")
    pydock_runtime.kill(c)
    c = _started(pydock_runtime, ORPHAN, init=True)
    # tini reaped the orphan: what is left is tini and `sleep 30`, no zombie
    _wait_until(lambda: sorted(_cmdlines(pydock_runtime, c)) == ["/dev/init", "sleep"], "the orphan to be reaped")
    assert "Z" not in _states(pydock_runtime, c)
    pydock_runtime.kill(c)
    assert pydock_runtime.wait(c, timeout=10) == 137
    c = _started(pydock_runtime, TRAP_TERM, init=True)
    _ready(pydock_runtime, c)
    pydock_runtime.stop(c, timeout=10)  # tini passes SIGTERM to the command
    assert pydock_runtime.load(c.id).state.exit_code == 7


def test_init_keeps_exit_codes_and_is_a_private_read_only_copy(pydock_runtime):
    rt = pydock_runtime
    assert rt.run("busybox", ["sh", "-c", "exit 3"], init=True).exit_code == 3
    assert rt.run("busybox", ["sh", "-c", "kill -TERM $$"], init=True).exit_code == 143  # not PID 1 now
    result = rt.run("busybox", ["sh", "-c", "echo $$; stat -L -c '%d %i' /proc/1/exe; echo x > /proc/1/exe"
                                            " 2>/dev/null || echo read-only"], init=True)
    pid, one, ro = result.stdout.decode().splitlines()
    assert pid != "1" and ro == "read-only"
    copies = list(rt.layout.init.glob("docker-init-*"))
    assert len(copies) == 1
    st = os.stat(copies[0])
    assert one == f"{st.st_dev} {st.st_ino}"  # pydock's copy, not the host's tini
    host = os.stat(shutil.which("tini-static"))
    assert (host.st_dev, host.st_ino) != (st.st_dev, st.st_ino)


def test_the_command_starts_with_every_signal_at_its_default(pydock_runtime):
    """Whatever the launcher ignored (a shell's `&` ignores SIGINT, nohup SIGHUP) the command does not
    inherit: a `trap ... INT` in it works, as under Docker, whose commands start from a daemon."""
    import signal

    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGHUP)}
    try:
        c = _started(pydock_runtime, ["sh", "-c", "grep SigIgn /proc/self/status; trap 'exit 7' INT; echo ready; "
                                                  "while :; do sleep 0.1; done"])
        _ready(pydock_runtime, c)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    pydock_runtime.kill(c, "INT")
    assert pydock_runtime.wait(c, timeout=10) == 7
    assert [r.log for r in pydock_runtime.logs(c)][0].split() == ["SigIgn:", "0000000000000000"]


def test_the_command_starts_with_no_signal_blocked_whatever_its_launcher_blocked(pydock_runtime):
    """A blocked signal stays blocked across fork and exec: a launcher that blocks some (pydock then sets
    up lxc-start in its child, preexec.child_setup) still starts the command with none blocked and none
    ignored, as a launcher that blocks none does (the test above)."""
    import signal

    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    old_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        c = _started(pydock_runtime, ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"])  # no shell: sh ignores SIGQUIT
    finally:
        signal.signal(signal.SIGHUP, old_hup)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    assert pydock_runtime.wait(c, timeout=30) == 0
    assert [r.log.split() for r in pydock_runtime.logs(c)] == [["SigBlk:", "0000000000000000"],
                                                               ["SigIgn:", "0000000000000000"]]
