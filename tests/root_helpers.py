"""Test helpers shared by every directory: empty a pydock root (containers, then images leaves first)
and shut its store down; a process's command name and memory counters."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def empty_runtime(rt: Any) -> None:
    """Remove every container of `rt` (forced, with its volumes), then every image, leaves first."""
    for c in rt.containers(all=True):
        rt.remove(c, force=True, volumes=True)
    images = rt.images.graph.list()
    while images:
        parents = {i.parent for i in images}
        leaves = [i for i in images if i.id not in parents]
        assert leaves, f"images left in {rt.layout.root}: {[i.id for i in images]}"
        for image in leaves:
            rt.images.graph.delete(image.id)
        images = rt.images.graph.list()


def teardown_root(root: Path, driver: str = "overlay") -> None:
    """Every container and image of the root gone, the store shut down (no mounts or devices left)."""
    from pydock.runtime.runtime import Runtime

    if not root.exists():
        return
    rt = Runtime(root, driver, bridge="none")
    try:
        empty_runtime(rt)
    finally:
        try:
            rt.driver.shutdown()  # before close(): a closed devicemapper set no longer removes its pool
        finally:
            rt.close()


def comm(pid: int | None) -> str:
    """The process's command name ("" when there is none)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def memory_kib(pid: int | str, field: str) -> int:
    """One counter of a process's /proc/PID/smaps_rollup (`Shared_Dirty`, `Private_Dirty`...), in KiB."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/smaps_rollup")
