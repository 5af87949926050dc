"""`Runtime.exec` on every storage driver (devicemapper inside UML): the process sees the container's
rootfs, runs in its namespaces, and its status comes back."""

from __future__ import annotations

import tempfile

import pytest

from pydock.runtime.exec import ExecConfig
from pydock.runtime.options import CreateOptions
from pydock.utils.errors import Conflict

pytestmark = pytest.mark.lxc


def test_exec_in_a_running_container(rt):
    c = rt.create(CreateOptions(image="busybox", cmd=("sh", "-c", "echo from-run > /made; "
                                                       'trap "exit 0" TERM; while :; do sleep 1; done')))
    with pytest.raises(Conflict, match="is not running"):
        rt.exec(c, ExecConfig(cmd=("true",)))
    rt.start(c)
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            code = 1
            for _ in range(600):  # the command writes /made as it starts
                code = rt.exec(c, ExecConfig(cmd=("cat", "/made")), stdout=out, stderr=err)
                if code == 0:
                    break
            assert code == 0
            out.truncate(0)
            out.seek(0)
            code = rt.exec(c, ExecConfig(cmd=("sh", "-c", "cat /made; echo $$ $(readlink /proc/self/exe); exit 5")),
                           stdout=out, stderr=err)
            out.seek(0)
            lines = out.read().decode().splitlines()
        assert code == 5
        assert lines[0] == "from-run"
        pid, exe = lines[1].split()
        assert int(pid) > 1 and exe == "/bin/busybox"  # a new process in the container's pid namespace
    finally:
        rt.stop(c, timeout=10)
