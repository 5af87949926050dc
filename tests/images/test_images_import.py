"""`import URL|-|FILE [REPO[:TAG]]` with `--change`: a URL streamed from an http server on loopback in a
namespace the test makes; the instructions land in the image config that `run` honours."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.lxc, pytest.mark.network]


@pytest.fixture
def http_server(registry, tmp_path: Path):
    """python's http.server on 127.0.0.1:8000 in the registry fixture's namespace, serving `www/`."""
    www = tmp_path / "www"
    www.mkdir()
    proc = subprocess.Popen([*registry.ns, sys.executable, "-m", "http.server", "-b", "127.0.0.1", "8000"],
                            cwd=www, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while subprocess.run([*registry.ns, sys.executable, "-c", "import socket; socket.create_connection"
                          "(('127.0.0.1', 8000), 1)"], capture_output=True).returncode:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    yield www
    proc.terminate()
    proc.wait(timeout=10)


def test_import_url_with_changes(pydock, registry, http_server: Path, busybox_rootfs: Path):
    (http_server / "rootfs.tar.gz").write_bytes(gzip.compress(busybox_rootfs.read_bytes()))
    p = pydock.inside(registry.ns)
    image_id = p("import", "-c", 'ENV GREETING="hello there"', "-c", 'CMD ["sh", "-c", "echo $GREETING from $PWD"]',
                 "-c", "WORKDIR /tmp", "-c", "LABEL a=b", "http://127.0.0.1:8000/rootfs.tar.gz", "fromurl:1").out.strip()
    assert pydock.image_id("fromurl:1") == image_id
    assert pydock("run", "--rm", "fromurl:1").out == "hello there from /tmp\n"
    assert pydock.inspect("fromurl:1")["config"]["Labels"] == {"a": "b"}
    missing = p("import", "http://127.0.0.1:8000/nothing.tar", ok=False)
    assert missing.returncode != 0 and missing.err.count("\n") == 1 and "404" in missing.err
    refused = p("import", "http://127.0.0.1:8001/x.tar", ok=False)
    assert refused.returncode != 0 and "cannot download" in refused.err
    bad = p("import", "-c", "RUN rm -rf /", "http://127.0.0.1:8000/rootfs.tar.gz", ok=False)
    assert bad.returncode == 2 and "RUN is not supported" in bad.err
    # a hostile tarball from a URL gets the same safety rules as any layer
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (http_server / "evil.tar").write_bytes(buf.getvalue())
    evil = p("import", "http://127.0.0.1:8000/evil.tar", ok=False)
    assert evil.returncode != 0 and evil.err.count("\n") == 1
    assert pydock("images", "-q").out.split() == [image_id[:12]]
