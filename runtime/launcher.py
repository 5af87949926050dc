"""Launching a container with `lxc-start -F`, finding its processes, signalling them, and owning its exit status.

The command is the container's PID 1, as in Docker: lxc-start clones the container's init and that
child execs the command itself (an application container with no init in between), so
`/proc/1/exe` is the image's binary and `stop` signals the command directly. lxc-start exits 0
whatever the command's status; lxc logs the status it reaped (`Child <pid> ended on error (N)` /
`... on signal NAME(N)`, INFO) and pydock reads it from the launch's log. pydock makes that status
exact: 127/126 are decided before launch (rootpath.look_path), 125 when lxc itself failed (lxc-start
exits non-zero, its first ERROR line is the message), 137 whenever pydock delivered SIGKILL itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydock.dockerinit.preexec import child_setup, external_steps
from pydock.utils.errors import LaunchError
from pydock.runtime.state import EXIT_KILLED
from pydock.utils.process import proc_start_time

LXC_START = "lxc-start"
_NO_LXC_START = "lxc-start not found: install lxc"
EXIT_LAUNCH_FAILED = 125
#: 1: launch through the separately shipped dockerinit helper (located and identity-checked by
#: dockerinit.locate); 0: the in-process pre-exec step. Unset: the helper for packaged builds only.
HELPER_ENV = "PYDOCK_DOCKERINIT_EXEC"
#: where lxc's programs are looked up when pydock itself runs without a PATH
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class LaunchSpec:
    """One lxc-start invocation: container name, lxcpath, config file, log file, command."""

    name: str
    lxcpath: Path
    config: Path
    log: Path
    argv: tuple[str, ...]
    #: the dockerinit helper to exec lxc-start through, or None for the in-process pre-exec step
    helper: Path | None = None

    def command(self) -> list[str]:
        # -F: lxc-start stays in the foreground as the container's monitor (and our child);
        # INFO: the level of the line that carries the command's exit status
        lxc = [LXC_START, "-q", "-F", "-n", self.name, "-P", str(self.lxcpath), "-f", str(self.config),
               "-o", str(self.log), "-l", "INFO", "--", *self.argv]
        return [str(self.helper), "--", *lxc] if self.helper is not None else lxc


def host_path() -> str:
    """The PATH lxc-start and lxc-attach are found on, and run with: pydock's own, else SYSTEM_PATH."""
    return os.environ.get("PATH", SYSTEM_PATH)


def spawn(spec: LaunchSpec, *, stdin: Any = subprocess.DEVNULL, stdout: Any = None,
          stderr: Any = None) -> subprocess.Popen:
    """Start lxc-start through the dockerinit pre-exec step (own session, private rslave mounts, no fds):
    the helper, else its work done by programs on the way (preexec.external_steps), else in the child."""
    spec.lxcpath.mkdir(parents=True, exist_ok=True)
    spec.log.unlink(missing_ok=True)
    path = host_path()
    argv, setup, new_session = spec.command(), None, False  # the helper does all of it itself
    if spec.helper is None:
        if shutil.which(LXC_START, path=path) is None:  # it is exec'd by another program now, not by us
            raise LaunchError(_NO_LXC_START)
        prefix = external_steps(path)
        if prefix is None:
            setup = child_setup
        else:
            argv, new_session = [*prefix, *argv], True
    try:
        return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, close_fds=True,
                                start_new_session=new_session, preexec_fn=setup, env={"PATH": path})
    except FileNotFoundError:
        raise LaunchError(_NO_LXC_START) from None
    except (OSError, subprocess.SubprocessError) as err:
        raise LaunchError(f"Cannot start lxc-start: {err}") from None


def children(pid: int) -> list[int]:
    """Direct children of `pid` (/proc/<pid>/task/<pid>/children)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def container_init(lxc_pid: int) -> int | None:
    """Host pid of the container's PID 1: the child lxc-start cloned (lxc's setup code until it execs)."""
    kids = children(lxc_pid)
    return kids[0] if kids else None


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:  # either process is gone
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def container_command(lxc_pid: int) -> int | None:
    """Host pid of the container's PID 1 once it runs the container's program (it has exec'd and is no
    longer lxc-start's clone), else None."""
    init = container_init(lxc_pid)
    if init is None or _same_file(f"/proc/{init}/exe", f"/proc/{lxc_pid}/exe"):
        return None
    return init


#: how long a caller right after a start waits for the container's command to run (lxc's set-up)
START_WAIT = 2.0


def wait_for_command(lxc_pid: int, lxc_start: int | None, timeout: float = START_WAIT) -> int | None:
    """Host pid of the container's PID 1 once it runs the command, waiting up to `timeout` seconds
    for it right after a start; None if lxc-start (started at `lxc_start`) ended or time ran out. The
    exec has no notification: looks again after 1 ms, doubling up to 10 ms, so a caller right after a
    start waits little longer than the set-up itself."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not lxc_start or proc_start_time(lxc_pid) == lxc_start:
        target = container_command(lxc_pid)
        if target is not None or time.monotonic() >= deadline:
            return target
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
    return None


def container_processes(lxc_pid: int) -> list[int]:
    """Host pids of every process in the container: its PID 1 and all descendants."""
    init = container_init(lxc_pid)
    pids: list[int] = []
    todo = [init] if init else []
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children(pid))
    return pids


def stray_processes(name: str) -> list[int]:
    """Host pids of processes lxc left in container `name`'s cgroups (`lxc.payload.<name>`,
    `lxc.monitor.<name>`) with no lxc-start above them: e.g. a child orphaned mid-setup when
    lxc-start was killed. Scans /proc, so only crash recovery calls it."""
    marks = (f"/lxc.payload.{name}".encode(), f"/lxc.monitor.{name}".encode())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cgroup", "rb") as f:
                lines = f.read().splitlines()
        except OSError:
            continue  # exited meanwhile
        if any(line.rstrip(b"/").endswith(mark) or mark + b"/" in line for line in lines for mark in marks):
            found.append(int(entry))
    return found


def signal_container(lxc_pid: int, lxc_start: int, sig: int, *, wait_command: float = START_WAIT) -> bool:
    """Deliver `sig` to the container's PID 1, the command (or `--init`'s init, which passes it on).

    The kernel delivers a signal from outside the container to its PID 1 only if PID 1 handles it
    (SIGKILL always): a command with no SIGTERM handler ignores `stop`'s SIGTERM, as under Docker.
    Right after a start, waits up to `wait_command` for PID 1 to have exec'd the command: lxc-start
    hangs if its child dies during set-up, so a SIGKILL still due then goes to lxc-start itself
    (lxc gave its child PR_SET_PDEATHSIG, so both end). False if nothing was signalled.
    """
    deadline = time.monotonic() + wait_command
    while True:
        target = wait_for_command(lxc_pid, lxc_start, max(0.0, deadline - time.monotonic()))
        if target is not None:
            try:
                os.kill(target, sig)
                return True
            except ProcessLookupError:
                continue  # PID 1 just ended: look again
        if proc_start_time(lxc_pid) != lxc_start or sig != signal.SIGKILL:
            return False
        try:
            os.kill(lxc_pid, signal.SIGKILL)
            return True
        except ProcessLookupError:
            return False  # it ended meanwhile: nothing was signalled


def lxc_failure(log: Path) -> str | None:
    """lxc's own error (the first ERROR line of its log, tidied), or None when lxc did not fail."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return None
    errors = [line for line in text.splitlines() if " ERROR " in line]
    if not errors:
        return None
    first = errors[0]
    # "lxc-start <name> <time> ERROR    <cat> - <file>:<func>:<line> - <message>"
    message = first.rsplit(" - ", 1)[-1].strip()
    return message or first


#: lxc's record of the status it reaped from the container's PID 1 (src/lxc/error.c, level INFO); the
#: signal's name is strsignal()'s text ("Bad system call(31)") or SIGNAME, depending on the build;
#: compiled at import (~0.15 ms once): compiled on first use instead, every run paid it again (~0.5 ms) in
#: its fresh fork of the command server
_CHILD_STATUS = re.compile(rb"Child <\d+> ended on (?:error \((\d+)\)|signal [^(\n]*\((\d+)\))$", re.MULTILINE)


def command_status(log: Path) -> int:
    """The command's exit code as lxc logged it: N, 128+N for signal N, 0 when lxc logged none (lxc
    logs only non-zero statuses)."""
    try:
        text = log.read_bytes()
    except FileNotFoundError:
        return 0
    found = _CHILD_STATUS.findall(text)
    if not found:
        return 0
    code, signo = found[-1]
    return int(code) if code else 128 + int(signo)


def exit_status(returncode: int, log: Path, killed_by_pydock: bool) -> tuple[int, str | None]:
    """The container's exit code from lxc-start's status, lxc's log and whether pydock sent SIGKILL."""
    if killed_by_pydock:
        return EXIT_KILLED, None
    if returncode < 0:  # lxc-start itself died by a signal
        return 128 - returncode, None
    if returncode != 0:  # lxc-start failed: the container never ran its command
        return EXIT_LAUNCH_FAILED, lxc_failure(log) or f"lxc-start exited with status {returncode}"
    return command_status(log), None


def lxc_noise_prefix(name: str) -> bytes:
    """lxc also prints its errors on stderr, prefixed `lxc-start: <name>: `; they are not the command's output."""
    return f"lxc-start: {name}: ".encode()


def is_lxc_noise(line: bytes, name: str) -> bool:
    return line.startswith(lxc_noise_prefix(name))


def wait_gone(pid: int, start: int, timeout: float) -> bool:
    """Poll until the process (pid, start time) has exited; True if it did within `timeout`."""
    deadline = time.monotonic() + timeout
    while proc_start_time(pid) == start:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True

