"""`--read-only` and `--tmpfs`: a read-only root with volumes and tmpfs mounts still writable, tmpfs
options as Docker gives them (rw,noexec,nosuid,nodev unless asked otherwise), bad options refused."""

from __future__ import annotations

import time

import pytest
from root_helpers import comm

from pydock.runtime.cgroups import Hierarchy, controller_available, hierarchy, process_cgroups, read_text
from pydock.runtime.launcher import container_init
from pydock.utils.errors import InvalidArgument, LaunchError

pytestmark = pytest.mark.lxc


def test_a_read_only_root_with_tmpfs_and_volumes(rt):
    result = rt.run("busybox", ["sh", "-c", "touch /x 2>/dev/null && echo root-rw; touch /run/a /data/b && echo ok; "
                                            "grep -E ' /run | /scratch ' /proc/mounts | cut -d' ' -f2,4"],
                    remove=True, read_only=True, tmpfs=("/run:size=1m", "/scratch:exec,mode=1777"),
                    volumes=("/data",))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "ok"
    mounts = dict(line.split(" ", 1) for line in lines[1:])
    assert set(mounts["/run"].split(",")) >= {"rw", "noexec", "nosuid", "nodev", "size=1024k"}
    assert "noexec" not in mounts["/scratch"].split(",") and "nosuid" in mounts["/scratch"].split(",")
    assert rt.run("busybox", ["touch", "/x"], remove=True).exit_code == 0  # without it: writable


@pytest.mark.parametrize("spec, message", [
    ("relative", "mount path must be absolute"),
    ("/", "can't be '/'"),
    ("/t:size=1;reboot", "invalid tmpfs option 'size=1;reboot'"),
    ("/t:bind", "invalid tmpfs option 'bind'"),
])
def test_bad_tmpfs_specs_are_refused(rt, spec, message):
    with pytest.raises(InvalidArgument, match=message):
        rt.create("busybox", ["true"], tmpfs=(spec,))
    assert rt.containers(all=True) == []


def test_hosts_search_domains_groups_and_limits(rt):
    result = rt.run("busybox", ["sh", "-c", "grep db /etc/hosts; grep search /etc/resolv.conf; id -G; "
                                            "ulimit -n; ulimit -Hn"], remove=True,
                    extra_hosts=("db:10.1.2.3",), dns_search=("example.com", "corp"), group_add=("nogroup", "4242"),
                    ulimits=("nofile=100:200",))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.decode().splitlines() == ["10.1.2.3\tdb", "search example.com corp", "0 4242 65534",
                                                   "100", "200"]


@pytest.mark.parametrize("options, message", [
    ({"extra_hosts": ("nocolon",)}, "expected NAME:IP"),
    ({"extra_hosts": ("db:not-an-ip",)}, "invalid IP address in add-host"),
    ({"dns_search": ("bad domain",)}, "Invalid DNS search domain"),
    ({"ulimits": ("nofile=300:200",)}, "soft limit must be less than or equal to hard limit"),
    ({"ulimits": ("files=1",)}, "invalid ulimit argument"),
])
def test_bad_host_dns_and_limit_options_are_refused(rt, options, message):
    with pytest.raises(InvalidArgument, match=message):
        rt.create("busybox", ["true"], **options)
    assert rt.containers(all=True) == []


def test_a_group_the_image_lacks_fails_the_start(rt):
    c = rt.create("busybox", ["true"], group_add=("wheel",))
    with pytest.raises(LaunchError, match="Unable to find group wheel"):
        rt.start(c)
    assert rt.load(c.id).state.exit_code == 125 and not rt.load(c.id).state.running



def test_process_cpu_and_cpuset_limits(rt):
    forked = rt.run("busybox", ["sh", "-c", "for i in 1 2 3 4 5 6; do sleep 1 & done; wait"], remove=True,
                    pids_limit=4)
    assert b"can't fork" in forked.stderr
    if controller_available("cpuset"):
        pinned = rt.run("busybox", ["grep", "Cpus_allowed_list", "/proc/self/status"], remove=True, cpuset_cpus="0")
        assert pinned.stdout.split() == [b"Cpus_allowed_list:", b"0"]
        with pytest.raises(InvalidArgument, match="Requested CPUs are not available"):
            rt.create("busybox", ["true"], cpuset_cpus="64")
    else:  # UML's kernel: refused up front, not a failed start
        with pytest.raises(InvalidArgument, match="needs the cpuset cgroup controller"):
            rt.create("busybox", ["true"], cpuset_cpus="0")
    c = rt.create("busybox", ["sleep", "30"], cpus="0.5")
    rt.start(c)
    deadline = time.monotonic() + 30
    while (init := container_init(rt.load(c.id).state.pid)) is None or comm(init) != "sleep":
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    where = process_cgroups(init)
    if hierarchy() is Hierarchy.V2:
        assert read_text(f"{where['']}/cpu.max").strip() == "50000 100000"
    else:
        assert read_text(f"{where['cpu']}/cpu.cfs_quota_us").strip() == "50000"
    rt.kill(c)
    with pytest.raises(InvalidArgument, match="Range of CPUs is from 0.01"):
        rt.create("busybox", ["true"], cpus="1000")


def test_lxc_conf_lines_reach_lxc_and_bad_ones_are_refused(rt):
    result = rt.run("busybox", ["sh", "-c", "echo $FROM_LXC; ulimit -u"], remove=True,
                    lxc_conf=("lxc.environment=FROM_LXC=yes", "lxc.prlimit.nproc = 77"))
    assert result.stdout == b"yes\n77\n"
    for bad in ("bogus=1", "lxc.environment", "lxc.bad key=1"):
        with pytest.raises(InvalidArgument, match="Invalid --lxc-conf"):
            rt.create("busybox", ["true"], lxc_conf=(bad,))
    assert rt.containers(all=True) == []
