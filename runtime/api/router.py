"""The route table of `pydock serve` and its dispatch: which handler answers a request, and how a
handler's error becomes Docker's `{"message": ...}` with the status the clients branch on."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable

from pydock.runtime.api import (archive, build, containers, events, execs, images, networks, system, unsupported,
                                volumes)
from pydock.runtime.api.httpd import Handler, Request
from pydock.runtime.api.services import Services
from pydock.utils.errors import Conflict, InvalidArgument, LaunchError, NotFound, PydockError

log = logging.getLogger(__package__)

RouteHandler = Callable[..., None]
#: (method, path pattern with named groups, handler(services, request, handler, **groups)).
Route = tuple[str, str, RouteHandler]


def status_for(err: BaseException) -> int:
    """HTTP status of a pydock error: 404 missing, 409 conflict, 400 bad input (a command that can't
    run included), 500 otherwise."""
    if isinstance(err, NotFound):
        return 404
    if isinstance(err, Conflict):
        return 409
    if isinstance(err, InvalidArgument):
        return 400
    if isinstance(err, LaunchError) and err.exit_code in (126, 127):
        return 400
    return 500


class Router:
    """`router(request, handler)` for every request the server parses."""

    def __init__(self, services: Services, routes: Iterable[Route] | None = None) -> None:
        self.services = services
        table = routes if routes is not None else [*system.ROUTES, *containers.ROUTES, *events.ROUTES,
                                                   *images.ROUTES, *build.ROUTES, *volumes.ROUTES,
                                                   *archive.ROUTES, *execs.ROUTES, *networks.ROUTES,
                                                   *unsupported.ROUTES]
        self.routes = [(method, re.compile(f"^{pattern}/?$"), fn) for method, pattern, fn in table]

    def __call__(self, req: Request, h: Handler) -> None:
        for method, pattern, fn in self.routes:
            m = pattern.match(req.path) if method == req.method else None
            if m:
                break
        else:
            h.send_error_message(404, "page not found")
            return
        try:
            fn(self.services, req, h, **m.groupdict())
        except (BrokenPipeError, ConnectionResetError, InterruptedError) as err:
            log.debug("%s %s: the client went away (%s)", req.method, req.path, err)
            h.close_connection = True
        except PydockError as err:
            self._fail(h, status_for(err), str(err))
        except TimeoutError as err:
            self._fail(h, 500, str(err) or "timed out")
        except Exception as err:  # noqa: BLE001 - a server answers every request
            log.exception("%s %s failed", req.method, req.path)
            self._fail(h, 500, f"{type(err).__name__}: {err}")

    @staticmethod
    def _fail(h: Handler, status: int, message: str) -> None:
        if h.responded:
            h.close_connection = True  # mid-stream: the client sees the stream end
            return
        h.send_error_message(status, message)
