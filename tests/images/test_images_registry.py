"""pull and push against Debian's docker-registry on loopback in a namespace the test makes, with podman
and skopeo as the independent other side: podman push -> pydock pull -> run, pydock push -> skopeo
inspect / podman pull -> run; auth, digests, and every way a pull can fail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from images_helpers import PODMAN_RUN, PYDOCK, run

pytestmark = [pytest.mark.lxc, pytest.mark.network]


def _podman_push(podman, registry, image: str, dest: str, *extra: str) -> str:
    out = podman.__class__(podman.base, registry.ns)  # same store, inside the registry's namespace
    out.globals = podman.globals
    out("push", "--tls-verify=false", *extra, image, f"docker://{registry.host}/{dest}")
    return dest


def _no_partials(pydock) -> None:
    tmp = pydock.root / "graph" / "_tmp"
    assert [n for n in os.listdir(tmp) if not n.startswith(".")] == []


def test_podman_push_pydock_pull_run(pydock, podman, registry, peer_image):
    _podman_push(podman, registry, "localhost/multi:1", "team/multi:1")
    puller = pydock.inside(registry.ns)
    first = puller("pull", f"{registry.host}/team/multi:1")
    lines = first.out.splitlines()
    assert lines[0] == "1: Pulling from team/multi"
    assert sum(l.endswith(": Pull complete") for l in lines) == 3
    assert lines[-2] == f"Status: Downloaded newer image for {registry.host}/team/multi:1"
    assert lines[-1] == f"{registry.host}/team/multi:1"
    digest = next(l.split()[1] for l in lines if l.startswith("Digest: "))
    assert pydock.image_id(f"{registry.host}/team/multi:1") == peer_image
    assert pydock("run", "--rm", f"{registry.host}/team/multi:1").out == "one\n"
    # a second pull downloads nothing
    second = puller("pull", f"{registry.host}/team/multi:1")
    assert "Downloading" not in second.out and "Image is up to date" in second.out
    # by digest, and the digest shows in images --digests and inspect
    puller("pull", f"{registry.host}/team/multi@{digest}")
    info = pydock.inspect(f"{registry.host}/team/multi:1")
    assert info["RepoDigests"] == [f"{registry.host}/team/multi@{digest}"]
    listing = pydock("images", "--digests").out.splitlines()
    assert listing[0].split()[:4] == ["REPOSITORY", "TAG", "DIGEST", "IMAGE"]
    assert any(digest in l for l in listing[1:])
    _no_partials(pydock)


def test_pydock_push_podman_skopeo_pull(pydock, podman, registry, tmp_path: Path):
    pydock("run", "--name", "maker", "busybox", "sh", "-c", "mkdir /srv && echo served > /srv/page")
    pydock("commit", "maker", f"{registry.host}/web:v1")
    pydock("rm", "maker")
    pusher = pydock.inside(registry.ns)
    out = pusher("push", f"{registry.host}/web:v1").out.splitlines()
    assert out[0] == f"The push refers to repository [{registry.host}/web]"
    assert sum(l.endswith(": Pushed") for l in out) == 2
    assert out[-1].startswith("v1: digest: sha256:")
    pushed_digest = out[-1].split()[2]
    inspected = json.loads(run([*registry.ns, "skopeo", "inspect", "--tls-verify=false",
                                f"docker://{registry.host}/web:v1"], ok=True).out)
    assert inspected["Digest"] == pushed_digest
    assert len(inspected["Layers"]) == 2
    config = json.loads(run([*registry.ns, "skopeo", "inspect", "--config", "--tls-verify=false",
                             f"docker://{registry.host}/web:v1"], ok=True).out)
    assert config["rootfs"]["diff_ids"] == pydock.inspect(f"{registry.host}/web:v1")["RootFS"]["Layers"]
    # podman pulls and runs it
    pulled = podman.__class__(podman.base, registry.ns)
    pulled("pull", "--tls-verify=false", f"{registry.host}/web:v1")
    assert podman("run", "--rm", *PODMAN_RUN, f"{registry.host}/web:v1", "cat", "/srv/page").out == "served\n"
    # pushing again uploads nothing
    again = pusher("push", f"{registry.host}/web:v1").out
    assert "Pushed" not in again and again.count("Layer already exists") == 2


def test_basic_auth_login_logout(pydock, podman, auth_registry, peer_image, tmp_path: Path):
    reg = auth_registry
    _podman_push(podman, reg, "localhost/multi:1", "private/multi:1", "--creds", "alice:s3cret")
    p = pydock.inside(reg.ns)
    denied = p("pull", f"{reg.host}/private/multi:1", ok=False)
    assert denied.returncode != 0 and denied.err.count("\n") == 1 and "unauthorized" in denied.err
    wrong = p("login", "-u", "alice", "--password-stdin", reg.host, stdin=b"nope\n", ok=False)
    assert wrong.returncode != 0 and "unauthorized" in wrong.err
    config = tmp_path / "docker-config" / "config.json"
    assert not config.exists()
    assert p("login", "-u", "alice", "--password-stdin", reg.host, stdin=b"s3cret\n").out == "Login Succeeded\n"
    assert config.stat().st_mode & 0o777 == 0o600
    assert list(json.loads(config.read_text())["auths"]) == [reg.host]
    p("pull", f"{reg.host}/private/multi:1")
    assert pydock.image_id(f"{reg.host}/private/multi:1") == peer_image
    # podman reads the same file (Docker's format) and pushes with it
    pm = podman.__class__(podman.base, reg.ns)
    pm("push", "--tls-verify=false", "--authfile", str(config), "localhost/multi:1", f"docker://{reg.host}/p2/m:1")
    assert p("logout", reg.host).out == f"Removing login credentials for {reg.host}\n"
    assert json.loads(config.read_text())["auths"] == {}


def test_pull_errors(pydock, podman, registry, peer_image, tmp_path: Path):
    p = pydock.inside(registry.ns)
    missing = p("pull", f"{registry.host}/nothing/here:1", ok=False)
    assert missing.returncode != 0
    assert missing.err.count("\n") == 1 and "not found" in missing.err, missing.err
    # a registry that is not there: a bounded, one-line failure
    start = time.monotonic()
    gone = p("pull", "127.0.0.1:5999/x:1", ok=False)
    assert gone.returncode != 0 and "unreachable" in gone.err and time.monotonic() - start < 30
    assert p("pull", "BusyBox", ok=False).err.startswith("Error: invalid reference format")
    # a blob whose bytes do not match its digest
    _podman_push(podman, registry, "localhost/multi:1", "bad/multi:1")
    manifest = json.loads(run([*registry.ns, "skopeo", "inspect", "--raw", "--tls-verify=false",
                               f"docker://{registry.host}/bad/multi:1"], ok=True).out)
    top = manifest["layers"][-1]["digest"]
    blob = registry.blob_path(top)
    data = bytearray(blob.read_bytes())
    data[-20] ^= 0xFF
    blob.write_bytes(bytes(data))
    bad = p("pull", f"{registry.host}/bad/multi:1", ok=False)
    assert bad.returncode != 0 and bad.err.count("\n") == 1 and "digest mismatch" in bad.err, bad.err
    assert f"{registry.host}/bad/multi" not in pydock("images").out
    assert peer_image not in pydock("images", "-a", "-q", "--no-trunc").out
    _no_partials(pydock)


def test_ctrl_c_mid_pull(pydock, podman, registry, busybox_rootfs: Path, tmp_path: Path):
    podman("import", str(busybox_rootfs), "localhost/bbase:latest")
    podman.build(tmp_path / "big", "localhost/big:1", "FROM localhost/bbase:latest\n"
                 "RUN head -c 120000000 /dev/urandom > /big1\nRUN head -c 120000000 /dev/urandom > /big2\n")
    _podman_push(podman, registry, "localhost/big:1", "big:1")
    # loopback throttled to 100 Mbit/s: 240 MB take ~20 s, so the Ctrl-C surely lands mid-download
    # however loaded the machine is (unthrottled, the pull could end before the signal)
    shaping = ["ip", "netns", "exec", registry.netns, "tc", "qdisc"]
    run([*shaping, "add", "dev", "lo", "root", "tbf", "rate", "100mbit", "burst", "256kb", "latency", "50ms"], ok=True)
    argv = [*registry.ns, PYDOCK, "-g", str(pydock.root), "-s", pydock.driver, "pull", f"{registry.host}/big:1"]
    # a terminal's foreground job has SIGINT at its default even when this suite runs in the background
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **pydock.env}, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    for line in proc.stdout:
        if b"Downloading" in line:
            break
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert err.decode().count("\n") == 1 and "interrupted" in err.decode()
    assert f"{registry.host}/big" not in pydock("images").out
    _no_partials(pydock)
    run([*shaping, "del", "dev", "lo", "root"], ok=True)
    # the retry completes and reuses what was finished
    pydock.inside(registry.ns)("pull", f"{registry.host}/big:1")
    assert pydock("run", "--rm", f"{registry.host}/big:1", "sh", "-c", "wc -c < /big2").out.strip() == "120000000"


def test_manifest_list_platforms(pydock, podman, registry, peer_image):
    """An index is resolved to this host's platform; an index without it fails in one line."""
    store = ["--root", str(podman.base / "root"), "--runroot", str(podman.base / "run"), "--storage-driver", "vfs"]
    ctr = run(["buildah", *store, "from", "scratch"], ok=True).out.strip()
    run(["buildah", *store, "config", "--arch", "arm64", "--cmd", '["/x"]', ctr], ok=True)
    run(["buildah", *store, "commit", "-q", ctr, "localhost/arm:1"], ok=True)
    run(["buildah", *store, "rm", ctr], ok=True)
    podman("manifest", "create", "localhost/both:1")
    podman("manifest", "add", "localhost/both:1", "containers-storage:localhost/multi:1")
    podman("manifest", "add", "localhost/both:1", "containers-storage:localhost/arm:1")
    podman("manifest", "create", "localhost/armonly:1")
    podman("manifest", "add", "localhost/armonly:1", "containers-storage:localhost/arm:1")
    pm = podman.__class__(podman.base, registry.ns)
    pm.globals = podman.globals
    for name in ("both", "armonly"):
        pm("manifest", "push", "--all", "--tls-verify=false", f"localhost/{name}:1", f"docker://{registry.host}/{name}:1")
    p = pydock.inside(registry.ns)
    pulled = p("pull", f"{registry.host}/both:1").out
    assert pydock.image_id(f"{registry.host}/both:1") == peer_image  # the amd64 entry
    index_digest = next(l.split()[1] for l in pulled.splitlines() if l.startswith("Digest: "))
    assert pydock.inspect(f"{registry.host}/both:1")["RepoDigests"] == [f"{registry.host}/both@{index_digest}"]
    refused = p("pull", f"{registry.host}/armonly:1", ok=False)
    assert refused.returncode != 0 and refused.err.count("\n") == 1
    assert "no manifest for platform linux/amd64 (the index offers: linux/arm64)" in refused.err
    assert f"{registry.host}/armonly" not in pydock("images").out


def test_bearer_token_realm_flow(pydock, podman, token_registry, peer_image):
    """The registry answers 401 with `Bearer realm=...`; pydock fetches a token from the realm (with the
    stored credentials), per repository scope, for pull and for push."""
    reg = token_registry
    _podman_push(podman, reg, "localhost/multi:1", "tok/multi:1", "--creds", "alice:s3cret")
    p = pydock.inside(reg.ns)
    denied = p("pull", f"{reg.host}/tok/multi:1", ok=False)
    assert denied.returncode != 0 and denied.err.count("\n") == 1 and "unauthorized" in denied.err, denied.err
    p("login", "-u", "alice", "--password-stdin", reg.host, stdin=b"s3cret\n")
    p("pull", f"{reg.host}/tok/multi:1")
    assert pydock.image_id(f"{reg.host}/tok/multi:1") == peer_image
    p("tag", f"{reg.host}/tok/multi:1", f"{reg.host}/tok/copy:2")
    assert "2: digest: sha256:" in p("push", f"{reg.host}/tok/copy:2").out
    inspected = run([*reg.ns, "skopeo", "inspect", "--tls-verify=false", "--creds", "alice:s3cret",
                     f"docker://{reg.host}/tok/copy:2"], ok=True)
    assert json.loads(inspected.out)["Name"] == f"{reg.host}/tok/copy"


def test_chunked_push(pydock, registry, busybox_rootfs: Path):
    """A layer bigger than the chunk size goes up in PATCH chunks (the size lowered here to make it so)."""
    pydock("import", str(busybox_rootfs), f"{registry.host}/chunked:1")
    code = (
        "import sys; import pydock.graph.distribution.push as push; push.CHUNK = 256 * 1024\n"
        "from pydock.runtime.runtime import Runtime\n"
        f"with Runtime({str(pydock.root)!r}, {pydock.driver!r}, bridge='none') as rt:\n"
        f"    r = push.push(rt.images, {registry.host + '/chunked:1'!r})\n"
        "    print(r.uploaded)\n")
    out = run([*registry.ns, sys.executable, "-c", code], ok=True).out
    assert out.strip() == "2"  # the layer (in chunks) and the config
    inspected = json.loads(run([*registry.ns, "skopeo", "inspect", "--config", "--tls-verify=false",
                                f"docker://{registry.host}/chunked:1"], ok=True).out)
    assert inspected["rootfs"]["diff_ids"] == pydock.inspect(f"{registry.host}/chunked:1")["RootFS"]["Layers"]


def test_run_pulls_a_missing_image_as_docker_run_does(pydock, podman, registry, peer_image):
    """`run` of an image that is not here pulls it first (`--pull missing`, the default); `--pull never`
    leaves it an error; `create --pull always` pulls even when it is here."""
    _podman_push(podman, registry, "localhost/multi:1", "team/auto:1")
    inside = pydock.inside(registry.ns)
    ref = f"{registry.host}/team/auto:1"
    refused = inside("run", "--pull", "never", "--rm", ref, ok=False)
    assert refused.returncode != 0 and refused.err.strip() == f"Error: Unable to find image '{ref}'"
    first = inside("run", "--rm", ref)
    assert first.out == "one\n"
    assert first.err.splitlines()[0] == f"Unable to find image '{ref}' locally"
    assert "Pull complete" in first.err and pydock.image_id(ref) == peer_image
    again = inside("run", "--rm", ref)
    assert again.out == "one\n" and "Unable to find image" not in again.err  # here now: no pull
    always = inside("create", "--pull", "always", ref)
    assert "Image is up to date" in always.err and len(always.out.strip()) == 64
    pydock("rm", always.out.strip())
    _no_partials(pydock)
