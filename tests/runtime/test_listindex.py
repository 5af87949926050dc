"""The listing index (runtime/listindex.py): `ps -a` answers from it, and never shows a row older than
the container's config.json — whatever changed it (start, stop, rename, rm, a monitor killed with -9),
and whatever happened to the index (corrupt, torn, holding containers since removed).

A config.json changed within the last second is never cached (racy-git rule), so every test first
lets its containers age past that: only then does a listing answer from the index, and a stale entry
could show."""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest
from root_helpers import comm

from pydock.runtime import monitorlock
from pydock.runtime.launcher import container_init
from pydock.runtime.listindex import ListingIndex
from pydock.runtime.state import EXIT_KILLED, Status

pytestmark = pytest.mark.lxc

AGE = 1.1  # past listindex._RACY_NS: the entries the next listing writes are then used


def _index(rt) -> ListingIndex:
    return ListingIndex(rt.layout.containers_index, rt.layout.containers)


def _listed(rt) -> dict:
    return {c.id: c for c in rt.containers(all=True)}


def _cached_listing(rt, *containers) -> dict:
    """Age `containers` past the racy window, list (writing their entries), check the index holds them."""
    time.sleep(AGE)
    listed = _listed(rt)
    assert {c.id for c in containers} <= _index(rt).cached()
    return listed


def test_listing_from_the_index_is_the_container_as_loaded(rt):
    c = rt.create("busybox", ["sh", "-c", "exit 3"], name="same", labels=("k=v",))
    _cached_listing(rt, c)
    listed = _listed(rt)[c.id]  # this one from the entry
    assert listed == rt.load(c.id)  # every field, Config (decoded on use) and HostConfig included
    assert listed.config["Labels"] == {"k": "v"} and listed.hostconfig == rt.load(c.id).hostconfig


def test_a_config_changed_within_the_racy_window_is_read_not_cached(rt):
    c = rt.create("busybox", ["true"], name="fresh")
    _cached_listing(rt, c)
    soon = time.time_ns() + 10 * 10**9  # "changed in the last second" whatever this machine's speed (or a clock stepped back)
    os.utime(c.config_path, ns=(soon, soon))
    assert c.id in _listed(rt)
    assert c.id not in _index(rt).cached()  # its next change could share the timestamp tick: not kept


def test_start_and_exit_after_a_cached_listing_show(rt):
    c = rt.create("busybox", ["sh", "-c", "exit 3"], name="runs")
    assert _cached_listing(rt, c)[c.id].state.status is Status.CREATED
    rt.start(c)
    rt.wait(c, timeout=30)
    listed = _listed(rt)[c.id]
    assert listed.state.status is Status.EXITED and listed.state.exit_code == 3
    assert _listed(rt)[c.id].state.exit_code == 3  # and again, from whatever the index holds now


def test_rename_after_a_cached_listing_shows(rt):
    c = rt.create("busybox", ["true"], name="before")
    _cached_listing(rt, c)
    rt.rename(c, "after")  # the same length: config.json keeps its size
    assert _listed(rt)[c.id].name == "/after"


def test_removed_after_a_cached_listing_is_gone_and_its_entry_dropped(rt):
    keep = rt.create("busybox", ["true"], name="keep")
    gone = rt.create("busybox", ["true"], name="gone")
    _cached_listing(rt, keep, gone)
    rt.remove(gone)
    assert set(_listed(rt)) == {keep.id}
    assert _index(rt).cached() == {keep.id}


def test_an_index_from_before_a_removal_shows_no_removed_container(rt):
    keep = rt.create("busybox", ["true"], name="keep")
    gone = rt.create("busybox", ["true"], name="gone")
    _cached_listing(rt, keep, gone)
    old = rt.layout.containers_index.read_bytes()
    rt.remove(gone)
    _listed(rt)
    rt.layout.containers_index.write_bytes(old)  # e.g. written late by a listing that began before the rm
    assert gone.id in _index(rt).cached()
    assert set(_listed(rt)) == {keep.id}


def test_an_index_holding_an_older_state_is_not_believed(rt):
    c = rt.create("busybox", ["sh", "-c", "exit 5"], name="older")
    _cached_listing(rt, c)
    old = rt.layout.containers_index.read_bytes()
    rt.start(c)
    rt.wait(c, timeout=30)
    rt.layout.containers_index.write_bytes(old)  # a slow lister's rewrite racing the exit
    assert _listed(rt)[c.id].state.exit_code == 5


@pytest.mark.parametrize("damage", ["garbage", "torn", "empty", "directory"])
def test_a_damaged_index_is_rebuilt(rt, damage):
    c = rt.create("busybox", ["true"], name="damaged")
    _cached_listing(rt, c)
    path = rt.layout.containers_index
    if damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "torn":
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
        path.mkdir()  # unreadable and unwritable: listings still work, from the files
    assert _listed(rt)[c.id] == rt.load(c.id)
    if damage == "directory":
        path.rmdir()
    else:
        assert c.id in _index(rt).cached()  # rewritten whole


def test_a_container_without_config_is_not_listed_from_its_old_entry(rt):
    c = rt.create("busybox", ["true"], name="torn")
    _cached_listing(rt, c)
    shutil.copy(c.config_path, c.dir / "saved")
    c.config_path.unlink()  # mid-remove, or a crash tore it: never listed from the index
    assert c.id not in _listed(rt)
    os.replace(c.dir / "saved", c.config_path)
    assert c.id in _listed(rt)


def test_monitor_killed_after_a_cached_listing_is_repaired_and_shown(rt):
    c = rt.create("busybox", ["sleep", "60"], name="orphan")
    rt.start(c)
    c.reload()
    deadline = time.monotonic() + 30
    while comm(container_init(c.state.pid)) != "sleep":
        assert time.monotonic() < deadline, "the container's command never started"
        time.sleep(0.05)
    assert _cached_listing(rt, c)[c.id].state.running
    assert _listed(rt)[c.id].state.running  # its monitor alive: running, from the entry
    os.kill(c.state.monitor_pid, signal.SIGKILL)
    while monitorlock.held(c.monitor_lock_path):  # the kernel drops its lock as the process dies
        assert time.monotonic() < deadline + 10, "the killed monitor still holds its lock"
        time.sleep(0.02)
    listed = _listed(rt)[c.id]
    assert listed.state.status is Status.EXITED and listed.state.exit_code == EXIT_KILLED
    assert _listed(rt)[c.id].state.exit_code == EXIT_KILLED


def test_ps_cli_after_stop_shows_the_exit(cli):
    cid = cli("run", "-d", "--net", "none", "busybox", "sleep", "60", check=True).stdout.decode().strip()
    time.sleep(AGE)
    assert "Up " in cli("ps", "-a", check=True).stdout.decode()
    cli("stop", "-t", "1", cid, check=True)
    rows = cli("ps", "-a", check=True).stdout.decode().splitlines()[1:]
    assert len(rows) == 1 and "Exit " in rows[0] and "Up " not in rows[0]
    cli("rm", cid, check=True)
    assert cli("ps", "-a", check=True).stdout.decode().splitlines()[1:] == []
