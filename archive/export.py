"""Turn a change list into a layer tar (Docker 0.7 `ExportChanges`): the basis of `commit`."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Iterable

from pydock.archive.changes import Change, ChangeKind
from pydock.archive.tar import WHITEOUT_PREFIX, write_tar


def whiteout_path(path: str) -> str:
    """The whiteout entry hiding `path`: "/a/b" -> "a/.wh.b"."""
    parent, _, base = path.strip("/").rpartition("/")
    return f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else f"{WHITEOUT_PREFIX}{base}"


def export_changes(root: Path, changes: Iterable[Change], out: BinaryIO) -> None:
    """Write an uncompressed layer tar: A/C paths of `root` (not recursive) plus an empty `.wh.` file per D."""
    includes: list[str] = []
    whiteouts: list[str] = []
    for change in changes:
        if change.kind is ChangeKind.D:
            whiteouts.append(whiteout_path(change.path))
        else:
            includes.append(change.path.lstrip("/"))
    # the changes may come from a running container: what it removed since the diff is left out
    write_tar(root, out, includes=includes, recursive=False, whiteouts=whiteouts, missing_ok=True)
