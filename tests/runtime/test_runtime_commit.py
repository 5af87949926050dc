"""`commit --change` and `--pause`: Dockerfile instructions applied to the new image's config, a bad one
refused with nothing made, and a running container frozen only while its changes are read."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.lxc


def _ok(cli, *args: str) -> str:
    p = cli(*args)
    assert p.returncode == 0, f"{args}: {p.stderr.decode()}"
    return p.stdout.decode()


def test_changes_set_the_image_config_and_a_bad_one_makes_nothing(cli):
    _ok(cli, "run", "--name", "src", "--net", "none", "-e", "BASE=/srv", "busybox", "sh", "-c",
        "echo made > /made")
    image = _ok(cli, "commit", "-c", 'CMD ["cat", "/made"]', "--change", "ENV WHERE=$BASE/app",
                "-c", "EXPOSE 8080/tcp", "-c", "WORKDIR /tmp", "-c", "LABEL tier=web", "src", "app:1").strip()
    config = json.loads(_ok(cli, "inspect", "-f", "{{json .Config}}", "app:1"))
    assert config["Cmd"] == ["cat", "/made"]
    assert "WHERE=/srv/app" in config["Env"]  # substituted from the container's own Env, as Docker does
    assert "8080/tcp" in config["ExposedPorts"] and config["WorkingDir"] == "/tmp"
    assert config["Labels"] == {"tier": "web"}
    assert _ok(cli, "run", "--rm", "--net", "none", "app:1") == "made\n"
    before = _ok(cli, "images", "-q", "-a").split()
    bad = cli("commit", "-c", "RUN touch /x", "src", "app:2")
    assert bad.returncode != 0 and bad.stderr.decode().count("\n") == 1
    assert "RUN" in bad.stderr.decode()
    assert _ok(cli, "images", "-q", "-a").split() == before
    _ok(cli, "rm", "src")
    _ok(cli, "rmi", image)


def test_a_running_container_is_thawed_after_commit_and_a_paused_one_stays_paused(cli):
    cid = _ok(cli, "run", "-d", "--net", "none", "busybox", "sh", "-c",
              "while :; do date >> /ticks; sleep 0.05; done").strip()
    try:
        _ok(cli, "commit", cid, "ticking:1")
        assert _ok(cli, "inspect", "-f", "{{.State.Status}} {{.State.Paused}}", cid).split() == ["running", "false"]
        _ok(cli, "pause", cid)
        _ok(cli, "commit", "--pause=false", cid, "ticking:2")
        _ok(cli, "commit", cid, "ticking:3")
        assert _ok(cli, "inspect", "-f", "{{.State.Status}}", cid).strip() == "paused"
        _ok(cli, "unpause", cid)
        # the image holds what the container had written: a file of tick lines
        assert _ok(cli, "run", "--rm", "--net", "none", "ticking:3", "sh", "-c", "test -s /ticks && echo yes") == "yes\n"
    finally:
        _ok(cli, "rm", "-f", cid)
