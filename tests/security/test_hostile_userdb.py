"""/etc/passwd and /etc/group come from the image: a fifo must not hang `start`, /dev/zero must not eat the
host's memory, a huge file is refused, and a link never reads a host file. Each case first through
resolve_user on a rootfs directory (both resolvers: openat2 and the walk), then end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_helpers import Extra, Store, image_tar, overlay_store  # noqa: F401 - a fixture

from pydock.runtime.userdb import MAX_DB_SIZE, resolve_user
from pydock.utils.errors import LaunchError
from pydock.utils.safepath import NO_OPENAT2_ENV, kernel_resolution

PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"


@pytest.fixture(params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(NO_OPENAT2_ENV, "1" if request.param == "walk" else "0")
    kernel_resolution.cache_clear()
    yield request.param
    kernel_resolution.cache_clear()


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "etc" / "group").write_text("root:x:0:\n")
    return root


def _resolve_in_child(root: Path, spec: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """resolve_user in a child with a deadline: a read that blocks fails the test instead of hanging it."""
    code = ("import sys\nfrom pydock.runtime.userdb import resolve_user\n"
            f"try:\n    print(resolve_user({str(root)!r}, {spec!r}))\n"
            "except Exception as e:\n    print(type(e).__name__, e); sys.exit(3)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20, env=env)


def test_a_fifo_passwd_is_refused_without_blocking(rootfs: Path, resolver: str):
    os.mkfifo(rootfs / "etc" / "passwd")
    p = _resolve_in_child(rootfs, "app", dict(os.environ))
    assert p.returncode == 3 and b"LaunchError Cannot read /etc/passwd in the container: not a regular file but a fifo" \
        in p.stdout, p.stdout + p.stderr


def test_passwd_linked_to_a_device_is_never_read(rootfs: Path, resolver: str):
    os.mknod(rootfs / "dev" / "zero", 0o666 | 0o020000, os.makedev(1, 5))
    (rootfs / "etc" / "passwd").symlink_to("/dev/zero")
    with pytest.raises(LaunchError, match="not a regular file but a character device"):
        resolve_user(rootfs, "0")


def test_passwd_linked_to_the_hosts_is_read_inside_the_rootfs(rootfs: Path, tmp_path: Path, resolver: str):
    host_db = tmp_path / "host-etc"
    host_db.mkdir()
    (host_db / "passwd").write_bytes(b"hostonly:x:4242:4242::/:/bin/sh\n")
    (rootfs / "etc" / "passwd").symlink_to("../" * 20 + str(host_db / "passwd").lstrip("/"))
    (rootfs / "etc" / "group").unlink()
    (rootfs / "etc" / "group").symlink_to(str(host_db / "passwd"))
    assert resolve_user(rootfs, "0").uid == 0  # the links lead to the rootfs' own (absent) files
    with pytest.raises(LaunchError, match="Unable to find user hostonly"):
        resolve_user(rootfs, "hostonly")
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to("/etc/passwd")  # itself, inside the root: a loop
    with pytest.raises(LaunchError, match="symbolic links"):
        resolve_user(rootfs, "app")


def test_a_huge_passwd_is_refused_before_it_is_read(rootfs: Path, resolver: str):
    with open(rootfs / "etc" / "passwd", "wb") as f:
        f.write(PASSWD)
        f.truncate(MAX_DB_SIZE + 1)
    with pytest.raises(LaunchError, match="larger than 16.78 MB"):
        resolve_user(rootfs, "app")


def test_a_directory_is_refused(rootfs: Path, resolver: str):
    (rootfs / "etc" / "passwd").mkdir()
    with pytest.raises(LaunchError, match="not a regular file but a directory"):
        resolve_user(rootfs, "app")


@pytest.mark.lxc
@pytest.mark.parametrize("case", ["fifo", "zero-device", "huge"])
def test_hostile_passwd_end_to_end(overlay_store: Store, case: str):
    extras = {
        "fifo": [Extra("etc/passwd", kind="fifo")],
        "zero-device": [Extra("dev", kind="dir"), Extra("dev/zero", kind="chr", dev=(1, 5)),
                        Extra("etc/passwd", target="/dev/zero")],
        "huge": [Extra("etc/passwd", kind="file", data=PASSWD + b"#" * MAX_DB_SIZE)],
    }[case]
    ref = f"evil-passwd-{case}"
    overlay_store.import_tar(image_tar(extras), ref)
    p = overlay_store("run", "--rm", "-u", "app", ref, "true", timeout=60)
    assert p.returncode == 125 and b"Cannot read /etc/passwd in the container" in p.stderr, p.stderr.decode()
    assert overlay_store("ps", "-aq").stdout.strip() == b""  # --rm: nothing left behind
