"""Exec routes: create an exec instance in a running container, start it (hijacked, or detached), inspect
it, resize its terminal. The records and the runs are runtime/execs.py's."""

from __future__ import annotations

import logging
from typing import Any

from pydock.runtime import detachkeys, execs
from pydock.runtime.api import decode, streams
from pydock.runtime.api.containers import terminal_size
from pydock.runtime.api.httpd import Handler, Request
from pydock.runtime.api.services import Services
from pydock.runtime.attach import Hello
from pydock.runtime.exec import ExecConfig
from pydock.utils.errors import InvalidArgument, PydockError

log = logging.getLogger(__package__)

#: ExecConfig fields dockerd takes that pydock carries out (Privileged only when false; Container, which old
#: clients send, names the container the path names; Detach at create is decided again at start)
_FIELDS = frozenset({"User", "Privileged", "Tty", "ConsoleSize", "AttachStdin", "AttachStderr", "AttachStdout",
                     "Detach", "DetachKeys", "Env", "WorkingDir", "Cmd", "Container"})


def _body(req: Request) -> dict[str, Any]:
    body = req.json()
    if not isinstance(body, dict):
        raise InvalidArgument("the exec configuration must be a JSON object")
    return body


def create(svc: Services, req: Request, h: Handler, name: str) -> None:
    body = _body(req)
    unknown = sorted(k for k, v in body.items() if k not in _FIELDS and v not in (None, "", [], {}, False, 0))
    if unknown:
        raise InvalidArgument(f"exec: {unknown[0]} is not supported by pydock")
    if body.get("Privileged"):
        raise InvalidArgument("exec: Privileged is not supported by pydock (the exec gets the container's "
                              "capabilities and seccomp profile)")
    cmd = body.get("Cmd")
    if isinstance(cmd, str):
        cmd = [cmd]
    if not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
        raise InvalidArgument("No exec command specified")
    env = body.get("Env") or []
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise InvalidArgument("exec: Env must be a list of KEY=VALUE strings")
    keys = body.get("DetachKeys") or None
    detachkeys.parse(keys)  # refused now, not when it starts
    cfg = ExecConfig(cmd=tuple(cmd), user=body.get("User") or None, workdir=body.get("WorkingDir") or None,
                     env=tuple(env), tty=bool(body.get("Tty")), stdin=bool(body.get("AttachStdin")))
    with svc.pool.runtime() as rt:
        rec = execs.create(rt, rt.get(name), cfg, stdout=bool(body.get("AttachStdout")),
                           stderr=bool(body.get("AttachStderr")), detach_keys=keys,
                           console_size=decode.console_size(body.get("ConsoleSize")))
    h.send_json(201, {"Id": rec.id})


def start(svc: Services, req: Request, h: Handler, exec_id: str) -> None:
    """Detached: started, then 200. Else hijacked: the exec's stdio over the connection (frames without a
    tty), until it ends; an error starting it (no such user, command not found) is written there and is
    its exit code, as dockerd does."""
    body = _body(req)
    unknown = sorted(k for k, v in body.items() if k not in ("Detach", "Tty", "ConsoleSize") and v)
    if unknown:
        raise InvalidArgument(f"exec start: {unknown[0]} is not supported by pydock")
    size = decode.console_size(body.get("ConsoleSize"))
    with svc.pool.runtime() as rt:
        cid, rec = execs.find(rt.layout, exec_id)
        c = rt.get(cid)
        if body.get("Detach"):
            execs.run(rt, c, rec, hello=None, winsize=size)
            h.send_bytes(200, b"", "application/json")
            return
        execs.check_startable(rec)  # a 409 before the hijack
        keys = detachkeys.parse(rec.detach_keys)
        with h.hijack(streams.content_type(rec.tty)) as conn:
            early = streams.buffered_input(h)
            try:
                session = execs.run(rt, c, rec, hello=Hello(stdin=rec.stdin, stdout=rec.stdout, stderr=rec.stderr),
                                    winsize=size)
            except PydockError as err:
                conn.write(streams.frame("stdout", f"{err}\r\n".encode(), rec.tty))
                return
            assert session is not None
            with session:
                session.wait_welcome()
                how = streams.pump(conn.sock, session, tty=rec.tty, stdin=rec.stdin, detach_keys=keys, early=early)
                log.debug("exec %s session ended: %s", exec_id[:12], how)


def inspect(svc: Services, req: Request, h: Handler, exec_id: str) -> None:
    with svc.pool.runtime() as rt:
        _, rec = execs.find(rt.layout, exec_id)
    h.send_json(200, execs.inspect(rec))


def resize(svc: Services, req: Request, h: Handler, exec_id: str) -> None:
    rows, cols = terminal_size(req)
    with svc.pool.runtime() as rt:
        cid, rec = execs.find(rt.layout, exec_id)
        execs.resize(rt.get(cid), rec, rows, cols)
    h.send_bytes(200, b"", "text/plain; charset=utf-8")


ROUTES = [
    ("POST", r"/containers/(?P<name>[^/]+)/exec", create),
    ("POST", r"/exec/(?P<exec_id>[^/]+)/start", start),
    ("GET", r"/exec/(?P<exec_id>[^/]+)/json", inspect),
    ("POST", r"/exec/(?P<exec_id>[^/]+)/resize", resize),
]
