"""Helpers for the image tests: pydock as a user runs it, podman/buildah/skopeo as independent peers with
stores of their own, file trees to compare, and a registry on loopback inside a namespace the test makes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PYDOCK = str(Path(sys.executable).with_name("pydock"))
#: podman on this host (ecosystem.md): runc (crun refuses the hybrid cgroups), rlimits it may set.
PODMAN_RUN = ["--runtime", "runc", "--network", "none", "--ulimit", "nofile=1024:1024",
              "--ulimit", "nproc=1024:1024"]


class Proc(subprocess.CompletedProcess):
    out: str
    err: str


def run(argv: list[str], *, stdin: bytes | None = None, ok: bool | None = None, timeout: float = 300,
        env: dict[str, str] | None = None) -> Proc:
    proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    proc.out = proc.stdout.decode(errors="replace")  # type: ignore[attr-defined]
    proc.err = proc.stderr.decode(errors="replace")  # type: ignore[attr-defined]
    if ok is True:
        assert proc.returncode == 0, f"{argv}: {proc.err}"
    return proc  # type: ignore[return-value]


class Pydock:
    """`pydock -g ROOT -s DRIVER -b none ...` as a user runs it; `prefix` (nsenter) to run it elsewhere."""

    def __init__(self, root: Path, driver: str, extra: list[str] | None = None, prefix: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root, self.driver, self.extra, self.prefix = root, driver, extra or [], prefix or []
        self.env = env or {}

    def __call__(self, *args: str, ok: bool | None = True, stdin: bytes | None = None, timeout: float = 300,
                 env: dict[str, str] | None = None):
        return run([*self.prefix, PYDOCK, "-g", str(self.root), "-s", self.driver, "-b", "none", *self.extra, *args],
                   ok=ok, stdin=stdin, timeout=timeout, env={**self.env, **(env or {})})

    def inside(self, prefix: list[str]) -> "Pydock":
        """The same pydock root, commands run under `prefix` (e.g. in the registry's namespace)."""
        return Pydock(self.root, self.driver, self.extra, prefix, self.env)

    @contextmanager
    def mounted(self, image_id: str) -> Iterator[Path]:
        """The image's rootfs, read-only, through pydock's own driver."""
        from pydock.devmapper.drivers import open_driver

        driver, _ = open_driver(self.root, self.driver)
        try:
            with driver.mounted(image_id, readonly=True) as rootfs:
                yield rootfs
        finally:
            driver.close()

    def inspect(self, ref: str) -> dict:
        return json.loads(self("inspect", ref).out)[0]

    def image_id(self, ref: str) -> str:
        return self.inspect(ref)["id"]


class Podman:
    """podman with a store of its own (vfs, so nothing is mounted once a command ends)."""

    def __init__(self, base: Path, prefix: list[str] | None = None) -> None:
        self.base = base
        self.prefix = prefix or []
        for d in ("root", "run", "tmp"):
            (base / d).mkdir(parents=True, exist_ok=True)
        self.globals = ["--root", str(base / "root"), "--runroot", str(base / "run"), "--tmpdir", str(base / "tmp"),
                        "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                        "--runtime", "runc"]

    def __call__(self, *args: str, ok: bool | None = True, stdin: bytes | None = None) -> Proc:
        return run([*self.prefix, "podman", *self.globals, *args], ok=ok, stdin=stdin)

    def build(self, context: Path, tag: str, containerfile: str) -> str:
        context.mkdir(parents=True, exist_ok=True)
        (context / "Containerfile").write_text(containerfile)
        self("build", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
             "-q", "-t", tag, str(context))
        return self("image", "inspect", "--format", "{{.Id}}", tag).out.strip()

    def close(self) -> None:
        proc = self("ps", "-aq", ok=False)
        leftover = proc.out.split()
        self("rm", "-af", ok=False)
        self("image", "unmount", "-a", ok=False)
        shutil.rmtree(self.base, ignore_errors=True)
        assert leftover == [], f"podman containers left behind: {leftover}"


def tree_of_tar(path: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """{path: (kind, mode, content or link target)} of a rootfs tar (what a user sees in the rootfs)."""
    out: dict[str, tuple] = {}
    with tarfile.open(path) as tar:
        for m in tar:
            name = m.name.lstrip("./").rstrip("/")
            if not name or name.split("/")[0] in skip:
                continue
            if m.isfile():
                f = tar.extractfile(m)
                out[name] = ("f", m.mode & 0o7777, f.read() if f else b"")
            elif m.isdir():
                out[name] = ("d", m.mode & 0o7777, None)
            elif m.issym():
                out[name] = ("l", 0, m.linkname)
            elif m.islnk():
                out[name] = ("h", m.mode & 0o7777, m.linkname.lstrip("./"))
            else:
                out[name] = ("o", m.mode & 0o7777, None)
    return out


def tree_of_dir(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """The same view as tree_of_tar, of a mounted rootfs (hard links shown as files)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if rel.split("/")[0] in skip:
                continue
            st = full.lstat()
            if full.is_symlink():
                out[rel] = ("l", 0, os.readlink(full))
            elif full.is_dir():
                out[rel] = ("d", st.st_mode & 0o7777, None)
            elif full.is_file():
                out[rel] = ("f", st.st_mode & 0o7777, full.read_bytes())
            else:
                out[rel] = ("o", st.st_mode & 0o7777, None)
    return out


def tar_bytes(members: dict[str, bytes]) -> bytes:
    """A tar of regular files {name: content} (archives and layers for the load tests)."""
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Registry:
    """Debian's docker-registry on 127.0.0.1:5000 inside a network namespace of the test's own,
    optionally with htpasswd basic auth. `ns` prefixes a command to run it in that namespace.
    `address`: another IPv4 address to serve on instead, put on the namespace's own `lo` (not a
    loopback address to the client, yet no packet leaves the namespace)."""

    def __init__(self, base: Path, users: dict[str, str] | None = None, token: bool = False,
                 address: str = "127.0.0.1") -> None:
        import time
        import uuid

        self.base = base
        self.netns = "pdkreg" + uuid.uuid4().hex[:8]
        self.address = address
        self.host = f"{address}:5000"
        self.storage = base / "data"
        base.mkdir(parents=True, exist_ok=True)
        config = ["version: 0.1", "log:", "  level: error", "storage:", "  filesystem:",
                  f"    rootdirectory: {self.storage}", "  delete:", "    enabled: true",
                  "http:", f"  addr: {self.host}"]
        if users and not token:
            htpasswd = base / "htpasswd"
            for n, (user, password) in enumerate(users.items()):
                run(["htpasswd", "-B", "-b"] + (["-c"] if n == 0 else []) + [str(htpasswd), user, password], ok=True)
            config += ["auth:", "  htpasswd:", "    realm: pydock-test", f"    path: {htpasswd}"]
        if token:  # Bearer: a token service on :5001 (token_server.py) whose JWTs the registry verifies
            key, cert, pub = base / "key.pem", base / "cert.pem", base / "pub.der"
            run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                 "-days", "1", "-subj", "/CN=pydock-token"], ok=True)
            pem = run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"], ok=True).stdout
            pub.write_bytes(run(["openssl", "pkey", "-pubin", "-outform", "DER"], stdin=pem, ok=True).stdout)
            config += ["auth:", "  token:", "    realm: http://127.0.0.1:5001/token", "    service: pydock-registry",
                       "    issuer: pydock-issuer", f"    rootcertbundle: {cert}"]
        (base / "config.yml").write_text("\n".join(config) + "\n")
        run(["ip", "netns", "add", self.netns], ok=True)
        self.ns = ["nsenter", f"--net=/run/netns/{self.netns}"]
        run([*self.ns, "ip", "link", "set", "lo", "up"], ok=True)
        if address != "127.0.0.1":
            run([*self.ns, "ip", "addr", "add", f"{address}/32", "dev", "lo"], ok=True)
        self.token_proc = None
        if token:
            self.token_proc = subprocess.Popen(
                [*self.ns, sys.executable, str(Path(__file__).with_name("token_server.py")), "5001", str(key),
                 str(pub), *next(iter((users or {"alice": "s3cret"}).items())), "pydock-issuer"])
        self.log = open(base / "registry.log", "wb")
        self.proc = subprocess.Popen([*self.ns, "docker-registry", "serve", str(base / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = run([*self.ns, "python3", "-c", f"import socket; socket.create_connection(('{address}', 5000), 1)"])
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        self.close()
        raise AssertionError(f"docker-registry did not start: {(base / 'registry.log').read_text()}")

    def close(self) -> None:
        if self.token_proc is not None:
            self.token_proc.terminate()
            self.token_proc.wait(timeout=10)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        run(["ip", "netns", "delete", self.netns])

    def blob_path(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
