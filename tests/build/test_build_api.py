"""`POST /build` through `pydock serve` (bridge none, so RUN steps need no namespace): the real docker
CLI 28 with its legacy builder (DOCKER_BUILDKIT=0, and without it, chosen from `/_ping`'s
Builder-Version), and the real docker SDK's `images.build`."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from api.api_helpers import DOCKER, NO_DOCKER, Server, clean_env, pydock_cmd, served
from build_helpers import APP_OUTPUT, BASE, app_context, tar_of, write

pytestmark = pytest.mark.lxc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Server]:
    if DOCKER is None:
        pytest.fail(NO_DOCKER)
    with served(tmp_path_factory.mktemp("buildapi"), bridge="none") as srv:
        subprocess.run([*pydock_cmd(srv.root), "import", str(busybox_rootfs), BASE], check=True,
                       capture_output=True, env=clean_env())
        yield srv

def _docker(server: Server, *args: str, buildkit: str | None = "0", stdin: bytes | None = None):
    env = {**clean_env(), **server.docker_env()}
    if buildkit is not None:
        env["DOCKER_BUILDKIT"] = buildkit
    return subprocess.run([str(DOCKER), *args], input=stdin, capture_output=True, timeout=300, env=env)


def _request(server: Server, method: str, path: str, body: bytes = b"") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("localhost")
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(str(server.sock))
    conn.request(method, path, body=body, headers={"Content-Type": "application/x-tar"})
    return conn.getresponse()


def test_ping_advertises_the_classic_builder(server):
    for method in ("HEAD", "GET"):
        resp = _request(server, method, "/_ping")
        assert resp.status == 200 and resp.getheader("Builder-Version") == "1"


@pytest.mark.parametrize("buildkit", ["0", None])
def test_docker_cli_builds_and_runs(server, tmp_path: Path, buildkit: str | None):
    ctx = app_context(tmp_path / "app")
    built = _docker(server, "build", "-t", "app:cli", "--build-arg", "VERSION=1.5", str(ctx), buildkit=buildkit)
    out = built.stdout.decode()
    assert built.returncode == 0, built.stderr.decode()
    assert "Step 19/19 : CMD" in out and "Successfully tagged app:cli" in out and "legacy builder" in built.stderr.decode()
    ran = _docker(server, "run", "--rm", "--net", "none", "app:cli")
    assert ran.stdout.decode() == APP_OUTPUT.format(version="1.5", flavor="plain")
    again = _docker(server, "build", "-q", "-t", "app:cli", "--build-arg", "VERSION=1.5", str(ctx), buildkit=buildkit)
    image_id = json.loads(_docker(server, "image", "inspect", "app:cli").stdout)[0]["Id"]
    assert again.returncode == 0 and again.stdout.decode().strip() == image_id
    assert _docker(server, "ps", "-aq").stdout == b""


def test_docker_cli_targets_stdin_and_errors(server, tmp_path: Path):
    ctx = app_context(tmp_path / "app")
    assert _docker(server, "build", "--target", "build", "-t", "app:build", "--label", "x=y", str(ctx)).returncode == 0
    info = json.loads(_docker(server, "image", "inspect", "app:build").stdout)[0]
    assert info["Config"]["Labels"] == {"x": "y"}
    # a Dockerfile alone on stdin (the CLI wraps it in a tar)
    solo = _docker(server, "build", "-t", "solo:api", "-", stdin=f"FROM {BASE}\nCMD [\"echo\", \"solo\"]\n".encode())
    assert solo.returncode == 0 and _docker(server, "run", "--rm", "--net", "none", "solo:api").stdout == b"solo\n"
    # a failed RUN: its exit status, Docker's message; the container stays (default --rm), --force-rm removes it
    write(tmp_path / "bad/Dockerfile", f"FROM {BASE}\nRUN echo out; echo err >&2; exit 3\n")
    failed = _docker(server, "build", str(tmp_path / "bad"))
    assert failed.returncode == 3 and "out\n" in failed.stdout.decode()
    assert "The command '/bin/sh -c echo out; echo err >&2; exit 3' returned a non-zero code: 3" in failed.stderr.decode()
    left = _docker(server, "ps", "-aq").stdout.split()
    assert len(left) == 1
    _docker(server, "rm", left[0].decode())
    assert _docker(server, "build", "--force-rm", str(tmp_path / "bad")).returncode == 3
    assert _docker(server, "ps", "-aq").stdout == b""
    # errors before any output are the daemon's answer
    write(tmp_path / "syntax/Dockerfile", f"FROM {BASE}\nFOO bar\n")
    syntax = _docker(server, "build", str(tmp_path / "syntax"))
    assert syntax.returncode != 0
    assert "Error response from daemon: dockerfile parse error on line 2: unknown instruction: FOO" in syntax.stderr.decode()
    refused = _docker(server, "build", "--memory", "64m", str(ctx))
    assert refused.returncode != 0 and "memory=67108864 is not supported" in refused.stderr.decode()


def test_raw_api_gzip_context_and_stream(server, tmp_path: Path):
    ctx = tmp_path / "ctx"
    write(ctx / "sub/Dockerfile.alt", f"FROM {BASE}\nCOPY data /data\nRUN cat /data\n")
    write(ctx / "data", "payload\n")
    resp = _request(server, "POST", "/v1.44/build?t=raw:1&dockerfile=sub/Dockerfile.alt&q=0", tar_of(ctx, gz=True))
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/json"
    messages = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    text = "".join(m.get("stream", "") for m in messages)
    assert "payload\n" in text and "Successfully tagged raw:1\n" in text
    aux = [m["aux"]["ID"] for m in messages if "aux" in m]
    assert len(aux) == 1 and aux[0].startswith("sha256:")
    for query, field in [("remote=https://example.org/ctx.tar", "remote"), ("squash=1", "squash"),
                         ("version=2", "version=2"), ("bogus=1", "bogus")]:
        resp = _request(server, "POST", f"/v1.44/build?{query}", tar_of(ctx))
        body = json.loads(resp.read())
        assert resp.status == 400 and field in body["message"]
    missing = _request(server, "POST", "/v1.44/build", tar_of(ctx))
    assert missing.status == 404 and "Cannot locate specified Dockerfile: Dockerfile" in json.loads(missing.read())["message"]


def test_sdk_images_build(server, tmp_path: Path):
    ctx = app_context(tmp_path / "app")
    r = server.sdk(f"""
image, logs = client.images.build(path={str(ctx)!r}, tag='sdk:1', rm=True, buildargs={{'FLAVOR': 'sdk'}})
lines = [l.get('stream', '') for l in logs]
out = client.containers.run('sdk:1', remove=True, network_mode='none').decode()
try:
    client.images.build(fileobj=__import__('io').BytesIO(b'FROM {BASE}\\nRUN exit 7\\n'), rm=True, forcerm=True)
    failed = None
except docker.errors.BuildError as e:
    failed = e.msg
result = [image.tags, out, any('Successfully built' in l for l in lines), failed,
          len(client.containers.list(all=True))]
""")
    assert r[0] == ["sdk:1"] and r[1] == APP_OUTPUT.format(version="0.0", flavor="sdk") and r[2]
    assert r[3] == "The command '/bin/sh -c exit 7' returned a non-zero code: 7" and r[4] == 0
