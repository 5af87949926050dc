"""Docker endpoints pydock does not have, answered with one clear line instead of "page not found": swarm
(as a dockerd that is not in a swarm answers), plugins, registry search and login, BuildKit sessions.
The build-cache prune is answered for real: the classic builder keeps no cache to prune."""

from __future__ import annotations

from collections.abc import Callable

from pydock.runtime.api.httpd import Handler, Request
from pydock.runtime.api.services import Services

#: dockerd's own words (daemon/cluster) on a node that is not in a swarm, with its status (503)
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect '
                 "this node to swarm and try again.")
NOT_IN_A_SWARM = "This node is not part of a swarm"
_SWARM_MODE = "swarm mode (docker swarm init/join) is not supported by pydock"
_PLUGINS = "plugins (/plugins) are not supported by pydock"
_SEARCH = "image search (GET /images/search, docker search) is not supported by pydock"
_AUTH = ("registry login through the API (POST /auth) is not supported by pydock; "
         "pydock login stores credentials for pydock's own pull and push")
_BUILDKIT = ("BuildKit (POST /session, /grpc) is not supported by pydock: it serves the classic builder "
             "(DOCKER_BUILDKIT=0)")
_ANY = ("GET", "POST", "PUT", "DELETE", "HEAD")


def _refuse(status: int, message: str) -> Callable[..., None]:
    def handler(svc: Services, req: Request, h: Handler, **_: str) -> None:
        h.send_error_message(status, message)
    return handler


def prune_build_cache(svc: Services, req: Request, h: Handler) -> None:
    """`POST /build/prune`: nothing to reclaim (the classic builder caches no layers apart from images)."""
    h.send_json(200, {"CachesDeleted": None, "SpaceReclaimed": 0})


_RULES: list[tuple[tuple[str, ...], str, int, str]] = [
    (("POST",), r"/swarm/(init|join)", 501, _SWARM_MODE),
    (("POST",), r"/swarm/(leave|unlock)", 503, NOT_IN_A_SWARM),
    (_ANY, r"/swarm(/.*)?", 503, NOT_A_MANAGER),
    (_ANY, r"/(services|nodes|secrets|configs|tasks)(/.*)?", 503, NOT_A_MANAGER),
    (_ANY, r"/plugins(/.*)?", 501, _PLUGINS),
    (("GET",), r"/images/search", 501, _SEARCH),
    (("POST",), r"/auth", 501, _AUTH),
    (("POST",), r"/(session|grpc)", 501, _BUILDKIT),
]

#: after every implemented route (the router takes the first match), so a real route always wins
ROUTES = [("POST", r"/build/prune", prune_build_cache),
          *[(method, pattern, _refuse(status, message)) for methods, pattern, status, message in _RULES
            for method in methods]]
