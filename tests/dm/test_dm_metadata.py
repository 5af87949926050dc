"""The metadata store on its own: atomic records, journal replay, status parsing (no kernel needed,
kept in the dm tier with the rest of the driver's tests)."""

from __future__ import annotations

import os
import stat

import pytest

from pydock.devmapper.kernel.dm import Target
from pydock.devmapper.metadata import (DeviceRecord, MetadataStore, OpenTransaction, PoolRecord, State,
                                       is_valid_hash)
from pydock.devmapper.pool import parse_pool_status

pytestmark = pytest.mark.dm


def test_records_round_trip_and_live_markers(tmp_path) -> None:
    st = MetadataStore(tmp_path)
    rec = DeviceRecord("abc", 3, 64 << 20, "", State.CREATED, True, 4)
    st.put(rec)
    assert st.get("abc") == rec
    assert stat.S_IMODE(os.stat(tmp_path / "devices" / "abc.json").st_mode) == 0o600
    assert st.live() == []  # created and idle: start-up recovery never reads it
    active = rec.evolve(state=State.ACTIVE, mounts={"/m": 2})
    st.put(active)
    assert st.live() == [active]
    st.put(rec)
    assert st.live() == []
    st.delete("abc")
    assert st.get("abc") is None and st.hashes() == []
    # no temp files left behind by the atomic writes
    assert [n for n in os.listdir(tmp_path / "devices") if n.startswith(".")] == []


def test_base_record_file_name(tmp_path) -> None:
    st = MetadataStore(tmp_path)
    st.put(DeviceRecord("", 0, 1, None, State.CREATED, True))
    assert (tmp_path / "devices" / "base.json").exists()
    assert st.hashes() == [""]


def test_pool_record_with_open_transaction(tmp_path) -> None:
    st = MetadataStore(tmp_path)
    assert st.pool() is None
    rec = PoolRecord(7, 12, OpenTransaction("create", 11, "h", 8, "p", 5))
    st.put_pool(rec)
    assert st.pool() == rec


def test_journal_replay_ignores_a_torn_last_line(tmp_path) -> None:
    st = MetadataStore(tmp_path)
    st.journal("create", 1, hash="a", parent="", size=10)
    st.journal("init", 1)
    st.journal("create", 2, hash="b", parent="a", size=10)
    st.journal("delete", 2)
    st.journal("create", 3, hash="c", parent="a", size=10)
    with open(tmp_path / "journal", "ab") as f:
        f.write(b'{"op":"create","id":4,"ha')  # killed mid-write
    live, top = st.replay()
    assert sorted(live) == [1, 3] and top == 3
    assert live[1].hash == "a" and live[1].initialized and not live[3].initialized
    st.compact_journal([DeviceRecord("a", 1, 10, "", State.CREATED, True)], top)
    live, top = st.replay()
    assert list(live) == [1] and top == 3  # the highest id ever used survives compaction


@pytest.mark.parametrize("bad", ["", "base", "pool", "a/b", "..", ".x", "x\0", "x" * 201, "-lead"])
def test_hash_alphabet(bad: str) -> None:
    assert is_valid_hash(bad) is (bad == "")


def test_parse_pool_status() -> None:
    st = parse_pool_status(Target(0, 1048576, "thin-pool",
                                  "5 1648/16384 410/8192 - rw discard_passdown error_if_no_space - 1024 "))
    assert (st.transaction_id, st.metadata_used, st.metadata_total, st.data_used, st.data_total) == \
        (5, 1648, 16384, 410, 8192)
    assert st.block_size == 65536 and not st.read_only
    assert round(st.data_free_percent, 1) == 95.0
    ro = parse_pool_status(Target(0, 1048576, "thin-pool", "5 1/2 8192/8192 - out_of_data_space"))
    assert ro.out_of_space and ro.read_only
