"""`pydock cp` on the overlay driver: Docker's rules for where a copy lands, ownership, `-` tar streams,
stopped and running containers, and hostile symlinks in the container that must never lead to the host."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from tty_helpers import pydock, pydock_argv

pytestmark = pytest.mark.lxc

FILL = "mkdir -p /data/sub; echo hello > /data/f; echo deep > /data/sub/g; ln -s /etc /data/etclink; chown -R 7:7 /data"


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, p.stderr.decode()
    return p


def fails(p: subprocess.CompletedProcess, text: str) -> None:
    assert p.returncode != 0, p.stdout
    assert text in p.stderr.decode(), p.stderr.decode()


def cat(root: Path, name: str, path: str) -> bytes:
    """A container file as `cp CONTAINER:PATH -` streams it."""
    p = ok(pydock(root, "cp", f"{name}:{path}", "-"))
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
        member = t.getmembers()[0]
        return t.extractfile(member).read()  # type: ignore[union-attr]


def members(data: bytes) -> list[tuple[str, int]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return [(m.name, m.uid) for m in t.getmembers()]


def mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


@pytest.fixture
def stopped(root) -> str:
    ok(pydock(root, "run", "--name", "st", "busybox", "sh", "-c", FILL))
    return "st"


@pytest.fixture
def running(root) -> str:
    ok(pydock(root, "run", "-d", "--name", "rn", "busybox", "sh", "-c", FILL + "; touch /ready; exec sleep 600"))
    deadline = time.monotonic() + 60
    while pydock(root, "exec", "rn", "test", "-e", "/ready").returncode != 0:
        assert time.monotonic() < deadline, "the container never got ready"
        time.sleep(0.1)
    return "rn"


def _cid(root: Path, name: str) -> str:
    return json.loads(ok(pydock(root, "inspect", name)).stdout)[0]["ID"]


@pytest.mark.parametrize("which", ["stopped", "running"])
def test_copy_out_follows_dockers_rules(root, tmp_path, request, which):
    name = request.getfixturevalue(which)
    os.chdir(tmp_path)
    ok(pydock(root, "cp", f"{name}:/data", "new"))  # a new path: the directory takes its name
    assert (tmp_path / "new" / "f").read_text() == "hello\n"
    assert (tmp_path / "new" / "sub" / "g").read_text() == "deep\n"
    assert os.readlink(tmp_path / "new" / "etclink") == "/etc"  # a symlink stays one
    st = (tmp_path / "new" / "f").stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())  # the caller's, not the container's 7:7
    (tmp_path / "into").mkdir()
    ok(pydock(root, "cp", f"{name}:/data", "into"))  # an existing directory: copied inside it
    assert (tmp_path / "into" / "data" / "f").read_text() == "hello\n"
    (tmp_path / "contents").mkdir()
    ok(pydock(root, "cp", f"{name}:/data/.", "contents"))  # `/.`: the contents
    assert sorted(os.listdir(tmp_path / "contents")) == ["etclink", "f", "sub"]
    ok(pydock(root, "cp", "-a", f"{name}:/data/f", str(tmp_path / "kept")))
    assert (tmp_path / "kept").stat().st_uid == 7  # -a keeps the owner
    (tmp_path / "existing").write_text("old")
    ok(pydock(root, "cp", f"{name}:/data/f", "existing"))  # onto a file: replaced
    assert (tmp_path / "existing").read_text() == "hello\n"
    ok(pydock(root, "cp", f"{name}:/data/sub/", "slash"))
    assert (tmp_path / "slash" / "g").read_text() == "deep\n"


def test_copy_out_errors(root, tmp_path, stopped):
    fails(pydock(root, "cp", f"{stopped}:/nope", str(tmp_path / "x")), "Could not find the file /nope in container st")
    fails(pydock(root, "cp", f"{stopped}:/data/f", str(tmp_path / "no" / "parent")), "no such file or directory")
    fails(pydock(root, "cp", f"{stopped}:/data/f", str(tmp_path / "newdir") + "/"), "no such directory")
    (tmp_path / "afile").write_text("keep")
    fails(pydock(root, "cp", f"{stopped}:/data", str(tmp_path / "afile")), "cannot copy a directory")
    assert (tmp_path / "afile").read_text() == "keep"
    fails(pydock(root, "cp", "nosuch:/etc", str(tmp_path)), "No such container: nosuch")
    fails(pydock(root, "cp", str(tmp_path), str(tmp_path)), "must specify at least one container")
    assert not list(tmp_path.glob("x*")) and not (tmp_path / "newdir").exists()


@pytest.mark.parametrize("which", ["stopped", "running"])
def test_copy_in_follows_dockers_rules(root, tmp_path, request, which):
    name = request.getfixturevalue(which)
    src = tmp_path / "src"
    (src / "inner").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "inner" / "b.txt").write_text("B")
    for p in (src, src / "a.txt", src / "inner", src / "inner" / "b.txt"):
        os.chown(p, 1234, 1234)
    ok(pydock(root, "cp", str(src), f"{name}:/data/copy"))  # a new path: the directory takes its name
    assert members(ok(pydock(root, "cp", f"{name}:/data/copy", "-")).stdout) == [
        ("copy", 0), ("copy/a.txt", 0), ("copy/inner", 0), ("copy/inner/b.txt", 0)]  # root-owned
    ok(pydock(root, "cp", str(src), f"{name}:/data/"))  # an existing directory: inside it
    assert cat(root, name, "/data/src/inner/b.txt") == b"B"
    ok(pydock(root, "cp", str(src) + "/.", f"{name}:/data/sub"))  # contents into /data/sub
    assert cat(root, name, "/data/sub/a.txt") == b"A" and cat(root, name, "/data/sub/g") == b"deep\n"
    ok(pydock(root, "cp", "-a", str(src / "a.txt"), f"{name}:/data/f"))  # onto a file, -a keeps the owner
    assert members(ok(pydock(root, "cp", f"{name}:/data/f", "-")).stdout) == [("f", 1234)]
    assert cat(root, name, "/data/f") == b"A"
    # `-`: a tar on stdin into a directory
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("streamed.txt")
        info.size = 2
        t.addfile(info, io.BytesIO(b"st"))
    ok(pydock(root, "cp", "-", f"{name}:/data", input=buf.getvalue()))
    assert cat(root, name, "/data/streamed.txt") == b"st"
    fails(pydock(root, "cp", "-", f"{name}:/data/f", input=buf.getvalue()), "must be a directory")
    # a host symlink: copied as one, or with -L what it points to, under the link's name
    (tmp_path / "hostlink").symlink_to(src / "a.txt")
    ok(pydock(root, "cp", str(tmp_path / "hostlink"), f"{name}:/data/"))
    assert members(ok(pydock(root, "cp", f"{name}:/data/hostlink", "-")).stdout) == [("hostlink", 0)]
    ok(pydock(root, "cp", "-L", str(tmp_path / "hostlink"), f"{name}:/data/followed"))
    assert cat(root, name, "/data/followed") == b"A"


def test_copy_in_errors(root, tmp_path, stopped):
    (tmp_path / "d").mkdir()
    (tmp_path / "file").write_text("x")
    fails(pydock(root, "cp", str(tmp_path / "file"), f"{stopped}:/no/parent/x"), "Could not find the file /no/parent")
    fails(pydock(root, "cp", str(tmp_path / "d"), f"{stopped}:/data/f"), "cannot copy a directory")
    fails(pydock(root, "cp", str(tmp_path / "file"), f"{stopped}:/data/newdir/"), "no such directory")
    fails(pydock(root, "cp", str(tmp_path / "missing"), f"{stopped}:/data"), "no such file or directory")
    # a file where the container has a directory (Docker's noOverwriteDirNonDir)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "sub").write_text("not a dir")
    (tmp_path / "w" / "zbig").write_bytes(os.urandom(4 << 20))  # still being written when the copy fails
    fails(pydock(root, "cp", str(tmp_path / "w") + "/.", f"{stopped}:/data"), "cannot overwrite directory")
    assert cat(root, stopped, "/data/sub/g") == b"deep\n"


def test_stopped_container_is_mounted_only_during_the_copy(root, tmp_path, stopped):
    mnt = root / "overlay" / "mnt" / _cid(root, stopped)
    assert not mounted(mnt)
    ok(pydock(root, "cp", f"{stopped}:/data/f", str(tmp_path / "f")))
    assert not mounted(mnt)
    fails(pydock(root, "cp", f"{stopped}:/nope", str(tmp_path / "g")), "Could not find the file")
    assert not mounted(mnt)
    fails(pydock(root, "cp", str(tmp_path / "f"), f"{stopped}:/nope/x"), "Could not find the file")
    assert not mounted(mnt)
    ok(pydock(root, "start", stopped))  # the copy left nothing that stops a start
    ok(pydock(root, "wait", stopped))


def test_container_symlinks_never_lead_to_the_host(root, tmp_path):
    """CVE-2019-14271 / CVE-2018-15664 shapes with static links: absolute, relative climbing, a symlinked
    parent; what is read and written is the container's."""
    marker = tmp_path / "host-only"
    marker.mkdir()
    (marker / "secret").write_text("host secret")
    script = (f"ln -s / /rootlink; ln -s ../../../../../../../../.. /up; ln -s {marker} /hostdir;"
              f" mkdir -p {marker}; echo container > {marker}/secret")
    ok(pydock(root, "run", "--name", "ev", "busybox", "sh", "-c", script))
    assert cat(root, "ev", "/hostdir/secret") == b"container\n"
    assert cat(root, "ev", "/up/etc/passwd") == cat(root, "ev", "/etc/passwd")
    assert cat(root, "ev", "/rootlink/etc/passwd") == cat(root, "ev", "/etc/passwd")
    p = ok(pydock(root, "cp", "-L", "ev:/hostdir", str(tmp_path / "followed")))
    assert (tmp_path / "followed" / "secret").read_text() == "container\n", p.stderr
    (tmp_path / "payload").write_text("payload")
    for dest in ("/hostdir/dropped", "/up/" + str(marker).lstrip("/") + "/dropped2", "/rootlink/tmp/dropped3"):
        ok(pydock(root, "cp", str(tmp_path / "payload"), f"ev:{dest}"))
    assert sorted(os.listdir(marker)) == ["secret"] and (marker / "secret").read_text() == "host secret"
    assert not Path("/tmp/dropped3").exists()
    assert cat(root, "ev", f"{marker}/dropped") == b"payload"
    assert cat(root, "ev", f"{marker}/dropped2") == b"payload"
    assert cat(root, "ev", "/tmp/dropped3") == b"payload"
    # the container's own stat of a symlink names its target inside the container
    assert members(ok(pydock(root, "cp", "ev:/hostdir", "-")).stdout) == [("hostdir", 0)]


def test_hostile_tar_entries_stay_in_the_destination(root, tmp_path, stopped):
    outside = tmp_path / "outside"
    outside.mkdir()

    def tar(*entries: tuple[str, str]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
            for name, link in entries:
                info = tarfile.TarInfo(name)
                if link:
                    info.type, info.linkname = tarfile.SYMTYPE, link
                    t.addfile(info)
                else:
                    info.size = 4
                    t.addfile(info, io.BytesIO(b"evil"))
        return buf.getvalue()

    fails(pydock(root, "cp", "-", f"{stopped}:/data", input=tar(("../../escape", ""))), "escapes")
    # plant a symlink to a host directory, then write through it: the write stays in the container
    ok(pydock(root, "cp", "-", f"{stopped}:/data", input=tar(("l", str(outside)), ("l/pwned", ""))))
    assert os.listdir(outside) == []
    assert cat(root, stopped, f"/data/{str(outside).lstrip('/')}/pwned") == b"evil"


def test_racing_symlink_swap_never_reaches_the_host(root, tmp_path):
    """A running container swaps /x between a directory and a symlink to a host-only path while cp reads
    and writes through it (CVE-2018-15664): every copy lands in, or comes from, the container."""
    marker = tmp_path / "host-side"
    marker.mkdir()
    (marker / "secret").write_text("HOST")
    swap = (f"mkdir -p /real; echo CONTAINER > /real/secret; while :; do rm -rf /x; mkdir /x;"
            f" echo CONTAINER > /x/secret; rm -rf /x; ln -s {marker} /x; done")
    ok(pydock(root, "run", "-d", "--name", "race", "busybox", "sh", "-c", swap))
    (tmp_path / "payload").write_text("payload")
    seen = set()
    for i in range(40):
        pydock(root, "cp", str(tmp_path / "payload"), f"race:/x/p{i}")
        p = pydock(root, "cp", "race:/x/secret", "-")
        if p.returncode == 0 and p.stdout:
            with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
                for m in t.getmembers():  # none when /x/secret went away between its stat and its read
                    if m.isfile():
                        seen.add(t.extractfile(m).read())  # type: ignore[union-attr]
    assert b"HOST" not in seen
    assert sorted(os.listdir(marker)) == ["secret"]
    ok(pydock(root, "rm", "-f", "race"))


def test_volumes_and_binds_are_copied_as_the_container_sees_them(root, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in-volume").write_text("v")
    ro = tmp_path / "ro"
    ro.mkdir()
    ok(pydock(root, "run", "--name", "mv", "-v", f"{vol}:/data", "-v", f"{ro}:/ro:ro", "--tmpfs", "/scratch",
              "busybox", "sh", "-c", "ln -s /data /datalink; ln -s /etc /data/etc"))
    (tmp_path / "f").write_text("x")
    # written to and read from the bind's source, through symlinks in the container too
    ok(pydock(root, "cp", str(tmp_path / "f"), "mv:/data/"))
    ok(pydock(root, "cp", str(tmp_path / "f"), "mv:/datalink/g"))
    assert (vol / "f").read_text() == "x" and (vol / "g").read_text() == "x"
    assert cat(root, "mv", "/data/in-volume") == b"v"
    assert cat(root, "mv", "/datalink/in-volume") == b"v"
    ok(pydock(root, "cp", "mv:/data", str(tmp_path / "out")))
    assert sorted(os.listdir(tmp_path / "out")) == ["etc", "f", "g", "in-volume"]
    # a symlink in the volume still means the container's path, never the host's
    assert cat(root, "mv", "/data/etc/passwd") == cat(root, "mv", "/etc/passwd")
    # /etc/hosts is the container's own file, as the container reads it, alone or in its directory
    hosts = cat(root, "mv", "/etc/hosts")
    assert b"localhost" in hosts
    ok(pydock(root, "cp", "mv:/etc", str(tmp_path / "etc")))
    assert (tmp_path / "etc" / "hosts").read_bytes() == hosts
    # a directory holding a mount point: the mount's contents, as the container sees them
    ok(pydock(root, "cp", "mv:/", str(tmp_path / "all")))
    assert sorted(os.listdir(tmp_path / "all" / "data")) == ["etc", "f", "g", "in-volume"]
    assert os.listdir(tmp_path / "all" / "scratch") == []  # a tmpfs: the rootfs's empty mount point
    # refusals: a read-only volume, a tmpfs, a copy crossing into a mount
    fails(pydock(root, "cp", str(tmp_path / "f"), "mv:/ro/"), "read-only")
    fails(pydock(root, "cp", "mv:/scratch", str(tmp_path / "s")), "a mount of container mv that pydock cannot reach")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("data/crossing")
        t.addfile(info, io.BytesIO(b""))
    fails(pydock(root, "cp", "-", "mv:/", input=buf.getvalue()), "crosses the mount at /data")
    assert sorted(os.listdir(vol)) == ["etc", "f", "g", "in-volume"] and os.listdir(ro) == []


def test_copies_are_events(root, tmp_path, stopped):
    t0 = str(int(time.time()) - 1)
    ok(pydock(root, "cp", f"{stopped}:/data/f", str(tmp_path / "f")))
    ok(pydock(root, "cp", str(tmp_path / "f"), f"{stopped}:/data/g"))
    p = ok(pydock(root, "events", "--since", t0, "--until", "0s", "--filter", "container=st"))
    text = p.stdout.decode()
    assert "container archive-path" in text and "container extract-to-dir" in text


def test_stdout_stream_is_never_a_terminal(root, stopped):
    proc = subprocess.run(["script", "-qec", " ".join(pydock_argv(root, "cp", f"{stopped}:/data", "-")), "/dev/null"],
                          capture_output=True, timeout=120, env={k: v for k, v in os.environ.items()
                                                                 if not k.startswith("PYDOCK_")})
    assert proc.returncode != 0 and b"terminal" in proc.stdout, proc.stdout


@pytest.mark.dm
def test_cp_on_devicemapper(tmp_path, busybox_tar):
    """In and out of a stopped and a running container on thin devices: the stopped one's device is
    activated and mounted for the copy only."""
    from api.api_helpers import DM_SMALL
    from root_helpers import teardown_root

    root = tmp_path / "dmroot"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK_")}

    def dm(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "pydock.cli.main", "-g", str(root), "-s", "devicemapper", "-b", "none",
                *DM_SMALL, *args]
        return subprocess.run(argv, input=input, capture_output=True, timeout=300, env=env)

    try:
        ok(dm("import", "-", "busybox", input=busybox_tar))
        ok(dm("run", "--name", "dst", "busybox", "sh", "-c", FILL))
        ok(dm("run", "-d", "--name", "drn", "busybox", "sh", "-c", FILL + "; exec sleep 600"))
        stopped_id = json.loads(ok(dm("inspect", "dst")).stdout)[0]["ID"]
        (tmp_path / "up.txt").write_text("up")
        for name in ("dst", "drn"):
            deadline = time.monotonic() + 60
            while dm("cp", f"{name}:/data/sub/g", str(tmp_path / f"{name}-g")).returncode != 0:
                assert time.monotonic() < deadline, dm("cp", f"{name}:/data/sub/g", "-").stderr
                time.sleep(0.2)
            assert (tmp_path / f"{name}-g").read_text() == "deep\n"
            ok(dm("cp", f"{name}:/data", str(tmp_path / f"{name}-data")))
            assert sorted(os.listdir(tmp_path / f"{name}-data")) == ["etclink", "f", "sub"]
            ok(dm("cp", str(tmp_path / "up.txt"), f"{name}:/data/sub/"))
            p = ok(dm("cp", f"{name}:/data/sub/up.txt", "-"))
            assert members(p.stdout) == [("up.txt", 0)]
            with open("/proc/self/mountinfo") as f:
                assert stopped_id not in f.read()  # the stopped container's device was put back
        ok(dm("start", "dst"))  # nothing of the copies is left to stop a start
        ok(dm("wait", "dst"))
        ok(dm("run", "--rm", "busybox", "true"))
    finally:
        ok(dm("rm", "-f", "drn"))
        teardown_root(root, "devicemapper")


def test_open_in_mounts_sees_the_containers_mounts(tmp_path):
    """safepath.open_in_mounts: entering a mount point continues in its source; `..` and absolute links
    lead back to the root; an unreachable mount is EXDEV; nothing resolves to a host path."""
    from pydock.utils import safepath

    rootfs, vol = tmp_path / "rootfs", tmp_path / "vol"
    (rootfs / "data").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "passwd").write_text("container")
    (rootfs / "data" / "hidden").write_text("under the mount")
    (rootfs / "tmp").mkdir()
    vol.mkdir()
    (vol / "file").write_text("volume")
    (vol / "abs").symlink_to("/etc")
    (vol / "up").symlink_to("../../../../etc")
    (rootfs / "link").symlink_to("/data")
    vfd = os.open(vol, os.O_PATH | os.O_DIRECTORY)
    try:
        mounts = {"/data": vfd, "/tmp": None}
        for path, canonical, text in (("/data/file", "/data/file", "volume"), ("/link/file", "/data/file", "volume"),
                                      ("/data/abs/passwd", "/etc/passwd", "container"),
                                      ("/data/up/passwd", "/etc/passwd", "container"),
                                      ("/data/../etc/passwd", "/etc/passwd", "container")):
            fd, found = safepath.open_in_mounts(rootfs, path, mounts)
            try:
                assert found == canonical, path
                assert Path(f"/proc/self/fd/{fd}").read_text() == text, path
            finally:
                os.close(fd)
        with pytest.raises(FileNotFoundError):
            safepath.open_in_mounts(rootfs, "/data/hidden", mounts)
        fd, found = safepath.open_in_mounts(rootfs, "/notyet/file", {**mounts, "/notyet": vfd})
        os.close(fd)
        assert found == "/notyet/file"  # a mount point not in the root yet still leads to its mount
        with pytest.raises(OSError) as err:
            safepath.open_in_mounts(rootfs, "/tmp/x", mounts)
        assert err.value.errno == errno.EXDEV
    finally:
        os.close(vfd)
