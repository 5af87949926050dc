"""The pure parts of confinement: Docker profiles translated to lxc's seccomp text, the status lxc
logs for PID 1, the static-binary check for --init. No containers here."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from pydock.runtime import caps, confinement, initbin, seccomp
from pydock.runtime.launcher import command_status, exit_status
from pydock.utils.errors import InvalidArgument


def test_default_profile_on_amd64_matches_dockers_decisions():
    text = seccomp.to_lxc(seccomp.default_profile(), caps.DEFAULT_CAPS, arch="amd64", kernel=(6, 1))
    lines = text.splitlines()
    assert lines[:2] == ["2", "allowlist errno 1"]
    rules = set(lines[2:])
    assert {"read allow", "execve allow", "arch_prctl allow", "modify_ldt allow", "chroot allow",
            "ptrace allow", "clone3 errno 38"} <= rules
    # Docker's own decisions without CAP_SYS_ADMIN: clone only without namespace flags (datum 0, mask)
    assert "clone allow [0,0,SCMP_CMP_MASKED_EQ,2114060288]" in rules
    assert "socket allow [0,40,SCMP_CMP_NE]" in rules  # no AF_VSOCK
    names = {line.split()[0] for line in rules}
    for refused in ("keyctl", "add_key", "unshare", "mount", "open_by_handle_at", "bpf", "io_uring_setup",
                    "perf_event_open", "kexec_load", "init_module", "reboot", "cacheflush"):
        assert refused not in names, refused
    # an old kernel loses what needs 4.8 (ptrace, process_vm_*) unless CAP_SYS_PTRACE is held
    old = seccomp.to_lxc(seccomp.default_profile(), caps.DEFAULT_CAPS, arch="amd64", kernel=(4, 4))
    assert "ptrace allow" not in old.splitlines()
    with_admin = seccomp.to_lxc(seccomp.default_profile(), [*caps.DEFAULT_CAPS, "sys_admin"], arch="amd64")
    assert "mount allow" in with_admin.splitlines() and "clone3 errno 38" not in with_admin.splitlines()


def test_conditions_and_actions_translate_like_runc():
    profile = seccomp.check_profile({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},  # the default action again: dropped
            {"name": "personality", "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_KILL",
             "args": [{"index": 0, "value": 255, "valueTwo": 7, "op": "SCMP_CMP_MASKED_EQ"},
                      {"index": 1, "value": 9, "op": "SCMP_CMP_GT"}]},
        ]})
    assert seccomp.to_lxc(profile, ()).splitlines() == [
        "2", "allowlist allow",
        "personality errno 22 [0,1,SCMP_CMP_EQ]", "personality errno 22 [0,2,SCMP_CMP_EQ]",  # same index: OR
        "kill kill [0,7,SCMP_CMP_MASKED_EQ,255][1,9,SCMP_CMP_GT]",  # different indexes: AND
    ]


@pytest.mark.parametrize("profile, named", [
    ([], "JSON object"), ({"defaultAction": "SCMP_ACT_LOG"}, "SCMP_ACT_LOG"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x"}, "listenerPath"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x\nlxc.x"], "action": "SCMP_ACT_ALLOW"}]},
     "not a syscall name"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]},
     "index 6"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "includes": {"minKernel": "new"}}]}, "minKernel"),
])
def test_bad_profiles_are_refused_with_125(profile, named):
    with pytest.raises(InvalidArgument) as info:
        seccomp.check_profile(profile, "(t)")
    assert named in str(info.value) and info.value.exit_code == 125


def test_security_options_parse_like_docker(tmp_path: Path):
    assert confinement.parse([]) == confinement.Confinement(False, seccomp.default_profile())
    assert confinement.parse(["seccomp=unconfined", "no-new-privileges"]) == confinement.Confinement(True, None)
    assert confinement.parse(["seccomp:unconfined", "no-new-privileges:false"]).seccomp_profile is None
    profile_file = tmp_path / "p.json"
    profile_file.write_text('{\n  "defaultAction": "SCMP_ACT_ALLOW"\n}\n')
    sent = confinement.read_profile_files([f"seccomp={profile_file}", "no-new-privileges"])
    assert sent == ['seccomp={"defaultAction":"SCMP_ACT_ALLOW"}', "no-new-privileges"]
    assert confinement.parse(sent).seccomp_profile == {"defaultAction": "SCMP_ACT_ALLOW"}


def test_the_commands_status_is_read_from_lxcs_log(tmp_path: Path):
    log = tmp_path / "lxc.log"
    assert command_status(log) == 0  # no log at all
    prefix = "lxc-start c 20261201 INFO     error - ../src/lxc/error.c:lxc_error_set_and_log:34 - "
    for line, code in [("Child <5> ended on error (3)", 3), ("Child <5> ended on signal Bad system call(31)", 159),
                       ("Child <5> ended on signal SIGTERM(15)", 143)]:
        log.write_text(f"{prefix}Exec'ing x\n{prefix}{line}\n")
        assert command_status(log) == code
        assert exit_status(0, log, killed_by_pydock=False) == (code, None)
        assert exit_status(0, log, killed_by_pydock=True) == (137, None)
    log.write_text(f"{prefix}Exec'ing x\n")  # lxc logs nothing for a status of 0
    assert exit_status(0, log, False) == (0, None)
    log.write_text("lxc-start c 20261201 ERROR    start - ../src/lxc/start.c:start:2197 - No such file - Failed to exec\n")
    assert exit_status(1, log, False) == (125, "Failed to exec")
    assert exit_status(-9, log, False) == (137, None)


def test_init_must_be_a_static_executable():
    assert initbin.is_static_elf(Path(shutil.which("busybox")).read_bytes()) is True  # busybox-static
    assert initbin.is_static_elf(Path(sys.executable).resolve().read_bytes()[:1 << 16]) is False
    assert initbin.is_static_elf(b"#!/bin/sh\n") is False
