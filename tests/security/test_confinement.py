"""Docker's default confinement, seen from inside real containers: exactly Docker's capabilities, the
Shocker escape refused, Docker's seccomp profile (and `--security-opt`), no_new_privs, the device
cgroup without the host's console and ttys, and a pty as /dev/console.

The `dm` variants run on devicemapper inside User-Mode Linux (cgroup v2 there, v1 on this host)."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from confine_helper import build_probe
from pydock.runtime import caps
from pydock.runtime.options import CreateOptions
from pydock.utils.errors import InvalidArgument

pytestmark = pytest.mark.lxc
TIERS = ["host", pytest.param("dm", marks=pytest.mark.dm)]
DOCKER_CAPS = 0xA80425FB  # docker run --rm busybox grep Cap /proc/self/status


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_probe(tmp_path_factory.mktemp("probe"))


def sh(rt, script: str, **options) -> str:
    result = rt.run("busybox", ["sh", "-c", script], **options)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.stdout.decode()


def status(rt, **options) -> dict[str, str]:
    out = sh(rt, "cat /proc/self/status", **options)
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def probe_in(rt, probe: Path, *args: str, **options) -> str:
    """Run the probe inside a container (its directory mounted read-only at /probe; through sh, since
    pydock looks the command up in the image before volumes are mounted)."""
    result = rt.run("busybox", ["sh", "-c", '/probe/probe "$@"', "sh", *args],
                    volumes=[f"{probe.parent}:/probe:ro"], **options)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.stdout.decode().strip()


@pytest.mark.parametrize("tier", TIERS)
def test_capability_sets_are_exactly_dockers_default(pydock_runtime, tier):
    st = status(pydock_runtime)
    assert caps.DEFAULT_MASK == DOCKER_CAPS
    got = {k: int(st[k], 16) for k in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb")}
    # inheritable stays empty as in Docker since CVE-2022-24769
    assert got == {"CapEff": DOCKER_CAPS, "CapPrm": DOCKER_CAPS, "CapBnd": DOCKER_CAPS, "CapInh": 0, "CapAmb": 0}
    nobody = status(pydock_runtime, user="nobody")
    assert {k: int(nobody[k], 16) for k in ("CapEff", "CapPrm", "CapBnd")} == \
        {"CapEff": 0, "CapPrm": 0, "CapBnd": DOCKER_CAPS}


@pytest.mark.parametrize("tier", TIERS)
def test_open_by_handle_at_is_refused_even_without_seccomp(pydock_runtime, probe, tier):
    # the probe works: root on the host reopens a file by its handle
    host = subprocess.run([str(probe), "handle", str(probe)], capture_output=True, text=True)
    assert host.stdout.strip() == "ok", host.stdout
    eperm = f"errno={errno.EPERM}"
    # /etc/hosts is a bind mount of a host file: the Shocker escape's starting point
    assert probe_in(pydock_runtime, probe, "handle", "/etc/hosts") == eperm
    # no CAP_DAC_READ_SEARCH: refused by the kernel, not only by the seccomp filter
    assert probe_in(pydock_runtime, probe, "handle", "/etc/hosts", security_opt=("seccomp=unconfined",)) == eperm


@pytest.mark.parametrize("tier", TIERS)
def test_default_seccomp_profile_blocks_what_dockers_blocks(pydock_runtime, probe, tier):
    eperm = f"errno={errno.EPERM}"
    for what in ("keyctl", "add_key", "unshare-user"):
        assert probe_in(pydock_runtime, probe, what) == eperm, what
    assert status(pydock_runtime)["Seccomp"] == "2"
    unconfined = ("seccomp=unconfined",)
    assert status(pydock_runtime, security_opt=unconfined)["Seccomp"] == "0"
    for what in ("keyctl", "add_key", "unshare-user"):
        assert probe_in(pydock_runtime, probe, what, security_opt=unconfined) == "ok", what


def test_a_profile_in_dockers_format(pydock_runtime, probe):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES}]}
    opts = (f"seccomp={json.dumps(profile)}",)
    assert probe_in(pydock_runtime, probe, "mkdir", "/tmp/x", security_opt=opts) == f"errno={errno.EACCES}"
    assert probe_in(pydock_runtime, probe, "keyctl", security_opt=opts) == "ok"  # Docker's default would refuse


def test_a_signal_death_of_pid_1_is_128_plus_n(pydock_runtime):
    # SCMP_ACT_KILL ends the command (PID 1) with SIGSYS: the status lxc reaped is reported exactly
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]}
    result = pydock_runtime.run("busybox", ["mkdir", "/tmp/x"], security_opt=(f"seccomp={json.dumps(profile)}",))
    assert result.exit_code == 128 + 31


def test_no_new_privileges_only_when_asked(pydock_runtime):
    assert status(pydock_runtime)["NoNewPrivs"] == "0"
    assert status(pydock_runtime, security_opt=("no-new-privileges",))["NoNewPrivs"] == "1"
    assert status(pydock_runtime, security_opt=("no-new-privileges:true",))["NoNewPrivs"] == "1"
    assert status(pydock_runtime, security_opt=("no-new-privileges=false",))["NoNewPrivs"] == "0"


@pytest.mark.parametrize("value, named", [
    ("apparmor=unconfined", "apparmor=unconfined"), ("label=disable", "label=disable"), ("seccomp", "seccomp"),
    ("no-new-privileges:maybe", "no-new-privileges:maybe"), ("seccomp={not json", "not valid JSON"),
    ('seccomp={"defaultAction": "SCMP_ACT_LOG"}', "SCMP_ACT_LOG"),
    ('seccomp={"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a b"], "action": "SCMP_ACT_ALLOW"}]}',
     "'a b' is not a syscall name"),
])
def test_what_pydock_cant_honour_is_refused_before_anything_is_made(pydock_runtime, value, named):
    with pytest.raises(InvalidArgument) as info:
        pydock_runtime.create(CreateOptions.of("busybox", ["true"], security_opt=(value,)))
    assert named in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 125
    assert pydock_runtime.containers(all=True) == []


def test_cli_reads_the_profile_file_and_refuses_with_125(tmp_path):
    def pydock(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pydock.cli.main", "-g", str(tmp_path / "root"), "-s", "vfs",
                               "run", "--rm", *args, "busybox", "true"], capture_output=True, text=True, timeout=60)

    p = pydock("--security-opt", "apparmor=unconfined")
    assert p.returncode == 125 and p.stderr.count("\n") == 1 and "apparmor=unconfined" in p.stderr
    p = pydock("--security-opt", f"seccomp={tmp_path / 'missing.json'}")
    assert p.returncode == 125 and "missing.json" in p.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_TRACE"}')
    p = pydock("--security-opt", f"seccomp={bad}")
    assert p.returncode == 125 and "SCMP_ACT_TRACE" in p.stderr and str(bad) in p.stderr


@pytest.mark.parametrize("tier", TIERS)
def test_host_console_and_tty_nodes_from_an_image_cannot_be_opened(pydock_runtime, tier):
    # mknod is one of Docker's capabilities: a container can make any node and commit it to an image
    c = pydock_runtime.create("busybox", ["sh", "-c", "mkdir /nodes && mknod /nodes/console c 5 1 &&"
                              " mknod /nodes/tty0 c 4 0 && mknod /nodes/tty1 c 4 1 && mknod /nodes/null c 1 3"])
    pydock_runtime.start(c)
    assert pydock_runtime.wait(c, timeout=30) == 0
    image = pydock_runtime.commit(c, "nodes")
    try:
        result = pydock_runtime.run(image.id, ["sh", "-c", "for n in console tty0 tty1 null; do"
                                    " echo x 2>/dev/null > /nodes/$n && echo $n-opened || echo $n-refused; done"],
                                    remove=True)
    finally:
        pydock_runtime.images.graph.delete(image.id)  # before its parent, which the fixture deletes
    assert result.stdout.decode().split() == ["console-refused", "tty0-refused", "tty1-refused", "null-opened"]


@pytest.mark.parametrize("tier", TIERS)
def test_dev_console_is_a_pty_and_its_output_is_logged(pydock_runtime, tier):
    out = sh(pydock_runtime, "stat -c '%F %t' /dev/console; echo via-console > /dev/console")
    assert out.splitlines() == ["character special file 88", "via-console"]  # major 0x88 = 136: a pty
    # with -t, /dev/console is the container's terminal
    result = pydock_runtime.run("busybox", ["sh", "-c", "[ /dev/console -ef /proc/self/fd/0 ] && echo same"], tty=True)
    assert result.stdout.replace(b"\r\n", b"\n") == b"same\n"
