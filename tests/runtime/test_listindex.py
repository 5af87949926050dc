"""The listing indexes (runtime/listindex.py): listings answer from them (whole containers from
containers.index, `ps` rows from containers.rows: every test runs on each), and never show a row older than
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
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from root_helpers import comm

from pydock.runtime import monitorlock
from pydock.runtime.launcher import container_init
from pydock.runtime.listindex import ListingIndex, RowIndex
from pydock.runtime.rows import row_of
from pydock.runtime.state import EXIT_KILLED, Status

pytestmark = pytest.mark.lxc

AGE = 1.1  # past listindex._RACY_NS: the entries the next listing writes are then used


@dataclass
class Shown:
    """What a listing shows of a container, whichever index it came from."""

    name: str
    state: Any  # the State, or for a row without a container its status and exit code


class Listing:
    """One of the two listings and its index: Runtime.containers (containers.index) or
    Runtime.container_rows (containers.rows)."""

    def __init__(self, rows: bool) -> None:
        self.rows = rows

    def path(self, rt):
        return rt.layout.container_rows_index if self.rows else rt.layout.containers_index

    def index(self, rt):
        return (RowIndex if self.rows else ListingIndex)(self.path(rt), rt.layout.containers)

    def whole(self, rt) -> dict:
        """id -> the Container, or the row, as listed."""
        if self.rows:
            return {r.id: r for r in rt.container_rows(all=True)}
        return {c.id: c for c in rt.containers(all=True)}

    def loaded(self, rt, cid):
        """What `whole` must give for `cid`: the container read from its files (or its row)."""
        c = rt.load(cid)
        return row_of(c)._replace(container=None) if self.rows else c

    def listed(self, rt) -> dict[str, Shown]:
        out = {}
        for cid, item in self.whole(rt).items():
            if not self.rows:
                out[cid] = Shown(item.name, item.state)
            elif item.container is not None:
                out[cid] = Shown(item.name, item.container.state)
            else:
                out[cid] = Shown(item.name, SimpleNamespace(status=Status(item.status), exit_code=item.exit_code,
                                                            running=False))
        return out


@pytest.fixture(params=["containers", "rows"])
def listing(request) -> Listing:
    return Listing(request.param == "rows")


def _cached_listing(rt, listing, *containers) -> dict:
    """Age `containers` past the racy window, list (writing their entries), check the index holds them."""
    time.sleep(AGE)
    listed = listing.listed(rt)
    assert {c.id for c in containers} <= listing.index(rt).cached()
    return listed


def test_listing_from_the_index_is_the_container_as_loaded(rt, listing):
    c = rt.create("busybox", ["sh", "-c", "exit 3"], name="same", labels=("k=v",))
    _cached_listing(rt, listing, c)
    listed = listing.whole(rt)[c.id]  # this one from the entry
    assert listed == listing.loaded(rt, c.id)  # every field, Config (decoded on use) and HostConfig included
    if not listing.rows:
        assert listed.config["Labels"] == {"k": "v"} and listed.hostconfig == rt.load(c.id).hostconfig


def test_a_config_changed_within_the_racy_window_is_read_not_cached(rt, listing):
    c = rt.create("busybox", ["true"], name="fresh")
    _cached_listing(rt, listing, c)
    soon = time.time_ns() + 10 * 10**9  # "changed in the last second" whatever this machine's speed (or a clock stepped back)
    os.utime(c.config_path, ns=(soon, soon))
    assert c.id in listing.listed(rt)
    assert c.id not in listing.index(rt).cached()  # its next change could share the timestamp tick: not kept


def test_start_and_exit_after_a_cached_listing_show(rt, listing):
    c = rt.create("busybox", ["sh", "-c", "exit 3"], name="runs")
    assert _cached_listing(rt, listing, c)[c.id].state.status is Status.CREATED
    rt.start(c)
    rt.wait(c, timeout=30)
    listed = listing.listed(rt)[c.id]
    assert listed.state.status is Status.EXITED and listed.state.exit_code == 3
    assert listing.listed(rt)[c.id].state.exit_code == 3  # and again, from whatever the index holds now


def test_rename_after_a_cached_listing_shows(rt, listing):
    c = rt.create("busybox", ["true"], name="before")
    _cached_listing(rt, listing, c)
    rt.rename(c, "after")  # the same length: config.json keeps its size
    assert listing.listed(rt)[c.id].name == "/after"


def test_removed_after_a_cached_listing_is_gone_and_its_entry_dropped(rt, listing):
    keep = rt.create("busybox", ["true"], name="keep")
    gone = rt.create("busybox", ["true"], name="gone")
    _cached_listing(rt, listing, keep, gone)
    rt.remove(gone)
    assert set(listing.listed(rt)) == {keep.id}
    assert listing.index(rt).cached() == {keep.id}


def test_an_index_from_before_a_removal_shows_no_removed_container(rt, listing):
    keep = rt.create("busybox", ["true"], name="keep")
    gone = rt.create("busybox", ["true"], name="gone")
    _cached_listing(rt, listing, keep, gone)
    old = listing.path(rt).read_bytes()
    rt.remove(gone)
    listing.listed(rt)
    listing.path(rt).write_bytes(old)  # e.g. written late by a listing that began before the rm
    assert gone.id in listing.index(rt).cached()
    assert set(listing.listed(rt)) == {keep.id}


def test_an_index_holding_an_older_state_is_not_believed(rt, listing):
    c = rt.create("busybox", ["sh", "-c", "exit 5"], name="older")
    _cached_listing(rt, listing, c)
    old = listing.path(rt).read_bytes()
    rt.start(c)
    rt.wait(c, timeout=30)
    listing.path(rt).write_bytes(old)  # a slow lister's rewrite racing the exit
    assert listing.listed(rt)[c.id].state.exit_code == 5


@pytest.mark.parametrize("damage", ["garbage", "torn", "empty", "directory"])
def test_a_damaged_index_is_rebuilt(rt, listing, damage):
    c = rt.create("busybox", ["true"], name="damaged")
    _cached_listing(rt, listing, c)
    path = listing.path(rt)
    if damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "torn":
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
        path.mkdir()  # unreadable and unwritable: listings still work, from the files
    assert listing.whole(rt)[c.id] == listing.loaded(rt, c.id)
    if damage == "directory":
        path.rmdir()
    else:
        assert c.id in listing.index(rt).cached()  # rewritten whole


def test_a_container_without_config_is_not_listed_from_its_old_entry(rt, listing):
    c = rt.create("busybox", ["true"], name="torn")
    _cached_listing(rt, listing, c)
    shutil.copy(c.config_path, c.dir / "saved")
    c.config_path.unlink()  # mid-remove, or a crash tore it: never listed from the index
    assert c.id not in listing.listed(rt)
    os.replace(c.dir / "saved", c.config_path)
    assert c.id in listing.listed(rt)


def test_monitor_killed_after_a_cached_listing_is_repaired_and_shown(rt, listing):
    c = rt.create("busybox", ["sleep", "60"], name="orphan")
    rt.start(c)
    c.reload()
    deadline = time.monotonic() + 30
    while comm(container_init(c.state.pid)) != "sleep":
        assert time.monotonic() < deadline, "the container's command never started"
        time.sleep(0.05)
    assert _cached_listing(rt, listing, c)[c.id].state.running
    assert listing.listed(rt)[c.id].state.running  # its monitor alive: running, from the entry
    os.kill(c.state.monitor_pid, signal.SIGKILL)
    while monitorlock.held(c.monitor_lock_path):  # the kernel drops its lock as the process dies
        assert time.monotonic() < deadline + 10, "the killed monitor still holds its lock"
        time.sleep(0.02)
    listed = listing.listed(rt)[c.id]
    assert listed.state.status is Status.EXITED and listed.state.exit_code == EXIT_KILLED
    assert listing.listed(rt)[c.id].state.exit_code == EXIT_KILLED


def test_ps_cli_after_stop_shows_the_exit(cli):
    cid = cli("run", "-d", "--net", "none", "busybox", "sleep", "60", check=True).stdout.decode().strip()
    time.sleep(AGE)
    assert "Up " in cli("ps", "-a", check=True).stdout.decode()
    cli("stop", "-t", "1", cid, check=True)
    rows = cli("ps", "-a", check=True).stdout.decode().splitlines()[1:]
    assert len(rows) == 1 and "Exit " in rows[0] and "Up " not in rows[0]
    cli("rm", cid, check=True)
    assert cli("ps", "-a", check=True).stdout.decode().splitlines()[1:] == []
