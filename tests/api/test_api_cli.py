"""The real docker CLI (28.x) against `pydock serve`: what a user types and sees, and that the API and the
pydock CLI share one set of containers."""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import pytest

pytestmark = pytest.mark.lxc


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def out(p) -> str:
    return p.stdout.decode()


def err(p) -> str:
    return p.stderr.decode()


def test_version_reports_api_144(server):
    p = server.docker("version")
    assert p.returncode == 0, err(p)
    text = out(p)
    assert "Server: pydock" in text
    assert "API version:      1.44 (minimum version 1.24)" in text
    assert "1.44 (downgraded from" in text  # the client negotiated down to us


def test_run_rm_streams_output_and_propagates_exit_code(server):
    p = server.docker("run", "--rm", "--net", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert p.returncode == 3, err(p)
    assert out(p) == "out\n"
    assert "err\n" in err(p)
    # --rm: the server removed it, and the pydock CLI agrees
    ps = server.pydock("ps", "-a", "-q")
    assert ps.returncode == 0
    assert server.docker("ps", "-a", "-q").stdout == b""


def test_run_unknown_image_is_125_with_pull_failure(server):
    p = server.docker("run", "--rm", "--net", "none", "nosuchimage-" + uuid.uuid4().hex[:6], "true")
    assert p.returncode == 125
    assert "Unable to find image" in err(p)
    # a real pull now: Docker Hub denies an unknown name, or (offline, as in CI) cannot be reached
    assert "pull access denied" in err(p) or "registry-1.docker.io is unreachable" in err(p)


def test_run_missing_command_is_127(server):
    p = server.docker("run", "--rm", "--net", "none", "busybox", "no-such-command")
    assert p.returncode == 127
    assert "executable file not found" in err(p)
    import time

    for _ in range(100):  # --rm: the server removes the container that failed to start, too
        if server.docker("ps", "-aq").stdout == b"":
            break
        time.sleep(0.05)
    assert server.docker("ps", "-aq").stdout == b""


def test_detached_container_lifecycle(server):
    name = uniq("web")
    p = server.docker("run", "-d", "--name", name, "--net", "none", "-e", "GREETING=hello", "busybox",
                      "sh", "-c", "echo $GREETING; touch /newfile; exec sleep 30")
    assert p.returncode == 0, err(p)
    cid = out(p).strip()
    assert len(cid) == 64
    ps = server.docker("ps", "--no-trunc")
    assert cid in out(ps) and name in out(ps) and "Up " in out(ps)
    # the pydock CLI sees the same container
    assert name in out(server.pydock("ps"))
    logs = server.docker("logs", name)
    for _ in range(50):
        if logs.stdout:
            break
        logs = server.docker("logs", name)
    assert out(logs) == "hello\n"
    fmt = server.docker("inspect", "-f", "{{.State.Status}} {{.Name}} {{.Config.Tty}} {{.HostConfig.LogConfig.Type}}",
                        name)
    assert out(fmt).strip() == f"running /{name} false json-file"
    diff = server.docker("diff", name)
    assert "A /newfile" in out(diff).splitlines()
    repo = uniq("img")
    commit = server.docker("commit", "--change", 'CMD ["cat", "/newfile"]', "-c", "ENV STAGE=committed", name,
                           f"{repo}:v1")
    assert commit.returncode == 0, err(commit)
    assert out(commit).startswith("sha256:")
    config = server.docker("inspect", "-f", "{{json .Config.Cmd}} {{json .Config.Env}}", f"{repo}:v1")
    cmd, env = out(config).split()
    assert cmd == '["cat","/newfile"]' and "STAGE=committed" in json.loads(env)
    assert server.docker("inspect", "-f", "{{.State.Paused}}", name).stdout == b"false\n"  # thawed again
    images = server.docker("images", repo)
    assert repo in out(images) and "v1" in out(images)
    stop = server.docker("stop", "-t", "1", name)
    assert stop.returncode == 0 and out(stop).strip() == name
    wait = server.docker("wait", name)
    assert out(wait).strip() in ("137", "143")
    assert "Exited (" in out(server.docker("ps", "-a", "--filter", f"name={name}"))
    assert server.docker("rm", name).returncode == 0
    gone = server.docker("rm", name)
    assert gone.returncode == 1 and f"No such container: {name}" in err(gone)
    assert server.docker("rmi", f"{repo}:v1").returncode == 0


def test_kill_waits_for_exit_and_refuses_stopped(server):
    name = uniq("k")
    assert server.docker("run", "-d", "--name", name, "--net", "none", "busybox", "sleep", "30").returncode == 0
    p = server.docker("kill", name)
    assert p.returncode == 0 and out(p).strip() == name
    # answered only once it is down: no polling needed
    assert out(server.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name)).strip() == "exited 137"
    again = server.docker("kill", name)
    assert again.returncode == 1 and "is not running" in err(again)
    server.docker("rm", name)


def test_rm_running_needs_force(server):
    name = uniq("busy")
    assert server.docker("run", "-d", "--name", name, "--net", "none", "busybox", "sleep", "30").returncode == 0
    p = server.docker("rm", name)
    assert p.returncode == 1
    assert "container is running: stop the container before removing or force remove" in err(p)
    assert server.docker("rm", "-f", name).returncode == 0
    assert name not in out(server.pydock("ps", "-a"))


def test_name_conflict_is_409(server):
    name = uniq("dup")
    assert server.docker("create", "--name", name, "--net", "none", "busybox", "true").returncode == 0
    p = server.docker("create", "--name", name, "--net", "none", "busybox", "true")
    assert p.returncode == 1  # `docker create` exits 1 on a daemon error (`run` would be 125)
    assert f'The container name "/{name}" is already in use' in err(p)
    server.docker("rm", name)


def test_cli_started_container_is_driven_by_docker(server):
    name = uniq("fromcli")
    p = server.pydock("run", "-d", "--name", name, "--net", "none", "busybox", "sh", "-c", "echo via-cli; sleep 30")
    assert p.returncode == 0, err(p)
    assert name in out(server.docker("ps"))
    logs = server.docker("logs", name)
    for _ in range(50):
        if logs.stdout:
            break
        logs = server.docker("logs", name)
    assert out(logs) == "via-cli\n"
    assert server.docker("stop", "-t", "0", name).returncode == 0
    assert server.docker("rm", name).returncode == 0
    assert name not in out(server.pydock("ps", "-a"))


def test_links_show_as_names_and_rm_link(server):
    db, web = uniq("db"), uniq("web")
    assert server.docker("run", "-d", "--name", db, "--net", "none", "busybox", "sleep", "30").returncode == 0
    p = server.docker("create", "--name", web, "--link", f"{db}:db", "--net", "none", "busybox", "true")
    assert p.returncode == 0, err(p)
    names = out(server.docker("ps", "--no-trunc", "--filter", f"name={db}", "--format", "{{.Names}}")).strip()
    assert sorted(names.split(",")) == sorted([db, f"{web}/db"])
    assert f"{web}/db" in out(server.pydock("ps"))
    link = server.docker("rm", "--link", f"{web}/db")
    assert link.returncode == 0, err(link)
    names = out(server.docker("ps", "--no-trunc", "--filter", f"name={db}", "--format", "{{.Names}}")).strip()
    assert names == db
    assert server.docker("rm", "-f", db, web).returncode == 0


def _tar_with(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_import_file_and_stdin_then_rmi(server, tmp_path):
    a, b = uniq("imp-file"), uniq("imp-stdin")
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(_tar_with("hello.txt", b"hi\n"))
    p = server.docker("import", str(tar), f"{a}:1.0")  # sent chunked
    assert p.returncode == 0, err(p)
    assert out(p).startswith("sha256:")
    p2 = server.docker("import", "-", b, input=_tar_with("other.txt", b"x" * 100000))
    assert p2.returncode == 0, err(p2)
    listing = out(server.docker("images"))
    assert a in listing and "1.0" in listing and b in listing
    assert a in out(server.pydock("images"))
    bad = server.docker("import", "-", uniq("bad"), input=b"this is not a tarball" * 10)
    assert bad.returncode != 0
    rmi = server.docker("rmi", f"{a}:1.0", b)
    assert rmi.returncode == 0, err(rmi)
    assert f"Untagged: {a}:1.0" in out(rmi)
    listing = out(server.docker("images"))
    assert a not in listing and b not in listing


def test_inspect_unknown_object(server):
    p = server.docker("inspect", "nothing-" + uuid.uuid4().hex[:6])
    assert p.returncode == 1
    assert "No such object" in err(p)


def test_info(server):
    p = server.docker("info")
    assert p.returncode == 0, err(p)
    assert "Storage Driver: overlay" in out(p)
    assert "Server Version: " in out(p)


def test_logs_follow_ends_with_the_container(server):
    name = uniq("follow")
    p = server.docker("run", "-d", "--name", name, "--net", "none", "busybox", "sh", "-c",
                      "for i in 1 2 3; do echo line$i; sleep 0.1; done")
    assert p.returncode == 0, err(p)
    logs = server.docker("logs", "-f", name, timeout=30)
    assert out(logs) == "line1\nline2\nline3\n"
    again = server.docker("start", "-a", name, timeout=30)  # attach, then start: the next run's output
    assert again.returncode == 0 and out(again) == "line1\nline2\nline3\n"
    server.docker("rm", name)


def test_concurrent_runs_keep_their_output_and_codes(server):
    import concurrent.futures

    def one(i: int):
        p = server.docker("run", "--rm", "--net", "none", "busybox", "sh", "-c", f"echo run{i}; exit {i % 4}")
        return i, p.returncode, out(p)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert results == [(i, i % 4, f"run{i}\n") for i in range(8)]
    assert server.docker("ps", "-aq").stdout == b""


def test_tag_history_and_restart(server):
    repo = uniq("tagged")
    p = server.docker("tag", "busybox", f"{repo}:2", timeout=20)  # a 201 without a body must end
    assert p.returncode == 0, err(p)
    assert f"{repo}:2" in out(server.docker("images", "--format", "{{.Repository}}:{{.Tag}}"))
    hist = server.docker("history", f"{repo}:2")
    assert hist.returncode == 0 and "Imported from" in out(hist)
    assert server.docker("rmi", f"{repo}:2").returncode == 0
    name = uniq("rs")
    assert server.docker("run", "-d", "--name", name, "--net", "none", "busybox", "sleep", "30").returncode == 0
    first = out(server.docker("inspect", "-f", "{{.State.StartedAt}}", name))
    p = server.docker("restart", "-t", "0", name, timeout=30)
    assert p.returncode == 0, err(p)
    again = out(server.docker("inspect", "-f", "{{.State.Status}} {{.State.StartedAt}}", name)).split()
    assert again[0] == "running" and again[1] != first.strip()
    assert server.docker("rm", "-f", name).returncode == 0


def test_stop_of_an_auto_removed_container_succeeds(server):
    name = uniq("drm")
    assert server.docker("run", "-d", "--rm", "--name", name, "--net", "none", "busybox", "sleep", "30").returncode == 0
    p = server.docker("stop", "-t", "0", name)
    assert p.returncode == 0 and out(p).strip() == name, err(p)
    import time

    for _ in range(100):
        if name not in out(server.docker("ps", "-a")):
            break
        time.sleep(0.05)
    assert name not in out(server.docker("ps", "-a"))


def test_rm_force_of_a_running_auto_remove_container(server):
    for _ in range(3):
        name = uniq("rmf")
        assert server.docker("run", "-d", "--rm", "--name", name, "--net", "none", "busybox", "sleep",
                             "30").returncode == 0
        p = server.docker("rm", "-f", name)
        assert (p.returncode, out(p).strip(), err(p)) == (0, name, "")
