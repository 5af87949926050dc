"""Seccomp profiles in Docker's JSON format, and their translation into lxc's seccomp v2 policy text.

`default_profile()` is Docker's default profile (moby `profiles/seccomp/default.json`, as of Docker
25: an allowlist answering EPERM, io_uring not allowed), rewritten here as data. `load_profile`
checks a user's profile (`--security-opt seccomp=PROFILE.json`) and `to_lxc` resolves a profile for
this machine as Docker does (includes/excludes by architecture, capabilities, kernel version) and
renders the policy lxc loads before it execs the command (`lxc.seccomp.profile`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from typing import Any

from pydock.utils.errors import InvalidArgument

EPERM = 1
ENOSYS = 38

#: Docker's actions -> lxc's words; KILL_PROCESS, TRACE, LOG and NOTIFY have no lxc equivalent
_ACTIONS = {"SCMP_ACT_ALLOW": "allow", "SCMP_ACT_ERRNO": "errno", "SCMP_ACT_KILL": "kill",
            "SCMP_ACT_KILL_THREAD": "kill", "SCMP_ACT_TRAP": "trap"}
_OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ")
#: uname machine -> Docker's (Go's) architecture names used in includes/excludes.arches
_DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
                "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
                "mips64": "mips64", "loongarch64": "loong64"}
_NAME_RE = re.compile(r"^[a-z0-9_]{1,64}$")
MAX_PROFILE_BYTES = 1 << 20

# Allowed for every container (Docker's first, unconditional rule).
_ALLOWED = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3
epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old
eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate
fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync
fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync
ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups
getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt
get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init
inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listxattr
llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier
memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect
mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open
pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64
preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read
readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages
removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max
sched_get_priority_min sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64
sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select semctl
semget semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid
setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr shmat
shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall
socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs
sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime
utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
"""

#: the namespace flags of clone(2) (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET):
#: without CAP_SYS_ADMIN, clone is allowed only with none of them set
_CLONE_NS_FLAGS = 0x7E020000


def _rule(names: str, action: str = "SCMP_ACT_ALLOW", **extra: Any) -> dict[str, Any]:
    return {"names": names.split(), "action": action, **extra}


def _caps(*names: str) -> dict[str, list[str]]:
    return {"caps": list(names)}


def default_profile() -> dict[str, Any]:
    """Docker's default seccomp profile, in Docker's JSON structure."""
    personality = [_rule("personality", args=[{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}])
                   for v in (0x0, 0x8, 0x20000, 0x20008, 0xffffffff)]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "syscalls": [
            _rule(_ALLOWED),
            _rule("process_vm_readv process_vm_writev ptrace", includes={"minKernel": "4.8"}),
            _rule("socket", args=[{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]),  # no AF_VSOCK
            *personality,
            _rule("sync_file_range2 swapcontext", includes={"arches": ["ppc64le"]}),
            _rule("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
                  includes={"arches": ["arm", "arm64"]}),
            _rule("arch_prctl", includes={"arches": ["amd64", "x32"]}),
            _rule("modify_ldt", includes={"arches": ["amd64", "x32", "x86"]}),
            _rule("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
                  includes={"arches": ["s390", "s390x"]}),
            _rule("riscv_flush_icache", includes={"arches": ["riscv64"]}),
            _rule("open_by_handle_at", includes=_caps("CAP_DAC_READ_SEARCH")),
            _rule("bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount "
                  "mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname "
                  "sethostname setns syslog umount umount2 unshare", includes=_caps("CAP_SYS_ADMIN")),
            _rule("clone", args=[{"index": 0, "value": _CLONE_NS_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}],
                  excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}),
            _rule("clone", args=[{"index": 1, "value": _CLONE_NS_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}],
                  includes={"arches": ["s390", "s390x"]}, excludes=_caps("CAP_SYS_ADMIN")),
            # glibc falls back to clone when clone3 says ENOSYS (its flags can't be filtered)
            _rule("clone3", "SCMP_ACT_ERRNO", errnoRet=ENOSYS, excludes=_caps("CAP_SYS_ADMIN")),
            _rule("reboot", includes=_caps("CAP_SYS_BOOT")),
            _rule("chroot", includes=_caps("CAP_SYS_CHROOT")),
            _rule("delete_module init_module finit_module", includes=_caps("CAP_SYS_MODULE")),
            _rule("acct", includes=_caps("CAP_SYS_PACCT")),
            _rule("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
                  includes=_caps("CAP_SYS_PTRACE")),
            _rule("iopl ioperm", includes=_caps("CAP_SYS_RAWIO")),
            _rule("settimeofday stime clock_settime clock_settime64", includes=_caps("CAP_SYS_TIME")),
            _rule("vhangup", includes=_caps("CAP_SYS_TTY_CONFIG")),
            _rule("get_mempolicy mbind set_mempolicy set_mempolicy_home_node", includes=_caps("CAP_SYS_NICE")),
            _rule("syslog", includes=_caps("CAP_SYSLOG")),
            _rule("bpf", includes=_caps("CAP_BPF")),
            _rule("perf_event_open", includes=_caps("CAP_PERFMON")),
        ],
    }


def refused(message: str) -> InvalidArgument:
    """A security option pydock can't honour: bad input (HTTP 400) that `run`/`create` report with
    exit status 125, as Docker reports what its daemon refuses."""
    err = InvalidArgument(message)
    err.exit_code = 125
    return err


def _fail(origin: str, detail: str) -> InvalidArgument:
    return refused(f"Invalid seccomp profile {origin}: {detail}")


def _check_filter(where: str, value: Any, origin: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise _fail(origin, f"{where} must be an object")
    for key, item in value.items():
        if key in ("arches", "caps"):
            if not isinstance(item, list) or not all(isinstance(x, str) for x in item):
                raise _fail(origin, f"{where}.{key} must be a list of strings")
        elif key == "minKernel":
            if not isinstance(item, str) or not re.fullmatch(r"\d+(\.\d+)*", item):
                raise _fail(origin, f"{where}.minKernel must look like \"4.8\", not {item!r}")
        else:
            raise _fail(origin, f"unknown field {where}.{key}")


def _check_errno(value: Any, where: str, origin: str) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 4095):
        raise _fail(origin, f"{where} must be an errno number (0-4095), not {value!r}")


def _check_action(value: Any, where: str, origin: str) -> None:
    if value not in _ACTIONS:
        raise _fail(origin, f"{where} {value!r} is not supported (use one of {', '.join(sorted(_ACTIONS))})")


def check_profile(profile: Any, origin: str = "") -> dict[str, Any]:
    """Check a profile in Docker's JSON structure; InvalidArgument naming what is wrong or unsupported."""
    if not isinstance(profile, dict):
        raise _fail(origin, "it must be a JSON object")
    for key in ("listenerPath", "listenerMetadata", "flags"):
        if profile.get(key):
            raise _fail(origin, f"{key} is not supported")
    known = {"defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls", "listenerPath",
             "listenerMetadata", "flags"}
    unknown = sorted(set(profile) - known)
    if unknown:
        raise _fail(origin, f"unknown field {unknown[0]}")
    _check_action(profile.get("defaultAction"), "defaultAction", origin)
    _check_errno(profile.get("defaultErrnoRet"), "defaultErrnoRet", origin)
    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise _fail(origin, "syscalls must be a list")
    for i, rule in enumerate(syscalls):
        where = f"syscalls[{i}]"
        if not isinstance(rule, dict):
            raise _fail(origin, f"{where} must be an object")
        unknown = sorted(set(rule) - {"name", "names", "action", "errnoRet", "args", "comment", "includes",
                                      "excludes"})
        if unknown:
            raise _fail(origin, f"unknown field {where}.{unknown[0]}")
        names = list(rule.get("names") or []) + ([rule["name"]] if rule.get("name") else [])
        if not names:
            raise _fail(origin, f"{where} names no syscall")
        for name in names:
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise _fail(origin, f"{where}: {name!r} is not a syscall name")
        _check_action(rule.get("action"), f"{where}.action", origin)
        _check_errno(rule.get("errnoRet"), f"{where}.errnoRet", origin)
        args = rule.get("args") or []
        if not isinstance(args, list) or len(args) > 6:
            raise _fail(origin, f"{where}.args must be a list of at most 6 conditions")
        for arg in args:
            if not isinstance(arg, dict) or set(arg) - {"index", "value", "valueTwo", "op"}:
                raise _fail(origin, f"{where}.args: each condition has index, value, valueTwo and op")
            for field_name, top in (("index", 5), ("value", (1 << 64) - 1), ("valueTwo", (1 << 64) - 1)):
                v = arg.get(field_name, 0)
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= top:
                    raise _fail(origin, f"{where}.args: {field_name} {v!r} is out of range")
            if arg.get("op") not in _OPS:
                raise _fail(origin, f"{where}.args: op {arg.get('op')!r} is not one of {', '.join(_OPS)}")
        _check_filter(f"{where}.includes", rule.get("includes"), origin)
        _check_filter(f"{where}.excludes", rule.get("excludes"), origin)
    return profile


def load_profile(text: str | bytes, origin: str = "") -> dict[str, Any]:
    """Parse and check a Docker JSON profile."""
    if len(text) > MAX_PROFILE_BYTES:
        raise _fail(origin, f"it is larger than {MAX_PROFILE_BYTES} bytes")
    try:
        profile = json.loads(text)
    except ValueError as err:
        raise _fail(origin, f"not valid JSON ({err})") from None
    return check_profile(profile, origin)


def host_arch() -> str:
    """This machine's architecture in Docker's naming (amd64, arm64, ...)."""
    machine = os.uname().machine
    return _DOCKER_ARCH.get(machine, machine)


def kernel_version(release: str | None = None) -> tuple[int, ...]:
    """(major, minor) of the running kernel (`6.1.0-13-amd64` -> (6, 1)); (0, 0) if it does not begin so.
    Read without `re`: each run asks, in a fresh fork where a pattern would be compiled again."""
    major, dot, rest = (release if release is not None else os.uname().release).partition(".")
    minor = rest[:len(rest) - len(rest.lstrip("0123456789"))]
    if not (dot and minor and major.isascii() and major.isdigit()):
        return (0, 0)
    return (int(major), int(minor))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def _matches(flt: dict[str, Any] | None, arch: str, caps: set[str], kernel: tuple[int, ...], *, every: bool) -> bool:
    """Whether a machine matches an includes (every condition holds) / excludes (any condition holds)."""
    if not flt:
        return every
    tests = []
    if flt.get("arches"):
        tests.append(arch in flt["arches"])
    if flt.get("caps"):
        held = [c in caps for c in flt["caps"]]
        tests.append(all(held) if every else any(held))
    if flt.get("minKernel"):
        tests.append(kernel >= _version(flt["minKernel"]))
    return all(tests) if every else any(tests)


def _lxc_action(action: str, errno: int | None) -> str:
    word = _ACTIONS[action]
    return f"errno {errno if errno is not None else EPERM}" if word == "errno" else word


def _conditions(args: list[dict[str, Any]]) -> list[str]:
    """lxc's `[index,value,op(,mask)]` groups, one string per rule to add. Docker's MASKED_EQ means
    (arg & value) == valueTwo; lxc writes the datum first, then the mask. Like runc, conditions that
    repeat an argument index become separate rules (libseccomp can't AND two tests of one argument)."""
    def one(arg: dict[str, Any]) -> str:
        index, value, two, op = arg.get("index", 0), arg.get("value", 0), arg.get("valueTwo", 0), arg["op"]
        if op == "SCMP_CMP_MASKED_EQ":
            return f"[{index},{two},{op},{value}]"
        return f"[{index},{value},{op}]"

    if not args:
        return [""]
    indexes = [a.get("index", 0) for a in args]
    if len(set(indexes)) < len(indexes):
        return [" " + one(a) for a in args]
    return [" " + "".join(one(a) for a in args)]


def to_lxc(profile: dict[str, Any], caps: Iterable[str], *, arch: str | None = None,
           kernel: tuple[int, ...] | None = None) -> str:
    """lxc's seccomp v2 policy for `profile` on this machine, for a container holding `caps`
    (lower-case names, e.g. "sys_admin"). lxc adds the compat architectures (x86, x32 on amd64) itself."""
    arch = arch or host_arch()
    kernel = kernel or kernel_version()
    held = {"CAP_" + c.upper() for c in caps}
    default = _lxc_action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    lines = ["2", f"allowlist {default}"]
    for rule in profile.get("syscalls") or []:
        if not _matches(rule.get("includes"), arch, held, kernel, every=True):
            continue
        if rule.get("excludes") and _matches(rule.get("excludes"), arch, held, kernel, every=False):
            continue
        action = _lxc_action(rule["action"], rule.get("errnoRet"))
        if action == default:  # libseccomp refuses a rule that repeats the default action
            continue
        names = list(rule.get("names") or []) + ([rule["name"]] if rule.get("name") else [])
        for cond in _conditions(rule.get("args") or []):
            lines += [f"{name} {action}{cond}" for name in names]
    return "\n".join(lines) + "\n"
