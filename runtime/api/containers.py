"""Container routes: create, list, inspect, start, attach, wait, logs, stop, kill, restart, resize,
changes, top, export, delete, commit. Each decodes the request, calls the Runtime (a start goes
through the starter's helper process) and encodes Docker's answer."""

from __future__ import annotations

import json
import logging
import signal
from contextlib import closing

from pydock.runtime.api import decode, models, streams
from pydock.runtime.api.httpd import Handler, Request
from pydock.runtime.api.services import Services
from pydock.runtime.container import Container
from pydock.runtime.jsonlog import LogReader
from pydock.runtime.runtime import Runtime
from pydock.runtime.usage import prune_containers
from pydock.utils import saferegex
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


def _matches(c: Container, names: list[str], filters: dict[str, list[str]]) -> bool:
    """Whether a container passes `docker ps --filter` id=, name= (a regexp, matched in linear time like
    Docker's RE2: a client's pattern cannot make the server backtrack for minutes), status= and label=K
    or K=V (every one must hold: docker-compose finds a project's containers by their labels)."""
    if not all(c.id.startswith(value) for value in filters.get("id", [])):
        return False
    labels = c.config.get("Labels") or {}
    for want in filters.get("label", []):
        key, sep, value = want.partition("=")
        if key not in labels or sep and labels[key] != value:
            return False
    patterns = [saferegex.compile(p) for p in filters.get("name", [])]
    if patterns and not any(p.search(n.lstrip("/")) for p in patterns for n in names):
        return False
    return not filters.get("status") or models.state_name(c) in filters["status"]


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
    filters = decode.filters(req.arg("filters"))
    for pattern in filters.get("name", []):
        saferegex.compile(pattern)  # a bad pattern is a 400 even when there is nothing to match
    out = []
    with svc.pool.runtime() as rt:
        every_name = rt.names.names_by_id()  # one read of the name graph for all the rows, as `ps`
        for c in rt.containers(all=req.flag("all") or limit > 0):
            names = every_name.get(c.id, [])
            if not _matches(c, names, filters):
                continue
            size = size_of(rt, c) if req.flag("size") else None
            out.append(models.container_summary(c, names, image_name(rt, c), size,
                                                paused=c.state.running and rt.paused(c)))
            if 0 < limit <= len(out):
                break
    h.send_json(200, out)


def inspect(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        c = rt.get(name)
        data = models.container_inspect(c, image_name(rt, c))
        if rt.paused(c):  # the kernel's word, as `pydock inspect`
            data["State"].update(Paused=True, Status="paused")
        if req.flag("size"):
            data["SizeRw"], data["SizeRootFs"] = size_of(rt, c)
    h.send_json(200, data)


def start(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        c = rt.get(name)
    if c.state.running:
        h.send_empty(304)
        return
    svc.starter.start(c.id)
    h.send_empty(204)


def attach(svc: Services, req: Request, h: Handler, name: str) -> None:
    """The output of the container's current run, or (not running) of its next one: `docker run` attaches
    before it starts. The log is opened now, so nothing written from here on is missed, not even
    after an auto-remove deleted the file. Stdin is not supported (create refuses OpenStdin)."""
    wanted = decode.output_streams(req)
    if not (wanted or req.flag("stdin")):
        raise InvalidArgument("at least one of stdin, stdout and stderr must be set")
    with svc.pool.runtime() as rt:
        c = rt.get(name)
        tty = bool(c.config.get("Tty"))
        with LogReader(c.log_path, from_start=req.flag("logs")) as reader, \
                h.hijack(streams.content_type(tty)) as conn:
            records = rt.logs(c, follow=req.flag("stream"), streams=wanted, reader=reader, next_run=True,
                              cancelled=conn.gone)
            with closing(records):
                streams.copy(records, conn.write, tty)


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
    """Accepted and ignored: API containers have no tty to resize (the CLI sends it with `-t`)."""
    with svc.pool.runtime() as rt:
        rt.get(name)
    h.send_bytes(200, b"", "text/plain; charset=utf-8")


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
                          config=config)
    h.send_json(201, {"Id": models.image_ref(image.id)})


def prune(svc: Services, req: Request, h: Handler) -> None:
    """`POST /containers/prune`: every container that is not running."""
    unknown = sorted(decode.filters(req.arg("filters")))
    if unknown:
        raise InvalidArgument(f"invalid filter '{unknown[0]}' (pydock prunes every stopped container, unfiltered)")
    with svc.pool.runtime() as rt:
        removed, freed = prune_containers(rt)
    h.send_json(200, {"ContainersDeleted": removed or None, "SpaceReclaimed": freed})


ROUTES = [
    ("POST", r"/containers/create", create),
    ("POST", r"/containers/prune", prune),
    ("GET", r"/containers/json", list_containers),
    ("GET", r"/containers/(?P<name>[^/]+)/json", inspect),
    ("POST", r"/containers/(?P<name>[^/]+)/start", start),
    ("POST", r"/containers/(?P<name>[^/]+)/attach", attach),
    ("POST", r"/containers/(?P<name>[^/]+)/wait", wait),
    ("GET", r"/containers/(?P<name>[^/]+)/logs", logs),
    ("POST", r"/containers/(?P<name>[^/]+)/stop", stop),
    ("POST", r"/containers/(?P<name>[^/]+)/kill", kill),
    ("POST", r"/containers/(?P<name>[^/]+)/restart", restart),
    ("POST", r"/containers/(?P<name>[^/]+)/resize", resize),
    ("GET", r"/containers/(?P<name>[^/]+)/changes", changes),
    ("GET", r"/containers/(?P<name>[^/]+)/top", top),
    ("GET", r"/containers/(?P<name>[^/]+)/export", export),
    ("DELETE", r"/containers/(?P<name>.+)", delete),
    ("POST", r"/commit", commit),
]
