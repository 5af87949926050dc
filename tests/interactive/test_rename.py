"""`rename`: the name moves in the name graph, links to the container follow it, the record agrees,
also when the container's monitor writes its exit after the rename."""

from __future__ import annotations

import json

import pytest
from tty_helpers import pydock

pytestmark = pytest.mark.lxc

LOOP = 'trap "exit 7" TERM; while :; do sleep 1; done'


def _names(root) -> dict[str, str]:
    rows = pydock(root, "ls").stdout.decode().splitlines()[1:]
    return {r.split()[0]: r.split()[1] for r in rows}


def test_rename_keeps_links_and_the_record(root):
    p = pydock(root, "run", "-d", "--name", "db1", "busybox", "sh", "-c", LOOP)
    assert p.returncode == 0, p.stderr
    cid = p.stdout.decode().strip()
    assert pydock(root, "create", "--name", "web", "--link", "db1:db", "busybox", "true").returncode == 0
    p = pydock(root, "rename", "db1", "store")
    assert (p.returncode, p.stderr) == (0, b"")
    names = _names(root)
    assert names["/store"] == cid[:12] and names["/web/db"] == cid[:12] and "/db1" not in names
    assert json.loads(pydock(root, "inspect", "store").stdout)[0]["Name"] == "/store"
    p = pydock(root, "inspect", "db1")
    assert p.returncode != 0
    # the monitor records the exit under the new name
    assert pydock(root, "stop", "store").returncode == 0
    assert pydock(root, "wait", "store").stdout == b"7\n"
    assert json.loads(pydock(root, "inspect", "store").stdout)[0]["Name"] == "/store"


def test_rename_refusals_change_nothing(root):
    assert pydock(root, "create", "--name", "one", "busybox", "true").returncode == 0
    assert pydock(root, "create", "--name", "two", "busybox", "true").returncode == 0
    p = pydock(root, "rename", "one", "two")
    assert p.returncode != 0 and b"already assigned" in p.stderr
    p = pydock(root, "rename", "one", "b@d")
    assert p.returncode == 2 and b"Invalid container name" in p.stderr
    p = pydock(root, "rename", "one", "one")
    assert p.returncode != 0 and b"same name" in p.stderr
    p = pydock(root, "rename", "nosuch", "three")
    assert p.returncode != 0
    assert set(_names(root)) == {"/one", "/two"}
    assert json.loads(pydock(root, "inspect", "one").stdout)[0]["Name"] == "/one"
