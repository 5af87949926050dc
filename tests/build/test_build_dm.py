"""`pydock build` on the devicemapper driver (runs inside User-Mode Linux): the two-stage app builds as a
chain of thin snapshots, its RUN steps run on them, the image runs, a rebuild is all cache, and removing
everything drops every thin device the build made."""

from __future__ import annotations

from pathlib import Path

import pytest
from build_helpers import APP_OUTPUT, BASE, app_context, tools_context
from root_helpers import teardown_root
from images.images_helpers import Pydock

pytestmark = [pytest.mark.dm, pytest.mark.lxc]


def test_build_on_devicemapper(tmp_path: Path, busybox_rootfs: Path):
    root = tmp_path / "dmroot"
    pydock = Pydock(root, "devicemapper")
    try:
        pydock("import", str(busybox_rootfs), BASE)
        out = pydock("build", "-t", "app:dm", "--build-arg", "FLAVOR=thin", str(app_context(tmp_path / "app"))).out
        assert "Successfully tagged app:dm" in out and out.count(" ---> Running in ") == 3
        assert pydock("run", "--rm", "app:dm").out == APP_OUTPUT.format(version="0.0", flavor="thin")
        again = pydock("build", "-t", "app:dm", "--build-arg", "FLAVOR=thin", str(tmp_path / "app")).out
        assert "Running in" not in again and again.count("Using cache") == 16
        pydock("build", "-t", "tools:dm", str(tools_context(tmp_path / "tools")))
        assert pydock("run", "--rm", "tools:dm").out.startswith("item a\nitem b\nitem c\n")
        assert pydock("ps", "-aq").out == ""
    finally:
        teardown_root(root, "devicemapper")
