"""utils/prefault.py: a forked process makes the memory it shares with its parent its own ahead of
time, and stops when told to."""

from __future__ import annotations

import os

from root_helpers import memory_kib

from pydock.utils import prefault


def shared_dirty_kib() -> int:
    """Dirty memory this process shares with another (its parent, after a fork)."""
    return memory_kib("self", "Shared_Dirty")


def in_child(work) -> tuple[int, int, int]:
    """Fork; the child reports (Shared_Dirty before, `work()`'s result, Shared_Dirty after) and exits."""
    ballast = bytearray(os.urandom(1)) * (32 << 20)  # 32 MiB of dirty pages the child shares at first
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            before = shared_dirty_kib()
            done = work()
            os.write(w, b"%d %d %d" % (before, done, shared_dirty_kib()))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as report:
        data = report.read()
    os.waitpid(pid, 0)
    del ballast
    before, done, after = map(int, data.split())
    return before, done, after


def test_a_forked_child_takes_its_own_copy_of_what_it_shared():
    before, done, after = in_child(lambda: prefault.populate_writable(until=lambda: False))
    assert before >= 32 << 10  # KiB: the ballast at least, shared with the parent
    assert done >= 32 << 20
    assert after < before - (32 << 10)


def test_it_stops_as_soon_as_work_arrives():
    before, done, after = in_child(lambda: prefault.populate_writable(until=lambda: True))
    assert done == 0
    assert after > before - 1024  # nothing was copied
