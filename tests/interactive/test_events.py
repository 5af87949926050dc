"""`pydock events`: a journal in the root written by whichever process acted, read by later ones."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time

import pytest
from tty_helpers import pydock, pydock_argv

from pydock.runtime import events

pytestmark = pytest.mark.lxc


def _actions(out: bytes) -> list[str]:
    """The action of each line, with the container's name."""
    rows = []
    for line in out.decode().splitlines():
        parts = line.split(" (")[0].split()
        name = line.rsplit("name=", 1)[1].split(",")[0].rstrip(")") if "name=" in line else ""
        rows.append(f"{' '.join(parts[2:-1])} {name}")
    return rows


def test_lifecycle_events_survive_the_processes_that_made_them(root):
    t0 = str(time.time())
    assert pydock(root, "run", "--rm", "--name", "once", "busybox", "sh", "-c", "exit 3").returncode == 3
    assert pydock(root, "run", "-d", "--name", "bg", "busybox", "sleep", "300").returncode == 0
    assert pydock(root, "exec", "bg", "true").returncode == 0
    assert pydock(root, "pause", "bg").returncode == 0
    assert pydock(root, "unpause", "bg").returncode == 0
    assert pydock(root, "rename", "bg", "bg2").returncode == 0
    assert pydock(root, "kill", "bg2").returncode == 0
    assert pydock(root, "wait", "bg2").stdout == b"137\n"
    assert pydock(root, "rm", "bg2").returncode == 0
    p = pydock(root, "events", "--since", t0, "--until", "0s")
    assert p.returncode == 0, p.stderr
    assert _actions(p.stdout) == [
        "create once", "start once", "die once", "destroy once",
        "create bg", "start bg", "exec_create: true bg", "exec_start: true bg", "exec_die bg",
        "pause bg", "unpause bg", "rename bg2", "kill bg2", "die bg2", "destroy bg2"]
    assert b"exitCode=3" in p.stdout.splitlines()[2] and b"oldName=bg" in p.stdout.splitlines()[11]
    p = pydock(root, "events", "--since", t0, "--until", "0s", "--filter", "event=die", "--filter", "container=bg2")
    assert _actions(p.stdout) == ["die bg2"] and b"exitCode=137" in p.stdout
    p = pydock(root, "events", "--since", t0, "--until", "0s", "--filter", "event=start", "--filter", "event=destroy")
    assert _actions(p.stdout) == ["start once", "destroy once", "start bg", "destroy bg2"]
    p = pydock(root, "events", "--since", "2000-01-01T00:00:00Z", "--until", t0, "--filter", "type=container")
    assert p.stdout == b""
    p = pydock(root, "events", "--filter", "colour=red", "--until", "0s")
    assert p.returncode == 2 and b"Invalid filter" in p.stderr


def test_events_stream_until_interrupted(root):
    t0 = str(time.time())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK_")}
    # a terminal's foreground job has SIGINT at its default even when this suite runs in the background
    proc = subprocess.Popen(pydock_argv(root, "events", "--since", t0, "--filter", "container=live"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert pydock(root, "run", "--name", "live", "busybox", "true").returncode == 0
        got = b""
        deadline = time.monotonic() + 90
        while b" die " not in got:
            left = deadline - time.monotonic()
            assert left > 0, f"no die event streamed: {got!r}"
            assert proc.stdout is not None
            if select.select([proc.stdout], [], [], left)[0]:
                got += os.read(proc.stdout.fileno(), 4096)
        assert _actions(got) == ["create live", "start live", "die live"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_the_journal_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(events, "MAX_BYTES", 4096)
    for i in range(500):
        events.record(tmp_path, "container", "start", f"{i:064x}", name=f"c{i}")
    sizes = [(tmp_path / name).stat().st_size for name in (events.JOURNAL, events.PREVIOUS)]
    assert all(s <= 4096 + 300 for s in sizes)
    got, _ = events.read(tmp_path)
    assert got[-1].attributes["name"] == "c499"  # the newest are kept, in order
    assert [int(e.actor, 16) for e in got] == sorted(int(e.actor, 16) for e in got)


def test_image_events(root, tmp_path):
    t0 = str(time.time())
    assert pydock(root, "tag", "busybox", "mine:v1").returncode == 0
    assert pydock(root, "rmi", "mine:v1").returncode == 0
    archive = tmp_path / "bb.tar"
    with open(archive, "wb") as f:
        assert subprocess.run(pydock_argv(root, "save", "busybox"), stdout=f).returncode == 0
    assert pydock(root, "import", str(archive), "imp:1").returncode == 0
    assert pydock(root, "rmi", "imp:1").returncode == 0
    p = pydock(root, "events", "--since", t0, "--until", "0s", "--filter", "type=image")
    lines = p.stdout.decode().splitlines()
    actions = [(line.split()[2], line.rsplit("name=", 1)[1].rstrip(")")) for line in lines]
    assert actions[:3] == [("tag", "mine:v1"), ("untag", "mine:v1"), ("save", "busybox")]
    assert actions[3] == ("import", "imp:1") and actions[4] == ("untag", "imp:1") and actions[5][0] == "delete"
    p = pydock(root, "events", "--since", t0, "--until", "0s", "--filter", "image=mine:v1")
    assert [line.split()[2] for line in p.stdout.decode().splitlines()] == ["tag", "untag"]
