"""The `pydock` entry point and its CLI command server (cli/client.py, cli/cmdserver.py): a command run
through a warm server behaves as the same command run in the client's own process.

Each test gets a server of its own: a PYTHONPATH entry unique to the test gives its interpreter a
socket no other run shares, and the server is stopped (and must have removed its socket) at the end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from netns_helpers import in_netns_argv
from root_helpers import memory_kib

ENTRY = str(Path(sys.executable).with_name("pydock"))
WAIT = 60.0


class Cli:
    """`pydock` as users run it (the installed entry point) on one root, with a server of its own."""

    def __init__(self, root: Path, key_dir: Path) -> None:
        self.root = root
        self.key_dir = key_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK_")}
        self.env["PYTHONPATH"] = str(key_dir)
        self.env["PYDOCK_CLI_SERVER_IDLE"] = "30"

    def argv(self, *args: str) -> list[str]:
        return [ENTRY, "-g", str(self.root), "-s", "overlay", "-b", "none", *args]

    def run(self, *args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 120)
        return subprocess.run(self.argv(*args), env={**self.env, **(env or {})}, **kw)

    def servers(self) -> list[int]:
        """Pids of the command servers started for this test's interpreter (its PYTHONPATH is theirs): the
        processes named `pydock-cli`, but for a worker or spare just forked, which has its server's name
        for its first moments (its parent is one of them)."""
        named: dict[int, int] = {}  # pid: parent
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                stat = Path(f"/proc/{pid}/stat").read_bytes()
            except OSError:
                continue
            comm, _, rest = stat.partition(b" (")[2].rpartition(b") ")
            if comm == b"pydock-cli" and str(self.key_dir).encode() in cmdline:
                named[int(pid)] = int(rest.split()[1])
        return [pid for pid, parent in named.items() if parent not in named]

    def server(self) -> int:
        """The server's pid, once the first command has started it and it listens."""
        deadline = time.monotonic() + WAIT
        while not (pids := self.servers()) or not socket_of(pids[0]).exists():
            assert time.monotonic() < deadline, "no command server listening"
            time.sleep(0.02)
        assert len(pids) == 1, pids
        return pids[0]

    def worker_of(self, server: int) -> int:
        """The server's one child running a command now: named as its client (`pydock`) once it took the
        command; the spare waiting for the next is `pydock-spare`, and a child just forked still has its
        server's name (`pydock-cli`) for its first moments, which a loaded machine makes long."""
        return child_of(server, lambda comm: comm == "pydock", "no worker")

    def stop(self) -> None:
        for pid in self.servers():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + WAIT
        while self.servers():
            assert time.monotonic() < deadline, "the command server did not stop on SIGTERM"
            time.sleep(0.05)


def child_of(server: int, wanted: Callable[[str], bool], missing: str) -> int:
    """A child of `server` whose name (comm) is `wanted`, once there is one."""
    deadline = time.monotonic() + WAIT
    while (pid := _child_named(server, wanted)) is None:
        assert time.monotonic() < deadline, missing
        time.sleep(0.02)
    return pid


def _child_named(server: int, wanted: Callable[[str], bool]) -> int | None:
    """A child of `server` whose name (comm) is `wanted` now, if any."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        comm, _, rest = stat.partition(b" (")[2].rpartition(b") ")
        if int(rest.split()[1]) == server and wanted(comm.decode()):
            return int(pid)
    return None


def _until_ended(pid: int, message: str) -> None:
    """Wait until process `pid` has ended (gone, or a zombie its parent has not reaped); `message` if not."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            if b"Z" in Path(f"/proc/{pid}/stat").read_bytes().rpartition(b") ")[2].split()[:1]:
                return
        except (FileNotFoundError, ProcessLookupError):
            return
        assert time.monotonic() < deadline, f"{message} ({pid})"
        time.sleep(0.05)


def socket_of(server: int) -> Path:
    """The socket a server listens on: its argv is `python -c BOOT SOCKET SYS.PATH...`."""
    return Path(os.fsdecode(Path(f"/proc/{server}/cmdline").read_bytes().split(b"\0")[3]))


@pytest.fixture
def cli(cli_root: Path, tmp_path: Path):
    key = tmp_path / "server-key"
    key.mkdir()
    c = Cli(cli_root, key)
    try:
        yield c
    finally:
        c.stop()


def warm(cli: Cli) -> int:
    """Start the server (the first command runs in its client while the server starts) and return it."""
    assert cli.run("version").returncode == 0
    return cli.server()


def _sockets() -> set[str]:
    try:
        return {n for n in os.listdir("/run/pydock") if n.endswith(".sock")}
    except FileNotFoundError:
        return set()


@pytest.mark.parametrize("args", [("version",), ("ps", "-a"), ("images",), ("inspect", "no-such-thing"),
                                  ("run", "--no-such-flag", "busybox"), ("rm",), ("--help",), ("no-such-command",)])
def test_a_command_through_the_server_prints_and_exits_as_in_its_client(cli, args):
    server = warm(cli)
    served = cli.run(*args)
    assert cli.servers() == [server]
    here = cli.run(*args, env={"PYDOCK_CLI_SERVER": "0"})
    assert (served.returncode, served.stdout, served.stderr) == (here.returncode, here.stdout, here.stderr)


@pytest.mark.lxc
def test_the_command_gets_the_clients_stdin_directory_umask_and_environment(cli, tmp_path):
    warm(cli)
    res = cli.run("run", "--rm", "-i", "busybox", "sh", "-c", "cat; exit 7", input=b"through stdin\n")
    assert res.returncode == 7, res.stderr
    assert res.stdout == b"through stdin\n"
    work = tmp_path / "here"
    work.mkdir()
    res = cli.run("save", "-o", "saved.tar", "busybox", cwd=work, preexec_fn=lambda: os.umask(0o077))
    assert res.returncode == 0, res.stderr
    assert (work / "saved.tar").stat().st_mode & 0o777 == 0o600  # in the client's directory, under its umask
    # the client's PYDOCK_* environment picks the root, as it would in-process
    env = {**cli.env, "PYDOCK_ROOT": str(cli.root), "PYDOCK_DRIVER": "overlay"}
    listed = subprocess.run([ENTRY, "images"], env=env, capture_output=True, timeout=120)
    assert listed.returncode == 0 and b"busybox" in listed.stdout
    # each command has its own client's environment, whatever the one before had (`-e NAME` reads it)
    for value in ("one", None, "two"):
        res = cli.run("run", "--rm", "-e", "PASSED", "busybox", "sh", "-c", 'echo "${PASSED-unset}"',
                      env={"PASSED": value} if value else None)
        assert res.stdout.decode().strip() == (value or "unset"), res.stderr


@pytest.mark.lxc
def test_signals_to_the_client_reach_the_command(cli):
    warm(cli)
    proc = subprocess.Popen(cli.argv("run", "--name", "sig", "busybox", "sh", "-c",
                                     'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 1; done'),
                            env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)  # `pydock run` passes it on to the container, as in-process
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out == b"got TERM\n", err
    assert proc.returncode == 3
    assert cli.run("rm", "sig").returncode == 0


def test_the_command_ignores_the_signals_its_client_ignored_and_no_others(cli):
    server = warm(cli)
    shown = (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ)
    for ignored in ({signal.SIGHUP, signal.SIGUSR1}, set(), {signal.SIGTERM}):
        # as a fresh python in the client's place: what it inherited as ignored, plus SIGPIPE and SIGXFSZ
        expected = ignored | {signal.SIGPIPE, signal.SIGXFSZ}
        proc = subprocess.Popen(cli.argv("events"), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=lambda: [signal.signal(s, signal.SIG_IGN) for s in ignored])
        try:
            worker = cli.worker_of(server)
            deadline = time.monotonic() + WAIT
            while True:  # named as its client first, it takes the client's signals a moment later
                status = Path(f"/proc/{worker}/status").read_text()
                mask = int(status.split("SigIgn:\t", 1)[1].split()[0], 16)
                seen = {s for s in shown if mask & (1 << (s - 1))}
                if seen == expected or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        finally:
            proc.kill()
            proc.wait()
        _until_ended(worker, "the worker outlived its client")
        assert seen == expected


def test_a_command_killed_by_a_signal_kills_its_client_with_it(cli):
    server = warm(cli)
    proc = subprocess.Popen(cli.argv("events"), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        worker = cli.worker_of(server)
        os.kill(worker, signal.SIGKILL)
        proc.wait(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.lxc
def test_a_client_killed_mid_run_takes_its_command_with_it(cli):
    server = warm(cli)
    proc = subprocess.Popen(cli.argv("run", "--name", "fg", "busybox", "sh", "-c", "echo started; sleep 60"),
                            env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"started\n"
        worker = cli.worker_of(server)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    _until_ended(worker, "the worker outlived its client")
    # as after a kill -9 of an in-process `pydock run`: the container is reconciled as killed
    out = cli.run("ps", "-a").stdout.decode()
    line = next(l for l in out.splitlines() if l.rstrip().endswith("fg"))
    assert "Exit 137" in line
    assert cli.run("rm", "fg").returncode == 0


def test_a_command_run_in_its_client_gets_site_as_plain_python_does(cli):
    """The entry point starts python with -S for speed; a command it runs itself still gets what site
    does (.pth files, sitecustomize), as `python -m pydock.cli.main` would."""
    marker = cli.key_dir / "site-ran"
    (cli.key_dir / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    r = cli.run("version", env={"PYDOCK_CLI_SERVER": "0"})
    assert r.returncode == 0, r.stderr
    assert marker.exists()


def _children(pid: int) -> list[int]:
    return [int(c) for t in os.listdir(f"/proc/{pid}/task")
            for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]


def _server_connections() -> set[int]:
    """Socket inodes of the connections to any command server (/proc/net/unix lists the accepted ends
    with the listener's path)."""
    lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    return {int(f[6]) for f in (line.split() for line in lines) if len(f) > 7 and "/run/pydock/cli-" in f[7]}


@pytest.mark.lxc
def test_a_detached_containers_monitor_is_no_part_of_the_server(cli):
    """The worker keeps its client's connection until it has sent the status; a monitor it forks for a
    `run -d` must not keep it for the container's life, nor go by the server's name (`pkill -x pydock-cli`
    stops servers, never a container's monitor)."""
    warm(cli)
    r = cli.run("run", "-d", "--name", "bg", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        cid = r.stdout.decode().strip()
        monitor = json.loads((cli.root / "containers" / cid / "config.json").read_text())["State"]["MonitorPid"]
        held = set()
        for pid in (monitor, *_children(monitor)):  # the monitor and its lxc-start
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    held.add(int(target[8:-1]))
        assert monitor and not held & _server_connections()
        assert Path(f"/proc/{monitor}/comm").read_text() == "pydock\n"
    finally:
        assert cli.run("rm", "-f", "bg").returncode == 0


def test_a_command_in_a_namespace_of_its_own_runs_in_its_client(cli):
    warm(cli)
    sockets = _sockets()
    argv = in_netns_argv(*cli.argv("version"))
    res = subprocess.run(argv, env=cli.env, capture_output=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith(b"Client version: ")
    assert _sockets() == sockets  # no server started for that namespace, none left holding it


@pytest.mark.parametrize("value", ["0", "off", "FALSE", "no"])
def test_switched_off_no_server_is_started(cli, value):
    res = cli.run("version", env={"PYDOCK_CLI_SERVER": value})
    assert res.returncode == 0
    time.sleep(1.0)  # a server would have been forked at once
    assert cli.servers() == []


@pytest.mark.parametrize("name, value", [("PYDOCK_CLI_SERVER", "maybe"), ("PYDOCK_CLI_SERVER_IDLE", "soon"),
                                         ("PYDOCK_CLI_SERVER_IDLE", "0"), ("PYDOCK_CLI_SERVER_IDLE", "-5"),
                                         ("PYDOCK_CLI_SERVER_IDLE", "nan"), ("PYDOCK_CLI_SERVER_IDLE", "inf")])
def test_a_bad_server_setting_is_refused_in_one_line(cli, name, value):
    res = cli.run("version", env={name: value})
    assert res.returncode == 125 and res.stdout == b""
    assert res.stderr.decode().splitlines() == [f"Error: {name}={value!r} is not "
                                                + ("a switch: use 1 or 0 (true/false, yes/no, on/off)"
                                                   if name == "PYDOCK_CLI_SERVER" else "a number of seconds above 0")]
    assert cli.servers() == []  # nothing started on it


def test_a_confined_client_is_not_served(cli):
    """A client with no_new_privs (or fewer capabilities, or another namespace) gets no worker: the server
    would otherwise run the command with more than its client may do."""
    server = warm(cli)
    code = ("import sys; path = sys.argv[1]; sys.argv = ['pydock', 'version']; from pydock.cli import client; "
            "import _socket; s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM); "
            "s.connect(path); assert client._send_request(s); print(s.recv(200).decode())")
    res = subprocess.run(["setpriv", "--no-new-privs", sys.executable, "-c", code, str(socket_of(server))], env=cli.env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Fconfined client"), res.stdout


def test_the_command_runs_in_the_clients_cgroup(cli, tmp_path):
    server = warm(cli)
    hierarchy, mount = _a_cgroup_hierarchy()
    group = Path(mount) / f"pydock-test-{os.getpid()}-{tmp_path.name}"
    group.mkdir()
    proc = None
    try:
        code = f"echo $$ > {group}/cgroup.procs && exec {' '.join(cli.argv('events'))}"
        proc = subprocess.Popen(["sh", "-c", code], env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        worker = cli.worker_of(server)
        deadline = time.monotonic() + WAIT
        while True:  # it moves while it takes on its client's context
            lines = Path(f"/proc/{worker}/cgroup").read_text().splitlines()
            if any(line.split(":", 2)[1] == hierarchy and line.endswith("/" + group.name) for line in lines):
                break
            assert time.monotonic() < deadline, lines
            time.sleep(0.05)
        assert cli.run("version").returncode == 0  # and it has answered, so it did not fall back
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        deadline = time.monotonic() + WAIT
        while True:
            try:
                group.rmdir()
                break
            except OSError:  # the worker is on its way out
                assert time.monotonic() < deadline
                time.sleep(0.05)


def _a_cgroup_hierarchy() -> tuple[str, str]:
    """(hierarchy as /proc/PID/cgroup names it, mount point): cgroup2 if mounted, else v1 `pids`."""
    with open("/proc/self/mountinfo") as f:
        mounts = [(line.split(" - ")[1].split(), line.split()[4]) for line in f]
    for (fstype, _src, _opts, *_), point in mounts:
        if fstype == "cgroup2" and open("/proc/self/cgroup").read().count("\n") == 1:
            return "", point
    for (fstype, _src, opts, *_), point in mounts:
        if fstype == "cgroup" and "pids" in opts.split(","):
            return "pids", point
    pytest.skip("no cgroup2 or v1 pids hierarchy mounted (kernel without CONFIG_CGROUP_PIDS)")


def test_many_clients_at_once_each_get_their_own_answer(cli):
    warm(cli)
    names = [f"c{i}" for i in range(12)]
    with ThreadPoolExecutor(6) as pool:
        created = list(pool.map(lambda n: cli.run("create", "--name", n, "busybox", "true"), names))
    assert all(r.returncode == 0 for r in created), [r.stderr for r in created]
    ids = [r.stdout.strip() for r in created]
    assert len(set(ids)) == 12
    with ThreadPoolExecutor(6) as pool:
        inspected = list(pool.map(lambda n: cli.run("inspect", "-f", "{{.Name}} {{.Id}}", n), names))
    assert [r.stdout for r in inspected] == [b"/%s %s\n" % (n.encode(), i) for n, i in zip(names, ids)]
    assert cli.run("rm", *names).returncode == 0


def spare_of(server: int) -> int:
    """The worker a server keeps forked for the next command."""
    return child_of(server, lambda comm: comm == "pydock-spare", "no spare worker")


def test_an_idle_server_exits_and_removes_its_socket(cli):
    assert cli.run("version", env={"PYDOCK_CLI_SERVER_IDLE": "0.5"}).returncode == 0
    server = cli.server()
    socket_path = socket_of(server)
    spare = spare_of(server)
    deadline = time.monotonic() + WAIT
    while Path(f"/proc/{server}").exists() or Path(f"/proc/{spare}").exists():
        assert time.monotonic() < deadline, "the idle server or its spare worker did not exit"
        time.sleep(0.1)
    assert not socket_path.exists()


def test_the_spare_worker_runs_the_next_command_and_a_dead_one_is_replaced(cli):
    server = warm(cli)
    spare = spare_of(server)
    r = cli.run("inspect", "-f", "{{.Name}}", "no-such-thing")
    assert (r.returncode, r.stderr) == (1, b"Error: No such image or container: no-such-thing\n")
    deadline = time.monotonic() + WAIT
    while Path(f"/proc/{spare}").exists():  # it ran that command and ends (the status came first)
        assert time.monotonic() < deadline, "the spare worker did not take the command"
        time.sleep(0.02)
    spare = spare_of(server)
    os.kill(spare, signal.SIGKILL)
    r = cli.run("ps", "-a", "-q")  # runs in a worker forked for it
    assert r.returncode == 0 and r.stderr == b"" and cli.servers() == [server]
    assert spare_of(server) != spare


@pytest.mark.lxc
def test_what_rm_leaves_for_after_its_answer_is_done_though_its_client_is_gone(cli):
    warm(cli)
    made = cli.run("run", "--name", "big", "busybox", "sh", "-c", "mkdir /many && cd /many && touch $(seq 4000)")
    assert made.returncode == 0, made.stderr
    cid = cli.run("inspect", "-f", "{{.Id}}", "big").stdout.decode().strip()
    layer = (cli.root / "overlay" / "devices" / cid).resolve()  # the container's layer
    assert (layer / "diff" / "many" / "4000").exists()
    removed = cli.run("rm", "big")
    assert (removed.returncode, removed.stdout) == (0, b"big\n")
    assert not layer.exists() and cli.run("ps", "-a", "-q").stdout == b""  # gone once rm answered
    trash = cli.root / "overlay" / "trash"
    deadline = time.monotonic() + WAIT  # deleting 4000 files takes far longer than the client's exit
    while os.listdir(trash) or os.listdir(cli.root / "trash"):
        assert time.monotonic() < deadline, f"left in the trash: {os.listdir(trash)}"
        time.sleep(0.05)


def test_a_detached_container_s_monitor_shares_what_its_worker_never_wrote(cli):
    """A monitor is a fork of its command's worker: the server's pages that worker never wrote stay
    shared (with the server and every other monitor), so a detached container costs only what its
    command wrote. A worker that copied its pages ahead of its command left each monitor owning them."""
    server = warm(cli)
    ids = []
    for _ in range(2):  # the first also builds the busybox image
        made = cli.run("run", "-d", "busybox", "sleep", "60")
        assert made.returncode == 0, made.stderr
        ids.append(made.stdout.decode().strip())
    state = json.loads((cli.root / "containers" / ids[-1] / "config.json").read_text())["State"]
    deadline = time.monotonic() + WAIT
    # the worker's copies are shared with the monitor until the worker ends
    while _child_named(server, lambda comm: comm == "pydock") is not None:
        assert time.monotonic() < deadline, "the worker of `run -d` did not end"
        time.sleep(0.05)
    shared, own = (memory_kib(state["MonitorPid"], f) for f in ("Shared_Dirty", "Private_Dirty"))
    assert shared * 2 >= own, f"the monitor owns {own} KiB and shares only {shared} KiB"
    assert cli.run("rm", "-f", *ids).returncode == 0


def _a_run_exiting_5_in_2_seconds(cli: Cli) -> subprocess.Popen:
    """A `run --rm` through the server, once its container has started."""
    proc = subprocess.Popen(cli.argv("run", "--rm", "busybox", "sh", "-c", "echo started; sleep 2; exit 5"),
                            env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.stdout.readline() != b"started\n":
        proc.kill()
        proc.wait()
        pytest.fail(f"the run did not start: {proc.stderr.read()!r}")
    return proc


@pytest.mark.lxc
def test_a_server_stopped_mid_command_lets_it_finish_and_answer(cli):
    server = warm(cli)
    socket_path = socket_of(server)
    proc = _a_run_exiting_5_in_2_seconds(cli)
    try:
        os.kill(server, signal.SIGTERM)
        deadline = time.monotonic() + WAIT
        while socket_path.exists():  # it takes no more commands at once
            assert time.monotonic() < deadline, "the server kept listening after SIGTERM"
            time.sleep(0.02)
        assert proc.wait(timeout=WAIT) == 5, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + WAIT
    while Path(f"/proc/{server}").exists():
        assert time.monotonic() < deadline, "the server outlived its last command"
        time.sleep(0.05)


@pytest.mark.lxc
def test_a_server_killed_mid_command_still_lets_the_client_have_its_status(cli):
    """The worker, not the server, tells the client how the command ended: kill -9 of the server loses
    no status (and its spare worker goes with it)."""
    server = warm(cli)
    spare = spare_of(server)
    socket_path = socket_of(server)
    proc = _a_run_exiting_5_in_2_seconds(cli)
    try:
        os.kill(server, signal.SIGKILL)
        assert proc.wait(timeout=WAIT) == 5, proc.stderr.read()
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
        # a server killed outright leaves its socket and lock file (the next server of its key replaces
        # them; this key has none)
        socket_path.unlink(missing_ok=True)
        Path(f"{socket_path}.lock").unlink(missing_ok=True)
    _until_ended(spare, "the spare worker outlived its server")


def test_a_client_killed_after_its_server_still_takes_its_command_along(cli):
    """The worker watches its client itself: with the server killed, a client killed later still ends
    its command (an `events` waiting for an event that may never come would otherwise stay forever)."""
    server = warm(cli)
    socket_path = socket_of(server)
    proc = subprocess.Popen(cli.argv("events"), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        worker = cli.worker_of(server)
        os.kill(server, signal.SIGKILL)
        _until_ended(server, "the server outlived its SIGKILL")
        assert proc.poll() is None and Path(f"/proc/{worker}").exists()  # the command goes on meanwhile
        proc.kill()
        proc.wait()
        _until_ended(worker, "the worker outlived its client")
    finally:
        if proc.poll() is None:
            proc.kill()
        socket_path.unlink(missing_ok=True)  # a server killed outright leaves them (see above)
        Path(f"{socket_path}.lock").unlink(missing_ok=True)


def test_servers_stopped_while_commands_come_and_go_lose_none_of_them(cli):
    """SIGTERM to the servers at any moment: each command still ends as it would in its client (through
    the server, or in its client when the server had stopped listening)."""
    expected = cli.run("ps", "-a", "-q", env={"PYDOCK_CLI_SERVER": "0"})
    results = []
    with ThreadPoolExecutor(4) as pool:
        for round_ in range(12):
            batch = [pool.submit(cli.run, "ps", "-a", "-q") for _ in range(6)]
            time.sleep(0.005 * (round_ % 6))
            for pid in cli.servers():
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            results += [f.result() for f in batch]
    assert [(r.returncode, r.stdout, r.stderr) for r in results] == \
        [(0, expected.stdout, b"")] * len(results)


def test_a_sigterm_meant_for_the_server_does_not_kill_the_next_command(cli):
    """A worker or spare goes by the server's name for its first moments after the fork, so `pkill -x
    pydock-cli` can reach it; such a SIGTERM (held while it waits) is dropped when it takes its command."""
    server = warm(cli)
    os.kill(spare_of(server), signal.SIGTERM)
    r = cli.run("ps", "-a", "-q")
    assert (r.returncode, r.stderr) == (0, b"")


def test_a_stopped_server_removes_its_socket_and_the_next_command_starts_one(cli):
    server = warm(cli)
    socket_path = socket_of(server)
    cli.stop()
    assert not socket_path.exists()
    assert cli.run("version").returncode == 0  # in the client, which starts a new server
    assert cli.server() != server


@pytest.mark.parametrize("change", ["edited", "added"])
def test_a_server_whose_source_changed_retires_and_the_next_command_starts_a_new_one(cli, change):
    server = warm(cli)
    module = Path(importlib.util.find_spec("pydock.cli.formatting").origin)  # one the server loaded
    st = module.stat()
    added = module.with_name(f"_added_by_test_{os.getpid()}.py")
    try:
        if change == "edited":  # as an editor's save in place, or an upgrade's new file at the same size
            os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        else:  # a module the new code brings
            added.write_text("")
        res = cli.run("version")
        assert res.returncode == 0, res.stderr
        _until_ended(server, "the server kept running old code")
        assert cli.server() != server
    finally:
        added.unlink(missing_ok=True)
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))


EVERYDAY = '''
import os, shlex, sys
from pydock.cli import cmdserver
cmdserver._preload()
from pydock.cli.main import main
before = set(sys.modules)
null = os.open(os.devnull, os.O_WRONLY)
saved = os.dup(1)
os.dup2(null, 1)
network = [] if sys.argv[2] == "bridge" else ["-b", "none"]
for line in sys.argv[3:]:
    status = main(["-g", sys.argv[1], "-s", "overlay", *network, *shlex.split(line)])
    assert status == 0, (line, status)
os.dup2(saved, 1)
print("\\n".join(sorted(m for m in set(sys.modules) - before if m.startswith("pydock."))))
'''


@pytest.mark.lxc
@pytest.mark.parametrize("network", ["none", "bridge"])
def test_the_everyday_commands_import_nothing_the_server_has_not(cli, network):
    """cmdserver.PRELOAD covers what the everyday commands use, so a worker imports nothing (each
    import would cost every such command its time again): with `-b none`, and on the default bridge
    (in a network namespace of the test's own)."""
    commands = ["version", "create --name every busybox sh -c 'sleep 30'", "start every", "exec every true",
                "ps -a", "inspect every", "logs every", "images", "kill every", "wait every", "restart every",
                "stop -t 1 every", "rm every", "run --rm busybox true", "run -d --name bg busybox true", "rm -f bg"]
    argv = [sys.executable, "-c", EVERYDAY, str(cli.root), network, *commands]
    res = subprocess.run(in_netns_argv(*argv) if network == "bridge" else argv, env=cli.env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == []
