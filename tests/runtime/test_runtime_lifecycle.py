"""Detached containers: start, logs, wait, stop (TERM then KILL), kill, restart, remove, names."""

from __future__ import annotations

import time

import pytest

from pydock.utils.errors import Conflict, NotFound
from pydock.runtime.state import Status

pytestmark = pytest.mark.lxc

TRAP_TERM = 'trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.05; done'
IGNORE_TERM = 'trap "" TERM; echo ready; while :; do sleep 0.05; done'


def _wait_for_log(rt, c, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in r.log for r in rt.logs(c)):
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in the log of {c.short_id}")


def test_detached_start_logs_wait(rt):
    c = rt.create("busybox", ["sh", "-c", "echo one; echo two >&2; exit 5"])
    assert c.state.status is Status.CREATED
    rt.start(c)
    assert rt.wait(c, timeout=30) == 5
    assert [(r.stream, r.log) for r in rt.logs(c)] == [("stdout", "one\n"), ("stderr", "two\n")]
    c.reload()
    assert c.state.status is Status.EXITED and c.state.finished_at >= c.state.started_at


def test_stop_sends_term_first(rt):
    c = rt.create("busybox", ["sh", "-c", TRAP_TERM])
    rt.start(c)
    _wait_for_log(rt, c, "ready")
    assert rt.get(c.id).state.running
    rt.stop(c, timeout=10)
    assert rt.get(c.id).state.exit_code == 7
    assert any("got-term" in r.log for r in rt.logs(c))


def test_stop_kills_after_the_timeout(rt):
    c = rt.create("busybox", ["sh", "-c", IGNORE_TERM])
    rt.start(c)
    _wait_for_log(rt, c, "ready")
    t0 = time.monotonic()
    rt.stop(c, timeout=1)
    assert time.monotonic() - t0 >= 1
    c.reload()
    assert not c.state.running and c.state.exit_code == 137


def test_kill_with_a_signal_and_with_kill(rt):
    c = rt.create("busybox", ["sh", "-c", 'trap "exit 42" USR1; echo ready; while :; do sleep 0.05; done'])
    rt.start(c)
    _wait_for_log(rt, c, "ready")
    rt.kill(c, "USR1")
    assert rt.wait(c, timeout=10) == 42
    rt.start(c)
    rt.kill(c)  # SIGKILL
    assert rt.wait(c, timeout=10) == 137
    with pytest.raises(Conflict, match="not running"):
        rt.kill(c)


def test_restart_runs_it_again(rt):
    c = rt.create("busybox", ["sh", "-c", "echo run; " + TRAP_TERM])
    rt.start(c)
    _wait_for_log(rt, c, "ready")
    first = rt.get(c.id).state.started_at
    rt.restart(c, timeout=5)
    c.reload()
    assert c.state.running and c.state.started_at > first
    deadline = time.monotonic() + 10
    while sum(r.log == "ready\n" for r in rt.logs(c)) < 2:  # the second run is up (its trap is set)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    rt.stop(c, timeout=5)
    assert sum(r.log == "run\n" for r in rt.logs(c)) == 2


def test_remove_refuses_running_container_unless_forced(rt):
    c = rt.create("busybox", ["sleep", "60"], name="busy")
    rt.start(c)
    with pytest.raises(Conflict, match="Impossible to remove a running container, please stop it first or use -f"):
        rt.remove(c)
    rt.remove(c, force=True)
    with pytest.raises(NotFound):
        rt.get("busy")
    assert rt.names.get("/busy") is None
    assert c.id not in rt.driver.deviceset.list()


def test_start_twice_is_a_conflict(rt):
    c = rt.create("busybox", ["sleep", "60"])
    rt.start(c)
    try:
        with pytest.raises(Conflict, match="already running"):
            rt.start(c)
    finally:
        rt.kill(c)
        rt.wait(c, timeout=10)


def test_names_win_over_id_prefixes_and_conflicts_name_the_holder(rt):
    a = rt.create("busybox", ["true"], name="first")
    b = rt.create("busybox", ["true"], name=a.id[:6])  # a name that looks like a's id prefix
    assert rt.get(a.id[:6]).id == b.id
    assert rt.get("first").id == a.id and rt.get("/first").id == a.id
    with pytest.raises(Conflict) as info:
        rt.create("busybox", ["true"], name="first")
    assert a.id[:12] in str(info.value)
    assert len(rt.containers(all=True)) == 2  # the refused create left nothing


def test_an_id_prefix_naming_two_containers_is_ambiguous(rt):
    made = [rt.create("busybox", ["true"]) for _ in range(17)]  # 17 ids: two share a first hex digit
    by_digit: dict[str, list[str]] = {}
    for c in made:
        by_digit.setdefault(c.id[0], []).append(c.id)
    shared = next(d for d, ids in by_digit.items() if len(ids) > 1)
    with pytest.raises(NotFound, match="ambiguous"):
        rt.get(shared)
    one = made[0].id
    assert rt.get(one[:12]).id == one


def test_a_listed_container_reads_its_hostconfig_when_asked(rt):
    c = rt.create("busybox", ["true"], ports=("8080:80",))
    listed = next(x for x in rt.containers(all=True) if x.id == c.id)
    assert listed.hostconfig["PortSpecs"] == ["8080:80"] and listed.auto_remove is False
    assert rt.inspect(c.id)["HostConfig"]["PortSpecs"] == ["8080:80"]
    # another process changes it: reload() sees the change
    other = rt.load(c.id)
    other.hostconfig["PortSpecs"] = ["9090:90"]
    other.save()
    assert listed.reload().hostconfig["PortSpecs"] == ["9090:90"]


def test_containers_newest_first_and_running_filter(rt):
    first = rt.create("busybox", ["true"])
    second = rt.create("busybox", ["sleep", "60"])
    rt.start(second)
    try:
        assert [c.id for c in rt.containers(all=True)] == [second.id, first.id]
        assert [c.id for c in rt.containers()] == [second.id]
    finally:
        rt.kill(second)
        rt.wait(second, timeout=10)


def test_an_images_containers_share_its_init_layer_which_goes_with_the_image(rt):
    busybox = rt.images.resolve("busybox")
    image = rt.graph.register(None, parent=busybox.id, comment="an image of this test's own")
    first, second = (rt.create(image.id, ["true"]) for _ in range(2))
    assert first.init_id == second.init_id != first.own_init_id
    assert rt.driver.exists(first.id) and rt.driver.exists(first.init_id)
    assert rt.driver.initialized(first.init_id)
    rt.remove(first)
    assert not rt.driver.exists(first.id) and rt.driver.exists(second.init_id)  # the other still stands on it
    rt.remove(second)
    assert rt.driver.exists(second.init_id)  # made once per image, not per container
    assert rt.run(image.id, ["cat", "/etc/hostname", "/.dockerenv"], remove=True, network="none").exit_code == 0
    rt.images.graph.delete(image.id)
    assert not rt.driver.exists(second.init_id)


def test_a_container_made_with_an_init_layer_of_its_own_takes_it_along(rt):
    """Containers made before init layers were shared have `<id>-init`: their removal removes it too."""
    c = rt.create("busybox", ["true"])
    shared = c.init_id
    c.init_layer_path.unlink()
    rt.driver.create(c.own_init_id, rt.images.resolve("busybox").id)
    assert rt.get(c.id).init_id == c.own_init_id
    rt.remove(c.id)
    assert not rt.driver.exists(c.own_init_id) and not rt.driver.exists(c.id) and rt.driver.exists(shared)


def test_logs_follow_until_exit(rt):
    c = rt.create("busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.1; done"])
    rt.start(c)
    assert [r.log for r in rt.logs(c, follow=True)] == ["1\n", "2\n", "3\n"]


def test_diff_commit_export(rt):
    import io
    import tarfile

    c = rt.create("busybox", ["sh", "-c", "echo data > /hello; rm /etc/group; mkdir -p /var/new"])
    rt.start(c)
    assert rt.wait(c, timeout=30) == 0
    changes = {str(ch) for ch in rt.diff(c)}
    assert {"A /hello", "D /etc/group", "A /var/new"} <= changes
    assert not any(".dockerinit" in ch or "resolv.conf" in ch for ch in changes)
    image = rt.commit(c, "snap", "v1", comment="test", config={"Cmd": ["cat", "/hello"]})
    assert rt.images.resolve("snap:v1").id == image.id
    assert rt.run("snap:v1").stdout == b"data\n"
    buf = io.BytesIO()
    rt.export(c, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = set(tar.getnames())
    assert any(n.lstrip("./") == "hello" for n in names)
    assert not any(n.lstrip("./") == "etc/group" for n in names)


def test_rm_f_right_after_start_kills_it(rt):
    for _ in range(3):
        c = rt.create("busybox", ["sleep", "60"])
        rt.start(c)
        rt.remove(c, force=True)  # may land while lxc is still setting up: retried until the command exists
        assert not c.dir.exists()
