"""Hostile clients of a real `pydock serve` (unix socket and loopback TCP), spoken to in raw HTTP: bad
lengths, huge bodies and heads, clients that stall, too many connections, web-browser requests,
a name filter written to backtrack forever, values that would be written into files. Every one gets a
clear 4xx/503 (or a closed connection) in bounded time, and the server keeps serving."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from hostile_helpers import Store, clean_env, pydock_argv, teardown_store

#: short timeouts so the slow-client cases take seconds, not minutes (PYDOCK_API_LIMITS is the knob)
LIMITS = "head_timeout=2,body_idle_timeout=2,idle_timeout=3"


@dataclass
class Serve:
    root: Path
    sock: Path
    port: int
    proc: subprocess.Popen

    def raw(self, data: bytes | list[bytes], *, tcp: bool = False, timeout: float = 15,
            pause: float = 0.0) -> tuple[int, bytes, float]:
        """Send `data` (pieces `pause` seconds apart), read until the server closes or answers completely:
        (status or 0 when closed without answer, body, seconds until the answer)."""
        s = _connect(self, tcp)
        s.settimeout(timeout)
        start = time.monotonic()
        try:
            for i, piece in enumerate([data] if isinstance(data, bytes) else data):
                if i and pause:
                    time.sleep(pause)
                try:
                    s.sendall(piece)
                except (BrokenPipeError, ConnectionResetError):
                    break  # the server already answered and closed
            return _read_response(s, start)
        finally:
            s.close()

    def request(self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None,
                tcp: bool = False) -> tuple[int, bytes]:
        payload = b"" if body is None else json.dumps(body).encode()
        head = {"Host": "localhost" if not tcp else f"127.0.0.1:{self.port}", "Connection": "close",
                "Content-Length": str(len(payload)), **({"Content-Type": "application/json"} if body is not None else {}),
                **(headers or {})}
        text = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
        status, data, _ = self.raw(text.encode() + payload, tcp=tcp)
        return status, data


def _connect(srv: Serve, tcp: bool) -> socket.socket:
    if tcp:
        return socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(srv.sock))
    return s


def _read_response(s: socket.socket, start: float) -> tuple[int, bytes, float]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return 0, buf, time.monotonic() - start
        buf += chunk
    took = time.monotonic() - start
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), None)
    while length is not None and len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body, took


def _free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def _start(tmp: Path, limits: str) -> Serve:
    root, sock, port = tmp / "root", tmp / "api.sock", _free_port()
    env = {**clean_env(), "PYDOCK_API_LIMITS": limits}
    proc = subprocess.Popen([*pydock_argv(root, "overlay"), "serve", "-H", f"unix://{sock}", "-H",
                             f"tcp://127.0.0.1:{port}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    srv = Serve(root, sock, port, proc)
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, f"pydock serve exited {proc.returncode}: {proc.stderr.read().decode()}"
        try:
            if srv.request("GET", "/_ping", tcp=True)[0] == 200:
                return srv
        except OSError:
            assert time.monotonic() < deadline, "pydock serve did not answer within 30 s"
            time.sleep(0.05)


def _stop(srv: Serve) -> None:
    srv.proc.terminate()
    try:
        srv.proc.wait(timeout=30)
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
        srv.proc.stderr.close()
        teardown_store(Store(srv.root, "overlay"))
    assert srv.proc.returncode == 0


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    s = _start(tmp_path_factory.mktemp("hostile-api"), LIMITS)
    try:
        yield s
    finally:
        _stop(s)


def _alive(srv: Serve) -> None:
    assert srv.request("GET", "/_ping")[0] == 200


def _post(path: str, headers: str, body: bytes = b"") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode() + body


@pytest.mark.parametrize("length", ["-5", "+5", "5_0", "0x10", "1e3", " -1"])
def test_a_bad_content_length_is_400(srv: Serve, length: str):
    status, body, _ = srv.raw(_post("/containers/create", f"Content-Type: application/json\r\nContent-Length: {length}\r\n",
                                    b"{}"))
    assert status == 400 and b"Invalid Content-Length" in body, body
    _alive(srv)


def test_conflicting_lengths_and_bad_chunk_sizes_are_400(srv: Serve):
    status, body, _ = srv.raw(_post("/containers/create", "Content-Length: 2\r\nContent-Length: 3\r\n", b"{}"))
    assert status == 400 and b"Conflicting Content-Length" in body, body
    for size in (b"-5", b"0x5", b"1" * 17, b"zz"):
        status, body, _ = srv.raw(_post("/containers/create", "Content-Type: application/json\r\n"
                                        "Transfer-Encoding: chunked\r\n", size + b"\r\n{}\r\n0\r\n\r\n"))
        assert status == 400 and b"Malformed chunked" in body, (size, body)
    _alive(srv)


def test_a_huge_json_body_is_refused_before_it_is_sent(srv: Serve):
    status, body, took = srv.raw(_post("/containers/create", "Content-Type: application/json\r\n"
                                       f"Content-Length: {100 << 20}\r\n"))
    assert status == 413 and took < 5, body
    chunk = b'{"Env": ["' + b"A" * (5 << 20) + b'"]}'
    status, body, _ = srv.raw(_post("/containers/create", "Content-Type: application/json\r\n"
                                    "Transfer-Encoding: chunked\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk)))
    assert status == 400 and b"too large" in body, body
    _alive(srv)


def test_a_header_flood_is_431(srv: Serve):
    headers = "".join(f"X-Junk-{i}: {'j' * 60000}\r\n" for i in range(20))  # 1.2 MB in 20 lines
    status, body, _ = srv.raw(f"GET /_ping HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode())
    assert status == 431, body
    status, _, _ = srv.raw(b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert status == 414
    _alive(srv)


def test_a_client_dripping_its_head_gets_408_in_time(srv: Serve):
    drip = [b"GET /_ping HTTP/1.1\r\nX-Slow: "] + [b"z"] * 40
    status, body, took = srv.raw(drip, pause=0.25)
    assert status == 408 and took < 4, (status, body, took)  # head_timeout=2, though bytes kept coming
    _alive(srv)


def test_a_stalled_body_and_an_idle_connection_are_closed(srv: Serve):
    status, body, took = srv.raw([_post("/containers/create", "Content-Type: application/json\r\n"
                                        "Content-Length: 100\r\n", b'{"Image": '), b""], timeout=15)
    assert status == 400 and b"sent nothing for 2 s" in body and took < 6, (status, body, took)  # body_idle_timeout=2
    s = _connect(srv, tcp=True)
    s.settimeout(15)
    start = time.monotonic()
    assert s.recv(100) == b"" and time.monotonic() - start < 6  # idle_timeout=3
    s.close()
    _alive(srv)


def test_too_many_connections_get_503(tmp_path: Path):
    srv = _start(tmp_path, "max_connections=3,idle_timeout=60")
    held = []
    try:
        for _ in range(3):
            held.append(_connect(srv, tcp=False))
        time.sleep(0.3)  # the server has taken them all
        extra = _connect(srv, tcp=False)
        extra.settimeout(10)
        status, body, _ = _read_response(extra, time.monotonic())
        extra.close()
        assert status == 503 and b"Too many connections" in body, body
        held.pop().close()
        time.sleep(0.3)
        _alive(srv)
    finally:
        for s in held:
            s.close()
        _stop(srv)


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Mode": "no-cors"}, {"Host": "evil.example:2375"},
                                     {"Host": "rebind.attacker.test"}])
def test_web_browser_requests_on_tcp_are_refused(srv: Serve, headers: dict[str, str]):
    create = {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Binds": ["/:/host"]}}
    status, body = srv.request("POST", "/containers/create", create, headers=headers, tcp=True)
    assert status == 403 and b"refused" in body, body
    status, body = srv.request("GET", "/containers/json?all=1")
    assert json.loads(body) == []  # nothing was created


@pytest.mark.parametrize("host", ["localhost", "api.moby.localhost", "127.0.0.1:{port}", "[::1]:{port}"])
def test_local_hosts_on_tcp_are_served(srv: Serve, host: str):
    assert srv.request("GET", "/_ping", headers={"Host": host.format(port=srv.port)}, tcp=True)[0] == 200


def test_the_unix_socket_is_born_root_only(srv: Serve):
    st = os.lstat(srv.sock)
    assert stat.S_ISSOCK(st.st_mode) and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o660)


@pytest.mark.lxc
def test_a_backtracking_name_filter_answers_at_once(srv: Serve):
    status, body = srv.request("POST", "/containers/create?name=" + "a" * 40, {"Image": "busybox", "Cmd": ["true"]})
    assert status == 201, body
    for pattern in ("(a|a)*b", "^(a+)+$x", "(a|aa)*c"):
        query = quote(json.dumps({"name": [pattern]}))
        start = time.monotonic()
        status, body = srv.request("GET", f"/containers/json?all=1&filters={query}")
        assert status == 200 and json.loads(body) == [] and time.monotonic() - start < 2, (pattern, body)
    status, body = srv.request("GET", "/containers/json?all=1&filters=" + quote('{"name":["^a{40}$"]}'))
    assert [c["Names"] for c in json.loads(body)] == [["/" + "a" * 40]]
    status, body = srv.request("GET", "/containers/json?all=1&filters=" + quote('{"name":["(?=a)"]}'))
    assert status == 400 and b"Invalid regular expression" in body, body


@pytest.mark.parametrize("dns", [["8.8.8.8\nnameserver 6.6.6.6"], ["resolver.example"], "8.8.8.8"])
def test_dns_values_are_validated(srv: Serve, dns: object):
    status, body = srv.request("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                              "HostConfig": {"Dns": dns}})
    assert status == 400 and b"Dns" in body or b"DNS" in body, body
