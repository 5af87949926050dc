"""Launching a container with `lxc-execute`, finding its processes, signalling them, and owning its exit status.

lxc-execute runs the command under lxc's static init (PID 1 of the container, which reaps and forwards
signals) and returns the command's status (128+N when killed by signal N). pydock makes that status
exact: 127/126 are decided before launch (rootpath.look_path), 125 when lxc itself failed (an ERROR in
its log file), 137 whenever pydock delivered SIGKILL itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydock.dockerinit.preexec import child_setup
from pydock.utils.errors import LaunchError
from pydock.runtime.state import EXIT_KILLED
from pydock.utils.process import proc_start_time

LXC_EXECUTE = "lxc-execute"
EXIT_LAUNCH_FAILED = 125
#: 1: launch through the separately shipped dockerinit helper (located and identity-checked by
#: dockerinit.locate); 0: the in-process pre-exec step. Unset: the helper for packaged builds only.
HELPER_ENV = "PYDOCK_DOCKERINIT_EXEC"


@dataclass(frozen=True)
class LaunchSpec:
    """One lxc-execute invocation: container name, lxcpath, config file, log file, command."""

    name: str
    lxcpath: Path
    config: Path
    log: Path
    argv: tuple[str, ...]
    #: the dockerinit helper to exec lxc-execute through, or None for the in-process pre-exec step
    helper: Path | None = None

    def command(self) -> list[str]:
        lxc = [LXC_EXECUTE, "-q", "-n", self.name, "-P", str(self.lxcpath), "-f", str(self.config),
               "-o", str(self.log), "-l", "ERROR", "--", *self.argv]
        return [str(self.helper), "--", *lxc] if self.helper is not None else lxc


def spawn(spec: LaunchSpec, *, stdin: Any = subprocess.DEVNULL, stdout: Any = None,
          stderr: Any = None) -> subprocess.Popen:
    """Start lxc-execute through the dockerinit pre-exec step (own session, private rslave mounts, no fds)."""
    spec.lxcpath.mkdir(parents=True, exist_ok=True)
    spec.log.unlink(missing_ok=True)
    try:
        return subprocess.Popen(spec.command(), stdin=stdin, stdout=stdout, stderr=stderr, close_fds=True,
                                preexec_fn=None if spec.helper is not None else child_setup,
                                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")})
    except FileNotFoundError:
        raise LaunchError("lxc-execute not found: install lxc") from None
    except (OSError, subprocess.SubprocessError) as err:
        raise LaunchError(f"Cannot start lxc-execute: {err}") from None


def children(pid: int) -> list[int]:
    """Direct children of `pid` (/proc/<pid>/task/<pid>/children)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def container_init(lxc_pid: int) -> int | None:
    """Host pid of the container's PID 1 (lxc's init), the child of lxc-execute."""
    kids = children(lxc_pid)
    return kids[0] if kids else None


def container_command(lxc_pid: int) -> int | None:
    """Host pid of the container's command: the child of lxc's init."""
    init = container_init(lxc_pid)
    if init is None:
        return None
    kids = children(init)
    return kids[0] if kids else None


def container_processes(lxc_pid: int) -> list[int]:
    """Host pids of every process in the container: its init and all descendants."""
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
    `lxc.monitor.<name>`) with no lxc-execute above them: e.g. a child orphaned mid-setup when
    lxc-execute was killed. Scans /proc, so only crash recovery calls it."""
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


def signal_container(lxc_pid: int, lxc_start: int, sig: int, *, wait_command: float = 2.0) -> bool:
    """Deliver `sig` to the container's command (init.lxc forwards nothing for SIGKILL, and
    SIGKILL to init would end with status 1). Waits briefly for the command to exist right after a
    start. When the command is gone but init lingers, init gets SIGKILL. False if nothing ran.
    """
    deadline = time.monotonic() + wait_command
    while True:
        if proc_start_time(lxc_pid) != lxc_start:
            return False
        target = container_command(lxc_pid)
        if target is not None:
            try:
                os.kill(target, sig)
                return True
            except ProcessLookupError:
                pass  # the command just ended: look again (lxc's init may still be there)
        if time.monotonic() >= deadline:
            init = container_init(lxc_pid)
            if init is not None and sig == signal.SIGKILL:
                try:
                    os.kill(init, signal.SIGKILL)
                    return True
                except ProcessLookupError:
                    pass  # the whole container is gone: nothing was signalled
            return False
        time.sleep(0.01)


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
    # "lxc-execute <name> <time> ERROR    <cat> - <file>:<func>:<line> - <message>"
    message = first.rsplit(" - ", 1)[-1].strip()
    return message or first


def exit_status(returncode: int, log: Path, killed_by_pydock: bool) -> tuple[int, str | None]:
    """The container's exit code from lxc-execute's status, lxc's log and whether pydock sent SIGKILL."""
    if killed_by_pydock:
        return EXIT_KILLED, None
    if returncode != 0:
        failure = lxc_failure(log)
        if failure is not None:
            return EXIT_LAUNCH_FAILED, failure
    if returncode < 0:  # lxc-execute itself died by a signal
        return 128 - returncode, None
    return returncode, None


def lxc_noise_prefix(name: str) -> bytes:
    """lxc also prints its errors on stderr, prefixed `lxc-execute: <name>: `; they are not the command's output."""
    return f"lxc-execute: {name}: ".encode()


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

