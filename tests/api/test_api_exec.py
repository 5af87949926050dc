"""Exec through the Engine API: `docker exec` (status, streams, stdin, -u/-w/-e, -d, -it on a real terminal) and
the SDK's exec_run and exec_inspect."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from interactive.tty_helpers import Tmux

pytestmark = pytest.mark.lxc

PROMPT = "/ # "


@pytest.fixture
def box(server):
    """A running container, removed afterwards."""
    name = f"ex-{uuid.uuid4().hex[:6]}"
    p = server.docker("run", "-d", "--name", name, "--net", "none", "-e", "STAGE=box", "busybox", "sleep", "600")
    assert p.returncode == 0, p.stderr.decode()
    yield name
    server.docker("rm", "-f", name)


def test_exec_status_and_separate_streams(server, box):
    p = server.docker("exec", box, "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (p.returncode, p.stdout, p.stderr) == (5, b"out\n", b"err\n")


def test_exec_i_reads_the_piped_stdin_to_its_end(server, box):
    data = b"".join(b"line %d\n" % i for i in range(20000))
    p = server.docker("exec", "-i", box, "sh", "-c", "cat; echo eof-seen >&2", input=data, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == data and p.stderr == b"eof-seen\n"


def test_exec_user_workdir_env(server, box):
    p = server.docker("exec", "-u", "nobody", "-w", "/tmp", "-e", "GREETING=hi there", box,
                      "sh", "-c", 'echo "$(id -u) $(pwd) $GREETING"')
    assert (p.returncode, p.stdout) == (0, b"65534 /tmp hi there\n"), p.stderr.decode()
    # an Env entry without `=` unsets the variable for the exec, as under dockerd (the SDK sends it as is)
    result = server.sdk(f"c = client.containers.get({box!r})\n"
                        "r = c.exec_run(['sh', '-c', 'echo ${STAGE-unset}'], environment=['STAGE'])\n"
                        "k = c.exec_run(['sh', '-c', 'echo ${STAGE-unset}'])\n"
                        "result = [r.exit_code, r.output.decode(), k.output.decode()]")
    assert result == [0, "unset\n", "box\n"]


def test_exec_errors_are_the_exit_status(server, box):
    p = server.docker("exec", box, "no-such-command")
    assert p.returncode == 127
    assert b"no-such-command" in p.stdout + p.stderr
    p = server.docker("exec", box, "/etc/passwd")
    assert p.returncode == 126
    p = server.docker("exec", "-u", "no-such-user", box, "true")
    assert p.returncode == 126
    assert b"no-such-user" in p.stdout + p.stderr


def test_exec_in_a_stopped_container_is_refused(server):
    name = f"exstop-{uuid.uuid4().hex[:6]}"
    assert server.docker("create", "--name", name, "--net", "none", "busybox", "true").returncode == 0
    try:
        p = server.docker("exec", name, "true")
        assert p.returncode != 0
        assert b"is not running" in p.stderr
    finally:
        server.docker("rm", name)


def test_exec_d_runs_on_in_the_background(server, box):
    assert server.docker("exec", "-d", box, "sh", "-c", "sleep 1; echo done > /tmp/bg").returncode == 0
    deadline = time.monotonic() + 60
    while (seen := server.docker("exec", box, "cat", "/tmp/bg")).stdout != b"done\n":
        # what the last look and the container said, should this ever fail again (it did once in CI)
        assert time.monotonic() < deadline, (f"the detached exec never wrote its file: last cat {seen.returncode} "
                                             f"{seen.stdout!r} {seen.stderr!r}; container: "
                                             f"{server.docker('inspect', '-f', '{{.State}}', box).stdout!r}")
        time.sleep(0.2)


def test_sdk_exec_run_stream_demux_status_and_inspect(server, box):
    r = server.sdk(f"""
import docker
c = client.containers.get({box!r})
plain = c.exec_run(['sh', '-c', 'echo a; echo b >&2; exit 3'])
demux = c.exec_run(['sh', '-c', 'echo a; echo b >&2'], demux=True)
streamed = c.exec_run(['sh', '-c', 'for i in 1 2 3; do echo $i; done'], stream=True)
chunks = b''.join(streamed.output).decode()
opts = c.exec_run('sh -c "id -un; pwd; echo $X"', user='nobody', workdir='/etc', environment={{'X': 'y'}})
e = client.api.exec_create(c.id, ['sh', '-c', 'exit 9'])
before = client.api.exec_inspect(e['Id'])
client.api.exec_start(e['Id'])
after = client.api.exec_inspect(e['Id'])
try:
    client.api.exec_start(e['Id'])
    again = 'started twice'
except docker.errors.APIError as err:
    again = err.status_code
try:
    client.api.exec_create(c.id, ['true'], privileged=True)
    priv = 'accepted'
except docker.errors.APIError as err:
    priv = [err.status_code, err.explanation]
try:
    client.api.exec_inspect('0' * 64)
    missing = 'found'
except docker.errors.NotFound:
    missing = 404
result = dict(plain=[plain.exit_code, plain.output.decode()], demux=[x.decode() for x in demux.output],
              chunks=chunks, opts=opts.output.decode(), before=before, after=after, again=again, priv=priv,
              missing=missing, cid=c.id)
""")
    assert r["plain"][0] == 3 and sorted(r["plain"][1].split()) == ["a", "b"]
    assert r["demux"] == ["a\n", "b\n"]
    assert r["chunks"] == "1\n2\n3\n"
    assert r["opts"] == "nobody\n/etc\ny\n"
    assert (r["before"]["Running"], r["before"]["ExitCode"], r["before"]["ContainerID"]) == (False, None, r["cid"])
    assert r["before"]["ProcessConfig"] == {"entrypoint": "sh", "arguments": ["-c", "exit 9"], "privileged": False,
                                            "tty": False, "user": ""}
    assert (r["after"]["Running"], r["after"]["ExitCode"], r["after"]["Pid"]) == (False, 9, 0)
    assert r["again"] == 409
    assert r["priv"][0] == 400 and "Privileged" in r["priv"][1]
    assert r["missing"] == 404


def test_exec_records_go_with_their_container(server):
    name = f"exrm-{uuid.uuid4().hex[:6]}"
    assert server.docker("run", "-d", "--name", name, "--net", "none", "busybox", "sleep", "600").returncode == 0
    r = server.sdk(f"""
import docker
e = client.api.exec_create({name!r}, ['true'])
client.api.exec_start(e['Id'])
seen = client.api.exec_inspect(e['Id'])['ExitCode']
client.containers.get({name!r}).remove(force=True)
try:
    client.api.exec_inspect(e['Id'])
    gone = 'still there'
except docker.errors.NotFound:
    gone = 404
result = [seen, gone]
""")
    assert r == [0, 404]


def test_exec_it_terminal_resize_detach_and_status(server, box, term):
    term.start(server.docker_argv("exec", "-it", box, "sh"))
    term.wait_for(PROMPT)
    term.type("[ -t 0 ] && echo IS-A-TTY; echo SIZE=$(stty size)")
    term.wait_for("\nIS-A-TTY")
    term.wait_for("SIZE=24 80")
    term.resize(100, 30)  # the CLI sends POST /exec/{id}/resize
    term.retype_until("echo SIZE=$(stty size)", "SIZE=30 100")
    term.type("exit 7")
    assert term.exit_status() == 7
    term.close()

    again = Tmux()
    try:
        again.start(server.docker_argv("exec", "-it", box, "sh", "-c", "echo READY; sleep 300"))
        again.wait_for("READY")
        again.send("C-p", "C-q")  # detached: the CLI leaves, the exec runs on
        again.wait_for("EXIT=")
    finally:
        again.close()
    ps = server.docker("exec", box, "ps")
    assert b"sleep 300" in ps.stdout, ps.stdout.decode()


def test_sdk_tty_exec_keeps_stdin_sent_at_once(server, box):
    """Input written right after the start is not lost while lxc-attach sets its terminal up."""
    r = server.sdk(f"""
import socket
e = client.api.exec_create({box!r}, ['sh'], stdin=True, tty=True)
raw = client.api.exec_start(e['Id'], tty=True, socket=True)._sock
raw.sendall(b'echo "got $((6 * 7))"; exit 3\\n')
raw.settimeout(60)
out = b''
while chunk := raw.recv(4096):
    out += chunk
result = [out.decode(errors='replace'), client.api.exec_inspect(e['Id'])['ExitCode']]
""")
    assert "got 42" in r[0] and r[1] == 3


def test_exec_user_gets_its_supplementary_groups_and_group_add(server):
    name = f"exgrp-{uuid.uuid4().hex[:6]}"
    assert server.docker("run", "-d", "--name", name, "--group-add", "10", "--net", "none", "busybox",
                         "sleep", "600").returncode == 0
    try:
        status = server.docker("exec", "-u", "nobody", name, "grep", "-E", "^(Uid|Gid|Groups|CapEff)",
                               "/proc/self/status").stdout.decode().split("\n")
        fields = {line.split(":")[0]: line.split(":", 1)[1].split() for line in status if line}
        assert fields == {"Uid": ["65534"] * 4, "Gid": ["65534"] * 4, "Groups": ["10"], "CapEff": ["0000000000000000"]}
        # the same groups as the container's own command
        own = server.docker("exec", name, "cat", "/proc/1/status").stdout.decode()
        assert [line for line in own.splitlines() if line.startswith("Groups:")] == ["Groups:\t10 "]
    finally:
        server.docker("rm", "-f", name)
    # without the capabilities to switch users itself, the exec still runs as the user (groups cleared)
    assert server.docker("run", "-d", "--name", name, "--cap-drop", "setgid", "--net", "none", "busybox",
                         "sleep", "600").returncode == 0
    try:
        p = server.docker("exec", "-u", "nobody", name, "id")
        assert (p.returncode, p.stdout) == (0, b"uid=65534(nobody) gid=65534(nogroup)\n"), p.stderr.decode()
    finally:
        server.docker("rm", "-f", name)


def test_a_running_exec_says_so_with_the_commands_host_pid(server, box):
    r = server.sdk(f"""
import time
e = client.api.exec_create({box!r}, ['sleep', '400'])
client.api.exec_start(e['Id'], detach=True)
time.sleep(0.5)  # not needed for Running; gives lxc-attach the moment to fork the command
result = client.api.exec_inspect(e['Id'])
""")
    assert r["Running"] is True and r["ExitCode"] is None
    deadline = time.monotonic() + 60
    while True:  # the pid is the command's from its fork; its cmdline is lxc-attach's until it execs
        with open(f"/proc/{r['Pid']}/cmdline", "rb") as f:
            if f.read() == b"/bin/sleep\x00400\x00":  # argv[0] as exec resolved it in the rootfs
                break
        assert time.monotonic() < deadline, "the exec's Pid is not its command's"
        time.sleep(0.1)


def test_ended_execs_are_forgotten_after_a_while(server, box):
    r = server.sdk(f"""
e = client.api.exec_create({box!r}, ['true'])
client.api.exec_start(e['Id'])
result = [client.containers.get({box!r}).id, e['Id']]
""")
    cid, old = r
    record = server.root / "containers" / cid / "exec" / f"{old}.json"
    assert record.exists()
    long_ago = time.time() - 3600
    os.utime(record, (long_ago, long_ago))  # as if it had ended an hour ago
    r = server.sdk(f"""
import docker
fresh = client.api.exec_create({box!r}, ['true'])
try:
    client.api.exec_inspect({old!r})
    gone = 'still there'
except docker.errors.NotFound:
    gone = 404
result = gone
""")
    assert r == 404 and not record.exists()
