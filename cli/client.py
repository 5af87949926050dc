"""The `pydock` entry point: hand the command to a warm CLI command server, else run it here.

Python's start-up and pydock's imports cost more than most commands' own work. A command server
(`cli/cmdserver.py`, one per interpreter and install, started on demand, gone when idle) has them
paid; this client passes it the command line, environment, umask, working directory and its stdin,
stdout and stderr (the descriptors themselves), forwards the signals it receives, and exits as the
command did. Anything unusual (switched off with PYDOCK_CLI_SERVER=0, not root, other namespaces
than the parent's, no server yet) runs the command in this process, exactly as before.
"""

from __future__ import annotations

import _signal as signal  # the C modules: `signal` and `socket` import enum, selectors and more (~6 ms),
import _socket as socket
import posix  # and `os` imports _collections_abc, stat and posixpath (~1.5 ms)
import sys

from pydock.cli import cmdwire

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing, which the client never needs
if TYPE_CHECKING:
    from collections.abc import Callable

#: signals passed on to the command (SIGTSTP and SIGCONT get their own handling: see _Relay)
FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGWINCH, signal.SIGALRM)


def main(late_site: bool = False) -> int:
    """Run `pydock ARGS...`: through the command server when one can take it, else here. `late_site`: a
    launcher started the interpreter with -S (site costs every command ~2 ms, and the client needs none
    of it): before a command runs in this process, site's work (.pth files, sitecustomize) is done."""
    try:
        settings = _own_settings()
        switched_on = cmdwire.enabled(settings)
        cmdwire.idle_seconds(settings)  # the server it may start reads it
    except ValueError as err:
        from pydock.utils.errors import USAGE_EXIT  # lazy: only a bad setting needs it

        sys.stderr.write(f"Error: {err}\n")
        return USAGE_EXIT
    own = _eligible() if switched_on else None
    if own is not None:
        status = _through_server(cmdwire.socket_path(own))
        if status is not None:
            _exit(status)
    if late_site:
        import site  # lazy: only a command run here needs it, as if python had started without -S

        site.main()
    from pydock.cli.main import main as run_here  # lazy: the whole CLI, only when no server runs it

    return run_here()


def _own_settings() -> dict[str, str]:
    """The client's settings from its environment (decoded as os.environ would, these keys alone)."""
    settings = {}
    for key in (cmdwire.SWITCH_ENV, cmdwire.IDLE_ENV):
        value = posix.environ.get(_fsencode(key))
        if value is not None:
            settings[key] = value.decode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
    return settings


def _fsencode(text: str) -> bytes:
    """os.fsencode of a str."""
    return text.encode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def _exit(status: int) -> None:
    """End with the command's status at once: this process holds nothing to clean up, and the
    interpreter's own finalization (~1-2 ms) is pure cost on every command."""
    cmdwire.flush_stdio()
    posix._exit(status)


def _eligible() -> tuple[str, ...] | None:
    """This process's namespaces when a server may run its command: root, and the namespaces and root
    directory of the process that started us (a command exec'd into a namespace of its own, by `ip netns
    exec`, `nsenter` or a test's private network, runs here, so no server outlives it holding that
    namespace). None otherwise."""
    if posix.geteuid() != 0:
        return None
    try:
        own = cmdwire.namespaces("self")
        return own if own == cmdwire.namespaces(posix.getppid()) else None
    except OSError:
        return None


def _through_server(path: str) -> int | None:
    """The command's exit status from the server listening on `path`, or None when it is to run here
    (nothing ran)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        _start_server(path)
        return None
    except OSError:
        sock.close()
        return None
    relay = _Relay(sock, path)
    try:
        return relay.run(lambda: _send_request(sock))
    except OSError as err:
        if relay.worker is None:
            return None  # nothing ran: run it here
        sys.stderr.write(f"pydock: lost the command server: {err}\n")
        return 255  # it ran, or runs still: never run it twice
    finally:
        relay.close()
        sock.close()


def _send_request(sock: socket.socket) -> bool:
    """Send argv, environment, umask and the four descriptors; False if this process lacks one of them."""
    try:
        cwd = posix.open(".", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    except OSError:
        return False
    try:
        umask = posix.umask(0o022)
        posix.umask(umask)
        payload = cmdwire.encode_request([_fsencode(a) for a in sys.argv],
                                         [k + b"=" + v for k, v in posix.environ.items()], umask)
        try:
            sock.sendmsg([cmdwire.header(len(payload))],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, cmdwire.pack_fds((0, 1, 2, cwd)))])
        except OSError:  # EBADF: stdin, stdout or stderr is closed here; Python's own start-up copes, so run here
            return False
        sock.sendall(payload)
        return True
    finally:
        posix.close(cwd)


class _Relay:
    """Reads the server's replies (P<pid>, X<status>, S<signal>, F<reason>, R) and forwards signals."""

    def __init__(self, sock: socket.socket, path: str) -> None:
        self.sock = sock
        self.path = path  # the server's socket, for its successor
        self.worker: int | None = None
        self.pidfd: int | None = None  # the worker's, so a signal never reaches a process that took its pid
        self.pending: list[int] = []
        self.buffer = b""

    def run(self, send: Callable[[], bool]) -> int | None:
        """With the forwarding handlers in place: send the request, then read the replies. When the command
        is to run here after all, the signals held for it are raised here once the handlers are back."""
        handlers = {sig: self._forward for sig in (*FORWARDED, signal.SIGCONT)}
        handlers[signal.SIGTSTP] = self._suspend
        # a signal this process ignores (nohup, a background job) stays ignored, here and in the command
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()
                    if signal.getsignal(sig) != signal.SIG_IGN}
        status = None
        try:
            status = self._replies() if send() else None
            return status
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if status is None and self.worker is None:
                for sig in self.pending:
                    posix.kill(posix.getpid(), sig)

    def _replies(self) -> int | None:
        while True:
            line = self._line()
            if line is None:  # the server went away
                if self.worker is None:
                    return None  # nothing ran: run it here
                sys.stderr.write("pydock: the command server exited before the command did\n")
                return 255
            kind, value = line[:1], line[1:]
            if kind == b"P":
                self.worker = int(value)
                try:
                    self.pidfd = posix.pidfd_open(self.worker)
                except OSError:
                    self.pidfd = None  # it has ended already; its status follows
                for sig in self.pending:
                    self._send(sig)
                self.pending.clear()
            elif kind == b"X":
                return int(value)
            elif kind == b"S":
                sig = int(value)
                if sig not in (signal.SIGKILL, signal.SIGSTOP):
                    signal.signal(sig, signal.SIG_DFL)
                posix.kill(posix.getpid(), sig)  # die as the command did
                return 128 + sig
            elif kind == b"R":  # the server's code changed on disk: it is on its way out
                _start_server(self.path)
                return None
            else:  # F: the server cannot give the command this process's context
                return None

    def _line(self) -> bytes | None:
        while b"\n" not in self.buffer:
            data = self.sock.recv(256)
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def _forward(self, sig: int, _frame: object) -> None:
        if self.worker is None:
            self.pending.append(sig)
        else:
            self._send(sig)

    def _suspend(self, _sig: int, _frame: object) -> None:
        """^Z: stop the command (SIGSTOP: its process group has no terminal to honour SIGTSTP), then us."""
        if self.worker is not None:
            self._send(signal.SIGSTOP)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        posix.kill(posix.getpid(), signal.SIGTSTP)
        signal.signal(signal.SIGTSTP, self._suspend)  # continued: SIGCONT has been forwarded

    def _send(self, sig: int) -> None:
        if self.pidfd is None:
            return  # it has ended; its status is on its way
        try:
            signal.pidfd_send_signal(self.pidfd, sig)
        except ProcessLookupError:
            pass  # it has just ended; its status is on its way

    def close(self) -> None:
        if self.pidfd is not None:
            posix.close(self.pidfd)
            self.pidfd = None


def _start_server(path: str) -> None:
    """Start a server for this interpreter in the background (a new session, detached from ours); if
    another client starts one at the same moment, the server's lock lets only one of them stay."""
    pid = posix.fork()
    if pid == 0:
        try:
            posix.setsid()
            if posix.fork() == 0:
                null = posix.open("/dev/null", posix.O_RDWR)
                for fd in (0, 1, 2):
                    posix.dup2(null, fd)
                posix.closerange(3, posix.sysconf("SC_OPEN_MAX"))
                posix.chdir("/")
                boot = ("import sys; sys.path[:] = sys.argv[2:]; "
                        "from pydock.cli.cmdserver import main; main(sys.argv[1])")
                posix.execv(sys.executable, [sys.executable, "-c", boot, path, *sys.path])
        finally:
            posix._exit(0)
    posix.waitpid(pid, 0)


if __name__ == "__main__":
    sys.exit(main())
