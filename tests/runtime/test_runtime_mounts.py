"""`--read-only` and `--tmpfs`: a read-only root with volumes and tmpfs mounts still writable, tmpfs
options as Docker gives them (rw,noexec,nosuid,nodev unless asked otherwise), bad options refused."""

from __future__ import annotations

import pytest

from pydock.utils.errors import InvalidArgument

pytestmark = pytest.mark.lxc


def test_a_read_only_root_with_tmpfs_and_volumes(rt):
    result = rt.run("busybox", ["sh", "-c", "touch /x 2>/dev/null && echo root-rw; touch /run/a /data/b && echo ok; "
                                            "grep -E ' /run | /scratch ' /proc/mounts | cut -d' ' -f2,4"],
                    remove=True, read_only=True, tmpfs=("/run:size=1m", "/scratch:exec,mode=1777"),
                    volumes=("/data",))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "ok"
    mounts = dict(line.split(" ", 1) for line in lines[1:])
    assert set(mounts["/run"].split(",")) >= {"rw", "noexec", "nosuid", "nodev", "size=1024k"}
    assert "noexec" not in mounts["/scratch"].split(",") and "nosuid" in mounts["/scratch"].split(",")
    assert rt.run("busybox", ["touch", "/x"], remove=True).exit_code == 0  # without it: writable


@pytest.mark.parametrize("spec, message", [
    ("relative", "mount path must be absolute"),
    ("/", "can't be '/'"),
    ("/t:size=1;reboot", "invalid tmpfs option 'size=1;reboot'"),
    ("/t:bind", "invalid tmpfs option 'bind'"),
])
def test_bad_tmpfs_specs_are_refused(rt, spec, message):
    with pytest.raises(InvalidArgument, match=message):
        rt.create("busybox", ["true"], tmpfs=(spec,))
    assert rt.containers(all=True) == []
