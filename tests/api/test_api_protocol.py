"""The fragile parts of the wire protocol, checked on raw sockets: ping headers, version prefixes, error
bodies, chunked uploads, moby's boolean parsing, wait's headers-first rule, the attach upgrade with a
half-closed client, and the 8-byte stream frames."""

from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import tarfile
import uuid

import pytest

pytestmark = pytest.mark.lxc


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def call(server, method: str, path: str, body=None, headers=None, conn=None):
    c = conn or UnixHTTPConnection(str(server.sock))
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    c.request(method, path, body=body, headers=headers or {}, encode_chunked=(headers or {}).get(
        "Transfer-Encoding") == "chunked")
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r, data


def create(server, cmd: list[str], **extra) -> str:
    r, data = call(server, "POST", "/v1.44/containers/create",
                   {"Image": "busybox", "Cmd": cmd, "HostConfig": {"NetworkMode": "none"}, **extra})
    assert r.status == 201, data
    return json.loads(data)["Id"]


def test_ping_headers_and_body(server):
    r, data = call(server, "HEAD", "/_ping")
    assert r.status == 200 and data == b""
    assert r.getheader("Api-Version") == "1.44"
    assert r.getheader("Ostype") == "linux"
    assert r.getheader("Docker-Experimental") == "false"
    r, data = call(server, "GET", "/v1.44/_ping")
    assert (r.status, data) == (200, b"OK")


def test_version_prefixes(server):
    for path in ("/version", "/v1.24/version", "/v1.44/version"):
        r, data = call(server, "GET", path)
        assert r.status == 200 and json.loads(data)["ApiVersion"] == "1.44"
    r, data = call(server, "GET", "/v1.45/version")
    assert r.status == 400
    assert json.loads(data) == {"message": "client version 1.45 is too new. Maximum supported API version is 1.44"}
    r, data = call(server, "GET", "/v1.12/containers/json")
    assert r.status == 400 and "too old" in json.loads(data)["message"]


def test_errors_are_json_messages(server):
    r, data = call(server, "GET", "/v1.44/no/such/route")
    assert r.status == 404 and r.getheader("Content-Type") == "application/json"
    assert json.loads(data) == {"message": "page not found"}
    r, data = call(server, "GET", "/v1.44/containers/nope-xyz/json")
    assert r.status == 404 and json.loads(data) == {"message": "No such container: nope-xyz"}
    r, data = call(server, "POST", "/v1.44/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                                "HostConfig": {"PidMode": "host"}})
    assert r.status == 400 and "not supported" in json.loads(data)["message"]
    r, data = call(server, "POST", "/v1.44/containers/create", b"{not json", {"Content-Type": "application/json"})
    assert r.status == 400


def test_keep_alive_serves_several_requests(server):
    conn = UnixHTTPConnection(str(server.sock))
    try:
        for _ in range(3):
            r, data = call(server, "GET", "/v1.44/_ping", conn=conn)
            assert data == b"OK"
        r, data = call(server, "GET", "/v1.44/containers/nope/json", conn=conn)
        assert r.status == 404
        r, data = call(server, "GET", "/v1.44/version", conn=conn)
        assert r.status == 200
    finally:
        conn.close()


def test_chunked_import(server):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("f.txt")
        info.size = 5
        t.addfile(info, io.BytesIO(b"hello"))
    repo = "chunked-" + uuid.uuid4().hex[:6]

    def pieces():
        data = buf.getvalue()
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]

    r, data = call(server, "POST", f"/v1.44/images/create?fromSrc=-&repo={repo}&tag=c1", pieces(),
                    {"Content-Type": "application/tar", "Transfer-Encoding": "chunked"})
    assert r.status == 200
    image_id = json.loads(data.splitlines()[0])["status"]
    assert image_id.startswith("sha256:")
    r, data = call(server, "GET", f"/v1.44/images/{image_id}/json")
    assert r.status == 200 and json.loads(data)["RepoTags"] == [f"{repo}:c1"]
    r, data = call(server, "DELETE", f"/v1.44/images/{repo}:c1")
    assert r.status == 200 and {"Untagged": f"{repo}:c1"} in json.loads(data)


def test_bool_query_values_like_moby(server):
    cid = create(server, ["true"])  # created, never started: only listed with all
    try:
        for value, listed in (("1", True), ("True", True), ("yes", True), ("0", False), ("False", False),
                              ("none", False), ("", False)):
            r, data = call(server, "GET", f"/v1.44/containers/json?all={value}")
            assert (cid in [c["Id"] for c in json.loads(data)]) is listed, value
    finally:
        call(server, "DELETE", f"/v1.44/containers/{cid}?v=False&link=False&force=True")


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _raw(server, request: bytes) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(str(server.sock))
    s.sendall(request)
    return s


def test_wait_headers_before_exit_then_attach_frames(server):
    cid = create(server, ["sh", "-c", "echo to-out; echo to-err >&2; exit 4"])
    attach = _raw(server, (f"POST /v1.44/containers/{cid}/attach?stderr=1&stdout=1&stream=1 HTTP/1.1\r\n"
                           "Host: api.moby.localhost\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n").encode())
    head = _read_head(attach)
    assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
    assert b"Content-Type: application/vnd.docker.multiplexed-stream" in head
    attach.shutdown(socket.SHUT_WR)  # the CLI half-closes at once without -i: the stream must go on
    wait = _raw(server, f"POST /v1.44/containers/{cid}/wait?condition=next-exit HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = _read_head(wait)  # before start: the status line and headers are already here
    assert head.startswith(b"HTTP/1.1 200 ")
    r, _ = call(server, "POST", f"/v1.44/containers/{cid}/start")
    assert r.status == 204
    stream = head.split(b"\r\n\r\n", 1)[1]
    frames = b""
    while True:
        chunk = attach.recv(65536)
        if not chunk:
            break
        frames += chunk
    attach.close()
    got = []
    while frames:
        kind, size = struct.unpack(">BxxxL", frames[:8])
        got.append((kind, frames[8:8 + size]))
        frames = frames[8 + size:]
    assert sorted(got) == [(1, b"to-out\n"), (2, b"to-err\n")]
    while b"0\r\n\r\n" not in stream:
        chunk = wait.recv(4096)
        if not chunk:
            break
        stream += chunk
    wait.close()
    body = json.loads(stream.split(b"\r\n")[1])
    assert body == {"StatusCode": 4, "Error": None}
    r, data = call(server, "POST", f"/v1.44/containers/{cid}/start")
    r, data = call(server, "POST", f"/v1.44/containers/{cid}/wait")
    r, data = call(server, "GET", f"/v1.44/containers/{cid}/logs?stdout=1&stderr=0")
    assert data.count(b"to-out\n") == 2 and b"to-err" not in data and data[:1] == b"\x01"
    r, data = call(server, "DELETE", f"/v1.44/containers/{cid}")
    assert r.status == 204


def test_delete_link_path_with_slash(server):
    db = "pdb-" + uuid.uuid4().hex[:6]
    web = "pweb-" + uuid.uuid4().hex[:6]
    r, data = call(server, "POST", f"/v1.44/containers/create?name={db}",
                   {"Image": "busybox", "Cmd": ["sleep", "30"], "HostConfig": {"NetworkMode": "none"}})
    assert r.status == 201
    assert call(server, "POST", f"/v1.44/containers/{db}/start")[0].status == 204
    r, data = call(server, "POST", f"/v1.44/containers/create?name={web}",
                   {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none", "Links": [f"{db}:db"]}})
    assert r.status == 201, data
    r, data = call(server, "GET", f"/v1.44/containers/{web}/json")
    assert json.loads(data)["HostConfig"]["Links"] == [f"/{db}:/{web}/db"]
    r, data = call(server, "DELETE", f"/v1.44/containers/{web}/db?link=1")
    assert r.status == 204, data
    r, data = call(server, "GET", "/v1.44/containers/json")
    names = [c["Names"] for c in json.loads(data) if f"/{db}" in c["Names"]]
    assert names == [[f"/{db}"]]
    for name in (web, db):
        assert call(server, "DELETE", f"/v1.44/containers/{name}?force=1")[0].status == 204


def test_logs_tail_since_and_timestamps(server):
    cid = create(server, ["sh", "-c", "echo one; echo two; echo three"])
    assert call(server, "POST", f"/v1.44/containers/{cid}/start")[0].status == 204
    r, data = call(server, "POST", f"/v1.44/containers/{cid}/wait")
    assert json.loads(data)["StatusCode"] == 0

    def payloads(data: bytes) -> list[bytes]:
        out = []
        while data:
            _, size = struct.unpack(">BxxxL", data[:8])
            out.append(data[8:8 + size])
            data = data[8 + size:]
        return out

    r, data = call(server, "GET", f"/v1.44/containers/{cid}/logs?stdout=1&tail=2")
    assert payloads(data) == [b"two\n", b"three\n"]
    r, data = call(server, "GET", f"/v1.44/containers/{cid}/logs?stdout=1&tail=10")
    assert payloads(data) == [b"one\n", b"two\n", b"three\n"]
    r, data = call(server, "GET", f"/v1.44/containers/{cid}/logs?stdout=1&since=9999999999")
    assert payloads(data) == []
    r, data = call(server, "GET", f"/v1.44/containers/{cid}/logs?stdout=1&timestamps=1&tail=1")
    stamp, _, text = payloads(data)[0].partition(b" ")
    assert text == b"three\n" and stamp.endswith(b"Z") and b"T" in stamp
    r, data = call(server, "GET", f"/v1.44/containers/{cid}/logs")
    assert r.status == 400
    assert call(server, "DELETE", f"/v1.44/containers/{cid}")[0].status == 204
