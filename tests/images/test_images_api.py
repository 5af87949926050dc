"""The image routes of `pydock serve` with the real docker CLI and SDK: pull (progress stream, auth
header), push, save (`get`), load, and the registry's descriptor, against docker-registry on loopback
in the test's namespace."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from images_helpers import PYDOCK, Registry, run

pytestmark = [pytest.mark.lxc, pytest.mark.network]
DOCKER = shutil.which("docker")


@pytest.fixture
def serve(registry, tmp_path: Path):
    with serving(registry, tmp_path) as docker:
        yield docker


@contextmanager
def serving(registry, tmp_path: Path, *global_options: str):
    """`pydock [global_options] serve` in the registry's namespace; yields the docker CLI pointed at it."""
    if DOCKER is None:
        pytest.fail("the docker CLI is missing: hack/make.sh test provides it")
    tmp_path.mkdir(parents=True, exist_ok=True)
    root, sock = tmp_path / "serve-root", tmp_path / "d.sock"
    proc = subprocess.Popen([*registry.ns, PYDOCK, "-g", str(root), "-s", "overlay", "-b", "none", *global_options,
                             "serve", "-H", f"unix://{sock}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)

    def docker(*args: str, ok: bool | None = True, stdin: bytes | None = None):
        return run([DOCKER, *args], ok=ok, stdin=stdin,
                   env={"DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(tmp_path / "docker-config")})

    docker.sock = sock  # type: ignore[attr-defined]
    docker.root = root  # type: ignore[attr-defined]
    yield docker
    for ref in docker("images", "-q", "--no-trunc", ok=None).out.split():
        docker("rmi", "-f", ref, ok=None)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    from pydock.utils.mounttable import mounts_under

    assert mounts_under(root) == []


def test_docker_cli_pull_push_save_load(serve, podman, registry, peer_image, tmp_path: Path):
    pm = podman.__class__(podman.base, registry.ns)
    pm.globals = podman.globals
    pm("push", "--tls-verify=false", "localhost/multi:1", f"docker://{registry.host}/multi:1")
    pulled = serve("pull", f"{registry.host}/multi:1")
    assert "Pull complete" in pulled.out and f"Status: Downloaded newer image for {registry.host}/multi:1" in pulled.out
    assert serve("image", "inspect", "--format", "{{.Id}}", f"{registry.host}/multi:1").out.strip() == \
        f"sha256:{peer_image}"
    info = json.loads(serve("image", "inspect", f"{registry.host}/multi:1").out)[0]
    assert len(info["RootFS"]["Layers"]) == 3
    assert info["RepoDigests"][0].startswith(f"{registry.host}/multi@sha256:")
    history = serve("history", "--no-trunc", "--format", "{{.CreatedBy}}", f"{registry.host}/multi:1").out
    assert "echo two > /data/two" in history and 'CMD ["cat", "/data/one"]' in history
    missing = serve("pull", f"{registry.host}/nope:1", ok=False)
    assert missing.returncode != 0 and "repository does not exist" in missing.err
    serve("tag", f"{registry.host}/multi:1", f"{registry.host}/copy:2")
    pushed = serve("push", f"{registry.host}/copy:2")
    assert "2: digest: sha256:" in pushed.out
    inspected = json.loads(run([*registry.ns, "skopeo", "inspect", "--config", "--tls-verify=false",
                                f"docker://{registry.host}/copy:2"], ok=True).out)
    assert inspected["config"]["WorkingDir"] == "/data"
    archive = tmp_path / "saved.tar"
    serve("save", "-o", str(archive), f"{registry.host}/copy:2")
    serve("rmi", f"{registry.host}/copy:2", f"{registry.host}/multi:1")
    assert serve("load", "-i", str(archive)).out == f"Loaded image: {registry.host}/copy:2\n"
    assert serve("run", "--rm", "--net", "none", f"{registry.host}/copy:2").out == "one\n"


def test_sdk_pull_with_auth_header_and_distribution(auth_registry, podman, peer_image, tmp_path: Path):
    docker_sdk = pytest.importorskip("docker")
    reg = auth_registry
    pm = podman.__class__(podman.base, reg.ns)
    pm.globals = podman.globals
    pm("push", "--tls-verify=false", "--creds", "alice:s3cret", "localhost/multi:1", f"docker://{reg.host}/m:1")
    root, sock = tmp_path / "serve-root", tmp_path / "d.sock"
    proc = subprocess.Popen([*reg.ns, PYDOCK, "-g", str(root), "-s", "overlay", "-b", "none", "serve",
                             "-H", f"unix://{sock}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        client = docker_sdk.DockerClient(base_url=f"unix://{sock}")
        with pytest.raises(docker_sdk.errors.APIError):
            client.images.pull(f"{reg.host}/m", tag="1")
        image = client.images.pull(f"{reg.host}/m", tag="1", auth_config={"username": "alice", "password": "s3cret"})
        assert image.id == f"sha256:{peer_image}"
        data = client.images.get_registry_data(f"{reg.host}/m:1", auth_config={"username": "alice",
                                                                                "password": "s3cret"})
        assert data.id.startswith("sha256:") and data.has_platform("linux/amd64")
        saved = b"".join(image.save())
        client.images.remove(f"{reg.host}/m:1")
        loaded = client.images.load(saved)
        assert [i.id for i in loaded] == [f"sha256:{peer_image}"]  # saved by id: loaded untagged, as dockerd does
        client.images.remove(peer_image)
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    from pydock.utils.mounttable import mounts_under

    assert mounts_under(root) == []




def test_insecure_registry_is_honoured_by_the_cli_and_by_serve(podman, peer_image, tmp_path: Path):
    """A registry speaking plain http on a non-loopback address: refused until it is named with the
    global --insecure-registry, by `pydock pull` and by `pydock serve` (whose /info lists it)."""
    reg = Registry(tmp_path / "registry", address="10.213.0.1")
    try:
        podman.__class__(podman.base, reg.ns)("push", "--tls-verify=false", "localhost/multi:1",
                                              f"docker://{reg.host}/multi:1")
        cli = [*reg.ns, PYDOCK, "-g", str(tmp_path / "cli-root"), "-s", "overlay", "-b", "none"]
        refused = run([*cli, "pull", f"{reg.host}/multi:1"])
        assert refused.returncode == 1 and refused.err == (f"Error: registry {reg.host} answered https with plain http: "
                                                            f"to use it anyway, name it with --insecure-registry {reg.host}\n")
        run([*cli, "--insecure-registry", reg.host, "pull", f"{reg.host}/multi:1"], ok=True)
        run([*cli, "rmi", f"{reg.host}/multi:1"], ok=True)
        with serving(reg, tmp_path / "secure") as docker:
            assert f"--insecure-registry {reg.host}" in docker("pull", f"{reg.host}/multi:1", ok=False).err
        with serving(reg, tmp_path / "insecure", "--insecure-registry", reg.host) as docker:
            assert f"Downloaded newer image for {reg.host}/multi:1" in docker("pull", f"{reg.host}/multi:1").out
            info = json.loads(docker("info", "--format", "{{json .RegistryConfig}}").out)
            assert info["IndexConfigs"][reg.host]["Secure"] is False
            docker("tag", f"{reg.host}/multi:1", f"{reg.host}/again:2")
            docker("push", f"{reg.host}/again:2")
            assert run([*reg.ns, "skopeo", "inspect", "--tls-verify=false", f"docker://{reg.host}/again:2"]).returncode == 0
    finally:
        reg.close()
