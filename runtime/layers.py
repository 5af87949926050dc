"""A container's filesystem seen as layers: its own device over its init layer, for diff, size,
commit and export. Both are mounted read-only beside the container (the running rootfs, if any,
is untouched)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from pydock.runtime.container import Container


@contextmanager
def mounted_layers(driver: Any, c: Container) -> Iterator[tuple[Path, Path]]:
    """(container root, init-layer root), both read-only, for the block."""
    from pydock.devmapper.deviceset import mounted

    tag = f"{os.getpid()}-{os.urandom(3).hex()}"
    paths = (c.dir / f".diff-{tag}", c.dir / f".init-{tag}")
    try:
        with ExitStack() as stack:
            new = stack.enter_context(mounted(driver, c.id, paths[0], readonly=True, deactivate=False))
            old = stack.enter_context(mounted(driver, c.init_id, paths[1], readonly=True, deactivate=False))
            yield new, old
    finally:
        for p in paths:
            try:
                p.rmdir()
            except OSError:
                pass


def diff(driver: Any, c: Container) -> list[Any]:
    """Changes of the container against its init layer (so the mount-point stubs never show)."""
    from pydock.archive.changes import changes

    with mounted_layers(driver, c) as (new, old):
        return changes(new, old)


def changed_bytes(driver: Any, c: Container) -> int:
    from pydock.archive.changes import changes, changes_size

    with mounted_layers(driver, c) as (new, old):
        return changes_size(new, changes(new, old))


def export_changes_to(driver: Any, c: Container, out: BinaryIO) -> None:
    """The container's layer as a tar (whiteouts for deletions): what `commit` registers."""
    from pydock.archive.changes import changes
    from pydock.archive.export import export_changes

    with mounted_layers(driver, c) as (new, old):
        export_changes(new, changes(new, old), out)


def export_tree(driver: Any, c: Container, out: BinaryIO) -> None:
    """The container's whole filesystem as a tar stream (`export`)."""
    from pydock.archive.tar import write_tar

    with mounted_layers(driver, c) as (new, _old):
        write_tar(new, out)
