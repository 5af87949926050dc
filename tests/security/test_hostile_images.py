"""Images built to make pydock write on the host: `etc`, `dev`, `proc`, `sys`, the stubs, volume targets
and WORKDIR symlinked out of the rootfs (absolute and `../..`). Every container runs (or is refused
with a clear error) and a watched host directory stays empty; what the container sees lives inside
its own rootfs. Overlay on the host, devicemapper inside UML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile_helpers import Extra, Store, image_tar, store, tree  # noqa: F401 - `store` is a fixture

pytestmark = pytest.mark.lxc

UP = "../" * 24  # more than enough to climb from any rootfs mountpoint to the host's /


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    d = tmp_path / "watched"
    d.mkdir()
    return d


def _links(watched: Path, style: str, *names: str) -> list[Extra]:
    target = str(watched) if style == "absolute" else UP + str(watched).lstrip("/")
    return [Extra(n, target=target) for n in names]


def _import(store: Store, ref: str, extras: list[Extra]) -> None:
    store.import_tar(image_tar(extras), ref)


@pytest.mark.parametrize("resolver", ["openat2", "walk"])
@pytest.mark.parametrize("style", ["absolute", "relative"])
def test_etc_dev_proc_sys_symlinked_out_write_nothing_on_the_host(store: Store, watched: Path, style: str,
                                                                  resolver: str):
    """Also with the resolver old kernels get (no openat2), from create to the end of the run."""
    ref = f"evil-system-{style}-{resolver}"
    env = Extra(".dockerenv", target=_links(watched, style, "x")[0].target + "/dockerenv")
    _import(store, ref, [*_links(watched, style, "etc", "dev", "proc", "sys"), env])
    p = store("run", "--rm", "-h", "evilhost", ref, "sh", "-c",
              "cat /etc/hostname; grep -c localhost /etc/hosts; ls -d /proc/self /dev/null /dev/pts; "
              "test -e /.dockerenv && echo env", env={"PYDOCK_NO_OPENAT2": "1" if resolver == "walk" else "0"})
    assert tree(watched) == []
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout.decode().split()
    assert out[:2] == ["evilhost", "2"] and "/proc/self" in out and "/dev/pts" in out and out[-1] == "env"
    assert tree(watched) == []


@pytest.mark.parametrize("style", ["absolute", "relative"])
def test_stub_files_symlinked_out_stay_inside(store: Store, watched: Path, style: str):
    """/etc/hosts, /etc/hostname and /etc/resolv.conf themselves pointing out of the rootfs."""
    target = str(watched) if style == "absolute" else UP + str(watched).lstrip("/")
    ref = f"evil-stubs-{style}"
    _import(store, ref, [Extra("etc", kind="dir"), Extra("etc/passwd", kind="file", data=b"root:x:0:0::/root:/bin/sh\n"),
                         *[Extra(f"etc/{n}", target=f"{target}/{n}") for n in ("hosts", "hostname", "resolv.conf")]])
    p = store("run", "--rm", "-h", "stubs", "--dns", "10.9.8.7", ref, "sh", "-c",
              "cat /etc/hostname /etc/resolv.conf; grep -c localhost /etc/hosts")
    assert tree(watched) == []
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().split() == ["stubs", "nameserver", "10.9.8.7", "2"]
    assert tree(watched) == []


@pytest.mark.parametrize("style", ["absolute", "relative"])
def test_volume_targets_through_symlinks_are_made_inside_the_rootfs(store: Store, watched: Path, tmp_path: Path,
                                                                     style: str):
    ref = f"evil-volumes-{style}"
    _import(store, ref, _links(watched, style, "data"))
    src = tmp_path / "bind-src"
    src.mkdir()
    (src / "hello").write_text("from the host\n")
    p = store("run", "--rm", "-v", "/data/anon/deep", "-v", f"{src}:/data/bound", ref, "sh", "-c",
              "cat /data/bound/hello; touch /data/anon/deep/x; readlink /data; ls -d /data/anon/deep")
    assert tree(watched) == []
    assert p.returncode == 0, p.stderr.decode()
    lines = p.stdout.decode().splitlines()
    assert lines[0] == "from the host" and lines[-1] == "/data/anon/deep"
    assert tree(watched) == []
    assert sorted(x.name for x in src.iterdir()) == ["hello"]


@pytest.mark.parametrize("style", ["absolute", "relative"])
def test_workdir_through_a_symlink_is_made_inside_the_rootfs(store: Store, watched: Path, style: str):
    ref = f"evil-workdir-{style}"
    _import(store, ref, _links(watched, style, "wd"))
    cid = store.ok("create", ref, "true").strip()
    store.ok("commit", "--run", json.dumps({"WorkingDir": "/wd/deep/er"}), cid, f"{ref}-w")
    store.ok("rm", cid)
    p = store("run", "--rm", f"{ref}-w", "sh", "-c", "pwd; touch made")
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().strip().endswith("/deep/er")
    p = store("run", "--rm", "-w", "/wd/user", ref, "pwd")
    assert p.returncode == 0, p.stderr.decode()
    assert tree(watched) == []


def test_workdir_in_proc_is_refused(store: Store):
    p = store("run", "--rm", "-w", "/proc/self/fd/3", "busybox", "true")
    assert p.returncode != 0 and b"inside /proc" in p.stderr, p.stderr.decode()
    assert store("ps", "-aq").stdout.strip() == b""  # nothing was made
    _import(store, "evil-procwd", [Extra("wd", target="/proc/self/fd")])
    p = store("run", "--rm", "-w", "/wd/3", "evil-procwd", "true")
    assert p.returncode == 125 and b"/proc" in p.stderr, p.stderr.decode()
    cid = store.ok("create", "evil-procwd", "true").strip()
    store.ok("commit", "--run", json.dumps({"WorkingDir": "relative/dir"}), cid, "evil-relwd")
    store.ok("rm", cid)
    p = store("create", "evil-relwd", "true")
    assert p.returncode != 0 and b"absolute path" in p.stderr, p.stderr.decode()


def test_a_file_where_etc_should_be_is_a_clear_error(store: Store):
    _import(store, "evil-etcfile", [Extra("etc", kind="file", data=b"not a directory\n")])
    p = store("create", "evil-etcfile", "true")
    assert p.returncode == 1 and b"mount points" in p.stderr, p.stderr.decode()
    assert store("ps", "-aq").stdout.strip() == b""


def test_a_volume_nested_in_a_volume_the_container_filled_with_links(store: Store, watched: Path):
    """The outer volume's contents are the container's: a link it leaves there must not take the inner
    volume's mount point (made at the next start) out of the volume."""
    target = str(watched)
    cid = store.ok("create", "-v", "/data", "-v", "/data/sub/deep", "busybox", "sh", "-c",
                   f"test -L /data/sub || (mv /data/sub /data/old && ln -s {target} /data/sub)").strip()
    try:
        for _ in range(2):  # the first run plants the link, the second start resolves through it
            store.ok("start", cid)
            assert store.ok("wait", cid).strip() == "0"
            assert tree(watched) == []
        state = json.loads(store.ok("inspect", cid))[0]
        outer = Path(state["Volumes"]["/data"])
        assert (outer / str(watched).lstrip("/") / "deep").is_dir()  # made inside the volume, under the link's path
    finally:
        store.ok("rm", "-v", cid)
