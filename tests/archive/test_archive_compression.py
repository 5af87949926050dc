"""Compression sniffing and in-process (de)compression, including through pipes."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import threading

import pytest

from pydock.archive.compression import Compression, compress_stream, decompress_stream, detect

PAYLOAD = os.urandom(1000) + b"tar-ish payload " * 5000

CODECS = {
    Compression.NONE: lambda b: b,
    Compression.GZIP: gzip.compress,
    Compression.BZIP2: bz2.compress,
    Compression.XZ: lzma.compress,
}


def test_magic_bytes_match_docker():
    assert detect(b"\x42\x5a\x68rest") is Compression.BZIP2
    assert detect(b"\x1f\x8b\x08rest") is Compression.GZIP
    assert detect(b"\xfd\x37\x7a\x58\x5a\x00rest") is Compression.XZ
    assert detect(b"./etc/passwd\0\0") is Compression.NONE
    assert detect(b"") is Compression.NONE
    assert detect(b"\x1f\x8b") is Compression.NONE  # too short to be gzip
    assert detect(b"\xfd\x37\x7a\x58\x5a\x01") is Compression.NONE


def test_extensions_and_values():
    assert [c.extension for c in Compression] == ["tar", "tar.bz2", "tar.gz", "tar.xz"]
    assert [c.value for c in Compression] == [0, 1, 2, 3]  # Docker 0.7's numbering
    assert Compression.from_extension(".tar.xz") is Compression.XZ


@pytest.mark.parametrize("comp", list(Compression), ids=lambda c: c.name)
def test_decompress_seekable(comp):
    data = CODECS[comp](PAYLOAD)
    assert detect(data[:10]) is comp
    assert decompress_stream(io.BytesIO(data)).read() == PAYLOAD


def _pipe_reader(data: bytes, chunk: int = 3):
    """A real non-seekable pipe fed in tiny chunks, so even the 10-byte sniff spans reads."""
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb", buffering=0) as out:
            for i in range(0, min(64, len(data)), chunk):
                out.write(data[i : min(i + chunk, 64)])
            for i in range(64, len(data), 65536):
                out.write(data[i : i + 65536])

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return os.fdopen(r, "rb", buffering=0), t


@pytest.mark.parametrize("comp", list(Compression), ids=lambda c: c.name)
def test_decompress_unbuffered_pipe(comp):
    reader, feeder = _pipe_reader(CODECS[comp](PAYLOAD))
    with reader:
        out = decompress_stream(reader)
        assert not reader.seekable()
        assert out.read() == PAYLOAD
    feeder.join(5)


@pytest.mark.parametrize("comp", list(Compression), ids=lambda c: c.name)
def test_compress_stream_round_trip_and_leaves_out_open(comp):
    out = io.BytesIO()
    w = compress_stream(out, comp)
    for i in range(0, len(PAYLOAD), 7000):
        w.write(PAYLOAD[i : i + 7000])
    w.close()
    assert not out.closed
    data = out.getvalue()
    assert detect(data[:10]) is comp
    assert decompress_stream(io.BytesIO(data)).read() == PAYLOAD


def test_short_input_is_passed_through():
    assert decompress_stream(io.BytesIO(b"abc")).read() == b"abc"
    assert decompress_stream(io.BytesIO(b"")).read() == b""


def test_no_external_tool_is_executed(monkeypatch):
    """CVE-2014-9357: decompression happens in-process; spawning anything is a bug."""
    import subprocess

    def forbidden(*a, **k):
        raise AssertionError("decompression tried to run an external program")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(os, "execv", forbidden)
    monkeypatch.setattr(os, "posix_spawn", forbidden)
    for comp in Compression:
        assert decompress_stream(io.BytesIO(CODECS[comp](PAYLOAD))).read() == PAYLOAD


def test_plain_tar_named_like_bzip2_is_not_bzip2(tmp_path):
    """A tar whose first entry is "BZh..." starts with bzip2's 3-byte magic; the full head tells them apart."""
    import tarfile

    from pydock.archive.apply import apply_layer

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("BZh9-not-bzip2")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"ok"))
    data = buf.getvalue()
    assert data.startswith(b"BZh")
    assert detect(data[:10]) is Compression.NONE
    assert detect(bz2.compress(b"x")[:10]) is Compression.BZIP2
    assert detect(bz2.compress(b"")[:10]) is Compression.BZIP2
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(dest, io.BytesIO(data))
    assert (dest / "BZh9-not-bzip2").read_bytes() == b"ok"


@pytest.mark.parametrize("comp", [Compression.GZIP, Compression.BZIP2, Compression.XZ], ids=lambda c: c.name)
def test_padding_after_compressed_layer_is_ignored(tmp_path, comp):
    """Tape-style zero padding (or junk) after the compressed stream: the tar ended, like tar(1)."""
    import tarfile

    from pydock.archive.apply import apply_layer

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("f")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    for i, trail in enumerate((b"\0" * 4096, b"trailing junk")):
        dest = tmp_path / f"dest{i}"
        dest.mkdir()
        apply_layer(dest, io.BytesIO(CODECS[comp](buf.getvalue()) + trail))
        assert (dest / "f").read_bytes() == b"abc"
