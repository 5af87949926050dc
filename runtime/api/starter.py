"""Starting containers for `pydock serve` from single-threaded helper processes.

`Runtime.start` forks the detached monitor. Forking the threaded API server itself would hand every
monitor copies of the server's sockets (an attach would never see EOF, a dead server's socket would
still accept) and of other threads' lock files (flocks held for the monitor's whole life), and could
copy a lock another thread holds. So the server asks a helper - exec'd fresh, one thread, no
inherited fds - to start the container; the monitor is forked from there, exactly as from the CLI.

Protocol: one JSON line per request (`{"id": cid}`) on the helper's stdin, one JSON line per answer
(`{"ok": true}` or `{"error": "LaunchError", "message": ..., "exit_code": 127}`) on its stdout.

A start made in the helper is announced to this process's waiters (`notify.changed()`) once answered.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
from typing import Any

from pydock.runtime import notify
from pydock.runtime.runtime import Runtime
from pydock.utils import errors as error_types
from pydock.utils.errors import PydockError

log = logging.getLogger(__package__)

#: helpers kept alive; more concurrent starts than this wait for one to be free.
MAX_HELPERS = 4


class _Helper:
    """One helper process and its pipes."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "pydock.runtime.api.starter", json.dumps(options)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise EOFError("helper exited")
        return json.loads(line)

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Starter:
    """A small pool of helper processes that run `Runtime.start` for the server."""

    def __init__(self, options: dict[str, Any], prestart: int = 1) -> None:
        """`options`: the Runtime's keyword arguments (JSON-able), for the helpers to open theirs with."""
        self.options = options
        self._idle: queue.LifoQueue[_Helper] = queue.LifoQueue()
        self._count = 0
        self._lock = threading.Lock()
        for _ in range(prestart):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Helper:
        with self._lock:
            self._count += 1
        return _Helper(self.options)

    def _take(self) -> _Helper:
        """An idle helper; else a new one while fewer than MAX_HELPERS live; else the next one freed
        (looking again now and then: a helper that died is never given back)."""
        while True:
            with self._lock:
                can_spawn = self._idle.empty() and self._count < MAX_HELPERS
            if can_spawn:
                return self._spawn()
            try:
                return self._idle.get(timeout=0.5)
            except queue.Empty:
                log.debug("all %d starter helpers busy; still waiting", MAX_HELPERS)

    def start(self, container_id: str) -> None:
        """Start the container under a detached monitor; raises the runtime's error as it was raised."""
        helper = self._take()
        try:
            answer = helper.call({"id": container_id})
        except (OSError, EOFError, ValueError) as err:
            log.debug("starter helper %s failed: %s", helper.proc.pid, err)
            helper.close()
            with self._lock:
                self._count -= 1
            raise PydockError("pydock's container starter exited unexpectedly; try again") from None
        finally:
            notify.changed()  # started, or failed (a failed --rm start removed the container)
        self._idle.put(helper)
        if answer.get("ok"):
            return
        cls = getattr(error_types, str(answer.get("error")), None)
        if not (isinstance(cls, type) and issubclass(cls, PydockError)):
            cls = PydockError
        err = cls(answer.get("message") or "start failed")
        code = answer.get("exit_code")
        if isinstance(code, int) and code != cls.exit_code:
            err.exit_code = code
        raise err

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _serve(options: dict[str, Any]) -> int:  # pragma: no cover - runs in the helper
    """The helper: answer start requests until the server closes our stdin."""
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    # the protocol fds must not live on in the monitors forked below (nor may stray prints reach them)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    open_fds = [proto_in.fileno(), proto_out.fileno()]

    def forget_protocol() -> None:
        # once, in the first child: later forks (Popen's preexec) must not close reused fd numbers
        while open_fds:
            fd = open_fds.pop()
            try:
                os.close(fd)
            except OSError as err:
                log.debug("protocol fd %d was not open in the child (%s)", fd, err)

    os.register_at_fork(after_in_child=forget_protocol)
    for line in proto_in:
        try:
            request = json.loads(line)
            with Runtime(**options) as rt:
                rt.start(rt.get(request["id"]))
            answer: dict[str, Any] = {"ok": True}
        except PydockError as err:
            answer = {"error": type(err).__name__, "message": str(err), "exit_code": err.exit_code}
            for base in type(err).__mro__:
                if base.__module__ == error_types.__name__:
                    answer["error"] = base.__name__
                    break
        except Exception as err:  # noqa: BLE001 - every failure goes back to the server as a message
            answer = {"error": "PydockError", "message": f"{type(err).__name__}: {err}", "exit_code": 1}
        proto_out.write(json.dumps(answer).encode() + b"\n")
        proto_out.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_serve(json.loads(sys.argv[1])))
