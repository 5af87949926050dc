"""dockerinit lookup in a development checkout (no generated buildinfo): a shim running this interpreter.

The built cases (sha256 check, pinned copy, refusal) run against real bundles in
test_packaging_binary.py and test_packaging_deb.py.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pydock.dockerinit import locate
from pydock.utils.errors import LaunchError
from pydock.utils.paths import RootLayout
from pydock.utils.version import VERSION


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RootLayout:
    monkeypatch.delenv(locate.ENV_PATH, raising=False)
    return RootLayout(tmp_path / "root")


def test_checkout_has_no_generated_buildinfo() -> None:
    """utils/buildinfo.py is written into bundles only; one left in the tree would pose as a release build."""
    assert locate.build_identity() is None
    src = Path(locate.__file__).resolve().parents[1]
    assert not (src / "utils" / "buildinfo.py").exists()


def test_dev_shim_is_written_once_with_this_interpreter(layout: RootLayout) -> None:
    shim = locate.dockerinit_path(layout)
    assert shim == layout.init / f"dockerinit-{VERSION}-dev"
    assert stat.S_IMODE(shim.stat().st_mode) == 0o700
    assert shim.read_text().splitlines()[0] == f"#!{sys.executable}"
    inode = shim.stat().st_ino
    assert locate.dockerinit_path(layout) == shim
    assert shim.stat().st_ino == inode  # unchanged content: not rewritten


def test_env_override_must_be_executable(layout: RootLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "my-dockerinit"
    helper.write_text("#!/bin/sh\n")
    monkeypatch.setenv(locate.ENV_PATH, str(helper))
    with pytest.raises(LaunchError, match=r"^Could not locate dockerinit: \$PYDOCK_DOCKERINIT=.* is not an executable"):
        locate.dockerinit_path(layout)
    helper.chmod(0o755)
    assert locate.dockerinit_path(layout) == helper
    assert not layout.init.exists()


def test_candidates_follow_docker_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$PYDOCK_DOCKERINIT, then beside the program, then <prefix>/libexec, then the system libexec dirs."""
    prog = tmp_path / "usr/bin/pydock"
    prog.parent.mkdir(parents=True)
    prog.write_text("")
    monkeypatch.setenv(locate.ENV_PATH, "/opt/x/dockerinit")
    monkeypatch.setattr(sys, "argv", [str(prog)])
    paths = locate.candidate_paths()
    assert paths[0] == Path("/opt/x/dockerinit")
    assert paths.index(tmp_path / "usr/bin/dockerinit") < paths.index(tmp_path / "usr/libexec/pydock/dockerinit")
    assert paths[-2:] == [Path("/usr/libexec/pydock/dockerinit"), Path("/usr/local/libexec/pydock/dockerinit")]


def test_dev_shim_runs_pydock_dockerinit(layout: RootLayout) -> None:
    """The shim is `python -m pydock.dockerinit`; run by hand (no arguments) the helper refuses, like Docker's."""
    shim = locate.dockerinit_path(layout)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK")}
    res = subprocess.run([str(shim)], capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode != 0
    assert "No module named" not in res.stderr, res.stderr
    assert "Traceback" not in res.stderr, res.stderr


def test_a_candidate_that_cannot_be_read_is_named_in_the_error(layout: RootLayout, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A built pydock: missing candidates are only listed as looked at, one that fails to read says why."""
    monkeypatch.setattr(locate, "build_identity", lambda: locate.BuildIdentity(VERSION, "abc1234", "0" * 64))
    unreadable = tmp_path / "a-directory"
    unreadable.mkdir()
    monkeypatch.setenv(locate.ENV_PATH, str(unreadable))
    (layout.init).mkdir(parents=True)
    (layout.init / f"dockerinit-{VERSION}").mkdir()  # the pinned copy unreadable too
    with pytest.raises(LaunchError) as caught:
        locate.dockerinit_path(layout)
    message = str(caught.value)
    assert f"rejected {layout.init / f'dockerinit-{VERSION}'} (Is a directory), {unreadable} (Is a directory);" \
        in message
    assert "/usr/libexec/pydock/dockerinit" in message  # missing: looked at, not rejected
    assert "/usr/libexec/pydock/dockerinit (" not in message
