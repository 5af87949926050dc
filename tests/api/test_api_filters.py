"""Listing filters through `pydock serve` with the real docker CLI (`docker ps --filter`, `docker images
--filter`) and through `pydock ps --filter`: each key Docker has is carried out or refused, never ignored."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.lxc


def _ok(p) -> list[str]:
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode().split()


def test_container_filters_pick_what_docker_would(server):
    tag = uuid.uuid4().hex[:6]
    first, web, done, failed = (f"f-{n}-{tag}" for n in ("first", "web", "done", "failed"))
    d = server.docker
    _ok(d("create", "--net", "none", "--name", first, "busybox", "true"))
    _ok(d("commit", first, f"child-{tag}:1"))
    _ok(d("run", "-d", "--net", "none", "--name", web, "--label", "tier=web", "--label", "team=a",
          "--expose", "8080", "-v", f"vol-{tag}:/data", f"child-{tag}:1", "sleep", "60"))
    _ok(d("run", "--net", "none", "--name", done, "--label", "tier=batch", "busybox", "true"))
    d("run", "--net", "none", "--name", failed, "busybox", "sh", "-c", "exit 3")
    try:
        def names(*filters: str, all_: bool = False) -> set[str]:
            args = ["ps", *(["-a"] if all_ else []), "--format", "{{.Names}}"]
            for f in filters:
                args += ["--filter", f]
            return {n for n in _ok(d(*args)) if n.endswith(tag)}

        assert names("label=tier") == {web}                       # only running ones without -a
        assert names("label=tier", all_=True) == {web, done}
        assert names("label=tier=batch", all_=True) == {done}
        assert names("label=tier", "label=team=a", all_=True) == {web}
        assert names("status=exited") == {done, failed}           # a status filter looks at stopped ones too
        assert names("status=created", all_=True) == {first}
        assert names("exited=3", all_=True) == {failed}
        assert names(f"ancestor=child-{tag}:1", all_=True) == {web}
        assert names("ancestor=busybox", all_=True) == {first, web, done, failed}  # child-… is built on it
        assert names(f"since={web}", all_=True) == {done, failed}
        assert names(f"before={done}", all_=True) == {first, web}
        assert names(f"volume=vol-{tag}", all_=True) == names("volume=/data", all_=True) == {web}
        assert names("expose=8080", all_=True) == names("expose=8000-8090/tcp", all_=True) == {web}
        assert names("network=none", all_=True) == {first, web, done, failed}
        # as dockerd, a --net none container is on the predefined `none` network, in inspect and in ps
        assert _ok(d("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", web)) == ["none"]
        assert _ok(d("ps", "--filter", f"name={web}", "--format", "{{.Networks}}")) == ["none"]
        assert names("ancestor=no-such-image", all_=True) == set()
        for bad, message in (("bogus=1", "invalid filter 'bogus'"), ("status=sleeping", "invalid filter 'status=sleeping'"),
                             ("exited=x", "invalid filter 'exited=x'"), ("health=healthy", "health filter")):
            refused = d("ps", "--filter", bad)
            assert refused.returncode == 1 and message in refused.stderr.decode(), bad
        # the pydock CLI takes the same filters
        mine = server.pydock("ps", "-a", "-f", "label=tier", "-f", f"name={tag}", "--format", "{{.Names}}")
        assert set(_ok(mine)) == {web, done}
        assert server.pydock("ps", "-f", "bogus=1").returncode != 0
    finally:
        d("rm", "-f", "-v", first, web, done, failed)
        d("volume", "rm", f"vol-{tag}")
        d("rmi", f"child-{tag}:1")


def test_image_filters_pick_what_docker_would(server):
    tag = uuid.uuid4().hex[:6]
    d = server.docker
    _ok(d("create", "--net", "none", "--name", f"src-{tag}", "busybox", "true"))
    try:
        _ok(d("commit", "-c", "LABEL stage=one", f"src-{tag}", f"one-{tag}:1"))
        _ok(d("commit", "-c", "LABEL stage=two", f"src-{tag}", f"two-{tag}:1"))

        def repos(*filters: str) -> set[str]:
            args = ["images", "--format", "{{.Repository}}"]
            for f in filters:
                args += ["--filter", f]
            return {r for r in _ok(d(*args)) if r.endswith(tag)}

        assert repos("label=stage") == {f"one-{tag}", f"two-{tag}"}
        assert repos("label=stage=two") == {f"two-{tag}"}
        assert repos(f"since=one-{tag}:1") == {f"two-{tag}"}
        assert repos(f"before=two-{tag}:1") == {f"one-{tag}"}
        assert repos(f"reference=one-{tag}") == {f"one-{tag}"}
        refused = d("images", "--filter", "bogus=1")
        assert refused.returncode == 1 and "invalid filter 'bogus'" in refused.stderr.decode()
        # the pydock CLI takes the same filters
        mine = server.pydock("images", "-f", "label=stage", "-f", f"since=one-{tag}:1", "--format", "{{.Repository}}")
        assert _ok(mine) == [f"two-{tag}"]
        assert server.pydock("images", "-f", "bogus=1").returncode != 0
    finally:
        d("rm", f"src-{tag}")
        d("rmi", f"one-{tag}:1", f"two-{tag}:1")
