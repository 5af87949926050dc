"""Container routes: create, list, inspect, start, attach, wait, logs, stop, kill, restart, resize,
changes, top, export, delete, commit. Each decodes the request, calls the Runtime (a start goes
through the starter's helper process) and encodes Docker's answer."""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any, BinaryIO

from pydock.runtime import detachkeys, notify
from pydock.runtime.api import decode, models, streams
from pydock.runtime.api.httpd import Handler, Request, bool_value
from pydock.runtime.api.services import Services
from pydock.runtime.attach import AttachSession, Hello, connect
from pydock.runtime.container import Container
from pydock.runtime.jsonlog import parse_record
from pydock.runtime.listfilters import ContainerFilters
from pydock.runtime.runtime import Runtime
from pydock.runtime.usage import PruneFilters, prune_containers
from pydock.utils.errors import Conflict, InvalidArgument, NotFound, PydockError, RemovalFailed

log = logging.getLogger(__package__)


def image_name(rt: Runtime, c: Container) -> str:
    """The image as the user named it at create, else its tag or short id."""
    name = c.config.get("Image")
    if name:
        return str(name)
    try:
        return rt.images.name_of(c.image)
    except PydockError as err:
        log.debug("image of %s has no name (%s); showing its id", c.short_id, err)
        return c.image[:12]


def size_of(rt: Runtime, c: Container) -> tuple[int, int]:
    try:
        return rt.size(c)
    except PydockError as err:
        log.debug("size of %s unknown (%s); reporting 0", c.short_id, err)
        return 0, 0


def create(svc: Services, req: Request, h: Handler) -> None:
    opts = decode.create_options(req.json(), req.arg("name"))
    with svc.pool.runtime() as rt:
        try:
            rt.images.resolve(opts.image)  # builds busybox on first use
        except NotFound:
            raise NotFound(f"No such image: {decode.shown_ref(opts.image)}") from None
        holder = rt.names.get("/" + opts.name) if opts.name else None
        if holder:
            raise Conflict(f'Conflict. The container name "/{opts.name}" is already in use by container '
                           f'"{holder}". You have to remove (or rename) that container to be able to reuse '
                           "that name.")
        c = rt.create(opts)
    h.send_json(201, {"Id": c.id, "Warnings": []})


def list_containers(svc: Services, req: Request, h: Handler) -> None:
    limit = req.int_arg("limit", -1) or -1
    out = []
    with svc.pool.runtime() as rt:
        chosen = ContainerFilters.parse(rt, decode.filters(req.arg("filters")))
        every_name = rt.names.names_by_id()  # one read of the name graph for all the rows, as `ps`
        for c in rt.containers(all=req.flag("all") or limit > 0 or chosen.implies_all):
            names = every_name.get(c.id, [])
            paused = c.state.running and rt.paused(c)
            if not chosen.match(rt, c, names, paused):
                continue
            size = size_of(rt, c) if req.flag("size") else None
            out.append(models.for_version("container_summary", models.container_summary(
                c, names, image_name(rt, c), size, paused=paused), req.api_version))
            if 0 < limit <= len(out):
                break
    h.send_json(200, out)


def inspect_document(rt: Runtime, c: Container, size: bool = False) -> dict[str, Any]:
    """A container as `GET /containers/{id}/json` shows it (and `pydock inspect -f` templates see it)."""
    data = models.container_inspect(c, image_name(rt, c))
    if rt.paused(c):  # the kernel's word, as `pydock inspect`
        data["State"].update(Paused=True, Status="paused")
    if size:
        data["SizeRw"], data["SizeRootFs"] = size_of(rt, c)
    return data


def inspect(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        data = inspect_document(rt, rt.get(name), size=req.flag("size"))
    h.send_json(200, models.for_version("container", data, req.api_version))


def start(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        c = rt.get(name)
    if c.state.running:
        h.send_empty(304)
        return
    svc.starter.start(c.id)
    h.send_empty(204)


def attach(svc: Services, req: Request, h: Handler, name: str) -> None:
    """The hijacked attach: the container's output (and, with `stdin=1` and OpenStdin, its input) through
    its supervisor's attach socket; not running yet, it waits for the next run (`docker run` attaches
    before it starts). The log's end is noted now and what the command writes before the session joins
    is replayed from there, so nothing is missed or seen twice. Without `stream=1`, the logs alone."""
    wanted = decode.output_streams(req)
    if not (wanted or req.flag("stdin")):
        raise InvalidArgument("at least one of stdin, stdout and stderr must be set")
    keys = detachkeys.parse(req.arg("detachKeys"))
    with svc.pool.runtime() as rt:
        c = rt.get(name)
        if c.state.running and rt.paused(c):
            raise Conflict("You cannot attach to a paused container, unpause it first")
        tty = bool(c.config.get("Tty"))
        if not req.flag("stream"):
            with h.hijack(streams.content_type(tty)) as conn:
                if req.flag("logs"):
                    with closing(rt.logs(c, streams=wanted)) as records:
                        streams.copy(records, conn.write, tty, live=False)
            return
    stdin = req.flag("stdin") and bool(c.config.get("OpenStdin"))
    hello = Hello(stdin=stdin, stdout="stdout" in wanted, stderr="stderr" in wanted, logs=True)
    with _Backlog(c.log_path, from_start=req.flag("logs"), streams=wanted, tty=tty) as backlog, \
            h.hijack(streams.content_type(tty)) as conn:
        early = streams.buffered_input(h)
        with svc.pool.runtime() as rt:
            session = _join(rt, c, hello, conn.gone)
        if session is None:  # the run ended before it could be joined (or the client left)
            backlog.replay(conn.write, None)
            return
        with session:
            try:
                welcome = session.wait_welcome()
            except Conflict as err:  # the run ended as we joined: its log is complete by then
                log.debug("attach to %s: %s; the log has the rest", c.short_id, err)
                backlog.replay(conn.write, None)
                return
            backlog.replay(conn.write, welcome.log_offset)
            how = streams.pump(conn.sock, session, tty=tty, stdin=stdin, detach_keys=keys, early=early)
            log.debug("attach to %s ended: %s", c.short_id, how)


def attach_websocket(svc: Services, req: Request, h: Handler, name: str) -> None:
    raise InvalidArgument("attach over a websocket is not supported by pydock; use POST /containers/{id}/attach "
                          "(a hijacked connection)")


def _join(rt: Runtime, c: Container, hello: Hello, gone: Callable[[], bool]) -> AttachSession | None:
    """A session with the supervisor of `c`'s current run, or (not running) of its next one, once it
    starts; None when that run ended first, or the container went, or the client did (`gone`)."""
    initial = (c.state.running, c.state.started_at)
    delay = 0.005
    while not gone():
        seen = notify.generation()
        fresh = rt.lookup(c.id)
        st = fresh.state if fresh is not None else None
        if st is None or not st.running and (initial[0] or st.started_at != initial[1]):
            return None
        if st.running:
            try:
                return connect(c.dir, hello, f"Container {c.short_id}")
            except Conflict as err:  # ending right now: the record says so in a moment
                log.debug("attach to %s: %s; looking again", c.short_id, err)
        notify.wait(seen, delay)
        delay = min(delay * 2, 0.1)
    return None


class _Backlog:
    """The part of the log an attach owes its client before the live session: from the log's end when
    the attach came (its start with `logs=1`) to the offset the supervisor's WELCOME names (or to the
    end, when the run ended before it was joined). The file stays open: an auto-remove may delete it."""

    def __init__(self, path: Path, *, from_start: bool, streams: tuple[str, ...], tty: bool) -> None:
        self.path, self.streams, self.tty = path, streams, tty
        self.pos = 0
        self._f: BinaryIO | None = None
        try:
            self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            log.debug("no log yet at %s: the backlog starts with the first run", path)
        if self._f is not None and not from_start:
            self.pos = os.fstat(self._f.fileno()).st_size

    def replay(self, write: Callable[[bytes], None], upto: int | None) -> None:
        if self._f is None:
            try:
                self._f = open(self.path, "rb")  # noqa: SIM115 - closed by close()
            except FileNotFoundError:
                log.debug("no log at %s (removed, or never run): nothing to replay", self.path)
                return
        self._f.seek(self.pos)
        data = self._f.read() if upto is None else self._f.read(max(0, upto - self.pos))
        self.pos += len(data)
        out = b"".join(streams.encode(rec, self.tty) for line in data.split(b"\n")
                       if (rec := parse_record(line)) is not None and rec.stream in self.streams)
        if out:
            write(out)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()

    def __enter__(self) -> _Backlog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait(svc: Services, req: Request, h: Handler, name: str) -> None:
    """The status line and headers go out at once (`docker run` waits before it starts the container);
    the body once the condition holds."""
    condition = decode.wait_condition(req.arg("condition"))
    with svc.pool.runtime() as rt:
        c = rt.get(name)
        out = h.start_stream("application/json")
        error = None
        try:
            code = rt.wait(c, condition=condition, cancelled=h.client_gone)
        except RemovalFailed as err:
            code, error = err.status, str(err)
        except NotFound:  # removed (by its own --rm) before the wait began: nothing left to wait for
            code = c.state.exit_code
    out.write(json.dumps(models.wait_result(code, error)).encode() + b"\n")
    out.close()


def logs(svc: Services, req: Request, h: Handler, name: str) -> None:
    wanted = decode.output_streams(req)
    if not wanted:
        raise InvalidArgument("You must choose at least one stream")
    tail = decode.tail(req.arg("tail"))
    since, until = decode.timestamp(req.arg("since")), decode.timestamp(req.arg("until"))
    follow = req.flag("follow")
    with svc.pool.runtime() as rt:
        c = rt.get(name)
        tty = bool(c.config.get("Tty"))
        records = rt.logs(c, follow=follow, streams=wanted, tail=tail, since=since, until=until)
        with closing(records):
            out = h.start_stream(streams.content_type(tty))
            streams.copy(records, out.write, tty, timestamps=req.flag("timestamps"),
                         live=follow and c.state.running)
    out.close()


def stop(svc: Services, req: Request, h: Handler, name: str) -> None:
    timeout = decode.stop_timeout(req)
    with svc.pool.runtime() as rt:
        c = rt.get(name)
        if not c.state.running:
            h.send_empty(304)
            return
        try:
            rt.stop(c, timeout=timeout)
        except NotFound:
            log.debug("stop %s: auto-removed as it stopped", c.short_id)  # stopped all the same
    h.send_empty(204)


def kill(svc: Services, req: Request, h: Handler, name: str) -> None:
    """Like dockerd, a SIGKILL is answered only once the container is down."""
    signum = decode.signal_number(req.arg("signal"))
    with svc.pool.runtime() as rt:
        c = rt.get(name)
        if not c.state.running:
            raise Conflict(f"Container {name} is not running")
        rt.kill(c, signum)
        if signum == signal.SIGKILL:
            try:
                rt.wait(c)
            except NotFound:
                log.debug("kill %s: auto-removed as it died", c.short_id)
    h.send_empty(204)


def restart(svc: Services, req: Request, h: Handler, name: str) -> None:
    timeout = decode.stop_timeout(req)
    with svc.pool.runtime() as rt:
        c = rt.get(name)
        rt.stop(c, timeout=timeout)
    svc.starter.start(c.id)
    h.send_empty(204)


def resize(svc: Services, req: Request, h: Handler, name: str) -> None:
    """The terminal size of a `-t` container (a RESIZE through its attach socket); a container without a
    tty has nothing to resize (200, as dockerd)."""
    rows, cols = terminal_size(req)
    with svc.pool.runtime() as rt:
        c = rt.get(name)
        if not c.state.running:
            raise Conflict(f"Container {c.short_id} is not running")
        if c.config.get("Tty"):
            with rt.attach(c, Hello(stdout=False, stderr=False)) as session:
                session.resize(rows, cols)
    h.send_bytes(200, b"", "text/plain; charset=utf-8")


def terminal_size(req: Request) -> tuple[int, int]:
    """`h=ROWS&w=COLUMNS` of a resize (both needed, 0..65535)."""
    rows, cols = req.int_arg("h"), req.int_arg("w")
    if rows is None or cols is None or not (0 <= rows <= 0xFFFF and 0 <= cols <= 0xFFFF):
        raise InvalidArgument("resize needs h (rows) and w (columns), each 0 to 65535")
    return rows, cols


def delete(svc: Services, req: Request, h: Handler, name: str) -> None:
    """`DELETE /containers/{name}`; with `link=1`, `{name}` is a link path (`/web/db`) to drop."""
    with svc.pool.runtime() as rt:
        if req.flag("link"):
            rt.remove_link("/" + name.strip("/"))
            h.send_empty(204)
            return
        c = rt.get(name)
        force = req.flag("force")
        if c.state.running and not force:
            raise Conflict(f'cannot remove container "{c.name or c.short_id}": container is running: stop the '
                           "container before removing or force remove")
        try:
            rt.remove(c, force=force, volumes=req.flag("v"))
        except NotFound:
            log.debug("rm %s: its own auto-remove got there first", c.short_id)  # gone, as asked
    h.send_empty(204)


def changes(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        lines = rt.diff(rt.get(name))
    h.send_json(200, models.changes(lines))


def top(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        titles, rows = rt.top(rt.get(name))
    h.send_json(200, {"Titles": titles, "Processes": rows})


def export(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        c = rt.get(name)
        out = h.start_stream("application/x-tar")
        rt.export(c, out)
    out.close()


def commit(svc: Services, req: Request, h: Handler) -> None:
    repo, tag = decode.repo_tag(req.arg("repo"), req.arg("tag"))
    config = decode.commit_config(req)
    with svc.pool.runtime() as rt:
        c = rt.get(req.arg("container") or "")
        image = rt.commit(c, repo, tag, comment=req.arg("comment") or "", author=req.arg("author") or "",
                          config=config, changes=[x for x in req.args("changes") if x.strip()],
                          pause=bool_value(req.arg("pause") or "1"))
    h.send_json(201, {"Id": models.image_ref(image.id)})


def prune(svc: Services, req: Request, h: Handler) -> None:
    """`POST /containers/prune`: every container that is not running (and matches `filters`)."""
    chosen = PruneFilters.parse(decode.filters(req.arg("filters")))
    with svc.pool.runtime() as rt:
        removed, freed = prune_containers(rt, chosen)
    h.send_json(200, {"ContainersDeleted": removed or None, "SpaceReclaimed": freed})


def update(svc: Services, req: Request, h: Handler, name: str) -> None:
    """`docker update`: new limits and restart policy, applied at once to a running container."""
    opts = decode.update_options(req.json())
    with svc.pool.runtime() as rt:
        warnings = rt.update(rt.get(name), opts)
    h.send_json(200, {"Warnings": warnings})


ROUTES = [
    ("POST", r"/containers/create", create),
    ("POST", r"/containers/prune", prune),
    ("GET", r"/containers/json", list_containers),
    ("GET", r"/containers/(?P<name>[^/]+)/json", inspect),
    ("POST", r"/containers/(?P<name>[^/]+)/start", start),
    ("POST", r"/containers/(?P<name>[^/]+)/attach", attach),
    ("GET", r"/containers/(?P<name>[^/]+)/attach/ws", attach_websocket),
    ("POST", r"/containers/(?P<name>[^/]+)/wait", wait),
    ("GET", r"/containers/(?P<name>[^/]+)/logs", logs),
    ("POST", r"/containers/(?P<name>[^/]+)/stop", stop),
    ("POST", r"/containers/(?P<name>[^/]+)/kill", kill),
    ("POST", r"/containers/(?P<name>[^/]+)/restart", restart),
    ("POST", r"/containers/(?P<name>[^/]+)/update", update),
    ("POST", r"/containers/(?P<name>[^/]+)/resize", resize),
    ("GET", r"/containers/(?P<name>[^/]+)/changes", changes),
    ("GET", r"/containers/(?P<name>[^/]+)/top", top),
    ("GET", r"/containers/(?P<name>[^/]+)/export", export),
    ("DELETE", r"/containers/(?P<name>.+)", delete),
    ("POST", r"/commit", commit),
]
