"""`exec`: another process in a running container, through lxc-attach.

lxc-attach (given the container's own config file) enters every namespace of the container and its
cgroup, and applies what the config says to the new process: the capabilities kept (lxc.cap.keep),
the seccomp profile, no_new_privs; the process then starts through the container's /dev/.ctty
(ctty.py), which moves it to its working directory and makes a terminal its controlling one before
it execs the command, so /proc/self/exe is the image's binary. The command is looked up in the
rootfs first, as for `run` (127 not found, 126 not executable); the environment is the container's
(as its command got it) plus `-e`, where a bare KEY unsets KEY; the user is the container's unless `-u`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from tty import setraw
from typing import TYPE_CHECKING, Any

from pydock.runtime import caps, ctty
from pydock.runtime.container import Container
from pydock.runtime.launcher import host_path
from pydock.runtime.monitor import set_winsize
from pydock.runtime.options import DEFAULT_PATH, env_value, merge_env, parse_env
from pydock.runtime.relay import CommandIO, spawn_with_stdin_pipe
from pydock.runtime.rootpath import look_path
from pydock.runtime.userdb import add_groups, resolve_user
from pydock.utils.errors import Conflict, InvalidArgument, LaunchError
from pydock.utils.fileutil import atomic_write
from pydock.utils.safepath import open_in_root

if TYPE_CHECKING:
    from pydock.runtime.runtime import Runtime

log = logging.getLogger(__package__)

LXC_ATTACH = "lxc-attach"
#: the longest a -t exec's stdin is held back while lxc-attach sets its terminal up
STDIN_GRACE = 5.0


@dataclass(frozen=True)
class ExecConfig:
    """One `exec`: the command and how it runs."""

    cmd: tuple[str, ...]
    user: str | None = None      # -u (default: the container's User)
    workdir: str | None = None   # -w (default: the container's WorkingDir)
    env: tuple[str, ...] = ()    # -e K=V
    tty: bool = False            # -t
    stdin: bool = False          # -i


def check_config(cfg: ExecConfig) -> None:
    """What is wrong with `cfg` whatever the container: no command, a variable that is neither KEY=VALUE
    nor a bare KEY (which unsets KEY for the exec, as under dockerd)."""
    if not cfg.cmd or not cfg.cmd[0]:
        raise InvalidArgument("No exec command specified")
    parse_env(cfg.env)


def command_line(rt: Runtime, c: Container, cfg: ExecConfig) -> list[str]:
    """The lxc-attach invocation for `cfg` in the running container `c` (errors before anything runs)."""
    check_config(cfg)
    if not c.state.running:
        raise Conflict(f"Container {c.short_id} is not running")
    if not ctty.supported():
        raise LaunchError(f"exec needs an x86-64 host (this one is {os.uname().machine})")
    try:
        base_env = json.loads(c.env_path.read_text())
    except (FileNotFoundError, ValueError):
        raise Conflict(f"Container {c.short_id} is not running") from None
    env = merge_env(list(base_env), ["TERM=xterm"] if cfg.tty else [], list(cfg.env))
    rootfs = rt.driver.mountpoint(c.id)  # mounted while it runs; every path below resolved inside it
    user = add_groups(rootfs, resolve_user(rootfs, cfg.user if cfg.user is not None else c.config.get("User") or ""),
                      c.hostconfig.get("GroupAdd") or ())
    argv0 = look_path(rootfs, cfg.cmd[0], env_value(env, "PATH", DEFAULT_PATH), user.uid, (user.gid, *user.groups))
    workdir = cfg.workdir if cfg.workdir else (c.config.get("WorkingDir") or "/")
    if not workdir.startswith("/"):
        raise InvalidArgument(f"exec: the working directory {workdir!r} must be an absolute path")
    try:
        os.close(open_in_root(rootfs, workdir, os.O_PATH | os.O_DIRECTORY))
    except OSError as err:
        raise LaunchError(f"Cannot use {workdir} as the working directory: {err.strerror or err}") from None
    # the user's groups need the switch made by /dev/.ctty (lxc-attach clears them), which needs the
    # capabilities to make it and a container started with this version of the program; without either,
    # lxc-attach switches, groups cleared
    held = caps.resolve(c.hostconfig.get("CapAdd") or (), c.hostconfig.get("CapDrop") or ())
    switch_here = "setuid" in held and "setgid" in held and ctty.started_with_current(rt.layout, c.state.started_at)
    if not switch_here:
        log.debug("exec in %s: lxc-attach switches the user; its supplementary groups are not set", c.short_id)
    out = [LXC_ATTACH, "-q", "-n", c.id, "-P", str(rt.layout.lxc), "-f", str(attach_config(c)), "--clear-env",
           "-u", "0" if switch_here else str(user.uid), "-g", "0" if switch_here else str(user.gid)]
    for item in env:
        out += ["-v", item]
    credentials = (user.uid, user.gid, user.groups) if switch_here else None
    return [*out, "--", *ctty.ctty_argv((argv0, *cfg.cmd[1:]), workdir, credentials=credentials)]


def attach_config(c: Container) -> Path:
    """The container's lxc config without its `lxc.environment` lines, for lxc-attach: lxc-attach sets
    those after --clear-env, so an exec could not unset a variable of the container (`Env: ["K"]`); the
    exec's environment is passed whole with -v instead. Rewritten whenever the container's config is newer."""
    path = c.dir / "exec.lxc"
    source = c.lxc_config_path
    try:
        if path.stat().st_mtime_ns >= source.stat().st_mtime_ns:
            return path
    except FileNotFoundError:
        pass  # not written yet for this run of the container
    lines = source.read_text().splitlines(keepends=True)
    atomic_write(path, "".join(x for x in lines if not x.startswith("lxc.environment")).encode(), 0o600,
                 durable=False)
    return path


def run(argv: list[str], cfg: ExecConfig, *, stdin: Any, stdout: Any, stderr: Any) -> int:
    """Run the exec (`argv`: its command_line) in the foreground on the caller's own stdio (with -t a
    terminal: lxc-attach gives the process a pty of the container's and relays it, raw mode and size
    included); its exit status."""
    try:
        proc = subprocess.Popen(argv, stdin=stdin if cfg.stdin else subprocess.DEVNULL, stdout=stdout,
                                stderr=stderr, cwd="/", env=_host_env())
    except FileNotFoundError:
        raise LaunchError("lxc-attach not found: install lxc") from None
    try:
        return proc.wait()
    except BaseException:
        proc.kill()  # interrupted: lxc-attach's end takes the process with it
        proc.wait()
        raise


def spawn(rt: Runtime, argv: list[str], cfg: ExecConfig, winsize: tuple[int, int] | None = None
          ) -> tuple[subprocess.Popen, CommandIO]:
    """Start the exec (`argv`: its command_line) on stdio a relay serves: with -t a pty of ours, else pipes,
    stdin one only with -i (closed when the attached client's stdin ends, as dockerd does for an exec).

    With -t, lxc-attach relays its own terminal to a pty of the container's; it finds its terminal as
    /dev/tty, so ours must be its controlling one: it starts through the ctty program (setsid, TIOCSCTTY,
    exec; no preexec code in this threaded caller), and a resize of ours reaches it as SIGWINCH."""
    if cfg.tty:
        program = ctty.ctty_binary(rt.layout)
        lxc_attach = shutil.which(LXC_ATTACH)
        if program is None or lxc_attach is None:
            raise LaunchError("exec -t through the API needs lxc-attach and an x86-64 host")
        master, slave = os.openpty()
        try:
            setraw(slave)  # lxc-attach relays bytes as they are (it sets raw mode too, once it runs)
            if winsize is not None:
                set_winsize(master, *winsize)
            proc = _popen([str(program), "/", lxc_attach, *argv[1:]], stdin=slave, stdout=slave, stderr=slave)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return proc, CommandIO(tty=True, pty=master, open_stdin=cfg.stdin, stdin_ready=_terminal_set_up(master))
    proc, held = spawn_with_stdin_pipe(
        lambda fd: _popen(argv, stdin=fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True),
        cfg.stdin)
    assert proc.stdout is not None and proc.stderr is not None
    return proc, CommandIO(tty=False, stdout=proc.stdout.fileno(), stderr=proc.stderr.fileno(), stdin=held,
                           open_stdin=held is not None, stdin_once=True)


def _terminal_set_up(master: int) -> Callable[[], bool]:
    """Whether lxc-attach has set its terminal up (its modes are no longer the ones we gave it), or
    STDIN_GRACE passed: input sent before that would be flushed by it."""
    given = termios.tcgetattr(master)
    since = time.monotonic()

    def ready() -> bool:
        try:
            return termios.tcgetattr(master) != given or time.monotonic() - since > STDIN_GRACE
        except termios.error:  # the terminal is gone: nothing waits any more
            return True

    return ready


def close_pipes(proc: subprocess.Popen) -> None:
    """The pipes `spawn` gave the caller (stdout, stderr), once the relay is done with them."""
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _popen(argv: list[str], **kwargs: Any) -> subprocess.Popen:
    try:
        return subprocess.Popen(argv, cwd="/", env=_host_env(), **kwargs)
    except FileNotFoundError:
        raise LaunchError("lxc-attach not found: install lxc") from None


def start_detached(argv: list[str]) -> None:
    """`exec -d` (`argv`: its command_line): the process runs on in the background (its output goes
    nowhere, as in Docker)."""
    try:
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         cwd="/", env=_host_env(), start_new_session=True)
    except FileNotFoundError:
        raise LaunchError("lxc-attach not found: install lxc") from None


def _host_env() -> dict[str, str]:
    """lxc-attach's own environment (the process gets only the container's: --clear-env)."""
    return {"PATH": host_path()}
