"""The container commands as a user types them: output formats, messages, exit statuses."""

from __future__ import annotations

import json
import re
import time

import pytest

pytestmark = pytest.mark.lxc


def test_run_propagates_status_and_separates_streams(cli):
    p = cli("run", "--net", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (p.returncode, p.stdout, p.stderr) == (3, b"out\n", b"err\n")


@pytest.mark.parametrize("argv, code, message", [
    (["busybox", "nope"], 127, b"Error: nope: executable file not found in $PATH"),
    (["busybox", "/etc/passwd"], 126, b"permission denied"),
    (["-u", "ghost", "busybox", "id"], 125, b"Error: Unable to find user ghost"),
])
def test_run_failure_statuses(cli, argv, code, message):
    p = cli("run", "--rm", "--net", "none", *argv)
    assert p.returncode == code and message in p.stderr
    assert cli("ps", "-a", "-q").stdout == b""  # --rm removed it even though it never ran


def test_conflicting_options_and_usage_errors(cli):
    """Whatever keeps `run` from starting the command exits 125, as under Docker, so it is never
    mistaken for the command's own status; so does any usage error (an unknown flag)."""
    p = cli("run", "--rm", "-d", "busybox", "true")
    assert p.returncode == 125 and p.stderr.strip() == b"Error: Conflicting options: --rm and -d"
    p = cli("run", "-w", "relative", "busybox", "true")
    assert p.returncode == 125 and b"It needs to be an absolute path" in p.stderr
    p = cli("run", "--pull", "never", "--net", "none", "nosuchimage", "true")
    assert p.returncode == 125 and p.stderr == b"Error: Unable to find image 'nosuchimage'\n"
    p = cli("create", "--frobnicate", "busybox", "true")
    assert p.returncode == 125 and b"No such option '--frobnicate'" in p.stderr
    p = cli("ps", "--frobnicate")
    assert p.returncode == 125 and b"No such option '--frobnicate'" in p.stderr


def test_command_options_after_the_image_belong_to_the_command(cli):
    p = cli("run", "--rm", "--net", "none", "busybox", "ls", "-d", "/")
    assert (p.returncode, p.stdout) == (0, b"/\n")


def test_docker07_single_dash_spellings(cli, tmp_path):
    cidfile = tmp_path / "cid"
    p = cli("run", "-name", "old", "-cidfile", str(cidfile), "-entrypoint", "echo", "--net", "none", "busybox", "hi")
    assert (p.returncode, p.stdout) == (0, b"hi\n")
    cid = cidfile.read_text()
    assert len(cid) == 64
    assert cli("ps", "-a", "-notrunc", "-q").stdout.decode().split() == [cid]
    assert cli("rm", "old").returncode == 0


def test_detached_lifecycle_through_the_cli(cli):
    p = cli("run", "-d", "--net", "none", "--name", "bg", "busybox", "sh", "-c",
            'echo hello; trap "exit 9" TERM; while :; do sleep 0.05; done')
    cid = p.stdout.decode().strip()
    assert p.returncode == 0 and re.fullmatch(r"[0-9a-f]{64}", cid)
    ps = cli("ps").stdout.decode().splitlines()
    assert ps[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert cid[:12] in ps[1] and "Up " in ps[1] and ps[1].rstrip().endswith("bg")
    assert '"sh -c echo hello; tr"' in ps[1]
    for _ in range(100):
        if cli("logs", "bg").stdout == b"hello\n":
            break
        time.sleep(0.05)
    assert cli("logs", "bg").stdout == b"hello\n"
    rm = cli("rm", "bg")
    assert rm.returncode == 1
    assert b"Impossible to remove a running container, please stop it first or use -f" in rm.stderr
    assert b"Error: failed to remove one or more containers" in rm.stderr
    assert cli("stop", "-t", "5", "bg").stdout == b"bg\n"
    assert cli("wait", "bg").stdout == b"9\n"
    line = cli("ps", "-a").stdout.decode().splitlines()[1]
    assert "Exit 9" in line
    assert cli("start", "bg").stdout == b"bg\n"
    assert cli("kill", "-s", "KILL", "bg").stdout == b"bg\n"
    assert cli("wait", "bg").stdout == b"137\n"
    assert cli("rm", "bg").stdout == b"bg\n"


def test_rm_keeps_going_past_failures(cli):
    ok = cli("create", "--net", "none", "busybox", "true").stdout.decode().strip()
    p = cli("rm", "missing", ok[:12])
    assert p.returncode == 1
    assert p.stdout == ok[:12].encode() + b"\n"
    assert b"Error: No such container: missing" in p.stderr
    assert p.stderr.strip().endswith(b"Error: failed to remove one or more containers")


def test_ps_options(cli):
    first = cli("create", "--net", "none", "--name", "one", "busybox", "true").stdout.decode().strip()
    second = cli("create", "--net", "none", "--name", "two", "busybox", "true").stdout.decode().strip()
    assert cli("ps", "-q").stdout == b""
    assert cli("ps", "-a", "-q").stdout.decode().split() == [second[:12], first[:12]]
    assert cli("ps", "-l", "-q").stdout.decode().split() == [second[:12]]
    assert cli("ps", "-n", "2", "-q", "--no-trunc").stdout.decode().split() == [second, first]
    sized = cli("ps", "-a", "-s").stdout.decode().splitlines()
    assert sized[0].rstrip().endswith("SIZE") and "virtual" in sized[1]


def test_inspect_containers_then_images(cli):
    cid = cli("create", "--net", "none", "--name", "insp", "-e", "A=1", "busybox", "true").stdout.decode().strip()
    p = cli("inspect", "insp", "busybox")
    assert p.stdout.startswith(b'[\n    {\n        "ID"')
    data = json.loads(p.stdout)
    assert data[0]["ID"] == cid and data[0]["Name"] == "/insp" and "A=1" in data[0]["Config"]["Env"]
    assert set(data[0]["State"]) >= {"Running", "Pid", "ExitCode", "StartedAt", "FinishedAt", "Ghost"}
    assert data[1]["id"] != cid and "HostConfig" in data[0]
    p = cli("inspect", "nothing-here")
    assert p.returncode == 1 and b"No such image or container: nothing-here" in p.stderr


def test_name_conflict_names_the_holder(cli):
    cid = cli("create", "--net", "none", "--name", "dup", "busybox", "true").stdout.decode().strip()
    p = cli("create", "--net", "none", "--name", "dup", "busybox", "true")
    assert p.returncode == 1 and cid[:12].encode() in p.stderr and b"/dup" in p.stderr
    assert len(cli("ps", "-a", "-q").stdout.split()) == 1


def test_diff_commit_export_cli(cli, tmp_path):
    import io
    import tarfile

    cli("run", "--net", "none", "--name", "chg", "busybox", "sh", "-c", "echo v > /new.txt; rm /etc/passwd")
    assert set(cli("diff", "chg").stdout.decode().splitlines()) >= {"A /new.txt", "D /etc/passwd", "C /etc"}
    p = cli("commit", "-m", "msg", "--run", '{"Cmd": ["cat", "/new.txt"]}', "chg", "mine:v2")
    image_id = p.stdout.decode().strip()
    assert p.returncode == 0 and len(image_id) == 64
    run = cli("run", "--rm", "--net", "none", "mine:v2")
    assert run.stdout == b"v\n"
    tar = cli("export", "chg").stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        names = {n.lstrip("./") for n in t.getnames()}
    assert "new.txt" in names and "etc/passwd" not in names
    cli("rm", "chg")
    assert cli("rmi", "mine:v2").returncode == 0


def test_start_attach_streams_and_exits_with_status(cli):
    cli("create", "--net", "none", "--name", "att", "busybox", "sh", "-c", "echo a; echo b >&2; exit 4")
    p = cli("start", "-a", "att")
    assert (p.returncode, p.stdout, p.stderr) == (4, b"a\n", b"b\n")


def test_an_attach_made_the_moment_the_socket_appears_is_never_refused(cli, cli_root):
    """The monitor's attach socket appears only once it listens. strace holds each listen() of the `start`
    (and of the monitor it forks) back half a second: a socket file made at bind() would refuse this attach
    ("is not running")."""
    import os
    import subprocess
    import sys

    cid = cli("create", "--net", "none", "--name", "early", "busybox", "sh", "-c", "sleep 1; echo late",
              check=True).stdout.decode().strip()
    sock = cli_root / "containers" / cid / "attach.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK_")}
    start = subprocess.Popen(["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=listen",
                              "-e", "inject=listen:delay_enter=500000", sys.executable, "-m", "pydock.cli.main",
                              "-g", str(cli_root), "-s", "overlay", "start", "early"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert start.poll() is None and time.monotonic() < deadline, start.stderr.read().decode()
            time.sleep(0.005)
        p = cli("attach", "early")
        assert (p.returncode, p.stdout, p.stderr) == (0, b"late\n", b"")
    finally:
        assert start.wait(timeout=60) == 0, start.stderr.read().decode()
    assert not [p.name for p in sock.parent.iterdir() if p.name.startswith(".attach.sock")]  # no staging name left


def test_top_lists_the_containers_processes(cli):
    cli("run", "-d", "--net", "none", "--name", "topped", "busybox", "sleep", "30")
    out = cli("top", "topped").stdout.decode()
    assert "sleep 30" in out and out.splitlines()[0].split()[:2] == ["UID", "PID"]
    assert cli("rm", "-f", "topped").returncode == 0


def test_foreground_run_proxies_signals_to_the_command(cli_root):
    import os
    import signal
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK_")}
    proc = subprocess.Popen([sys.executable, "-m", "pydock.cli.main", "-g", str(cli_root), "-s", "overlay", "run",
                             "--rm", "--net", "none", "busybox", "sh", "-c",
                             'trap "echo got-usr1" USR1; trap "echo got-term; exit 11" TERM; echo ready; '
                             'while :; do sleep 0.05; done'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGUSR1)
        assert proc.stdout.readline() == b"got-usr1\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 11
        assert proc.stdout.read() == b"got-term\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_interactive_stdin(cli):
    p = cli("run", "-i", "--rm", "--net", "none", "busybox", "sh", "-c", "tr a-z A-Z", input=b"hello stdin\n")
    assert (p.returncode, p.stdout) == (0, b"HELLO STDIN\n")
    p = cli("run", "--rm", "--net", "none", "busybox", "cat", input=b"not passed without -i\n")
    assert (p.returncode, p.stdout) == (0, b"")


def test_tty_gives_the_command_a_terminal(cli):
    p = cli("run", "--rm", "-t", "--net", "none", "busybox", "sh", "-c",
            '[ -t 0 ] && [ -t 1 ] && echo is-a-tty; echo $TERM; echo to-err >&2; exit 2')
    assert p.returncode == 2
    # a tty merges stderr into the one output stream and ends lines with \r\n
    assert p.stdout.replace(b"\r\n", b"\n") == b"is-a-tty\nxterm\nto-err\n" and p.stderr == b""
    p = cli("run", "--rm", "-t", "-i", "--net", "none", "busybox", "sh", "-c", "read x; echo got=$x",
            input=b"typed\n")
    assert p.returncode == 0 and b"got=typed" in p.stdout
