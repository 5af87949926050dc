"""Exec instances (the Engine API's `POST /containers/{id}/exec`, then `/exec/{id}/start|json|resize`): a record
that later requests, on other connections, find by its id, and the run of one under a relay.

A record lives in its container's directory (`exec/<id>.json`), so it goes when the container does. A run
is lxc-attach (exec.py) with its stdio held by a relay (relay.py) in a thread of the calling process, which
serves the exec's attach socket (`exec/<id>.sock`: the starting client joins through a socketpair before
the command runs, a resize through the socket) and records the exit code when the command ends. Exec
output is not logged (as in Docker).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydock.runtime import attach, events
from pydock.runtime import exec as execution
from pydock.runtime.attach import AttachSession, Hello
from pydock.runtime.container import Container
from pydock.runtime.exec import ExecConfig
from pydock.runtime.monitor import detach_stdio
from pydock.runtime.relay import Relay
from pydock.utils.errors import Conflict, LaunchError, NotFound
from pydock.utils.fileutil import atomic_write
from pydock.utils.ids import generate_id, is_valid_id
from pydock.utils.paths import RootLayout
from pydock.utils.process import proc_start_time, same_process

if TYPE_CHECKING:
    from pydock.runtime.runtime import Runtime

log = logging.getLogger(__package__)

EXEC_DIR = "exec"
#: how long an ended exec stays to be inspected (dockerd forgets them too)
KEEP_ENDED = 600.0
#: a start, and the check that the exec was not started before, one at a time in this process
_starting = threading.Lock()


@dataclass
class ExecRecord:
    """One exec instance: what to run, how it is attached, and how far it got."""

    id: str
    container_id: str
    cmd: list[str]
    user: str | None = None
    workdir: str | None = None
    env: list[str] = field(default_factory=list)
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    detach_keys: str | None = None
    started: bool = False
    running: bool = False
    exit_code: int | None = None
    #: lxc-attach's pid and start time (its identity: a record left by a server that died is not running)
    pid: int = 0
    pid_start: int = 0
    #: the terminal's first size (rows, columns) the client gave at create (`ConsoleSize`), if any
    console_size: list[int] | None = None

    def config(self) -> ExecConfig:
        return ExecConfig(cmd=tuple(self.cmd), user=self.user, workdir=self.workdir, env=tuple(self.env),
                          tty=self.tty, stdin=self.stdin)

    @property
    def alive(self) -> bool:
        return self.running and same_process(self.pid, self.pid_start)

    def command_pid(self) -> int:
        """The host pid of the command itself (lxc-attach's last descendant), 0 when not running."""
        if not self.alive:
            return 0
        pid = self.pid
        for _ in range(8):  # lxc-attach -> its attached child -> the command
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                break
            if not children:
                break
            pid = int(children[0])
        return pid


def _dir(c: Container) -> Path:
    return c.dir / EXEC_DIR


def _path(c: Container, exec_id: str) -> Path:
    return _dir(c) / f"{exec_id}.json"


def save(c: Container, rec: ExecRecord) -> None:
    atomic_write(_path(c, rec.id), json.dumps(dataclasses.asdict(rec)).encode(), 0o600, durable=False)


def _prune(c: Container) -> None:
    """Forget the container's execs that ended more than KEEP_ENDED seconds ago (a container exec'd into
    all day, by a health check say, would gather records without end); its removal forgets the rest."""
    cutoff = time.time() - KEEP_ENDED
    try:
        entries = list(os.scandir(_dir(c)))
    except FileNotFoundError:
        return  # no exec yet
    for entry in entries:
        if not entry.name.endswith(".json"):
            continue
        try:
            if entry.stat().st_mtime > cutoff:
                continue
            rec = _load(Path(entry.path))
            if rec.started and not rec.alive:
                os.unlink(entry.path)
        except (OSError, ValueError, TypeError) as err:
            log.debug("exec record %s left alone: %s", entry.name, err)


def create(rt: Runtime, c: Container, cfg: ExecConfig, *, stdout: bool = True, stderr: bool = True,
           detach_keys: str | None = None, console_size: tuple[int, int] | None = None) -> ExecRecord:
    """A new exec instance of the running container `c` (what dockerd checks at create: running, not paused,
    a command, KEY=VALUE variables; the rest - user, directory, command - when it starts)."""
    execution.check_config(cfg)
    if not c.state.running:
        raise Conflict(f"Container {c.short_id} is not running")
    if rt.paused(c):
        raise Conflict(f"Container {c.short_id} is paused, unpause the container first")
    _prune(c)
    rec = ExecRecord(id=generate_id(), container_id=c.id, cmd=list(cfg.cmd), user=cfg.user, workdir=cfg.workdir,
                     env=list(cfg.env), tty=cfg.tty, stdin=cfg.stdin, stdout=stdout, stderr=stderr,
                     detach_keys=detach_keys, console_size=list(console_size) if console_size else None)
    _dir(c).mkdir(mode=0o700, exist_ok=True)
    save(c, rec)
    events.container_event(rt.layout.root, c, f"exec_create: {' '.join(cfg.cmd)}", execID=rec.id)
    return rec


def check_startable(rec: ExecRecord) -> None:
    """Conflict if `rec` was started already (an exec instance runs once)."""
    if rec.started:
        raise Conflict(f"Exec command {rec.id} has already run" if not rec.alive
                       else f"Exec command {rec.id} is already running")


def run(rt: Runtime, c: Container, rec: ExecRecord, *, hello: Hello | None,
        winsize: tuple[int, int] | None = None, monitor: bool = False) -> AttachSession | None:
    """Start the exec `rec` of `c` (see `start`). An error of its command line (user, directory, command
    not found: 126/127) is its exit code too, as dockerd records it."""
    check_startable(rec)
    if c.state.running and rt.paused(c):
        raise Conflict(f"Container {c.short_id} is paused, unpause the container first")
    try:
        argv = execution.command_line(rt, c, rec.config())
    except LaunchError as err:
        rec.started, rec.exit_code = True, err.exit_code if err.exit_code in (126, 127) else 126
        save(c, rec)
        raise
    size = winsize or (tuple(rec.console_size) if rec.console_size and all(rec.console_size) else None)
    events.container_event(rt.layout.root, c, f"exec_start: {' '.join(rec.cmd)}", execID=rec.id)
    return start(rt, c, rec, argv, hello=hello, winsize=size, monitor=monitor)  # type: ignore[arg-type]


def _load(path: Path) -> ExecRecord:
    data = json.loads(path.read_text())
    return ExecRecord(**{f.name: data[f.name] for f in dataclasses.fields(ExecRecord) if f.name in data})


def find(layout: RootLayout, exec_id: str) -> tuple[str, ExecRecord]:
    """(container id, record) of the exec `exec_id`; NotFound when no container has it."""
    if is_valid_id(exec_id):
        try:
            holders = [d.name for d in layout.containers.iterdir() if (d / EXEC_DIR / f"{exec_id}.json").exists()]
        except FileNotFoundError:
            holders = []
        for cid in holders:
            try:
                return cid, _load(layout.containers / cid / EXEC_DIR / f"{exec_id}.json")
            except (FileNotFoundError, ValueError) as err:  # removed with its container meanwhile
                log.debug("exec %s unreadable: %s", exec_id, err)
    raise NotFound(f"No such exec instance: {exec_id}")


def start(rt: Runtime, c: Container, rec: ExecRecord, argv: list[str], *, hello: Hello | None,
          winsize: tuple[int, int] | None = None, monitor: bool = False) -> AttachSession | None:
    """Run the exec (`argv`: its command_line) under a relay: in a new thread of this process (the API
    server), or with `monitor` in a process of its own that outlives the caller (the CLI's `exec -it`,
    which may detach). With `hello`, a session joined before the command runs (else the output goes
    nowhere, as `Detach`). Conflict if it was started already."""
    ours = theirs = None
    if hello is not None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.sendall(hello.encode())
    try:
        if monitor:
            _fork_monitor(rt, c, rec, argv, winsize, theirs, ours)
        else:
            proc, relay, name = _launch(rt, c, rec, argv, winsize, theirs)
            theirs = None  # the relay's now
            threading.Thread(target=_supervise, args=(rt.layout.root, c, rec, proc, relay, name), daemon=True,
                             name=f"exec-{rec.id[:12]}").start()
    except BaseException:
        if ours is not None:
            ours.close()
        raise
    finally:
        if theirs is not None:
            theirs.close()
    return AttachSession(ours) if ours is not None else None


def _launch(rt: Runtime, c: Container, rec: ExecRecord, argv: list[str], winsize: tuple[int, int] | None,
            client: socket.socket | None) -> tuple[subprocess.Popen, Relay, str]:
    """lxc-attach started and recorded, its relay made (listening on the exec's socket, `client` joined)."""
    with _starting:
        if _load(_path(c, rec.id)).started:  # another request of this server started it meanwhile
            raise Conflict(f"Exec command {rec.id} is already running")
        proc, io = execution.spawn(rt, argv, rec.config(), winsize)
        rec.started = rec.running = True
        rec.pid, rec.pid_start = proc.pid, proc_start_time(proc.pid) or 0
        try:
            save(c, rec)
        except OSError as err:  # the container was removed under us: its processes are going too
            log.debug("exec %s: record not saved (%s)", rec.id, err)
    name = f"{rec.id}.sock"
    try:
        listener = attach.listen(_dir(c), name)
    except OSError as err:
        log.debug("exec %s: no attach socket (%s): no resize through it", rec.id, err)
        listener = None
    relay = Relay(io, None, None, listener=listener)
    if client is not None:
        relay.add_client(client, wait_hello=5.0)
    return proc, relay, name


def _fork_monitor(rt: Runtime, c: Container, rec: ExecRecord, argv: list[str], winsize: tuple[int, int] | None,
                  client: socket.socket | None, ours: socket.socket | None) -> None:
    """Double fork (not our child, a session of its own) a monitor that launches and supervises the exec;
    returns once it reports the launch (or raises its error)."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 0
        try:
            os.close(rfd)
            if ours is not None:
                ours.close()  # the caller's end: held here, the caller would never see the session end
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            detach_stdio()
            proc, relay, name = _launch(rt, c, rec, argv, winsize, client)
            os.write(wfd, b"ok")
            os.close(wfd)
            _supervise(rt.layout.root, c, rec, proc, relay, name)
        except BaseException as err:
            status = 1
            try:
                os.write(wfd, f"{getattr(err, 'exit_code', 126)}:{err}".encode())
            except OSError:  # reported already (the launch went well): nobody left to tell
                log.debug("exec %s: monitor failed after its launch: %s", rec.id, err)
        finally:
            os._exit(status)
    os.close(wfd)
    os.waitpid(pid, 0)
    with os.fdopen(rfd, "rb") as r:
        report = r.read().decode(errors="replace")
    if report == "ok":
        return
    code_text, _, message = report.partition(":")
    err = LaunchError(message or "the exec's monitor died before launching it")
    if code_text.isdigit():
        err.exit_code = int(code_text)
    raise err


def _supervise(root: Path, c: Container, rec: ExecRecord, proc: subprocess.Popen, relay: Relay, name: str) -> None:
    """The relay until the command's output ends; then its status into the record, EXIT to the clients."""
    code: int | None = None
    try:
        relay.run()
        code = proc.wait()
        code = 128 - code if code < 0 else code  # lxc-attach itself killed by a signal
    except Exception:  # noqa: BLE001 - a thread's failure would otherwise vanish
        log.exception("exec %s: relay failed", rec.id)
        proc.kill()
        code = proc.wait()
    finally:
        execution.close_pipes(proc)
        rec.running, rec.exit_code = False, code
        try:
            save(c, rec)
        except OSError as err:
            log.debug("exec %s: exit not recorded (%s): its container is gone", rec.id, err)
        events.container_event(root, c, "exec_die", execID=rec.id, exitCode=code)
        relay.close(code)
        if relay.io.pty is not None:
            os.close(relay.io.pty)
        attach.remove_socket(_dir(c), name)


def resize(c: Container, rec: ExecRecord, rows: int, cols: int) -> None:
    """A new terminal size for a running `Tty` exec (nothing to do without a tty)."""
    if not rec.alive:
        raise Conflict(f"Exec {rec.id} is not running")
    if not rec.tty:
        return
    with attach.connect(_dir(c), Hello(stdout=False, stderr=False), f"Exec {rec.id}",
                        name=f"{rec.id}.sock") as session:
        try:
            session.resize(rows, cols)
        except OSError as err:
            raise Conflict(f"Exec {rec.id} is not running ({err})") from None


def inspect(rec: ExecRecord) -> dict[str, Any]:
    """`GET /exec/{id}/json`, as dockerd answers it."""
    running = rec.alive
    exit_code = rec.exit_code
    if rec.running and not running and exit_code is None:
        exit_code = -1  # its supervisor died with it: the status is lost
    entrypoint, *arguments = rec.cmd
    return {
        "ID": rec.id, "ContainerID": rec.container_id, "Running": running, "ExitCode": exit_code,
        "Pid": rec.command_pid() if running else 0, "CanRemove": False, "DetachKeys": rec.detach_keys or "",
        "OpenStdin": rec.stdin, "OpenStdout": rec.stdout, "OpenStderr": rec.stderr,
        "ProcessConfig": {"entrypoint": entrypoint, "arguments": arguments, "privileged": False,
                          "tty": rec.tty, "user": rec.user or ""},
    }
