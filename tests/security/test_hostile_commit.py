"""diff, commit and export of a container that fights back: while they run, it keeps swapping a fifo in
for a file and a link to a host directory in for a directory. Every call finishes (a fifo never blocks
a commit), and nothing of the host's ever ends up in an image or an export."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import pytest
from hostile_helpers import DRIVERS, make_store, teardown_store

pytestmark = pytest.mark.lxc


@pytest.fixture(params=DRIVERS)
def racing(request: pytest.FixtureRequest, tmp_path: Path):
    host = tmp_path / "host-dir"
    host.mkdir()
    (host / "HOST-ONLY-MARKER").write_text("must never be archived\n")
    store = make_store(tmp_path / "root", request.param)
    script = (f"mkdir -p /d; echo in > /d/f; while :; do rm -f /q; echo reg > /q; rm -rf /d; ln -s {host} /d; "
              "rm -f /q; mkfifo /q; rm -f /d; mkdir /d; echo in > /d/f; done")
    cid = store.ok("run", "-d", "busybox", "sh", "-c", script).strip()
    try:
        yield store, cid
    finally:
        teardown_store(store)


def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getnames()


def test_commit_export_and_diff_against_a_container_swapping_fifos_and_links(racing):
    store, cid = racing
    time.sleep(0.5)
    for i in range(8):
        start = time.monotonic()
        p = store("commit", cid, f"raced:{i}", timeout=60)
        assert p.returncode == 0, p.stderr.decode()
        assert time.monotonic() - start < 60
        diff = store("diff", cid, timeout=60)
        assert diff.returncode == 0 and b"HOST-ONLY-MARKER" not in diff.stdout, diff.stderr.decode()
    export = store("export", cid, timeout=120)
    assert export.returncode == 0, export.stderr.decode()
    assert not [n for n in _names(export.stdout) if "HOST-ONLY-MARKER" in n]
    for i in range(8):  # each committed layer, as an image's whole filesystem
        out = store("run", "--rm", f"raced:{i}", "sh", "-c", "find / -xdev -name HOST-ONLY-MARKER", timeout=60)
        assert out.returncode == 0 and out.stdout == b"", (out.stdout, out.stderr)
    assert json.loads(store.ok("inspect", cid))[0]["State"]["Running"] is True
