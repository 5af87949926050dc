"""`pydock import/images/tag/history/rmi` as a user runs them: real processes, printed output, exit codes."""

from __future__ import annotations

import gzip
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from graph_helpers import DIR, layer

PYDOCK = str(Path(sys.executable).with_name("pydock"))
ID_RE = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def pydock(tmp_path: Path):
    root = tmp_path / "root"

    def run(*args: str, stdin: bytes | None = None, ok: bool | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([PYDOCK, "-g", str(root), "-s", "vfs", *args], input=stdin,
                              capture_output=True, timeout=120)
        proc.out = proc.stdout.decode()  # type: ignore[attr-defined]
        proc.err = proc.stderr.decode()  # type: ignore[attr-defined]
        if ok is True:
            assert proc.returncode == 0, proc.err
        return proc

    run.root = root  # type: ignore[attr-defined]
    yield run
    # release the driver's state the way a user would: nothing should be left mounted anyway
    from pydock.utils.mounttable import mounts_under

    assert mounts_under(root) == [] if root.exists() else True


def _tarball(tmp_path: Path, name: str = "rootfs.tar.gz") -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(layer({"etc": DIR, "etc/motd": "hi\n", "payload": "x" * 3000})))
    return path


def test_graph_cli_import_images_tag_history_rmi(pydock, tmp_path: Path):
    tarball = _tarball(tmp_path)
    imported = pydock("import", str(tarball), "myimg:v1", ok=True)
    image_id = imported.out.strip()
    assert ID_RE.match(image_id), imported.out

    listing = pydock("images", ok=True).out.splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "VIRTUAL", "SIZE"]
    row = listing[1].split()
    assert row[:3] == ["myimg", "v1", image_id[:12]]
    assert "Less than a second ago" in listing[1] or "seconds ago" in listing[1]
    assert listing[1].rstrip().endswith("3.003 kB")
    assert pydock("images", "-q", ok=True).out == image_id[:12] + "\n"
    assert pydock("images", "-q", "--no-trunc", ok=True).out == image_id + "\n"
    assert pydock("images", "-q", "-notrunc", ok=True).out == image_id + "\n"  # Docker 0.7 spelling

    assert pydock("tag", "myimg:v1", "other", ok=True).out == ""
    clash = pydock("import", "-", "other", stdin=layer({"z": "z"}), ok=True).out.strip()
    assert pydock("images", "other", ok=True).out.splitlines()[1].split()[:3] == ["other", "latest", clash[:12]]
    refused = pydock("tag", image_id[:8], "other")
    assert refused.returncode == 1 and "already set" in refused.err and refused.err.startswith("Error: ")
    pydock("tag", "-f", image_id[:8], "other", ok=True)
    assert pydock("images", "other", "-q", ok=True).out.strip() == image_id[:12]
    assert pydock("images", "-q", ok=True).out.split() == [clash[:12], image_id[:12]]  # newest first

    hist = pydock("history", "myimg:v1", ok=True).out.splitlines()
    assert hist[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE"]
    assert hist[1].split()[0] == image_id[:12] and len(hist) == 2

    rmi = pydock("rmi", "myimg:v1", "nosuch", "other", clash)
    assert rmi.returncode == 1
    assert rmi.out.splitlines() == ["Untagged: myimg:v1", "Untagged: other:latest", f"Deleted: {image_id}",
                                    f"Deleted: {clash}"]
    assert "Error: No such image: nosuch" in rmi.err
    assert "Error: failed to remove one or more images" in rmi.err
    assert pydock("images", "-q", ok=True).out == ""


def test_graph_cli_images_all_shows_intermediate_layers(pydock, tmp_path: Path):
    base = pydock("import", str(_tarball(tmp_path)), ok=True).out.strip()
    # a child layer, as commit would create it
    from pydock.devmapper.drivers import open_driver
    from pydock.graph.lookup import ImageStore
    from pydock.utils.paths import RootLayout

    layout = RootLayout(pydock.root)
    driver, _reason = open_driver(layout.root, "vfs")
    try:
        store = ImageStore(layout, driver)
        child = store.graph.register(io.BytesIO(layer({"more": "m" * 100})), parent=base,
                                     container_config={"Cmd": ["/bin/sh", "-c", "echo more > /more"]})
        store.tag(child.id, "app")
    finally:
        driver.close()
    default = pydock("images", ok=True).out.splitlines()
    assert len(default) == 2 and default[1].split()[:3] == ["app", "latest", child.id[:12]]
    assert default[1].rstrip().endswith("3.103 kB")  # virtual size includes the parent
    everything = pydock("images", "-a", ok=True).out.splitlines()
    assert len(everything) == 3
    assert everything[2].split()[:3] == ["<none>", "<none>", base[:12]]
    hist = pydock("history", "app", ok=True).out.splitlines()
    assert [line.split()[0] for line in hist[1:]] == [child.id[:12], base[:12]]
    assert "/bin/sh -c echo more > /more" in hist[1]
    refused = pydock("rmi", base)
    assert refused.returncode == 1 and "child images" in refused.err


def test_graph_cli_import_errors(pydock, tmp_path: Path):
    missing = pydock("import", str(tmp_path / "nope.tar"))
    assert missing.returncode == 1 and missing.err.strip() == f"Error: {tmp_path / 'nope.tar'}: no such file"
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"definitely not a tar archive\n" * 100)
    bad = pydock("import", str(garbage), "junk")
    assert bad.returncode == 1 and bad.err.startswith("Error: ") and len(bad.err.strip().splitlines()) == 1
    truncated = pydock("import", "-", stdin=layer({"big": "x" * 50000})[:20000])
    assert truncated.returncode == 1 and truncated.err.startswith("Error: ")
    badname = pydock("import", str(_tarball(tmp_path)), "Bad:Name")
    assert badname.returncode == 2 and "Invalid repository name" in badname.err
    assert pydock("images", "-q", ok=True).out == ""
    graph = pydock.root / "graph"
    assert sorted(os.listdir(graph)) == ["_tmp"]
    assert [n for n in os.listdir(graph / "_tmp") if not n.startswith(".")] == []


def test_graph_cli_unknown_image(pydock):
    for args in (["history", "nosuch"], ["tag", "nosuch", "x"], ["rmi", "nosuch"]):
        proc = pydock(*args)
        assert proc.returncode == 1, args
        assert "nosuch" in proc.err
