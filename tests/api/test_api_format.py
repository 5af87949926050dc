"""`--format` templates: `pydock inspect -f`, `ps --format` and `images --format` print what the real docker
CLI prints for the same template over the same containers (the CLI and `pydock serve` share one root), and
a bad template fails as the docker CLI does (64 when it does not parse, 1 when it fails while running)."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.lxc

INSPECT_TEMPLATES = [
    "{{.Id}} {{.Name}} {{.Config.Image}} {{json .Config.Cmd}} {{.State.Status}} {{.State.ExitCode}}",
    "{{.HostConfig.NetworkMode}} {{.HostConfig.Memory}} {{.HostConfig.Dns}} {{.RestartCount}} {{.Path}}",
    "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}} {{index .Config.Labels \"tier\"}}",
    "{{if .State.Running}}up{{else}}down{{end}} {{upper .State.Status}} {{printf \"%.6s|%-4d|\" .Id 7}}",
    "{{json .Config.Labels}} {{join .Config.Cmd \"+\"}} {{len .Config.Cmd}} {{.Config.Labels}}",
    "{{with .State}}{{.Pid}}{{end}} {{- \" trimmed \" -}} x {{/* a comment */}}",
]
LIST_TEMPLATES = [
    "{{.ID}} {{.Names}} {{.Image}} {{.State}}",
    "table {{.ID}}\\t{{.Names}}\\t{{.State}}\\t{{.Label \"tier\"}}",
    "{{.Names}}: {{if eq .State \"running\"}}running{{else}}not running{{end}}",
]


def _both(server, args: list[str]) -> tuple[tuple[int, str], tuple[int, str]]:
    d = server.docker(*args)
    p = server.pydock(*args)
    return (d.returncode, d.stdout.decode()), (p.returncode, p.stdout.decode())


def test_inspect_ps_and_images_templates_print_what_docker_prints(server):
    tag = uuid.uuid4().hex[:6]
    names = [f"fmt-up-{tag}", f"fmt-down-{tag}"]
    up = server.docker("run", "-d", "--net", "none", "--name", names[0], "--label", "tier=web", "--label",
                       "app=shop", "busybox", "sleep", "60")
    assert up.returncode == 0, up.stderr.decode()
    down = server.docker("run", "--net", "none", "--name", names[1], "--label", "tier=db", "busybox", "true")
    assert down.returncode == 0, down.stderr.decode()
    try:
        for name in names:
            for template in INSPECT_TEMPLATES:
                docker, pydock = _both(server, ["inspect", "-f", template, name])
                assert docker[0] == 0, (template, docker)
                assert pydock == docker, template
        docker, pydock = _both(server, ["inspect", "--format", "{{.Id}} {{.Config.Cmd}}", "busybox"])
        assert docker[0] == 0 and pydock == docker
        for template in LIST_TEMPLATES:
            args = ["ps", "-a", "--filter", f"name=fmt-.*-{tag}", "--format", template]
            docker = server.docker(*args)
            assert docker.returncode == 0, docker.stderr.decode()
            pydock = server.pydock("ps", "-a", "--format", template)
            lines = pydock.stdout.decode().splitlines()
            mine = [line for line in lines if tag in line or line.startswith("CONTAINER ID")]
            assert pydock.returncode == 0 and mine == docker.stdout.decode().splitlines(), template
        docker, pydock = _both(server, ["images", "--format", "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}"])
        assert docker[0] == 0 and pydock == docker
    finally:
        server.docker("rm", "-f", *names)


@pytest.mark.parametrize(("template", "status"), [
    ("{{.Id", 64),                  # does not parse
    ("{{nofunc .Id}}", 64),         # an unknown function is a parse error in Go
    ("{{.NoSuchKey}}", 1),          # fails while it runs: Docker's missingkey=error
    ("{{.Id.Deeper}}", 1),
])
def test_a_bad_template_fails_with_dockers_status(server, template, status):
    d = server.docker("inspect", "-f", template, "busybox")
    p = server.pydock("inspect", "-f", template, "busybox")
    assert d.returncode == status
    assert p.returncode == status and p.stdout == b""
    assert p.stderr.decode().count("\n") == 1 and "template" in p.stderr.decode()
