"""`/containers/{id}/archive`: GET a container path as a tar (its stat in X-Docker-Container-Path-Stat),
HEAD the stat alone, PUT a tar into a container directory. The rules and the safety are runtime/copy.py's."""

from __future__ import annotations

import base64
import json
import logging

from pydock.runtime.api.httpd import Handler, Request
from pydock.runtime.api.services import Services
from pydock.runtime.copy import PathStat, ReadOnly
from pydock.utils.errors import InvalidArgument, PydockError

log = logging.getLogger(__package__)

STAT_HEADER = "X-Docker-Container-Path-Stat"
TAR = "application/x-tar"


def _path(req: Request) -> str:
    path = req.arg("path")
    if not path:
        raise InvalidArgument("the path query parameter is required (a path in the container)")
    return path


def _stat_header(st: PathStat) -> tuple[str, str]:
    return STAT_HEADER, base64.b64encode(json.dumps(st.to_json()).encode()).decode()


def head(svc: Services, req: Request, h: Handler, name: str) -> None:
    path = _path(req)
    with svc.pool.runtime() as rt, rt.container_files(rt.get(name), name) as files:
        st = files.stat(path)
    h.send_bytes(200, b"", TAR, headers=(_stat_header(st),))


def get(svc: Services, req: Request, h: Handler, name: str) -> None:
    path = _path(req)
    with svc.pool.runtime() as rt, rt.container_files(rt.get(name), name) as files, files.source(path) as src:
        out = h.start_stream(TAR, headers=(_stat_header(src.stat),))
        src.write(out)
        files.record("archive-path")
    out.close()


def put(svc: Services, req: Request, h: Handler, name: str) -> None:
    path = _path(req)
    try:
        with svc.pool.runtime() as rt, rt.container_files(rt.get(name), name) as files:
            files.extract(path, req.body, copy_uid_gid=req.flag("copyUIDGID"),  # type: ignore[arg-type]
                          no_overwrite_dir_non_dir=req.flag("noOverwriteDirNonDir"))
    except ReadOnly as err:
        _discard_body(req, h)
        h.send_error_message(403, str(err))
        return
    except BaseException:
        _discard_body(req, h)
        raise
    h.send_empty(200)


def _discard_body(req: Request, h: Handler) -> None:
    """Before a refusal: read what is left of a small body, so the client, still sending it, gets to read
    the answer (as Go's server does); past the drain limit the connection is closed instead."""
    try:
        h.close_connection = not req.body.drain()
    except (OSError, PydockError) as err:
        log.debug("archive upload: the rest of the body could not be read (%s)", err)
        h.close_connection = True


ROUTES = [
    ("HEAD", r"/containers/(?P<name>[^/]+)/archive", head),
    ("GET", r"/containers/(?P<name>[^/]+)/archive", get),
    ("PUT", r"/containers/(?P<name>[^/]+)/archive", put),
]
