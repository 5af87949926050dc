"""diff, commit and export read a running container's tree: what it swaps in between our listing and our
open (a fifo, a symlink out, nothing) is archived as what it is or skipped, never read through or
followed. Each race is set up exactly, by changing the tree between the listing and the call."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

from pydock.archive.changes import Change, ChangeKind, changes, changes_size
from pydock.archive.export import export_changes
from pydock.archive.tar import _TarWriter, write_tar


def _entries(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf.getmembers()}


def _add_after_swap(tmp_path: Path, swap) -> dict[str, tarfile.TarInfo]:
    """List regular file `f`, let `swap` replace it, then archive it from the stale listing."""
    root = tmp_path / "t"
    root.mkdir(exist_ok=True)
    (root / "f").write_bytes(b"regular")
    st = os.lstat(root / "f")
    swap(root / "f")
    out = io.BytesIO()
    writer = _TarWriter(out)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        writer.add(fd, "f", "f", st)  # a fifo opened for reading without O_NONBLOCK would block here forever
    finally:
        os.close(fd)
    writer.finish()
    return _entries(out.getvalue())


def _to_fifo(p: Path) -> None:
    p.unlink()
    os.mkfifo(p)


def _to_link(p: Path) -> None:
    p.unlink()
    p.symlink_to("/etc/shadow")


def test_a_fifo_swapped_in_is_archived_as_a_fifo(tmp_path: Path):
    entries = _add_after_swap(tmp_path, _to_fifo)
    assert entries["f"].isfifo()


def test_a_symlink_swapped_in_is_archived_as_the_link(tmp_path: Path):
    entries = _add_after_swap(tmp_path, _to_link)
    assert entries["f"].issym() and entries["f"].linkname == "/etc/shadow"


def test_a_file_removed_meanwhile_is_left_out(tmp_path: Path):
    assert _add_after_swap(tmp_path, Path.unlink) == {}


def test_commit_of_a_diff_whose_paths_changed_meanwhile(tmp_path: Path, ):
    new, old, outside = tmp_path / "new", tmp_path / "old", tmp_path / "outside"
    for d in (new / "d", old, outside):
        d.mkdir(parents=True)
    (new / "d" / "file").write_bytes(b"in the container")
    (new / "gone").write_bytes(b"x")
    (outside / "file").write_bytes(b"on the host")
    diff = changes(new, old)
    assert [str(c) for c in diff] == ["A /d", "A /d/file", "A /gone"]
    os.rename(new / "d", new / "d.moved")  # the container moves the directory away...
    (new / "d").symlink_to(str(outside))  # ...and puts a link to the host in its place
    (new / "gone").unlink()
    out = io.BytesIO()
    export_changes(new, diff, out)
    entries = _entries(out.getvalue())
    assert sorted(entries) == ["d"] and entries["d"].issym()  # never d/file through the link
    stale = [Change(ChangeKind.A, "/d/file")]  # a change list without sizes: looked up, not followed
    assert changes_size(new, stale) == 0


def test_export_of_a_tree_that_keeps_changing(tmp_path: Path):
    """A thread flips entries between a file, a fifo, a directory and a link out while we archive."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "host-only-marker").write_bytes(b"host")
    for i in range(50):
        (root / f"keep{i}").write_bytes(b"k")
    stop = threading.Event()

    def flip() -> None:
        x = root / "x"
        while not stop.is_set():
            for make in (lambda: x.write_bytes(b"file"), lambda: os.mkfifo(x), lambda: x.mkdir(),
                         lambda: (x / "inner").write_bytes(b"i"), lambda: x.symlink_to(str(outside))):
                try:
                    if x.is_dir() and not x.is_symlink():
                        for child in x.iterdir():
                            child.unlink()
                        x.rmdir()
                    elif x.exists() or x.is_symlink():
                        x.unlink()
                    make()
                except OSError:
                    continue

    t = threading.Thread(target=flip)
    t.start()
    try:
        for _ in range(100):
            out = io.BytesIO()
            write_tar(root, out)
            names = _entries(out.getvalue())
            assert not any("host-only-marker" in n for n in names)
            changes(root, outside)  # a diff racing the same flips
    finally:
        stop.set()
        t.join()
