"""`pydock build` as a user runs it, on each host driver: realistic Dockerfiles checked by running the
images they make, Docker's classic output, the cache (hits, partial rebuilds, --no-cache), build args,
.dockerignore, ownership, stages and targets, stdin contexts, and what a failed build leaves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from build_helpers import APP_OUTPUT, ONBUILD_BASE, ONBUILD_CHILD, app_context, tar_of, tools_context, write

pytestmark = pytest.mark.lxc


def _steps(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("Step ")]


def _containers(pydock) -> list[str]:
    return pydock("ps", "-aq").out.split()


def _images(pydock) -> set[str]:
    return set(pydock("images", "-aq", "--no-trunc").out.split())


def test_app_two_stages_args_ignore_and_owners(pydock, tmp_path: Path):
    ctx = app_context(tmp_path / "app")
    out = pydock("build", "-t", "app:1", "-t", "app:latest", str(ctx)).out
    steps = _steps(out)
    assert steps[0] == "Step 1/19 : ARG BASE=localhost/bbase:latest" and len(steps) == 19
    assert "Step 7/19 : RUN mkdir -p /out     && for f in *.txt" in out  # continuations joined as written
    assert re.search(r" ---> Running in [0-9a-f]{12}\n", out)
    assert re.search(r" ---> Removed intermediate container [0-9a-f]{12}\n", out)
    image = re.search(r"Successfully built ([0-9a-f]{12})\n", out).group(1)
    assert out.endswith("Successfully tagged app:1\nSuccessfully tagged app:latest\n")
    assert "[Warning]" not in out
    assert pydock("run", "--rm", "app:1").out == APP_OUTPUT.format(version="0.0", flavor="plain")
    info = pydock.inspect("app:latest")
    assert info["id"].startswith(image)
    cfg = info["config"]
    assert cfg["User"] == "app" and cfg["WorkingDir"] == "/opt/app" and cfg["ExposedPorts"] == {"8080/tcp": {}}
    assert "GREETING=hello world" in cfg["Env"] and cfg["Cmd"] == ["sh", "/usr/local/bin/run.sh"]
    assert any(e.startswith("PATH=") for e in cfg["Env"])
    assert _containers(pydock) == []
    history = pydock("history", "--no-trunc", "app:1").out
    assert "#(nop) COPY --chown=app:app dir:" in history and "#(nop)  USER app" in history


def test_cache_hits_partial_rebuilds_and_no_cache(pydock, tmp_path: Path):
    ctx = app_context(tmp_path / "app")
    first = pydock("build", "-t", "app:1", str(ctx)).out
    assert "Using cache" not in first
    image = pydock.image_id("app:1")
    again = pydock("build", "-t", "app:1", str(ctx)).out
    assert "Running in" not in again and again.count(" ---> Using cache") == 16  # every step but ARG/FROMs
    assert pydock.image_id("app:1") == image
    # an mtime alone does not bust the cache (Docker's checksum leaves it out); content does
    os.utime(ctx / "src/file001.txt", (1, 1))
    assert "Running in" not in pydock("build", str(ctx)).out
    (ctx / "src/file001.txt").write_text("changed\n")
    partial = pydock("build", "-t", "app:2", str(ctx)).out
    steps = partial.split("Step ")
    assert "Using cache" in steps[5] and "Using cache" not in steps[6]  # WORKDIR cached, COPY src/ not
    assert "Running in" in steps[7]
    assert pydock("run", "--rm", "app:2", "cat", "data/file001.txt").out == "CHANGED\n"
    # metadata is in the checksum too: a mode change rebuilds from that COPY on
    os.chmod(ctx / "config/app.conf", 0o600)
    moded = pydock("build", str(ctx)).out.split("Step ")
    assert "Using cache" in moded[13] and "Using cache" not in moded[14]
    fresh = pydock("build", "--no-cache", "-t", "app:3", str(ctx)).out
    assert "Using cache" not in fresh and pydock.image_id("app:3") != pydock.image_id("app:2")
    # a cached image that was removed is simply built again
    pydock("rmi", "app:3")
    assert pydock("build", "-q", str(ctx)).returncode == 0
    assert _containers(pydock) == []


def test_build_args_and_unused_warning(pydock, tmp_path: Path):
    ctx = app_context(tmp_path / "app")
    os.environ["PDK_FLAVOR_FROM_ENV"] = "from-env"
    try:
        out = pydock("build", "-t", "app:args", "--build-arg", "VERSION=2.1", "--build-arg", "FLAVOR",
                     "--build-arg", "NOBODY=x", str(ctx), env={"FLAVOR": "spicy"}).out
    finally:
        del os.environ["PDK_FLAVOR_FROM_ENV"]
    assert "[Warning] One or more build-args [NOBODY] were not consumed" in out
    assert pydock("run", "--rm", "app:args").out == APP_OUTPUT.format(version="2.1", flavor="spicy")
    # build args are in the RUN's environment and in its history, not in the image's Env
    info = pydock.inspect("app:args")
    assert not any(e.startswith(("VERSION=", "FLAVOR=")) for e in info["config"]["Env"])
    # a different value is a different RUN: that step and the next miss the cache
    other = pydock("build", "--build-arg", "VERSION=3", str(ctx)).out.split("Step ")
    assert "Using cache" in other[6] and "Using cache" not in other[7]


def test_proxy_args_volumes_and_maintainer(pydock, tmp_path: Path):
    """Proxy args reach RUN without an ARG yet stay out of the history and the cache; a RUN's writes under
    a VOLUME are discarded (it is a volume during the build too); MAINTAINER is the author."""
    write(tmp_path / "ctx/Dockerfile", "FROM localhost/bbase:latest\nMAINTAINER Jane <jane@example.org>\n"
                                       "RUN echo \"proxy=$http_proxy\" > /proxy\nVOLUME /data\n"
                                       "RUN echo lost > /data/f && echo kept > /kept\n")
    out = pydock("build", "-t", "vol:1", "--build-arg", "http_proxy=http://proxy:3128", str(tmp_path / "ctx")).out
    assert "[Warning]" not in out
    info = pydock.inspect("vol:1")
    assert info["author"] == "Jane <jane@example.org>" and info["config"]["Volumes"] == {"/data": {}}
    assert "proxy:3128" not in pydock("history", "--no-trunc", "vol:1").out
    with pydock.mounted(info["id"]) as rootfs:
        assert (rootfs / "proxy").read_text() == "proxy=http://proxy:3128\n" and (rootfs / "kept").exists()
        assert not (rootfs / "data" / "f").exists()
    # another proxy is not another image: the RUN is cached
    again = pydock("build", "--build-arg", "http_proxy=http://other:3128", str(tmp_path / "ctx")).out
    assert "Running in" not in again
    assert pydock("ps", "-aq").out == ""


def test_tools_add_archives_shell_and_metadata(pydock, tmp_path: Path):
    ctx = tools_context(tmp_path / "tools")
    pydock("build", "-t", "tools:1", str(ctx))
    out = pydock("run", "--rm", "tools:1").out
    assert out.startswith("item a\nitem b\nitem c\n/opt a,b,c\nnotes\n")
    assert "755 0:0 10 pkg/bin.sh\n" in out and "1600000000 pkg/README\n" in out  # unpacked, mtimes kept
    assert "644 0:0 7 name with spaces.txt\n" in out and "payload.tar.gz" not in out
    cfg = pydock.inspect("tools:1")["config"]
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "test -f /opt/tools/items"], "Interval": 5_000_000_000,
                                  "Retries": 2}
    assert cfg["StopSignal"] == "SIGINT" and cfg["Labels"] == {"org.example.tool": "tools", "version": "1"}
    assert cfg["Shell"] == ["/bin/sh", "-ec"] and cfg["Entrypoint"] == ["/bin/sh", "-c"]


def test_onbuild_triggers_run_in_the_child(pydock, tmp_path: Path):
    write(tmp_path / "base/Dockerfile", ONBUILD_BASE)
    pydock("build", "-t", "onbase:1", str(tmp_path / "base"))
    assert pydock.inspect("onbase:1")["config"]["OnBuild"] == [
        "COPY trigger.txt /trigger.txt", 'RUN echo "built on $(cat /trigger.txt)" > /onbuild.out']
    write(tmp_path / "child/Dockerfile", ONBUILD_CHILD)
    write(tmp_path / "child/trigger.txt", "child\n")
    out = pydock("build", "-t", "child:1", str(tmp_path / "child")).out
    assert "# Executing 2 build triggers\n" in out
    assert pydock("run", "--rm", "child:1").out == "built on child\n"
    assert pydock.inspect("child:1")["config"].get("OnBuild") is None  # triggers run once, not inherited


def test_target_labels_quiet_and_file(pydock, tmp_path: Path):
    ctx = app_context(tmp_path / "app")
    out = pydock("build", "-q", "--target", "build", "--label", "stage=build", "--label", "team=x",
                 "-t", "app:build", str(ctx)).out
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", out)
    assert out.strip() == "sha256:" + pydock.image_id("app:build")
    info = pydock.inspect("app:build")
    assert info["config"]["Labels"] == {"stage": "build", "team": "x"}
    assert pydock("run", "--rm", "app:build", "cat", "/out/VERSION").out == "version=0.0 flavor=plain\n"
    # -f names a Dockerfile anywhere (relative to here); the context stays the directory
    write(tmp_path / "elsewhere.Dockerfile", "FROM localhost/bbase:latest\nCOPY config/app.conf /c\n")
    pydock("build", "-t", "app:f", "-f", str(tmp_path / "elsewhere.Dockerfile"), str(ctx))
    assert pydock("run", "--rm", "app:f", "cat", "/c").out == "port=8080\n"


def test_stdin_contexts(pydock, tmp_path: Path):
    # a Dockerfile alone
    out = pydock("build", "-t", "solo:1", "-", stdin=b"FROM localhost/bbase:latest\nCMD [\"echo\", \"solo\"]\n").out
    assert "Successfully tagged solo:1" in out and pydock("run", "--rm", "solo:1").out == "solo\n"
    # a gzipped tar of the context, the Dockerfile named inside it
    ctx = tmp_path / "ctx"
    write(ctx / "build/Custom", "FROM localhost/bbase:latest\nCOPY . /ctx/\nCMD [\"ls\", \"-R\", \"/ctx\"]\n")
    write(ctx / "data/x", "x\n")
    write(ctx / ".dockerignore", "build\n")
    pydock("build", "-t", "tarctx:1", "-f", "build/Custom", "-", stdin=tar_of(ctx, gz=True))
    listing = pydock("run", "--rm", "tarctx:1").out
    # the daemon side drops the Dockerfile and .dockerignore when .dockerignore names them; nothing else
    assert "Custom" not in listing and ".dockerignore" in pydock("run", "--rm", "tarctx:1", "ls", "-a", "/ctx").out
    assert "x" in listing
    # a Dockerfile on stdin with a directory context
    write(tmp_path / "dirctx/f", "f\n")
    pydock("build", "-t", "dfstdin:1", "-f", "-", str(tmp_path / "dirctx"),
           stdin=b"FROM localhost/bbase:latest\nCOPY f /f\n")
    assert pydock("run", "--rm", "dfstdin:1", "cat", "/f").out == "f\n"


def test_copy_semantics(pydock, tmp_path: Path):
    ctx = tmp_path / "ctx"
    write(ctx / "dir/a.txt", "a\n")
    write(ctx / "dir/sub/b.txt", "b\n")
    write(ctx / "one.txt", "one\n")
    write(ctx / "two.txt", "two\n")
    os.symlink("a.txt", ctx / "dir/link")          # inside a copied directory: copied as a link
    os.symlink("dir/a.txt", ctx / "alias")         # named itself: followed, inside the context
    os.link(ctx / "dir/a.txt", ctx / "dir/hard")   # hard links within a copy stay links
    write(ctx / "Dockerfile", """\
FROM localhost/bbase:latest
COPY dir /d1
COPY dir/ /d2/
COPY *.txt /glob/
COPY one.txt /renamed
COPY one.txt /existing-dir-is-kept/
COPY alias /alias-copy
WORKDIR /w
COPY two.txt rel/
COPY --chmod=0600 one.txt /private
RUN ls /d1 /d2 /glob /existing-dir-is-kept /w/rel && readlink /d1/link && cat /renamed /alias-copy \\
    && stat -c '%a %h' /private /d1/hard
""")
    out = pydock("build", str(ctx)).out
    assert ("/d1:\na.txt\nhard\nlink\nsub\n\n/d2:\na.txt\nhard\nlink\nsub\n\n/existing-dir-is-kept:\none.txt\n\n"
            "/glob:\none.txt\ntwo.txt\n\n/w/rel:\ntwo.txt\na.txt\none\na\n600 1\n644 2\n") in out


def test_from_scratch(pydock, tmp_path: Path):
    """FROM scratch: an empty image ( ---> with no id) filled by a COPY of a whole image's rootfs."""
    write(tmp_path / "ctx/Dockerfile", "FROM --platform=$BUILDPLATFORM scratch\n"
                                       "COPY --from=localhost/bbase:latest / /\nCMD [\"echo\", \"from scratch\"]\n")
    out = pydock("build", "-t", "scratch:1", str(tmp_path / "ctx")).out
    assert "Step 1/3 : FROM --platform=$BUILDPLATFORM scratch\n ---> \nStep 2/3" in out
    assert pydock("run", "--rm", "scratch:1").out == "from scratch\n"
    assert len(pydock("history", "-q", "scratch:1").out.split()) == 2  # the COPY layer, the CMD: no base


def test_failed_run_and_intermediate_containers(pydock, tmp_path: Path):
    write(tmp_path / "ctx/Dockerfile", "FROM localhost/bbase:latest\nRUN echo made > /made\n"
                                       "RUN echo out; echo err >&2; exit 3\nRUN echo never\n")
    before = _images(pydock)
    failed = pydock("build", "-t", "fails:1", str(tmp_path / "ctx"), ok=False)
    assert failed.returncode == 3
    assert "out\n" in failed.out and "err\n" in failed.err
    assert failed.err.splitlines()[-1] == "Error: The command '/bin/sh -c echo out; echo err >&2; exit 3' " \
                                          "returned a non-zero code: 3"
    assert "Step 4/4" not in failed.out
    # as Docker's --rm: the failed step's container stays for a look; the successful one is gone
    left = _containers(pydock)
    assert len(left) == 1 and pydock("logs", left[0]).out == "out\n"
    pydock("rm", left[0])
    assert len(_images(pydock) - before) == 1  # the first RUN's image (the cache), no half image
    # --force-rm leaves none even after a failure; -q shows the output only then, on stderr
    quiet = pydock("build", "-q", "--force-rm", str(tmp_path / "ctx"), ok=False)
    assert quiet.returncode == 3 and quiet.out == "" and "Step 3/4" in quiet.err
    assert _containers(pydock) == []
    # --no-rm keeps the containers of the successful steps
    write(tmp_path / "ok/Dockerfile", "FROM localhost/bbase:latest\nRUN true\nRUN true\n")
    pydock("build", "--no-rm", str(tmp_path / "ok"))
    assert len(_containers(pydock)) == 2


@pytest.mark.parametrize("dockerfile, files, message", [
    ("FROM localhost/bbase:latest\nRUN true\nFOO bar\n", {}, "dockerfile parse error on line 3: unknown instruction: FOO"),
    ("FROM localhost/bbase:latest\nENV\n", {}, "dockerfile parse error on line 2: ENV requires at least one argument"),
    ("FROM 127.0.0.1:9/no/such:image\n", {}, "Unable to find image '127.0.0.1:9/no/such:image' locally"),
    ("FROM localhost/bbase:latest\nCOPY ../outside /x\n", {}, "COPY failed: forbidden path outside the build context"),
    ("FROM localhost/bbase:latest\nCOPY missing /x\n", {}, "COPY failed: file not found in build context"),
    ("FROM localhost/bbase:latest\nCOPY secret.txt /x\n", {".dockerignore": "secret.txt\n", "secret.txt": "s\n"},
     "COPY failed: file not found in build context or excluded by .dockerignore: stat secret.txt"),
    ("FROM localhost/bbase:latest\nCOPY a b /x\n", {"a": "a", "b": "b"}, "the destination must be a directory"),
    ("FROM localhost/bbase:latest\nCOPY --from=nostage /x /x\n", {}, "Unable to find image 'nostage' locally"),
    ("FROM localhost/bbase:latest\nCOPY --chown=nobody2 a /x\n", {"a": "a"}, "can't find uid for user nobody2"),
    ("FROM localhost/bbase:latest\nADD http://127.0.0.1:9/file /x\n", {}, "ADD failed: cannot download"),
    ("FROM localhost/bbase:latest\nRUN nosuchcommand-xyz\n", {}, "returned a non-zero code: 127"),
    ("FROM localhost/bbase:latest\nWORKDIR /etc/passwd/x\n", {}, "not a directory"),
    ("FROM --platform=linux/s390x localhost/bbase:latest\n", {}, "only this host's platform"),
    ("FROM localhost/bbase:latest\nCOPY --from=1 /x /x\n", {}, "invalid from flag value 1: index out of bounds"),
])
def test_bad_input_one_error_nothing_left(pydock, tmp_path: Path, dockerfile: str, files: dict, message: str):
    ctx = tmp_path / "ctx"
    write(ctx / "Dockerfile", dockerfile)
    for name, data in files.items():
        write(ctx / name, data)
    before = _images(pydock)
    proc = pydock("build", "--force-rm", "-t", "bad:1", str(ctx), ok=False)
    assert proc.returncode != 0
    errors = [line for line in proc.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], proc.err
    assert _containers(pydock) == []
    assert _images(pydock) == before
    assert "bad" not in [line.split()[0] for line in pydock("images").out.splitlines()[1:]]  # no such repository


def test_context_symlinks_never_leave_the_context(pydock, tmp_path: Path):
    outside = tmp_path / "outside-secret"
    outside.write_text("host secret\n")
    ctx = tmp_path / "ctx"
    write(ctx / "Dockerfile", "FROM localhost/bbase:latest\nCOPY dir/ /d/\nCOPY inner /inner\n")
    write(ctx / "dir/ok", "ok\n")
    os.symlink(outside, ctx / "dir/abs")            # copied as a link, its target never read
    os.symlink("../../outside-secret", ctx / "dir/rel")
    os.symlink("/dir/ok", ctx / "inner")           # absolute: means the context's own /dir/ok
    pydock("build", "-t", "links:1", str(ctx))
    out = pydock("run", "--rm", "links:1", "sh", "-c", "readlink /d/abs; readlink /d/rel; cat /inner; cat /d/abs || true").out
    assert out.startswith(f"{outside}\n../../outside-secret\nok\n") and "host secret" not in out
    for name, target in [("evil", str(outside)), ("evil2", "../outside-secret")]:
        os.symlink(target, ctx / name)
        write(ctx / "Dockerfile", f"FROM localhost/bbase:latest\nCOPY {name} /x\n")
        proc = pydock("build", str(ctx), ok=False)
        assert proc.returncode != 0 and "file not found in build context" in proc.err


def test_huge_context_is_streamed(pydock, tmp_path: Path):
    """A 256 MiB context on stdin is extracted as it streams: the build's memory stays small."""
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(256 << 20)
    ctx = tmp_path / "ctx"
    write(ctx / "Dockerfile", "FROM localhost/bbase:latest\nCOPY small /small\n")
    write(ctx / "small", "small\n")
    tar = subprocess.Popen(["tar", "-c", "-C", str(ctx), "Dockerfile", "small", "-C", str(tmp_path), "big"],
                           stdout=subprocess.PIPE)
    timed = subprocess.run(["/usr/bin/time", "-f", "maxrss=%M", *pydock.prefix, str(Path(os.sys.executable).with_name("pydock")),
                            "-g", str(pydock.root), "-s", pydock.driver, "-b", "none", "build", "-t", "big:1", "-"],
                           stdin=tar.stdout, capture_output=True, text=True, timeout=600)
    tar.wait()
    assert timed.returncode == 0, timed.stderr
    rss_kib = int(re.search(r"maxrss=(\d+)", timed.stderr).group(1))
    assert rss_kib < 150 * 1024, f"the build held {rss_kib} KiB: the context was not streamed"
    assert pydock("run", "--rm", "big:1", "cat", "/small").out == "small\n"


def test_interrupted_build_leaves_no_container(pydock, tmp_path: Path):
    import signal
    import time

    write(tmp_path / "ctx/Dockerfile", "FROM localhost/bbase:latest\nRUN echo go-$((1+1)); sleep 60\n")
    proc = subprocess.Popen([str(Path(os.sys.executable).with_name("pydock")), "-g", str(pydock.root), "-s",
                             pydock.driver, "-b", "none", "build", str(tmp_path / "ctx")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # SIGINT as a terminal's job has it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    seen = b""
    while b"go-2\n" not in seen and time.monotonic() < deadline:  # the RUN is running
        seen += proc.stdout.read1(4096)  # type: ignore[union-attr]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert _containers(pydock) == []


def test_saved_image_carries_the_build_config(pydock, tmp_path: Path):
    """An image built here exports with its config (Healthcheck, OnBuild, Shell too) for other tools."""
    write(tmp_path / "ctx/Dockerfile", "FROM localhost/bbase:latest\nSHELL [\"/bin/sh\", \"-xc\"]\n"
                                       "HEALTHCHECK CMD true\nONBUILD RUN true\nCMD [\"true\"]\n")
    pydock("build", "-t", "cfg:1", str(tmp_path / "ctx"))
    saved = tmp_path / "cfg.tar"
    pydock("save", "-o", str(saved), "cfg:1")
    with tarfile.open(saved) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(tar.extractfile(manifest["Config"]))["config"]  # type: ignore[arg-type]
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "true"]} and config["OnBuild"] == ["RUN true"]
    assert config["Shell"] == ["/bin/sh", "-xc"] and config["Cmd"] == ["true"]


def test_ignore_file_can_name_the_dockerfile(pydock, tmp_path: Path):
    """The Dockerfile and .dockerignore are read whatever .dockerignore says, but COPY sees them only if
    it does not name them (as with Docker, where the CLI sends them and the daemon drops them)."""
    ctx = tmp_path / "ctx"
    write(ctx / "Dockerfile", "FROM localhost/bbase:latest\nCOPY . /c/\nCMD [\"ls\", \"-A\", \"/c\"]\n")
    write(ctx / "keep.txt", "k\n")
    write(ctx / "notes.md", "n\n")
    write(ctx / ".dockerignore", "Dockerfile\n.dockerignore\n*.md\n")
    pydock("build", "-t", "ign:1", str(ctx))
    assert pydock("run", "--rm", "ign:1").out == "keep.txt\n"
    (ctx / ".dockerignore").write_text("*.md\n")
    pydock("build", "-t", "ign:2", str(ctx))
    assert pydock("run", "--rm", "ign:2").out == ".dockerignore\nDockerfile\nkeep.txt\n"


@pytest.mark.network
def test_add_url_in_a_namespace(pydock, tmp_path: Path):
    """ADD of an http URL (a server on loopback in a namespace made here): a file of mode 0600 with the
    server's Last-Modified, never unpacked, cached by its content."""
    import sys
    import time
    import uuid

    ns = "pdkbuild" + uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    prefix = ["nsenter", f"--net=/run/netns/{ns}"]
    server = None
    try:
        subprocess.run([*prefix, "ip", "link", "set", "lo", "up"], check=True)
        www = tmp_path / "www"
        write(www / "file.txt", "downloaded\n")
        os.utime(www / "file.txt", (1_500_000_000, 1_500_000_000))
        write(www / "pkg.tar.gz", tar_of(www, gz=True))
        server = subprocess.Popen([*prefix, sys.executable, "-m", "http.server", "-b", "127.0.0.1", "8000"], cwd=www,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while subprocess.run([*prefix, sys.executable, "-c", "import socket; socket.create_connection"
                              "(('127.0.0.1', 8000), 1)"], capture_output=True).returncode:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        write(tmp_path / "ctx/Dockerfile", "FROM localhost/bbase:latest\n"
                                           "ADD http://127.0.0.1:8000/file.txt http://127.0.0.1:8000/pkg.tar.gz /dl/\n"
                                           "RUN stat -c '%a %Y %n' /dl/* && cat /dl/file.txt\n")
        p = pydock.inside(prefix)
        out = p("build", str(tmp_path / "ctx")).out
        assert "600 1500000000 /dl/file.txt\n" in out and "/dl/pkg.tar.gz\n" in out and "downloaded\n" in out
        assert "Running in" not in p("build", str(tmp_path / "ctx")).out
        (www / "file.txt").write_text("changed\n")
        assert "changed\n" in p("build", str(tmp_path / "ctx")).out
        missing = p("build", "-", stdin=b"FROM localhost/bbase:latest\nADD http://127.0.0.1:8000/nope /x\n", ok=False)
        assert missing.returncode != 0 and "ADD failed: http://127.0.0.1:8000/nope: 404 Not Found" in missing.err
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        subprocess.run(["ip", "netns", "delete", ns], check=False)
