"""A registered layer's tar comes back byte for byte (its diff id holds), whatever tar dialect wrote it."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from pydock.graph.assemble import export_layer


def _tar(fmt: int, trailer: int = 0) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        def add(name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime, info.mode = kind, link, 1_500_000_000, 0o644
            info.uname = "ünïcode"
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        add("dir", kind=tarfile.DIRTYPE)
        add("dir/" + "long-name-" * 20, b"long\n")  # GNU longname / pax path
        add("dir/file", os.urandom(70_000))
        add("dir/empty", b"")
        add("dir/hard", kind=tarfile.LNKTYPE, link="dir/file")
        add("dir/sym", kind=tarfile.SYMTYPE, link="file")
        add("dir/.wh.gone", b"")
    return buf.getvalue() + bytes(trailer)


@pytest.mark.parametrize("fmt,trailer", [(tarfile.GNU_FORMAT, 0), (tarfile.PAX_FORMAT, 0),
                                         (tarfile.USTAR_FORMAT, 0), (tarfile.PAX_FORMAT, 7 * 512)])
def test_layer_rebuilt_byte_for_byte(graph, tmp_path: Path, fmt: int, trailer: int):
    if fmt == tarfile.USTAR_FORMAT:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
            info = tarfile.TarInfo("a/b")
            payload = b"x" * 1000
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        data = buf.getvalue()
    else:
        data = _tar(fmt, trailer)
    image = graph.register(io.BytesIO(data))
    info = graph.layer_info(image.id)
    assert info.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert info.chain_id == info.diff_id and info.reproducible
    out = export_layer(graph, image, tmp_path / "out.tar")
    assert out.path.read_bytes() == data
    assert out.diff_id == info.diff_id


def test_layer_diff_id_checked(graph):
    from pydock.graph.digest import DigestMismatch

    data = _tar(tarfile.PAX_FORMAT)
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        graph.register(io.BytesIO(data), diff_id="sha256:" + "0" * 64)
    assert graph.ids() == []


def test_chain_ids_follow_the_parent(graph):
    base = graph.register(io.BytesIO(_tar(tarfile.GNU_FORMAT)))
    top = graph.register(io.BytesIO(_tar(tarfile.PAX_FORMAT)), parent=base.id)
    b, t = graph.layer_info(base.id), graph.layer_info(top.id)
    expect = "sha256:" + hashlib.sha256(f"{b.chain_id} {t.diff_id}".encode()).hexdigest()
    assert t.chain_id == expect
    assert graph.find_layer(expect) == top.id


class _Trickle(io.RawIOBase):
    """A pipe-like stream handing out at most `step` bytes a read, so headers straddle reads."""

    def __init__(self, data: bytes, step: int) -> None:
        self.src = io.BytesIO(data)
        self.step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        data = self.src.read(min(len(buf), self.step))
        buf[: len(data)] = data
        return len(data)


@pytest.mark.parametrize("step", [1, 333, 4096 + 7])
def test_layer_rebuilt_when_read_in_pieces(graph, tmp_path: Path, step: int):
    data = _tar(tarfile.PAX_FORMAT, 3 * 512)
    image = graph.register(_Trickle(data, step))  # type: ignore[arg-type]
    info = graph.layer_info(image.id)
    assert info.diff_id == "sha256:" + hashlib.sha256(data).hexdigest() and info.reproducible
    assert export_layer(graph, image, tmp_path / "out.tar").path.read_bytes() == data
