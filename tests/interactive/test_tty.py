"""`run -it`, `attach`, `start -a -i` and the detach keys on a real terminal (tmux), and attach without one."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time

import pytest
from tty_helpers import Tmux, pydock, pydock_argv

pytestmark = pytest.mark.lxc

PROMPT = "/ # "


def _status(root, name: str) -> str:
    """`<running> <exit code>` as `inspect` says."""
    state = json.loads(pydock(root, "inspect", name).stdout)[0]["State"]
    return f"{str(state['Running']).lower()} {state['ExitCode']}"


def test_run_it_gives_the_shell_this_terminal(root, term):
    term.start(pydock_argv(root, "run", "-it", "--name", "it", "busybox", "sh"), after="stty -a;")
    term.wait_for(PROMPT)
    term.type("[ -t 0 ] && [ -t 1 ] && echo IS-A-TTY")
    term.wait_for("\nIS-A-TTY")
    term.type("echo SIZE=$(stty size)")
    term.wait_for("SIZE=24 80")
    term.resize(100, 30)  # SIGWINCH on our terminal: the container's follows (asynchronously: retype)
    term.retype_until("echo SIZE=$(stty size)", "SIZE=30 100")
    # the terminal is the shell's controlling terminal: job control on, ^C interrupts the foreground job
    assert "job control turned off" not in term.screen()
    term.type("sleep 300")
    _wait_for_process(b"sleep\x00300\x00")  # a ^C before the shell made it the foreground job goes elsewhere
    term.send("C-c")
    term.wait_for(PROMPT, count=5)
    term.type("sleep 300 & jobs")
    term.wait_for("Running")
    term.type("exit 3")
    assert term.exit_status() == 3
    # the caller's terminal is back in cooked mode with echo
    modes = term.wait_for("icanon").split()
    assert "icanon" in modes and "echo" in modes and "-icanon" not in modes
    assert _status(root, "it") == "false 3"
    # a tty container's log is one stream, as the terminal showed it
    logs = pydock(root, "logs", "it")
    assert b"IS-A-TTY" in logs.stdout and logs.stderr == b""


def test_detach_keys_leave_the_container_running_and_attach_rejoins(root, term):
    term.start(pydock_argv(root, "run", "-it", "--name", "keep", "busybox", "sh"))
    term.wait_for(PROMPT)
    term.type("MARK=kept-state")
    term.send("C-p", "C-q")
    assert term.exit_status() == 0
    assert _status(root, "keep") == "true 0"

    term.close()
    term.__init__(cols=90, rows=20)
    term.start(pydock_argv(root, "attach", "--detach-keys", "ctrl-a,d", "keep"))
    term.type("")  # an empty line: the shell's prompt says the session is joined
    term.wait_for(PROMPT)
    term.type("echo VALUE=$MARK SIZE=$(stty size)")
    term.wait_for("VALUE=kept-state SIZE=20 90")
    term.send("C-p", "C-q")  # not this session's keys: typed through to the shell
    term.send("C-a", "d")
    assert term.exit_status() == 1
    term.wait_for("read escape sequence")
    assert _status(root, "keep") == "true 0"

    term.close()
    term.__init__()
    term.start(pydock_argv(root, "attach", "keep"))
    term.type("")
    term.wait_for(PROMPT)
    term.type("exit 5")
    assert term.exit_status() == 5
    assert _status(root, "keep") == "false 5"


def test_run_dit_then_attach_and_start_ai(root, term):
    p = pydock(root, "run", "-dit", "--name", "bg", "busybox", "sh")
    assert p.returncode == 0, p.stderr
    term.start(pydock_argv(root, "attach", "bg"))
    term.type("")
    term.wait_for(PROMPT)
    term.type("echo ATTACHED-$((6*7))")
    term.wait_for("ATTACHED-42")
    term.type("exit 0")
    assert term.exit_status() == 0
    assert _status(root, "bg") == "false 0"

    term.close()
    term.__init__()
    term.start(pydock_argv(root, "start", "-a", "-i", "bg"))
    term.wait_for(PROMPT)
    term.type("echo RESTARTED")
    term.wait_for("\nRESTARTED")
    term.type("exit 4")
    assert term.exit_status() == 4
    assert _status(root, "bg") == "false 4"


def test_bad_detach_keys_are_refused_before_anything_is_made(root):
    p = pydock(root, "run", "-it", "--detach-keys", "ctrl-1", "busybox", "true")
    assert p.returncode == 125 and b"Invalid detach keys" in p.stderr
    assert pydock(root, "ps", "-a", "-q").stdout == b""


def test_attach_to_a_stopped_container_is_an_error(root):
    assert pydock(root, "create", "--name", "idle", "busybox", "true").returncode == 0
    p = pydock(root, "attach", "idle")
    assert p.returncode != 0 and b"You cannot attach to a stopped container" in p.stderr


def _read_until(fd: int, want: bytes, timeout: float = 90) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while want not in got:
        left = deadline - time.monotonic()
        assert left > 0, f"{want!r} never came: {got!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            assert chunk, f"EOF before {want!r}: {got!r}"
            got += chunk
    return got


def test_attach_without_a_tty_keeps_stdout_and_stderr_apart(root):
    """`run -di` holds stdin for later clients; an attach feeds it, output comes back per stream, and
    the attach ends with the command's status."""
    p = pydock(root, "run", "-di", "--name", "rd", "busybox", "sh", "-c",
               'for i in 1 2; do read l; echo "out:$l"; echo "err:$l" >&2; done; exit 3')
    assert p.returncode == 0, p.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK_")}
    proc = subprocess.Popen(pydock_argv(root, "attach", "rd"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(b"one\n")
        proc.stdin.flush()
        assert _read_until(proc.stdout.fileno(), b"out:one\n") == b"out:one\n"
        assert _read_until(proc.stderr.fileno(), b"err:one\n") == b"err:one\n"
        proc.stdin.write(b"two\n")
        proc.stdin.flush()
        assert proc.wait(timeout=90) == 3
        assert proc.stdout.read() == b"out:two\n" and proc.stderr.read() == b"err:two\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
    assert _status(root, "rd") == "false 3"
    logs = pydock(root, "logs", "rd")
    assert logs.stdout == b"out:one\nout:two\n" and logs.stderr == b"err:one\nerr:two\n"


def test_start_a_streams_and_ends_with_the_status(root):
    assert pydock(root, "create", "--name", "once", "busybox", "sh", "-c", "echo o; echo e >&2; exit 6").returncode == 0
    p = pydock(root, "start", "-a", "once")
    assert (p.returncode, p.stdout, p.stderr) == (6, b"o\n", b"e\n")


def test_run_i_with_a_piped_stdin_gets_eof(root):
    """StdinOnce: a foreground `run -i` closes the command's stdin when ours ends."""
    p = pydock(root, "run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done", input=b"data\n")
    assert (p.returncode, p.stdout) == (0, b"data\ndone\n")


def test_the_attach_socket_goes_with_the_run(root):
    p = pydock(root, "run", "-dit", "--name", "sock", "busybox", "sh")
    cid = p.stdout.decode().strip()
    sock = root / "containers" / cid / "attach.sock"
    assert sock.is_socket()
    assert pydock(root, "kill", "sock").returncode == 0
    assert pydock(root, "wait", "sock").stdout == b"137\n"
    deadline = time.monotonic() + 30
    while sock.exists() and time.monotonic() < deadline:  # the monitor finishes after the status is recorded
        time.sleep(0.05)
    assert not sock.exists()


def _wait_for_process(cmdline: bytes, timeout: float = 60) -> None:
    """Until a process with exactly this /proc cmdline runs (the container's are host processes too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        if f.read() == cmdline:
                            return
                except OSError:
                    continue  # gone meanwhile, or not ours to read
        time.sleep(0.05)
    raise AssertionError(f"no process {cmdline!r} within {timeout}s")


def test_a_detached_tty_container_starts_at_this_terminals_size(root):
    """`run -dt` from a terminal: nobody resizes a detached container, so it starts at the caller's size."""
    t = Tmux(cols=93, rows=19)
    try:
        t.start(pydock_argv(root, "run", "-dt", "--name", "sized", "busybox", "sh", "-c", "stty size; sleep 30"))
        assert t.exit_status() == 0
        for _ in range(100):
            out = pydock(root, "logs", "sized").stdout
            if out.strip():
                break
            time.sleep(0.05)
        assert out.split() == [b"19", b"93"]
    finally:
        t.close()
        pydock(root, "rm", "-f", "sized")
