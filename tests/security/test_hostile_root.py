"""pydock's state root is trusted as its own: a root another user could write into is refused with a
clear message, and what pydock makes in it (containers, volumes) is private like Docker's."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from hostile_helpers import clean_env, overlay_store, pydock_argv  # noqa: F401 - a fixture


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*pydock_argv(root, "overlay"), *args], capture_output=True, timeout=60, env=clean_env())


@pytest.mark.parametrize("mode,owner,match", [(0o777, 0, "writable by group or others (mode 0777; chmod go-w"),
                                               (0o775, 0, "writable by group or others"),
                                               (0o700, 65534, "owned by uid 65534, not root")])
def test_a_root_others_can_write_is_refused(tmp_path: Path, mode: int, owner: int, match: str):
    root = tmp_path / "root"
    root.mkdir()
    os.chmod(root, mode)
    os.chown(root, owner, 0)
    for args in (("ps", "-a"), ("serve", "-H", f"unix://{tmp_path}/s.sock")):
        p = _cli(root, *args)
        assert p.returncode == 1 and match in p.stderr.decode(), (args, p.stderr.decode())
    assert sorted(os.listdir(root)) == []  # nothing was made in it
    assert not (tmp_path / "s.sock").exists()


def test_a_new_root_and_what_is_made_in_it_are_private(tmp_path: Path, overlay_store):
    root = tmp_path / "fresh"
    assert _cli(root, "ps", "-a").returncode == 0
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    store = overlay_store
    cid = store.ok("create", "-v", "/data", "busybox", "true").strip()
    try:
        cdir = store.root / "containers" / cid
        assert stat.S_IMODE(cdir.stat().st_mode) == 0o700
        assert stat.S_IMODE((store.root / "volumes").stat().st_mode) == 0o700
        (volume,) = (store.root / "volumes").iterdir()
        assert stat.S_IMODE(volume.stat().st_mode) == 0o755  # like Docker's _data: the container's users enter it
    finally:
        store.ok("rm", "-v", cid)
