"""The same Dockerfiles built by podman (its own store, the base imported from the same busybox tar) run
with the same output as pydock's builds: a cross-check of the semantics (stages, build args, ignore
files, ownership, ADD unpacking, substitution, ONBUILD), not a mock."""

from __future__ import annotations

from pathlib import Path

import pytest
from build_helpers import ONBUILD_BASE, ONBUILD_CHILD, app_context, tools_context, write
from images.images_helpers import PODMAN_RUN

pytestmark = pytest.mark.lxc

#: podman's build options on this host (ecosystem.md); docker format keeps ONBUILD and HEALTHCHECK
PODMAN_BUILD = ["--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                "--format", "docker", "-q"]
#: podman would start a systemd timer for the healthcheck, which this host has no systemd for
PODMAN_RUN_NO_HEALTH = [*PODMAN_RUN, "--health-cmd", "none"]


def _both(pydock, podman, ctx: Path, tag: str, *build_args: str) -> tuple[str, str]:
    pydock("build", "-q", "-t", tag, *build_args, str(ctx))
    podman("build", *PODMAN_BUILD, "-t", tag, *build_args, str(ctx))
    ours = pydock("run", "--rm", tag).out
    theirs = podman("run", "--rm", *PODMAN_RUN_NO_HEALTH, f"localhost/{tag}").out
    return ours, theirs


@pytest.mark.parametrize("args", [(), ("--build-arg", "VERSION=9.9", "--build-arg", "FLAVOR=mild")])
def test_app_same_output_as_podman(pydock, podman, tmp_path: Path, args: tuple[str, ...]):
    ours, theirs = _both(pydock, podman, app_context(tmp_path / "app"), "app:1", *args)
    assert ours == theirs
    assert ours.startswith("hello world from /opt/app as app\n")


def test_tools_same_output_as_podman(pydock, podman, tmp_path: Path):
    ours, theirs = _both(pydock, podman, tools_context(tmp_path / "tools"), "tools:1")
    assert ours == theirs
    assert "item c\n/opt a,b,c\n" in ours


def test_onbuild_same_output_as_podman(pydock, podman, tmp_path: Path):
    write(tmp_path / "base/Dockerfile", ONBUILD_BASE)
    write(tmp_path / "child/Dockerfile", ONBUILD_CHILD.replace("FROM onbase:1", "FROM {base}"))
    write(tmp_path / "child/trigger.txt", "a child\n")
    pydock("build", "-q", "-t", "onbase:1", str(tmp_path / "base"))
    podman("build", *PODMAN_BUILD, "-t", "onbase:1", str(tmp_path / "base"))
    child = tmp_path / "child/Dockerfile"
    template = child.read_text()
    child.write_text(template.format(base="onbase:1"))
    pydock("build", "-q", "-t", "child:1", str(tmp_path / "child"))
    child.write_text(template.format(base="localhost/onbase:1"))
    podman("build", *PODMAN_BUILD, "-t", "child:1", str(tmp_path / "child"))
    ours = pydock("run", "--rm", "child:1").out
    assert ours == podman("run", "--rm", *PODMAN_RUN, "localhost/child:1").out == "built on a child\n"
