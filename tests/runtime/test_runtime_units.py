"""Pure pieces of the runtime without lxc: paths inside a rootfs, the container's user db, config.lxc,
cgroup keys, option parsing, state records, and the dockerinit helper's mount isolation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pydock.runtime import caps, cgroups, lxcconf
from pydock.utils.errors import InvalidArgument, LaunchError
from pydock.runtime.options import Volume, merge_env, parse_env, parse_memory, parse_volume, split_hostname
from pydock.runtime.rootpath import CommandNotExecutable, CommandNotFound, look_path, resolve_in_root
from pydock.runtime.state import State, format_time, parse_time, utcnow
from pydock.utils.process import proc_start_time, same_process
from pydock.runtime.userdb import User, resolve_user


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    for d in ("bin", "etc", "usr/bin", "tmp"):
        (root / d).mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(b"\0opaque binary")
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "data").write_text("x")
    (root / "bin" / "data").chmod(0o644)
    (root / "bin" / "ownly").write_text("x")
    (root / "bin" / "ownly").chmod(0o700)
    (root / "usr" / "bin" / "abs").symlink_to("/bin/tool")
    (root / "usr" / "bin" / "escape").symlink_to("../../../../../../etc/shadow")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
                                         "# comment\nweird:x:notanumber:0::/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:app,other\naudio:x:63:app\n")
    return root


def test_resolve_in_root_keeps_symlinks_inside(rootfs):
    assert resolve_in_root(rootfs, "/usr/bin/abs") == rootfs / "bin" / "tool"
    escaped = resolve_in_root(rootfs, "/usr/bin/escape")
    assert escaped == rootfs / "etc" / "shadow"  # not the host's /etc/shadow
    assert resolve_in_root(rootfs, "/../../etc/passwd") == rootfs / "etc" / "passwd"
    loop = rootfs / "loop"
    loop.symlink_to("/loop")
    with pytest.raises(ValueError, match="too many levels"):
        resolve_in_root(rootfs, "/loop")


def test_look_path(rootfs):
    assert look_path(rootfs, "tool", "/usr/bin:/bin") == "/bin/tool"
    assert look_path(rootfs, "abs", "/usr/bin:/bin") == "/usr/bin/abs"
    assert look_path(rootfs, "/bin/tool", "") == "/bin/tool"
    with pytest.raises(CommandNotFound):
        look_path(rootfs, "missing", "/usr/bin:/bin")
    with pytest.raises(CommandNotFound):
        look_path(rootfs, "/usr/bin/escape", "")  # host /etc/shadow is never considered
    with pytest.raises(CommandNotExecutable):
        look_path(rootfs, "data", "/bin")
    with pytest.raises(CommandNotExecutable):
        look_path(rootfs, "/bin", "")
    assert look_path(rootfs, "ownly", "/bin", uid=0) == "/bin/ownly"
    with pytest.raises(CommandNotExecutable):
        look_path(rootfs, "ownly", "/bin", uid=1000, gids=(1000,))


def test_resolve_user_from_the_containers_files(rootfs):
    assert resolve_user(rootfs, "") == resolve_user(rootfs, "root")
    app = resolve_user(rootfs, "app")
    assert (app.uid, app.gid, app.groups, app.home) == (1000, 1000, (50, 63), "/home/app")
    assert resolve_user(rootfs, "1000").name == "app"
    assert resolve_user(rootfs, "app:staff").gid == 50
    assert resolve_user(rootfs, "app:4242").gid == 4242
    with pytest.raises(LaunchError, match="Unable to find user nobody"):
        resolve_user(rootfs, "nobody")  # the host has one; the container does not
    # a uid the image does not know runs as itself, gid 0, home /, as under Docker
    assert resolve_user(rootfs, "4242") == User(4242, 0, (), "/", "")
    assert resolve_user(rootfs, "4242:4343") == User(4242, 4343, (), "/", "")
    assert resolve_user(rootfs, "4242:staff").gid == 50
    with pytest.raises(LaunchError, match="uids and gids must be in range 0-2147483647: 4294967295"):
        resolve_user(rootfs, "4294967295")
    with pytest.raises(LaunchError, match="Unable to find user ４２"):
        resolve_user(rootfs, "４２")  # digits, but not ASCII ones
    with pytest.raises(LaunchError, match="Unable to find group nogroup"):
        resolve_user(rootfs, "app:nogroup")
    (rootfs / "etc" / "passwd").unlink()
    assert resolve_user(rootfs, "").uid == 0


def test_only_lxcs_own_dev_targets_are_created_by_lxc(tmp_path):
    """The console pty and --init's binary land on lxc's fresh /dev tmpfs, which only lxc can populate:
    lxc creates those two targets; every bind into the image's tree has its target made by pydock."""
    spec = lxcconf.LxcSpec(hostname="h", rootfs=tmp_path, console=Path("/dev/pts/9"), init=Path("/r/init/tini"),
                           binds=(lxcconf.Bind(Path("/v"), "/data", readonly=False, is_file=False),))
    entries = [l for l in lxcconf.render(spec).splitlines() if l.startswith("lxc.mount.entry = /")]
    assert "lxc.mount.entry = /dev/pts/9 dev/console none bind,rw,create=file 0 0" in entries
    assert "lxc.mount.entry = /r/init/tini dev/init none bind,ro,create=file 0 0" in entries
    assert "lxc.mount.entry = /v data none bind,rw 0 0" in entries


def test_lxc_config_render(tmp_path):
    spec = lxcconf.LxcSpec(hostname="h", rootfs=tmp_path, env=("A=1", "B=two words"), uid=5, gid=6, groups=(7, 8),
                           cwd="/w", memory=1 << 20, cpu_shares=100,
                           binds=(lxcconf.Bind(Path("/host dir"), "/ctr", readonly=False, is_file=False),))
    text = lxcconf.render(spec)
    lines = text.splitlines()
    assert lines[0] == "lxc.uts.name = h"
    assert f"lxc.rootfs.path = dir:{tmp_path}" in lines
    assert "lxc.net.0.type = empty" in lines
    assert "lxc.mount.auto = proc:mixed sys:ro" in lines
    assert "lxc.cap.keep = " + " ".join(caps.DEFAULT_CAPS) in lines
    assert not any(line.startswith(("lxc.cap.drop", "lxc.seccomp", "lxc.no_new_privs")) for line in lines)
    assert "lxc.mount.entry = /host\\040dir ctr none bind,rw 0 0" in lines  # pydock makes the target itself
    assert ["lxc.init.uid = 5", "lxc.init.gid = 6", "lxc.init.groups = 7,8", "lxc.init.cwd = /w"] == \
        [l for l in lines if l.startswith("lxc.init.")]
    assert lines[-2:] == ["lxc.environment = A=1", "lxc.environment = B=two words"]
    with pytest.raises(InvalidArgument):
        lxcconf.render(lxcconf.LxcSpec(hostname="h", rootfs=tmp_path, env=("A=1\nlxc.cap.drop=",)))


def test_cgroup_keys_follow_the_hierarchy(monkeypatch):
    monkeypatch.setattr(cgroups, "hierarchy", lambda: cgroups.Hierarchy.V2)
    assert cgroups.limit_keys(1 << 20, 1024) == [("lxc.cgroup2.memory.max", str(1 << 20)),
                                                 ("lxc.cgroup2.cpu.weight", "39")]
    assert cgroups.device_keys()[0] == ("lxc.cgroup2.devices.deny", "a")
    monkeypatch.setattr(cgroups, "hierarchy", lambda: cgroups.Hierarchy.V1)
    assert ("lxc.cgroup.cpu.shares", "1024") in cgroups.limit_keys(None, 1024)
    assert ("lxc.cgroup.devices.allow", "c 1:3 rwm") in cgroups.device_keys()
    allowed = [v for k, v in cgroups.device_keys() if k.endswith("allow")]
    assert not {"c 5:1 rwm", "c 4:0 rwm", "c 4:1 rwm"} & set(allowed)  # the host's console and ttys
    assert cgroups.shares_to_weight(2) == 1 and cgroups.shares_to_weight(262144) == 10000


def test_this_hosts_hierarchy_is_detected():
    unified = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    assert (cgroups.hierarchy() is cgroups.Hierarchy.V2) == unified


def test_option_parsing():
    assert parse_memory("512k") == 512 * 1024 and parse_memory("1g") == 1 << 30 and parse_memory(None) is None
    with pytest.raises(InvalidArgument, match="Minimum memory limit allowed is 512k"):
        parse_memory("511k")
    with pytest.raises(InvalidArgument):
        parse_memory("lots")
    assert parse_volume("/data").source is None
    v = parse_volume("/h/./x:/c/:ro")
    assert (v.source, v.target, v.readonly) == ("/h/x", "/c", True)
    assert parse_volume("cache:/c:ro") == Volume("/c", None, True, "cache")  # a name, not a path: a named volume
    for bad in ("/:/c", "./rel:/c", "rel/x:/c", "x:/c", "/h:rel", "/h:/c:rx", "a:b:c:d"):
        with pytest.raises(InvalidArgument):
            parse_volume(bad)
    assert split_hostname("web.example.com") == ("web", "example.com")
    with pytest.raises(InvalidArgument):
        split_hostname("bad host")
    assert parse_env(["A=1", "COPIED", "MISSING"], {"COPIED": "yes"}) == ["A=1", "COPIED=yes"]
    with pytest.raises(InvalidArgument):
        parse_env(["=x"])
    assert merge_env(["A=1", "B=2"], ["A=3"]) == ["A=3", "B=2"]
    # an API body's bare K (the CLI resolves its own first): kept in the configuration, unsets K at run
    assert parse_env(["A=1", "UNSET"]) == ["A=1", "UNSET"]
    assert merge_env(["A=1", "B=2"], ["B"], keep_unset=True) == ["A=1", "B"]
    assert merge_env(["HOME=/", "B=2"], ["A=1", "B", "HOME"]) == ["A=1"]


def test_state_roundtrip_and_process_identity():
    now = utcnow()
    assert parse_time(format_time(now)) == now and parse_time(format_time(None)) is None
    s = State().started(pid=os.getpid(), pid_start=proc_start_time(os.getpid()), monitor_pid=1, monitor_start=2)
    assert State.from_json(s.to_json()) == s
    assert same_process(os.getpid(), proc_start_time(os.getpid()))
    assert not same_process(os.getpid(), 1)
    assert State.from_json(s.stopped(3).to_json()).exit_code == 3


def test_dockerinit_helper_usage_and_isolation(tmp_path):
    from pydock.utils.mounttable import mountinfo

    p = subprocess.run([sys.executable, "-m", "pydock.dockerinit"], capture_output=True)
    assert p.returncode == 1 and b"You should not invoke dockerinit manually" in p.stderr
    p = subprocess.run([sys.executable, "-m", "pydock.dockerinit", "--version"], capture_output=True)
    assert p.returncode == 0 and p.stdout.startswith(b"pydock dockerinit ")
    target = tmp_path / "mnt"
    target.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mount isolation needs root")
    p = subprocess.run([sys.executable, "-m", "pydock.dockerinit", "--", "sh", "-c",
                        f"mount -t tmpfs none {target} && grep -c {target} /proc/self/mountinfo"],
                       capture_output=True)
    assert p.returncode == 0 and p.stdout.strip() == b"1"
    assert not any(e.mountpoint == str(target) for e in mountinfo())
    p = subprocess.run([sys.executable, "-m", "pydock.dockerinit", "--", "/no/such/binary"], capture_output=True)
    assert p.returncode == 127


def test_json_log_lines_and_floods(tmp_path):
    from pydock.runtime import jsonlog

    log = jsonlog.JsonLog(tmp_path / "x-json.log")
    log.feed("stdout", b"a\nb")
    log.feed("stderr", b"e\n")
    log.feed("stdout", b"c\n" + b"z" * jsonlog.MAX_LINE)
    log.close()
    with jsonlog.LogReader(tmp_path / "x-json.log") as reader:
        records = [(r.stream, r.log) for r in reader.read()]
    assert records[:3] == [("stdout", "a\n"), ("stderr", "e\n"), ("stdout", "bc\n")]
    assert records[3] == ("stdout", "z" * jsonlog.MAX_LINE) and len(records) == 4


def test_log_reader_reads_whole_lines_only_and_outlives_a_removed_log(tmp_path):
    from pydock.runtime import jsonlog

    path = tmp_path / "x-json.log"
    jsonlog.create_log(path)
    reader = jsonlog.LogReader(path)  # opened before anything is written, as an attach before a start
    with open(path, "ab", buffering=0) as f:
        f.write(b'{"log": "first\\n", "stream": "stdout", "time": "2026-01-02T03:04:05.000000000Z"}\n')
        assert [(r.log, r.time.year) for r in reader.read()] == [("first\n", 2026)]
        f.write(b'{"log": "half')  # a line still being written is not a record yet
        assert reader.read() == []
        f.write(b'way\\n", "stream": "stderr"}\nnot json\n')
        assert [(r.stream, r.log, r.time) for r in reader.read()] == [("stderr", "halfway\n", None)]
    log = jsonlog.JsonLog(path)
    log.feed("stdout", b"last\n")
    log.close()
    path.unlink()  # an auto-remove deleted the container: the open reader still gets the tail
    assert [r.log for r in reader.read()] == ["last\n"]
    reader.close()


def test_missing_interpreter_or_loader_is_127_before_launch(rootfs):
    import shutil as _shutil

    script = rootfs / "bin" / "script"
    script.write_text("#!/usr/bin/python9 -u\nprint(1)\n")
    script.chmod(0o755)
    with pytest.raises(CommandNotFound, match="interpreter /usr/bin/python9 is missing"):
        look_path(rootfs, "script", "/bin")
    (rootfs / "usr" / "bin" / "python9").write_text("")
    assert look_path(rootfs, "script", "/bin") == "/bin/script"
    dynamic = rootfs / "bin" / "dyn"
    _shutil.copy2("/bin/ls", dynamic)  # a dynamically linked host binary: its loader is not in this rootfs
    with pytest.raises(CommandNotFound, match="interpreter /lib"):
        look_path(rootfs, "dyn", "/bin")
    static = rootfs / "bin" / "static"
    _shutil.copy2(_shutil.which("busybox"), static)  # busybox-static has no PT_INTERP
    assert look_path(rootfs, "static", "/bin") == "/bin/static"


def test_signal_names_as_docker_takes_them():
    from pydock.utils.signals import parse_signal

    assert [parse_signal(s) for s in ("KILL", "SIGKILL", "9", "term", 15)] == [9, 9, 9, 15, 15]
    assert parse_signal("SIGRTMIN+3") == signal.SIGRTMIN + 3 and parse_signal("RTMAX-1") == signal.SIGRTMAX - 1
    for bad in ("0", "65", "SIGRTMAX+1", "NOPE", "", "SIG_DFL", "-1", 0):
        with pytest.raises(InvalidArgument, match="Invalid signal"):
            parse_signal(bad)


def test_waiting_for_the_command_follows_the_clone_until_it_execs():
    """lxc-start's clone runs lxc's set-up until it execs the command; kill, pause and `--net
    container:` wait for that exec. A stand-in parent forks a child that execs `sleep` 0.3 s later."""
    from pydock.runtime.launcher import wait_for_command

    script = ("import os, time\npid = os.fork()\nif pid == 0:\n    time.sleep(0.3)\n"
              "    os.execvp('sleep', ['sleep', '30'])\nos.waitpid(pid, 0)\n")
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        start = proc_start_time(parent.pid)
        time.sleep(0.05)
        assert wait_for_command(parent.pid, start, 0.05) is None  # still the clone: the time runs out
        begun = time.monotonic()
        command = wait_for_command(parent.pid, start, 10)
        assert command is not None and os.path.basename(os.readlink(f"/proc/{command}/exe")) == "sleep"
        assert time.monotonic() - begun < 2
        assert wait_for_command(parent.pid, start, 0) == command
        os.kill(command, signal.SIGKILL)
    finally:
        parent.kill()
        parent.wait()
    begun = time.monotonic()
    assert wait_for_command(parent.pid, start, 10) is None  # the parent ended: no wait at all
    assert time.monotonic() - begun < 1
