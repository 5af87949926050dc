"""Several pydock processes on one pool at once: the flock serializes them, nothing is lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from dm_helpers import dm_names, pool_thin_ids, recorded_thin_ids, tree

from pydock.devmapper.deviceset import BASE_HASH, mounted

pytestmark = pytest.mark.dm


def test_four_processes_add_and_remove_concurrently(pool, make) -> None:
    ds = pool.open()
    make(ds, "img", BASE_HASH, {"base": "img"})
    body = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from pydock.devmapper.dm_deviceset import DeviceSetDM
        from pydock.devmapper.deviceset import mounted
        w = sys.argv[1]
        ds = DeviceSetDM({str(pool.home)!r}, prefix={pool.prefix!r}, **{pool.options!r})
        for i in range(6):
            h = f"w{{w}}-{{i}}"
            ds.add_device(h, "img")
            m = Path({str(pool.scratch)!r}) / h
            m.mkdir()
            with mounted(ds, h, m) as root:
                (root / "who").write_text(h)
            ds.set_initialized(h)
            if i % 2:
                ds.remove_device(h)
        ds.close()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", body, str(w)], stderr=subprocess.PIPE, text=True)
             for w in range(4)]
    errors = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in errors), errors
    want = sorted(f"w{w}-{i}" for w in range(4) for i in range(0, 6, 2))
    assert ds.list() == sorted(want + ["img"])
    ids = recorded_thin_ids(ds)
    assert len(ids) == len(want) + 2  # + base + img: no id shared by two devices
    assert pool_thin_ids(ds) == ids
    assert dm_names(pool.prefix) == {f"{pool.prefix}-pool"}
    for h in want[::3]:
        with mounted(ds, h, pool.mnt(f"check-{h}"), readonly=True) as root:
            assert tree(root) == {"base": "img", "who": h}


def test_a_forked_child_is_excluded_like_another_process(pool, ds) -> None:
    """Container monitors are forked with the set open: the flock must still keep them apart."""
    import os
    import time

    r, w = os.pipe()
    with ds._locked():
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(r)
            try:
                ds.add_device("from-child", BASE_HASH)
                os.write(w, str(time.monotonic()).encode())
            finally:
                os._exit(0)
        os.close(w)
        time.sleep(0.3)
        released = time.monotonic()
    _, status = os.waitpid(pid, 0)
    done = float(os.read(r, 64) or 0)
    os.close(r)
    assert status == 0 and done >= released
    assert ds.has_device("from-child")
