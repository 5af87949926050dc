"""`exec -it` as a session (the exec under a monitor of its own): the terminal's size followed, the exit status,
the detach keys leaving the exec running, as `docker exec -it`."""

from __future__ import annotations

import time

import pytest
from tty_helpers import WAIT, pydock, pydock_argv

pytestmark = pytest.mark.lxc

PROMPT = "/ # "


def _wait_in_ps(root, box: str, text: bytes) -> None:
    deadline = time.monotonic() + WAIT
    while text not in pydock(root, "exec", box, "ps").stdout:
        assert time.monotonic() < deadline, f"{text!r} never ran"
        time.sleep(0.2)


@pytest.fixture
def box(root):
    assert pydock(root, "run", "-d", "--name", "box", "busybox", "sleep", "600").returncode == 0
    yield "box"
    pydock(root, "rm", "-f", "box")


def test_exec_it_follows_the_terminal_and_exits_with_the_status(root, box, term):
    term.start(pydock_argv(root, "exec", "-it", box, "sh"))
    term.wait_for(PROMPT)
    term.type("echo SIZE=$(stty size)")
    term.wait_for("SIZE=24 80")
    term.resize(100, 30)
    term.retype_until("echo SIZE=$(stty size)", "SIZE=30 100")
    prompts = term.screen().count(PROMPT)
    term.type("sleep 300")
    _wait_in_ps(root, box, b"sleep 300")  # a ^C before the shell made it the foreground job goes elsewhere
    term.send("C-c")  # its terminal is the shell's controlling one: ^C reaches the foreground job
    term.wait_for(PROMPT, count=prompts + 1)
    term.type("exit 3")
    assert term.exit_status() == 3


@pytest.mark.parametrize("keys, typed", [(None, ("C-p", "C-q")), ("ctrl-a,d", ("C-a", "d"))])
def test_exec_it_detach_keys_leave_the_exec_running(root, box, term, keys, typed):
    extra = ["--detach-keys", keys] if keys else []
    term.start(pydock_argv(root, "exec", "-it", *extra, box, "sh", "-c", "echo READY; exec sleep 301"))
    term.wait_for("READY")
    term.send(*typed)
    assert term.exit_status() == 1
    assert "read escape sequence" in term.screen()
    ps = pydock(root, "exec", box, "ps")
    assert b"sleep 301" in ps.stdout, ps.stdout.decode()


def test_exec_it_in_a_stopped_container_is_refused(root, term):
    assert pydock(root, "create", "--name", "idle", "busybox", "true").returncode == 0
    term.start(pydock_argv(root, "exec", "-it", "idle", "sh"))
    assert term.exit_status() != 0
    assert "is not running" in term.screen()
