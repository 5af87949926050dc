"""Exit statuses a user sees from `run`: the command's own, 127/126 decided by pydock, 125 when pydock/lxc
failed, 137 when killed; stdout and stderr kept apart; `--rm` leaving nothing behind."""

from __future__ import annotations

import shutil

import pytest

from pydock.utils.mounttable import mountinfo
from pydock.utils.errors import LaunchError
from pydock.runtime.rootpath import CommandNotExecutable, CommandNotFound

pytestmark = pytest.mark.lxc


def _mounts_under(path) -> list[str]:
    real = str(path)
    return [e.mountpoint for e in mountinfo() if e.mountpoint.startswith(real)]


# the command is PID 1: its own signals don't end it (the kernel ignores them, as under Docker); a
# shell reports a child killed by signal N as 128+N. Signal deaths of PID 1 itself: tests/security.
@pytest.mark.parametrize("script, code", [("true", 0), ("exit 3", 3), ("kill -9 $$; kill -TERM $$; exit 4", 4),
                                          ("sh -c 'kill -TERM $$'; exit $?", 143)])
def test_exit_status_is_the_commands(rt, script, code):
    result = rt.run("busybox", ["sh", "-c", script])
    assert result.exit_code == code


def test_stdout_and_stderr_arrive_separately(rt):
    code, out, err = rt.run("busybox", ["sh", "-c", "echo to-out; echo to-err >&2; printf partial"])
    assert (code, out, err) == (0, b"to-out\npartial", b"to-err\n")
    c = rt.containers(all=True)[0]
    records = [(r.stream, r.log) for r in rt.logs(c)]
    assert ("stdout", "to-out\n") in records and ("stderr", "to-err\n") in records
    assert ("stdout", "partial") in records


def test_missing_command_is_127_without_launching(rt):
    with pytest.raises(CommandNotFound) as info:
        rt.run("busybox", ["no-such-command"])
    assert info.value.exit_code == 127
    assert "no-such-command" in str(info.value)
    c = rt.containers(all=True)[0]
    assert c.state.exit_code == 127 and not c.state.running
    assert not (rt.layout.lxc / c.id).exists()


def test_non_executable_is_126(rt):
    with pytest.raises(CommandNotExecutable) as info:
        rt.run("busybox", ["/etc/passwd"])
    assert info.value.exit_code == 126
    with pytest.raises(CommandNotExecutable):
        rt.run("busybox", ["/bin"])  # a directory


def test_command_lookup_follows_symlinks_inside_the_rootfs(rt):
    # /bin/sh is a symlink to busybox inside the image: found through the rootfs, not the host
    assert rt.run("busybox", ["sh", "-c", "exit 0"]).exit_code == 0
    assert rt.run("busybox", ["/bin/sh", "-c", "exit 4"]).exit_code == 4


def test_unknown_user_is_125(rt):
    with pytest.raises(LaunchError) as info:
        rt.run("busybox", ["id"], user="nosuchuser")
    assert info.value.exit_code == 125
    assert "Unable to find user nosuchuser" in str(info.value)


def test_lxc_failure_is_125_with_lxcs_message(rt, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    c = rt.create("busybox", ["true"], volumes=[f"{vol}:/data"])
    c.volumes["/data"] = str(tmp_path / "vanished")  # lxc's bind mount will fail
    c.save()
    from pydock.runtime import supervise

    with pytest.raises(LaunchError) as info:
        supervise.run_foreground(rt, c)
    assert info.value.exit_code == 125
    c.reload()
    assert c.state.exit_code == 125 and not c.state.running
    assert _mounts_under(c.dir) == [] and _mounts_under(rt.driver.mountpoint(c.id)) == []


def _devices_but_the_images_init_layer(rt) -> set[str]:
    """The devices of the root, less busybox's init layer (made with its first container, kept with it)."""
    from pydock.runtime import initlayer

    shared = rt.graph.derived_device(rt.images.resolve("busybox").id, initlayer.PURPOSE)
    return set(rt.driver.deviceset.list()) - {shared}


def test_run_rm_leaves_nothing(rt):
    before_devices = _devices_but_the_images_init_layer(rt)
    names_before = dict(rt.names.list())
    result = rt.run("busybox", ["echo", "bye"], remove=True, name="ephemeral")
    assert result == (0, b"bye\n", b"")
    assert rt.containers(all=True) == []
    assert list(rt.layout.containers.iterdir()) == []
    assert _devices_but_the_images_init_layer(rt) == before_devices
    assert rt.names.list() == names_before and rt.names.get("/ephemeral") is None
    assert _mounts_under(rt.layout.root) == []
    assert not any((rt.layout.lxc).iterdir()) if rt.layout.lxc.exists() else True


def test_run_rm_cleans_up_after_a_launch_failure_too(rt):
    before_devices = _devices_but_the_images_init_layer(rt)
    with pytest.raises(CommandNotFound):
        rt.run("busybox", ["nope"], remove=True)
    assert rt.containers(all=True) == [] and _devices_but_the_images_init_layer(rt) == before_devices


def test_no_command_is_refused_at_create(rt, busybox_tar):
    import io

    from pydock.utils.errors import InvalidArgument

    bare = rt.images.import_(io.BytesIO(busybox_tar), repo="bare")  # import_ keeps no Cmd
    with pytest.raises(InvalidArgument, match="No command specified"):
        rt.create(bare.id)
    assert rt.containers(all=True) == []


def test_host_mount_table_unchanged_by_runs(rt):
    def interesting() -> set[tuple[str, str]]:
        lxc_dir = "/usr/lib/x86_64-linux-gnu/lxc"
        return {(e.mountpoint, e.fstype) for e in mountinfo()
                if e.mountpoint.startswith((str(rt.layout.root), lxc_dir)) or e.fstype in ("proc", "sysfs", "devpts", "mqueue")}

    rt.run("busybox", ["true"])  # warm: busybox device activation etc.
    before = interesting()
    for _ in range(3):
        assert rt.run("busybox", ["sh", "-c", "mount -t tmpfs none /tmp && echo mounted"]).exit_code in (0, 1)
        assert rt.run("busybox", ["true"], remove=True).exit_code == 0
    assert interesting() == before


@pytest.mark.skipif(shutil.which("lxc-start") is None, reason="needs lxc")
def test_lxc_noise_is_not_container_stderr(rt, tmp_path):
    # a command writing a line that looks like lxc's prefix for *another* name is kept
    code, _out, err = rt.run("busybox", ["sh", "-c", "echo 'lxc-start: other: x' >&2"])
    assert (code, err) == (0, b"lxc-start: other: x\n")


def test_launch_through_the_shipped_dockerinit_helper(rt, monkeypatch):
    from pydock.runtime.launcher import HELPER_ENV

    monkeypatch.delenv("PYDOCK_DOCKERINIT", raising=False)
    monkeypatch.setenv(HELPER_ENV, "1")
    before = {(e.mountpoint, e.fstype) for e in mountinfo() if e.fstype in ("proc", "sysfs")}
    assert rt.run("busybox", ["sh", "-c", "echo via-helper; exit 6"]) == (6, b"via-helper\n", b"")
    c = rt.create("busybox", ["sleep", "30"])
    rt.start(c)
    rt.kill(c)
    assert rt.wait(c, timeout=20) == 137
    assert {(e.mountpoint, e.fstype) for e in mountinfo() if e.fstype in ("proc", "sysfs")} == before
    assert (rt.layout.init).is_dir()  # the helper was located/pinned under the root


def test_a_slow_attached_reader_gets_all_of_a_big_output_after_the_exit(rt, monkeypatch):
    import time

    from pydock.runtime import attach, relay

    monkeypatch.setattr(relay, "FLUSH_TIMEOUT", 1.5)  # the monitor, forked from here, takes it too
    size = 900_000
    c = rt.create("busybox", ["sh", "-c", f"sleep 1; head -c {size} /dev/zero"])
    rt.start(c)
    session = attach.connect(c.dir, attach.Hello(), "the container")
    session.wait_welcome()
    got = 0
    while not session.closed and session.exit_code is None:
        for kind, payload in session.poll():  # one read at a time, 0.3 s apart: the ~500 KB the monitor
            if kind in attach.KIND_STREAM:  # still holds at the exit take longer than FLUSH_TIMEOUT
                got += len(payload)
        time.sleep(0.3)
    session.sock.close()
    assert (got, session.exit_code) == (size, 0)
