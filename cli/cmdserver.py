"""The CLI command server: a warm interpreter with pydock imported that forks one worker per command.

Started on demand by `cli/client.py`, one per interpreter and install (`cmdwire.socket_path`); it
exits after IDLE_SECONDS without a command, or once its source files change on disk. It holds no
root, lock or runtime state of its own: each worker is a fresh fork (made ahead, as the spare that
waits for the next command, so the fork is off that command's path) that takes on its client's
context (cgroup, rlimits, nice and OOM score, signal dispositions, groups, umask, working directory,
environment, stdin/stdout/stderr), runs `pydock.cli.main.main`, sends the client the command's status
and exits with it (a worker killed by a signal has the server report that instead). A client that
dies (kill -9) takes its worker with it, as if the command had run in the client's own process (the
worker watches its client itself, so this holds after its server was killed too). Only
a root client in the server's namespaces, root directory and LSM context, with at least the server's
capabilities and no seccomp filter or no_new_privs, is served: the server never grants what its
client lacked.
"""

from __future__ import annotations

import fcntl
import gc
import importlib
import io
import marshal
import os
import resource
import select
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydock.cli import cmdwire
from pydock.cli.sourcewatch import SourceWatch
from pydock.utils import afterwards
from pydock.utils.mounttable import mountinfo

#: the modules of the everyday commands (run, create, start, stop, kill, wait, rm, exec, attach, ps,
#: inspect, logs, images, version; on the default bridge too) and of each storage driver, with what they
#: import (and difflib, which click's option parser imports on every command): imported once here, so
#: those commands import nothing. Not everything: a detached container's monitor is a fork of its
#: command, and every module here is in its resident set (tests/cli/test_cmdserver.py keeps the list
#: covering those commands; hashlib stays out: its libcrypto alone is ~3.5 MiB).
PRELOAD = ("difflib", "pydock.cli.main", "pydock.cli.containers", "pydock.cli.interactive", "pydock.cli.images",
           "pydock.cli.system", "pydock.cli.each", "pydock.cli.formatting", "pydock.utils.table",
           "pydock.runtime.runtime", "pydock.runtime.create", "pydock.runtime.supervise", "pydock.runtime.exec",
           "pydock.runtime.freezer", "pydock.runtime.listindex", "pydock.graph.lookup", "pydock.links.networks",
           "pydock.links.linkenv", "pydock.devmapper.overlay", "pydock.devmapper.vfs",
           "pydock.devmapper.dm_deviceset")
#: the command line a spare parses while it waits (_rehearse): `run`'s, the largest option set
REHEARSAL = ("run", "--rm", "busybox", "true")
#: a request must arrive this soon after its connection
REQUEST_TIMEOUT = 5.0
#: a worker's status when it could not take on its client's context (the client, told F, ran the command)
SETUP_FAILED = 254
#: what a worker tells the server on its channel just before its client gets the status
ANSWERED = b"A"


class RequestError(Exception):
    """A request that cannot be served; the client runs the command itself."""


@dataclass(frozen=True)
class Identity:
    """What a client must match to be served: the server's namespaces, root, LSM label and capabilities,
    read once (they do not change while it runs)."""

    namespaces: tuple[str, ...]
    lsm: bytes
    cap_eff: int
    cap_bnd: int

    @classmethod
    def own(cls) -> Identity:
        status = _status("self")
        return cls(cmdwire.namespaces("self"), _read("/proc/self/attr/current"), int(status["CapEff"], 16),
                   int(status["CapBnd"], 16))


@dataclass
class Request:
    """One command as its client sent it."""

    peer_pid: int
    peer_status: dict[str, str]  # its /proc/PID/status, as checked
    argv: list[bytes]
    environ: dict[bytes, bytes]
    umask: int
    fds: list[int]  # stdin, stdout, stderr, working directory


@dataclass
class Running:
    """A worker and the client waiting for it."""

    conn: socket.socket
    pid: int
    pidfd: int
    channel: socket.socket  # the server's end: the worker says ANSWERED on it before its client's status


@dataclass
class Spare:
    """A worker forked before its command arrives, so the fork is off the next command's path; it waits
    on its channel for the command (and exits when the channel closes: the server went or discarded it)."""

    pid: int
    pidfd: int
    channel: socket.socket  # the server's end


@dataclass
class Server:
    """The listening loop: takes commands, forks their workers, reaps them and answers their clients."""

    path: str
    idle: float
    listener: socket.socket
    bound: int  # the socket file's inode
    lock_fd: int
    source: SourceWatch
    identity: Identity
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    running: dict[int, Running] = field(default_factory=dict)  # by pidfd
    spare: Spare | None = None
    stale: bool = False

    def loop(self) -> None:
        """Serve until idle (or stale) with no command in flight."""
        self.selector.register(self.listener, selectors.EVENT_READ)
        # SIGTERM (terminate) is taken only while waiting below, never halfway through the bookkeeping of
        # a worker or the spare; workers and the spare are forked with it blocked, as the server's
        # handler must never run in them (the client's mask, taken on with its context, unblocks it)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            self._spawn_spare()
            while True:
                if self.stale and not self.running:
                    return
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
                try:
                    events = self.selector.select(None if self.running else self.idle)
                finally:
                    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
                if not events and not self.running:
                    return
                for key, _ in events:
                    if key.fileobj is self.listener:
                        self._accept()
                    elif isinstance(key.data, Spare):
                        if key.data is self.spare:  # not one a command in this batch already replaced
                            self._discard_spare()  # it died waiting; the next reap forks another
                    elif isinstance(key.data, Running) and key.fileobj is key.data.conn:
                        self._client_readable(key.data)
                    elif isinstance(key.data, Running):
                        self._reap(key.data)
        finally:
            self._discard_spare()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        try:
            if self.stale or self.source.changed():
                self._retire()
                conn.sendall(b"R\n")
                conn.close()
                return
            request = _read_request(conn, self.identity)
        except Exception as err:  # noqa: BLE001 - any request this server cannot take runs in its client
            try:
                conn.sendall(b"F%s\n" % str(err).encode(errors="replace")[:200])
            except OSError:
                pass  # the client is gone: nothing to tell
            conn.close()
            return
        self._dispatch(conn, request)

    def terminate(self, _sig: int, _frame: object) -> None:
        """SIGTERM: exit now if idle; else take no more commands and exit once those in flight end, so
        no client loses its command's status."""
        if not self.running:
            raise SystemExit(0)  # loop's finally discards the spare
        if not self.stale:
            self._retire()

    def _retire(self) -> None:
        """Stop taking commands: the next client starts a server with the code now on disk."""
        self.stale = True
        self._discard_spare()  # it runs the old code
        self.selector.unregister(self.listener)
        _unlink_if_ours(self.path, self.bound)
        self.listener.close()
        _release(self.path + ".lock", self.lock_fd)  # a new server may start while this one finishes its commands
        self.lock_fd = -1

    def _dispatch(self, conn: socket.socket, request: Request) -> None:
        """Give the command to the spare worker, else to a worker forked for it."""
        spare, self.spare = self.spare, None
        if spare is not None:
            self.selector.unregister(spare.pidfd)
            if _hand_over(spare.channel, conn, request):
                self._track(conn, request, spare.pid, spare.pidfd, spare.channel)
                return
            _kill(spare.pid, spare.pidfd)  # it died meanwhile: fork one as if there were none
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = self._fork_worker(lambda: (ours.close(), self._become_worker(conn, request, theirs)))
        theirs.close()
        if pid is None:  # EAGAIN, ENOMEM: the client runs the command itself
            ours.close()
            for fd in request.fds:
                os.close(fd)
            try:
                conn.sendall(b"Fcannot fork a worker\n")
            except OSError:
                pass  # the client is gone
            conn.close()
            return
        self._track(conn, request, pid, os.pidfd_open(pid), ours)

    def _fork_worker(self, become: Callable[[], None]) -> int | None:
        """Fork (SIGTERM blocked: see loop); the child runs `become`, which ends in os._exit. The child's
        pid, or None if fork failed."""
        try:
            pid = os.fork()
        except OSError:
            return None
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                become()
            finally:
                os._exit(SETUP_FAILED)
        return pid

    def _track(self, conn: socket.socket, request: Request, pid: int, pidfd: int, channel: socket.socket) -> None:
        """Watch the worker `pid` and its client until the one ends or the other goes."""
        for fd in request.fds:
            os.close(fd)
        running = Running(conn, pid, pidfd, channel)
        self.running[pidfd] = running
        conn.setblocking(True)
        channel.setblocking(True)  # no timeout: _answered must only look, never wait
        self.selector.register(conn, selectors.EVENT_READ, running)
        self.selector.register(pidfd, selectors.EVENT_READ, running)

    def _spawn_spare(self) -> None:
        """Fork the next command's worker now, while no command waits for it."""
        if self.stale or self.spare is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = self._fork_worker(lambda: self._wait_as_spare(ours, theirs))
        theirs.close()
        if pid is None:
            ours.close()
            return
        ours.settimeout(REQUEST_TIMEOUT)
        self.spare = Spare(pid, os.pidfd_open(pid), ours)
        self.selector.register(self.spare.pidfd, selectors.EVENT_READ, self.spare)

    def _discard_spare(self) -> None:
        if self.spare is not None:
            self.selector.unregister(self.spare.pidfd)
            self.spare.channel.close()
            _kill(self.spare.pid, self.spare.pidfd)
            self.spare = None

    def _wait_as_spare(self, ours: socket.socket, channel: socket.socket) -> None:
        try:
            ours.close()
            _name_process("pydock-spare")
            self._drop_server_state(None)
            _rehearse()
            conn, request = _receive_command(channel)
        except BaseException:  # noqa: BLE001 - the server went or discarded this spare: nothing ran
            os._exit(0)
        self._become_worker(conn, request, channel)

    def _become_worker(self, conn: socket.socket, request: Request, channel: socket.socket) -> None:
        """Run the command as its client would, answer, then do what the command left for after the
        answer (utils/afterwards.py) with the client's stdio let go."""
        status = SETUP_FAILED
        try:
            self._drop_server_state(conn)
            _look_like(request.peer_pid)
            # a SIGTERM that came while this process still went by the server's name was meant for the
            # server (`pkill -x pydock-cli`): pending, blocked since the fork; ignoring it discards it
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                _take_context(request)
            except (OSError, ValueError) as err:
                conn.sendall(b"F%s\n" % str(err).encode(errors="replace")[:200])
                os._exit(SETUP_FAILED)
            conn.sendall(b"P%d\n" % os.getpid())
            _die_with_client(conn)
            # a monitor the command forks must hold neither
            os.register_at_fork(after_in_child=lambda: (conn.close(), channel.close()))
            with afterwards.collecting() as pending:
                status = _run_command(request.argv)
            _outlive_client(conn)  # first: the client's going away from now on is no reason to kill this
            try:
                channel.send(ANSWERED)  # the server then forks the next spare when the client leaves
            except OSError:
                pass  # the server is gone
            try:
                # the status now, not after this process's exit and the server's reaping (~1.5 ms): the
                # output is flushed and the exit handlers have run; the server's own X follows unread
                conn.sendall(b"X%d\n" % status)
            except OSError:
                pass  # the client is gone
            if pending:
                _let_go_of_stdio()
                afterwards.run(pending)
        finally:
            os._exit(status)

    def _drop_server_state(self, conn: socket.socket | None) -> None:
        """The worker keeps nothing of the server's but its imports (a spare drops it twice: harmless)."""
        self.selector.close()
        self.listener.close()
        self.source.close()
        if self.lock_fd != -1:
            os.close(self.lock_fd)
            self.lock_fd = -1
        for running in self.running.values():
            if running.conn is not conn:
                running.conn.close()
            running.channel.close()
            os.close(running.pidfd)
        self.running = {}

    def _client_readable(self, running: Running) -> None:
        """A client speaks only to say it is gone (EOF). Its worker watches for that too, and goes the way
        the client went unless it had its answer (_die_with_client); once it had, the worker only does
        what was left for after the answer, and the next command's spare is forked now."""
        try:
            data = running.conn.recv(64)
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(running.conn)
            if _answered(running.channel):
                self._spawn_spare()

    def _reap(self, running: Running) -> None:
        _, status = os.waitpid(running.pid, 0)
        self.selector.unregister(running.pidfd)
        os.close(running.pidfd)
        running.channel.close()
        del self.running[running.pidfd]
        if running.conn.fileno() != -1:
            try:
                self.selector.unregister(running.conn)
            except KeyError:
                pass  # unregistered when the client went away
            reply = (b"S%d\n" % os.WTERMSIG(status)) if os.WIFSIGNALED(status) else \
                (b"X%d\n" % os.WEXITSTATUS(status))
            try:
                running.conn.sendall(reply)  # a client told F (or gone) reads no further
            except OSError:
                pass  # the client is gone; its worker has ended anyway
            running.conn.close()
        self._spawn_spare()  # the client has its answer: the fork costs no command anything now


def main(path: str) -> None:
    """Serve commands on `path` until idle; a second server for the same path exits at once."""
    signal.signal(signal.SIGTERM, _stop)  # from here on, a SIGTERM leaves no socket or lock file behind
    os.makedirs(cmdwire.SOCKET_DIR, mode=0o700, exist_ok=True)
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        return  # another server has it
    server: Server | None = None
    bound = -1
    try:
        _name_process()
        _preload()
        source = SourceWatch.start()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        old_umask = os.umask(0o177)
        try:
            listener.bind(path)
        finally:
            os.umask(old_umask)
        bound = os.stat(path).st_ino
        listener.listen(64)
        gc.freeze()  # what was imported stays shared with every worker instead of being copied by the collector
        server = Server(path, cmdwire.idle_seconds(os.environ), listener, bound, lock_fd, source, Identity.own())
        signal.signal(signal.SIGTERM, server.terminate)
        server.loop()
    finally:
        if server is None or not server.stale:  # a retired server has let go of both already
            if bound != -1:
                _unlink_if_ours(path, bound)
            _release(path + ".lock", lock_fd)


def _stop(_sig: int, _frame: object) -> None:
    """SIGTERM while starting: leave, removing the lock file (Server.terminate takes over once serving)."""
    raise SystemExit(0)


def _name_process(name: str = "pydock-cli") -> None:
    """`pydock-cli` (a spare worker: `pydock-spare`) in ps and top, so nobody takes the server for a hung
    command."""
    try:
        import prctl  # lazy: only the server and its workers rename themselves

        prctl.set_name(name)
    except (ImportError, OSError):
        pass  # cosmetic: the server works under python's name too


def _look_like(pid: int) -> None:
    """Take the client's name (`pydock`) in ps and top: a worker, and a container monitor it forks, is not
    a server (`pkill -x pydock-cli` stops the servers alone), as before the server existed. Only the name:
    the command line stays the server's (rewriting argv needs its original block, which Python does not
    expose)."""
    comm = _read(f"/proc/{pid}/comm").rstrip(b"\n")
    if comm:
        _name_process(os.fsdecode(comm))


def _release(lock_path: str, lock_fd: int) -> None:
    """Remove and unlock the lock file. A server that opened it just before may then run beside the
    next one for a while: harmless, as servers share nothing (the later bind owns the socket path)."""
    _unlink_if_ours(lock_path, os.fstat(lock_fd).st_ino)
    os.close(lock_fd)


def _unlink_if_ours(path: str, bound: int) -> None:
    """Remove the socket file if it is still the one this server bound (inode `bound`): a new server
    may own the path by now."""
    try:
        if os.stat(path).st_ino == bound:
            os.unlink(path)
    except OSError:
        pass  # already gone


def _rehearse() -> None:
    """Parse REHEARSAL as the CLI would, running nothing, and open an SQLite connection in memory: the pages
    that parsing writes (reference counts, caches of click's parser and gettext) and SQLite's first
    connection in a process writes are copied from the server now, while the spare waits, instead of on
    its command's path (~1.5 ms of copy-on-write faults, and ~0.5 ms for every command that reads names).
    The same pages a `run` copies anyway, so a monitor forked from it holds no more."""
    try:
        from pydock.cli.main import cli  # lazy: preloaded already; named here, where it is used

        with cli.make_context("pydock", list(REHEARSAL), resilient_parsing=True) as ctx:
            name, command, args = cli.resolve_command(ctx, [*ctx.protected_args, *ctx.args])
            if command is not None and name is not None:
                command.make_context(name, args, parent=ctx, resilient_parsing=True).close()
        import sqlite3  # lazy: preloaded already (the names)

        sqlite3.connect(":memory:").close()
    except Exception:  # noqa: BLE001 - a head start only: the command itself reports what fails
        return


def _preload() -> None:
    """Import PRELOAD; a module that cannot load here (a build without one) is left to the worker that
    needs it, which then reports the failure as the command's. Logging is set up as every command sets
    it up (without -D), so that a worker changes nothing there (it would empty every logger's cache)."""
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - reported by the command that needs it, not by the server
            continue
    cli_main = sys.modules.get("pydock.cli.main")
    if cli_main is not None:
        cli_main.configure_logging(debug=False)


def _read_request(conn: socket.socket, identity: Identity) -> Request:
    """The client's request, once the client is known to be entitled to everything a worker can do."""
    conn.settimeout(REQUEST_TIMEOUT)
    peer_pid, peer_uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    if peer_uid != 0 or os.getuid() != 0:
        raise RequestError("not root")
    try:
        fds, payload = _receive_framed(conn, cmdwire.PASSED_FDS)
    except Exception as err:  # noqa: BLE001 - EOF, a short or malformed request
        raise RequestError(str(err) or "no request") from None
    try:
        peer_status = _check_peer(peer_pid, identity)
        argv, environ, umask = cmdwire.decode_request(payload)
    except Exception as err:  # noqa: BLE001 - whatever failed (a /proc file without a field too), no fd stays open
        for fd in fds:
            os.close(fd)
        raise RequestError(str(err)) from None
    return Request(peer_pid, peer_status, argv, environ, umask, fds)


def _hand_over(channel: socket.socket, conn: socket.socket, request: Request) -> bool:
    """Send a spare its command: the client's connection and descriptors, and the request. False if the
    spare cannot take it (it has died), and the channel is closed; else it stays the worker's channel."""
    payload = marshal.dumps((request.peer_pid, request.peer_status, request.argv, request.environ, request.umask))
    try:
        channel.sendmsg([cmdwire.header(len(payload))],
                        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, cmdwire.pack_fds((conn.fileno(), *request.fds)))])
        channel.sendall(payload)
        return True
    except OSError:
        channel.close()
        return False


def _die_with_client(conn: socket.socket) -> None:
    """Have the kernel SIGKILL this worker if its client goes (its end of `conn` closes) before
    `_outlive_client`: O_ASYNC on the connection, SIGKILL for its signal. The worker, not the server,
    watches, so a client leaving after its server was killed still takes its command along."""
    fd = conn.fileno()
    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGKILL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
    gone = select.poll()  # a client gone before O_ASYNC was set sends no signal: look once
    gone.register(fd, select.POLLIN)
    if gone.poll(0):  # a client says nothing but its going (EOF)
        os.kill(os.getpid(), signal.SIGKILL)


def _outlive_client(conn: socket.socket) -> None:
    """From now on the client's going is no reason to kill this worker (it has, or is about to have, its answer)."""
    fd = conn.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_ASYNC)


def _answered(channel: socket.socket) -> bool:
    """Whether the worker on `channel` has said ANSWERED (it did before its client could have the status)."""
    try:
        return channel.recv(len(ANSWERED), socket.MSG_DONTWAIT) == ANSWERED
    except OSError:  # nothing said yet (BlockingIOError)
        return False


def _let_go_of_stdio() -> None:
    """The client's stdin, stdout and stderr replaced by /dev/null: a reader of its pipe sees EOF now,
    not when the work after the answer is done (which has nothing to say to anybody)."""
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _receive_command(channel: socket.socket) -> tuple[socket.socket, Request]:
    """A spare's command, as _hand_over sent it (EOFError when the server closed the channel instead)."""
    fds, payload = _receive_framed(channel, 1 + cmdwire.PASSED_FDS)
    peer_pid, peer_status, argv, environ, umask = marshal.loads(payload)
    conn = socket.socket(fileno=fds[0])
    conn.setblocking(True)
    return conn, Request(peer_pid, peer_status, argv, environ, umask, fds[1:])


def _receive_framed(sock: socket.socket, want_fds: int) -> tuple[list[int], bytes]:
    """A header with exactly `want_fds` descriptors on it, then its payload (RequestError, or EOFError
    for nothing at all; no descriptor stays open on an error)."""
    fds: list[int] = []
    try:
        data, ancdata, _, _ = sock.recvmsg(cmdwire.HEADER_SIZE, socket.CMSG_SPACE(want_fds * 4),
                                          socket.MSG_CMSG_CLOEXEC)  # no program the command runs inherits them
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(cmdwire.unpack_fds(cdata))
        if not data:
            raise EOFError
        while len(data) < cmdwire.HEADER_SIZE:
            more = sock.recv(cmdwire.HEADER_SIZE - len(data))
            if not more:
                raise RequestError("short request")
            data += more
        length = cmdwire.payload_length(data)
        if len(fds) != want_fds or length > 64 << 20:
            raise RequestError("malformed request")
        payload = bytearray()
        while len(payload) < length:
            more = sock.recv(min(1 << 20, length - len(payload)))
            if not more:
                raise RequestError("short request")
            payload += more
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds, bytes(payload)


def _kill(pid: int, pidfd: int) -> None:
    """SIGKILL and reap a worker of ours that runs no command (a spare)."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it has ended already
    os.waitpid(pid, 0)
    os.close(pidfd)


def _check_peer(pid: int, identity: Identity) -> dict[str, str]:
    """The client's /proc status, once it is known to share our namespaces, root and LSM label and to hold
    every capability we hold, with no seccomp filter and no no_new_privs: a worker then does nothing
    the client could not do itself."""
    if cmdwire.namespaces(pid) != identity.namespaces:
        raise RequestError("other namespaces")
    if _read(f"/proc/{pid}/attr/current") != identity.lsm:
        raise RequestError("other LSM context")
    theirs = _status(pid)
    if identity.cap_eff & ~int(theirs["CapEff"], 16) or identity.cap_bnd & ~int(theirs["CapBnd"], 16):
        raise RequestError("fewer capabilities")
    if theirs.get("NoNewPrivs", "0") != "0" or theirs.get("Seccomp", "0") != "0":
        raise RequestError("confined client")
    return theirs


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _status(pid: int | str) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _take_context(request: Request) -> None:
    """Become the client's command: its cgroup, limits, scheduling, signals, groups, umask, directory,
    environment and standard streams. Raises OSError/ValueError if any of it cannot be taken."""
    pid = request.peer_pid
    _join_cgroup(pid)
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            limit = getattr(resource, name)
            resource.setrlimit(limit, resource.prlimit(pid, limit))
    os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, pid))
    with open(f"/proc/{pid}/oom_score_adj") as src, open("/proc/self/oom_score_adj", "w") as dst:
        dst.write(src.read())
    os.sched_setaffinity(0, os.sched_getaffinity(pid))
    status = request.peer_status
    os.setgroups([int(g) for g in status["Groups"].split()])
    _take_signals(int(status["SigIgn"], 16), int(status["SigBlk"], 16))
    os.umask(request.umask)
    stdin, stdout, stderr, cwd = request.fds
    os.fchdir(cwd)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
    for fd in request.fds:
        if fd > 2:
            os.close(fd)
    _take_environ(request.environ)
    time.tzset()
    _reopen_stdio(unbuffered=bool(request.environ.get(b"PYTHONUNBUFFERED")))


def _take_environ(environ: dict[bytes, bytes]) -> None:
    """The client's environment, changing only what differs (most often nothing: the server's came from
    an earlier client), where clearing and setting every variable cost ~0.5 ms."""
    current = os.environb
    for key in [k for k in current if k not in environ]:
        del current[key]
    for key, value in environ.items():
        if current.get(key) != value:
            current[key] = value


def _join_cgroup(pid: int) -> None:
    """Move into the client's cgroups (v2, or each v1 hierarchy), so the command and the containers it
    starts are accounted, limited and stopped with the client's session or unit, not the server's."""
    ours = _cgroups("self")
    mounts: dict[str, str] | None = None
    for hierarchy, path in _cgroups(pid).items():
        if ours.get(hierarchy) == path:
            continue
        if mounts is None:
            mounts = _cgroup_mounts()
        mount = next((m for key, m in mounts.items() if set(hierarchy.split(",")) <= set(key.split(","))), None)
        if mount is None:
            raise ValueError(f"cgroup hierarchy {hierarchy or 'v2'} is not mounted")
        with open(f"{mount}{path}/cgroup.procs", "w") as procs:
            procs.write(str(os.getpid()))


def _cgroups(pid: int | str) -> dict[str, str]:
    """{hierarchy: path} from /proc/PID/cgroup; the hierarchy is its controllers (`cpu,cpuacct`,
    `name=systemd`), or "" for the v2 one."""
    with open(f"/proc/{pid}/cgroup") as f:
        return {parts[1]: parts[2] for parts in (line.rstrip("\n").split(":", 2) for line in f) if len(parts) == 3}


def _cgroup_mounts() -> dict[str, str]:
    """{hierarchy options: mount point} of the cgroup file systems mounted here ("" for cgroup2)."""
    mounts: dict[str, str] = {}
    for entry in mountinfo():
        if entry.fstype == "cgroup2":
            mounts.setdefault("", entry.mountpoint)
        elif entry.fstype == "cgroup":
            mounts.setdefault(entry.super_options, entry.mountpoint)
    return mounts


def _take_signals(ignored: int, blocked: int) -> None:
    """The dispositions a fresh `python` would have in the client's place: what the client inherited as
    ignored stays ignored, SIGINT raises KeyboardInterrupt, SIGPIPE and SIGXFSZ are ignored."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP) or sig >= signal.SIGRTMIN:
            continue
        if ignored & (1 << (sig - 1)) or sig in (signal.SIGPIPE, signal.SIGXFSZ):
            wanted = signal.SIG_IGN
        elif sig == signal.SIGINT:
            wanted = signal.default_int_handler
        else:
            wanted = signal.SIG_DFL
        if signal.getsignal(sig) is not wanted:  # only what differs: a system call each
            signal.signal(sig, wanted)
    signal.pthread_sigmask(signal.SIG_SETMASK, {s for s in signal.valid_signals() if blocked & (1 << (s - 1))})


def _reopen_stdio(unbuffered: bool) -> None:
    """sys.stdin/stdout/stderr over the client's descriptors, buffered as Python buffers them at start-up
    (line-buffered on a terminal, written through under PYTHONUNBUFFERED): the server's were made for
    /dev/null."""
    def text(fd: int, writing: bool, old: io.TextIOWrapper) -> io.TextIOWrapper:
        raw = io.FileIO(fd, "wb" if writing else "rb", closefd=False)
        buffered = io.BufferedWriter(raw) if writing else io.BufferedReader(raw)
        line = writing and (fd == 2 or os.isatty(fd))
        return io.TextIOWrapper(buffered, encoding=old.encoding, errors=old.errors, line_buffering=line,
                                write_through=writing and unbuffered)

    sys.stdin = sys.__stdin__ = text(0, False, sys.__stdin__)  # type: ignore[misc]
    sys.stdout = sys.__stdout__ = text(1, True, sys.__stdout__)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = text(2, True, sys.__stderr__)  # type: ignore[misc]


def _run_command(argv: list[bytes]) -> int:
    """Run the CLI as `python -m pydock.cli.main` would in the client, exit handlers and all."""
    import atexit  # lazy: a worker only
    import traceback  # lazy: a worker only

    from pydock.cli.main import main as cli_main  # lazy: preloaded already; named here, where it runs

    sys.argv = [os.fsdecode(a) for a in argv]
    try:
        try:
            status = cli_main(sys.argv[1:])
        except SystemExit as exit_:
            code = exit_.code
            status = code if isinstance(code, int) else (0 if code is None else 1)
            if code is not None and not isinstance(code, int):
                print(code, file=sys.stderr)
        except KeyboardInterrupt:
            cmdwire.flush_stdio()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)  # as python does on an uncaught ^C
            status = 130
        except BaseException:  # noqa: BLE001 - the interpreter's own last resort, reproduced
            traceback.print_exc()
            status = 1
        atexit._run_exitfuncs()
    finally:
        cmdwire.flush_stdio()
    return status & 0xFF if isinstance(status, int) else 1


if __name__ == "__main__":
    main(sys.argv[1])
