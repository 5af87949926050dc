"""`pydock exec`: in the container's namespaces, cgroup and confinement, with its environment; a real
terminal with -it (tmux)."""

from __future__ import annotations

import time

import pytest
from tty_helpers import pydock, pydock_argv

pytestmark = pytest.mark.lxc

LOOP = 'trap "exit 0" TERM; while :; do sleep 1; done'


@pytest.fixture
def running(root):
    p = pydock(root, "run", "-d", "--name", "box", "-e", "FROM_RUN=yes", "-w", "/tmp", "busybox", "sh", "-c", LOOP)
    assert p.returncode == 0, p.stderr
    return "box"


def test_exec_status_streams_and_environment(root, running):
    p = pydock(root, "exec", running, "sh", "-c", 'echo "out $FROM_RUN $(pwd)"; echo err >&2; exit 3')
    assert (p.returncode, p.stdout, p.stderr) == (3, b"out yes /tmp\n", b"err\n")
    p = pydock(root, "exec", "-u", "nobody", "-w", "/etc", "-e", "EXTRA=1", "-e", "FROM_RUN=over", running,
               "sh", "-c", 'echo "$(id -u) $(pwd) $EXTRA $FROM_RUN"')
    assert (p.returncode, p.stdout) == (0, b"65534 /etc 1 over\n")
    # a bare -e KEY copies the caller's KEY, and is dropped when the caller has none (docker exec's rule)
    p = pydock(root, "exec", "-e", "EXEC_TEST_FROM_CALLER", "-e", "EXEC_TEST_NOT_SET", running, "sh", "-c",
               'echo "${EXEC_TEST_FROM_CALLER:-none} ${EXEC_TEST_NOT_SET-unset}"',
               env_extra={"EXEC_TEST_FROM_CALLER": "copied"})
    assert (p.returncode, p.stdout) == (0, b"copied unset\n"), p.stderr
    p = pydock(root, "exec", "-i", running, "tr", "a-z", "A-Z", input=b"piped\n")
    assert (p.returncode, p.stdout) == (0, b"PIPED\n")
    p = pydock(root, "exec", running, "cat", input=b"not passed without -i\n")
    assert (p.returncode, p.stdout) == (0, b"")


def test_exec_joins_the_containers_namespaces_cgroup_and_confinement(root, running):
    script = ('for n in cgroup ipc mnt net pid uts; do [ "$(readlink /proc/self/ns/$n)" = "$(readlink /proc/1/ns/$n)" ]'
              ' || echo "ns $n differs"; done;'
              ' a=$(grep -E "^(Cap|Seccomp|NoNewPrivs)" /proc/self/status);'
              ' b=$(grep -E "^(Cap|Seccomp|NoNewPrivs)" /proc/1/status); [ "$a" = "$b" ] || echo "confinement differs";'
              ' grep -q "^Seccomp:.*2" /proc/self/status || echo no seccomp;'
              ' readlink /proc/self/exe')
    p = pydock(root, "exec", running, "sh", "-c", script)
    # /proc/self/exe is the image's busybox, never a host executable
    assert (p.returncode, p.stdout, p.stderr) == (0, b"/bin/busybox\n", b"")
    # in the container's cgroup on every hierarchy (lxc puts it in a leaf below on cgroup2)
    mine = pydock(root, "exec", running, "cat", "/proc/self/cgroup").stdout.decode().splitlines()
    init = pydock(root, "exec", running, "cat", "/proc/1/cgroup").stdout.decode().splitlines()
    assert len(mine) == len(init)
    for m, i in zip(sorted(mine), sorted(init)):
        assert m == i or m.startswith(i.rstrip("/") + "/"), (m, i)


def test_exec_errors(root, running):
    p = pydock(root, "exec", running, "nosuchcommand")
    assert p.returncode == 127 and b"nosuchcommand" in p.stderr
    p = pydock(root, "exec", "-w", "/no/such/dir", running, "true")
    assert p.returncode != 0 and b"/no/such/dir" in p.stderr
    assert pydock(root, "create", "--name", "stopped", "busybox", "true").returncode == 0
    p = pydock(root, "exec", "stopped", "true")
    assert p.returncode != 0 and b"is not running" in p.stderr
    p = pydock(root, "exec", "-t", running, "true")  # our stdin is not a terminal
    assert p.returncode != 0 and b"the input device is not a TTY" in p.stderr


def test_exec_detached_runs_on(root, running):
    p = pydock(root, "exec", "-d", running, "sh", "-c", "sleep 0.2; echo made > /tmp/flag")
    assert (p.returncode, p.stdout) == (0, b"")
    deadline = time.monotonic() + 60
    while pydock(root, "exec", running, "cat", "/tmp/flag").stdout != b"made\n":
        assert time.monotonic() < deadline, "the detached exec never wrote its file"
        time.sleep(0.1)


def test_exec_it_gives_a_terminal(root, running, term):
    term.start(pydock_argv(root, "exec", "-it", running, "sh"), after="stty -a;")
    term.wait_for("/tmp # ")
    term.type("[ -t 0 ] && echo IS-A-TTY SIZE=$(stty size)")
    term.wait_for("IS-A-TTY SIZE=24 80")
    term.resize(100, 30)  # the exec's terminal follows asynchronously: retype
    term.retype_until("echo SIZE=$(stty size)", "SIZE=30 100")
    term.type("exit 4")
    assert term.exit_status() == 4
    modes = term.wait_for("icanon").split()
    assert "icanon" in modes and "-icanon" not in modes
