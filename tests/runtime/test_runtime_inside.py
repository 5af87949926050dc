"""What the command sees inside: user, groups, workdir, env, hostname, hosts, volumes, read-only /proc/sys
and /sys, the device cgroup and memory limits (capabilities, seccomp and the process model: tests/security)."""

from __future__ import annotations

import pytest

from pydock.runtime import cgroups

pytestmark = pytest.mark.lxc


def sh(rt, script: str, **kw) -> str:
    result = rt.run("busybox", ["sh", "-c", script], **kw)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout.decode()


def test_user_by_name_uid_and_group(rt):
    assert sh(rt, "id", user="nobody").strip() == "uid=65534(nobody) gid=65534(nogroup)"
    assert sh(rt, "id -u; id -g", user="65534:0").split() == ["65534", "0"]
    assert sh(rt, "id -u").strip() == "0"


def test_supplementary_groups_come_from_the_containers_etc_group(rt):
    c = rt.create("busybox", ["sh", "-c", "echo 'staff:x:50:nobody' >> /etc/group"])
    rt.start(c)
    assert rt.wait(c, timeout=30) == 0
    image = rt.commit(c, "withgroup")
    out = rt.run(image.id, ["id", "-G"], user="nobody").stdout.split()
    assert out == [b"65534", b"50"]


def test_workdir_is_created_and_used(rt):
    assert sh(rt, "pwd", workdir="/srv/app/deep").strip() == "/srv/app/deep"
    assert sh(rt, "pwd").strip() == "/"


def test_environment_order_and_overrides(rt):
    out = sh(rt, "env", env=["FOO=bar", "HOME=/home/x", "SPACED=a b"], hostname="box.example")
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env["FOO"] == "bar" and env["HOME"] == "/home/x" and env["SPACED"] == "a b"
    assert env["container"] == "lxc" and env["HOSTNAME"] == "box"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_hostname_hosts_and_dockerenv(rt):
    out = sh(rt, "hostname; cat /etc/hostname; cat /etc/hosts; cat /.dockerenv", hostname="box.example",
             env=["X=1"])
    lines = out.splitlines()
    assert lines[0] == "box" and lines[1] == "box"
    assert any(line.startswith("127.0.0.1\tlocalhost") for line in lines)
    assert '"X=1"' in lines[-1]
    c = rt.create("busybox", ["hostname"])
    rt.start(c)
    rt.wait(c, timeout=30)
    assert [r.log for r in rt.logs(c)] == [c.id[:12] + "\n"]


def test_volumes_rw_ro_and_fresh(rt, tmp_path):
    rw = tmp_path / "rw"
    ro = tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "in.txt").write_text("from host\n")
    out = sh(rt, "echo written > /data/out.txt; cat /conf/in.txt; echo x > /conf/nope 2>/dev/null || echo ro-refused;"
                 " echo fresh > /scratch/f; cat /scratch/f",
             volumes=[f"{rw}:/data", f"{ro}:/conf:ro", "/scratch"])
    assert out.splitlines() == ["from host", "ro-refused", "fresh"]
    assert (rw / "out.txt").read_text() == "written\n"
    assert not (ro / "nope").exists()


def test_proc_sys_and_sys_are_read_only(rt):
    out = sh(rt, "echo 1 > /proc/sys/kernel/printk_ratelimit 2>/dev/null && echo sys-writable;"
                 " echo 1 > /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable;"
                 " touch /sys/x 2>/dev/null && echo sysfs-writable; grep -c . /proc/kcore 2>/dev/null; echo done")
    assert "writable" not in out
    assert out.strip().endswith("done")


def test_device_cgroup_denies_block_devices(rt):
    # a root process may make a node for a disk (mknod is Docker's), but the device cgroup allows
    # opening only the listed character devices
    out = sh(rt, "ls /dev; cat /dev/null && echo null-ok; mknod /tmp/disk b 8 0 && echo made;"
                 " head -c1 /tmp/disk >/dev/null 2>&1 || echo open-refused")
    assert "null-ok" in out and "made" in out and "open-refused" in out
    assert "sda" not in out.split()


def _host_cgroup_file(pid: int, v2: bool, filename: str) -> str:
    """Read a cgroup file of a host pid from the host's side (v2: unified line; v1: the controller's line)."""
    from pathlib import Path

    controller = filename.split(".")[0]
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _hid, ctrls, path = line.split(":", 2)
        if v2 and ctrls == "":
            return (Path("/sys/fs/cgroup") / path.lstrip("/") / filename).read_text().strip()
        if not v2 and controller in ctrls.split(","):
            return (Path("/sys/fs/cgroup") / ctrls / path.lstrip("/") / filename).read_text().strip()
    raise AssertionError(f"no {controller} cgroup for {pid}")


def test_memory_limit_and_cpu_shares_reach_the_cgroup(rt):
    from pydock.runtime.launcher import container_command

    if not cgroups.memory_limit_supported():
        pytest.skip("the memory cgroup controller is not available here")
    v2 = cgroups.hierarchy() is cgroups.Hierarchy.V2
    c = rt.create("busybox", ["sleep", "60"], memory="64m", cpu_shares=512)
    rt.start(c)
    try:
        pid = None
        for _ in range(200):
            pid = container_command(c.state.pid)
            if pid:
                break
            import time

            time.sleep(0.01)
        assert pid
        limit = _host_cgroup_file(pid, v2, "memory.max" if v2 else "memory.limit_in_bytes")
        assert int(limit) == 64 << 20
        if v2:
            assert int(_host_cgroup_file(pid, v2, "cpu.weight")) == cgroups.shares_to_weight(512)
        else:
            assert int(_host_cgroup_file(pid, v2, "cpu.shares")) == 512
    finally:
        rt.kill(c)
        rt.wait(c, timeout=10)


def test_memory_below_512k_is_refused(rt):
    from pydock.utils.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="Minimum memory limit allowed is 512k"):
        rt.create("busybox", ["true"], memory="100k")


def test_masked_and_read_only_proc_paths(rt):
    out = sh(rt, "ls /proc/acpi 2>/dev/null | wc -l; ls /sys/firmware 2>/dev/null | wc -l;"
                 " cat /proc/timer_list 2>/dev/null | wc -c;"
                 " echo 1 > /proc/irq/default_smp_affinity 2>/dev/null && echo irq-writable;"
                 " touch /proc/acpi/x 2>/dev/null && echo acpi-writable; echo done")
    lines = out.split()
    assert lines[:3] == ["0", "0", "0"]
    assert "irq-writable" not in out and "acpi-writable" not in out and lines[-1] == "done"
