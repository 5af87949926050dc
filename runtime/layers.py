"""A container's filesystem seen as layers: its own device over its init layer, for diff, size,
commit and export (the init layer holds pydock's mount-point stubs, so they never show as changes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from pydock.archive.changes import changes, changes_size
from pydock.archive.export import export_changes
from pydock.archive.tar import write_tar
from pydock.devmapper.driver import Driver
from pydock.runtime.container import Container


@contextmanager
def mounted_layers(driver: Driver, c: Container) -> Iterator[tuple[Path, Path]]:
    """(container root, init-layer root) for the block: the container's own mount when it is running
    (as Docker's graphdriver shares it), the init layer read-only."""
    with driver.mounted(c.id) as new, driver.mounted(c.init_id, readonly=True) as old:
        yield new, old


def diff(driver: Driver, c: Container) -> list[Any]:
    """Changes of the container against its init layer (so the mount-point stubs never show)."""
    with mounted_layers(driver, c) as (new, old):
        return changes(new, old)


def changed_bytes(driver: Driver, c: Container) -> int:
    with mounted_layers(driver, c) as (new, old):
        return changes_size(new, changes(new, old))


def export_changes_to(driver: Driver, c: Container, out: BinaryIO) -> None:
    """The container's layer as a tar (whiteouts for deletions): what `commit` registers."""
    with mounted_layers(driver, c) as (new, old):
        export_changes(new, changes(new, old), out)


def export_tree(driver: Driver, c: Container, out: BinaryIO) -> None:
    """The container's whole filesystem as a tar stream (`export`)."""
    with mounted_layers(driver, c) as (new, _old):
        write_tar(new, out)
