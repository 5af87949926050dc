"""The interactive Engine API: `docker run -i` with piped stdin, `docker run -it` / `docker attach` on a real
terminal (tmux), the detach keys, resize, and the SDK's attach socket."""

from __future__ import annotations

import uuid

import pytest
from interactive.tty_helpers import Tmux

pytestmark = pytest.mark.lxc

PROMPT = "/ # "


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_run_i_gives_the_command_the_piped_stdin_and_its_end(server):
    p = server.docker("run", "--rm", "-i", "--net", "none", "busybox", "sh", "-c",
                      "cat; echo after-eof >&2; exit 3", input=b"line one\nline two\n")
    assert p.returncode == 3, p.stderr.decode()
    assert p.stdout == b"line one\nline two\n"
    assert p.stderr == b"after-eof\n"


def test_run_i_carries_a_megabyte_both_ways(server):
    data = bytes(range(256)) * 4096
    p = server.docker("run", "--rm", "-i", "--net", "none", "busybox", "cat", input=data, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == data


def test_run_without_i_reads_nothing_even_when_given_input(server):
    p = server.docker("run", "--rm", "--net", "none", "busybox", "sh", "-c", "cat; echo read-done",
                      input=b"ignored\n")
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == b"read-done\n"


def test_run_it_terminal_size_resize_detach_and_attach_again(server, term):
    name = uniq("it")
    term.start(server.docker_argv("run", "-it", "--name", name, "--net", "none", "busybox", "sh"))
    term.wait_for(PROMPT)
    term.type("[ -t 0 ] && [ -t 1 ] && echo IS-A-TTY")
    term.wait_for("\nIS-A-TTY")
    term.type("echo SIZE=$(stty size)")
    term.wait_for("SIZE=24 80")
    term.resize(100, 30)  # the CLI sends POST /containers/{id}/resize
    term.retype_until("echo SIZE=$(stty size)", "SIZE=30 100")
    term.type("MARK=kept-state")
    term.send("C-p", "C-q")
    assert term.exit_status() == 0
    assert server.docker("inspect", "-f", "{{.State.Running}}", name).stdout == b"true\n"
    term.close()

    again = Tmux()
    try:
        again.start(server.docker_argv("attach", name))
        # the docker CLI discards what was typed before it made the terminal raw: type until it is attached
        again.retype_until("echo GOT=$MARK", "GOT=kept-state")
        again.type("exit 4")
        assert again.exit_status() == 4
    finally:
        again.close()
    assert server.docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout == b"4\n"
    assert b"GOT=kept-state" in server.docker("logs", name).stdout
    server.docker("rm", name)


def test_attach_with_other_detach_keys(server, term):
    name = uniq("keys")
    assert server.docker("run", "-dit", "--name", name, "--net", "none", "busybox", "sh").returncode == 0
    try:
        term.start(server.docker_argv("attach", "--detach-keys", "ctrl-a,d", name))
        term.retype_until("echo ATTACHED", "\nATTACHED")  # see above: typed before the attach, it is lost
        term.send("C-p", "C-q")  # not the keys now: the shell gets them
        term.send("C-a", "d")
        term.wait_for("EXIT=")  # the CLI left (its status on a detach is the CLI's business)
        assert server.docker("inspect", "-f", "{{.State.Running}}", name).stdout == b"true\n"
    finally:
        server.docker("rm", "-f", name)


def test_sdk_attach_socket_sends_stdin_and_reads_frames(server):
    r = server.sdk("""
import socket, struct
c = client.containers.create('busybox', ['sh', '-c', 'read line; echo "got $line"; echo oops >&2'],
                             stdin_open=True, network_mode='none')
s = client.api.attach_socket(c.id, params={'stdin': 1, 'stdout': 1, 'stderr': 1, 'stream': 1})
raw = s._sock
c.start()
raw.sendall(b'hello\\n')
frames = []
buf = b''
raw.settimeout(60)
while True:
    data = raw.recv(65536)
    if not data:
        break
    buf += data
while len(buf) >= 8:
    kind, size = struct.unpack('>BxxxL', buf[:8])
    frames.append([kind, buf[8:8 + size].decode()])
    buf = buf[8 + size:]
c.reload()
code = c.wait()['StatusCode']
c.remove()
result = [frames, code]
""")
    frames, code = r
    assert code == 0
    out = "".join(t for k, t in frames if k == 1)
    err = "".join(t for k, t in frames if k == 2)
    assert (out, err) == ("got hello\n", "oops\n")


def test_resize_of_a_stopped_container_and_bad_sizes_are_refused(server):
    r = server.sdk("""
import docker
c = client.containers.create('busybox', ['true'], tty=True, network_mode='none')
out = []
for h, w in [(24, 80), (-1, 80)]:
    try:
        client.api.resize(c.id, h, w)
        out.append('ok')
    except docker.errors.APIError as err:
        out.append([err.status_code, err.explanation])
c.remove()
result = out
""")
    assert r[0][0] == 409 and "is not running" in r[0][1]
    assert r[1][0] == 400 and "resize needs h (rows) and w (columns)" in r[1][1]


def test_bad_detach_keys_are_refused_before_the_hijack(server):
    name = uniq("badkeys")
    assert server.docker("run", "-d", "--name", name, "--net", "none", "busybox", "sleep", "300").returncode == 0
    try:
        p = server.docker("attach", "--detach-keys", "ctrl-??", name)
        assert p.returncode != 0
        assert b"400" in p.stderr  # the CLI shows the status of a refused upgrade, not its message
        assert server.docker("inspect", "-f", "{{.State.Running}}", name).stdout == b"true\n"
    finally:
        server.docker("rm", "-f", name)


def test_sdk_attach_to_a_running_container_misses_and_repeats_nothing(server):
    r = server.sdk("""
import time
result = []
for logs in (True, False):
    c = client.containers.run('busybox', ['sh', '-c', 'sleep 1; i=0; while [ $i -lt 300 ]; do echo line-$i; '
                                          'i=$((i+1)); [ $((i % 50)) = 0 ] && sleep 0.2; done'],
                              detach=True, network_mode='none')
    time.sleep(1.5)
    result.append(b''.join(client.api.attach(c.id, stream=True, logs=logs)).decode())
    c.wait()
    c.remove()
""")
    every = [f"line-{i}" for i in range(300)]
    assert r[0].split() == every
    live = r[1].split()
    assert live and live == every[len(every) - len(live):], live[:5]  # a contiguous tail: nothing doubled


def test_legacy_200_hijack_takes_stdin_sent_with_the_request(server):
    """A client that does not ask to upgrade gets the 200 hijack; stdin written in the same packet as the
    request head (before our answer) reaches the command; its half-close is the end of stdin (StdinOnce)."""
    import json
    import socket
    import struct

    def call(method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else b""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(server.sock))
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        return int(reply.split()[1]), reply

    status, reply = call("POST", f"/containers/create?name={uniq('legacy')}",
                         {"Image": "busybox", "Cmd": ["sh", "-c", "cat; echo end >&2"], "OpenStdin": True,
                          "StdinOnce": True, "HostConfig": {"NetworkMode": "none"}})
    assert status == 201, reply
    cid = json.loads(reply.split(b"\r\n\r\n", 1)[1])["Id"]
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(server.sock))
        s.sendall(f"POST /containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: d\r\n"
                  "Content-Length: 0\r\n\r\n".encode() + b"sent-with-the-head\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        assert b"application/vnd.docker.multiplexed-stream" in head
        assert call("POST", f"/containers/{cid}/start")[0] == 204
        s.sendall(b"and-after-it\n")
        s.shutdown(socket.SHUT_WR)
        s.settimeout(60)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    frames = []
    while data:
        kind, size = struct.unpack(">BxxxL", data[:8])
        frames.append((kind, data[8:8 + size]))
        data = data[8 + size:]
    assert b"".join(p for k, p in frames if k == 1) == b"sent-with-the-head\nand-after-it\n"
    assert b"".join(p for k, p in frames if k == 2) == b"end\n"
    assert server.docker("rm", cid).returncode == 0


def test_a_detached_tty_container_starts_at_the_size_given_at_create(server):
    """`docker run -dt` from a terminal sends HostConfig.ConsoleSize; nobody resizes a detached container,
    so its terminal has that size from the start (and [0, 0], or none, leaves the kernel's 0 0)."""
    t = Tmux(cols=91, rows=17)
    name = uniq("cs")
    try:
        t.start(server.docker_argv("run", "-dt", "--name", name, "--net", "none", "busybox", "sh", "-c",
                             "stty size; sleep 30"))
        assert t.exit_status() == 0
        logs = server.docker("logs", name)
        for _ in range(100):
            if logs.stdout.strip():
                break
            logs = server.docker("logs", name)
        assert logs.stdout.decode().split() == ["17", "91"]
        size = server.docker("inspect", "-f", "{{json .HostConfig.ConsoleSize}}", name)
        assert size.stdout.decode().strip() == "[17,91]"
    finally:
        t.close()
        server.docker("rm", "-f", name)


def test_a_client_slow_to_read_the_head_loses_no_output(server):
    """The docker SDK reads the 101 head through a buffer, then the stream from the raw socket: output
    that arrived together with the head was lost to it (a flaky SDK attach under load). The server now
    lets the client read the head first. Here a client reads only after 0.5 s, as the SDK does."""
    import socket
    import time

    cid = server.docker_ok("run", "-d", "--net", "none", "busybox", "sh", "-c",
                           "for i in $(seq 20); do echo early-$i; done; sleep 30").strip()
    try:
        deadline = time.monotonic() + 30
        while "early-20" not in server.docker_ok("logs", cid):
            assert time.monotonic() < deadline, "no output"
            time.sleep(0.1)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(server.sock))
            s.sendall(f"POST /containers/{cid}/attach?logs=1&stream=1&stdout=1 HTTP/1.1\r\nHost: d\r\n"
                      "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode())
            time.sleep(0.5)  # the head, and maybe the stream, wait in the socket
            head = s.makefile("rb")  # the SDK's way: a buffered reader for the head ...
            assert head.readline().startswith(b"HTTP/1.1 101")
            while head.readline() not in (b"\r\n", b""):
                pass
            s.settimeout(10)
            stream = b""
            while b"early-20\n" not in stream:  # ... then the raw socket for the stream
                chunk = s.recv(65536)
                assert chunk, stream
                stream += chunk
        lines = [line for line in stream.split(b"\n") if b"early-" in line]
        assert [line[line.index(b"early-"):] for line in lines] == [f"early-{i}".encode() for i in range(1, 21)]
    finally:
        server.docker_ok("rm", "-f", cid)
