"""Docker endpoints pydock does not have answer one clear line (dockerd's own where it has one: a node not in
a swarm), never "page not found"; driven with the docker CLI as a user would meet them."""

from __future__ import annotations

import pytest
from test_api_protocol import call

pytestmark = pytest.mark.lxc

NOT_A_MANAGER = 'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join"'


@pytest.mark.parametrize(("args", "says"), [
    (["search", "busybox"], "image search (GET /images/search, docker search) is not supported by pydock"),
    (["service", "ls"], NOT_A_MANAGER),
    (["node", "ls"], NOT_A_MANAGER),
    (["secret", "ls"], NOT_A_MANAGER),
    (["config", "ls"], NOT_A_MANAGER),
    (["service", "create", "busybox"], NOT_A_MANAGER),
    (["swarm", "init"], "swarm mode (docker swarm init/join) is not supported by pydock"),
    (["swarm", "leave"], "This node is not part of a swarm"),
    (["plugin", "ls"], "plugins (/plugins) are not supported by pydock"),
    (["plugin", "install", "--grant-all-permissions", "vieux/sshfs"], "plugins (/plugins) are not supported"),
])
def test_the_cli_gets_one_clear_line_and_fails(server, args, says):
    p = server.docker(*args, timeout=60)
    err = p.stderr.decode().strip()
    assert p.returncode != 0, p.stdout.decode()
    assert says in err and len(err.splitlines()) == 1, err
    assert "page not found" not in err


def test_statuses_are_dockerds(server):
    assert call(server, "GET", "/v1.44/services")[0].status == 503
    assert call(server, "GET", "/v1.44/swarm")[0].status == 503
    assert call(server, "GET", "/v1.44/plugins")[0].status == 501
    assert call(server, "GET", "/v1.44/images/search?term=x")[0].status == 501
    assert call(server, "POST", "/v1.44/session")[0].status == 501
    # a path Docker has no such endpoint for is still "page not found"
    r, body = call(server, "GET", "/v1.44/no-such-endpoint")
    assert r.status == 404 and b"page not found" in body


def test_build_cache_prune_has_nothing_to_reclaim(server):
    p = server.docker("builder", "prune", "-f")
    assert p.returncode == 0, p.stderr.decode()
    assert "Total reclaimed space: 0B" in p.stdout.decode()
